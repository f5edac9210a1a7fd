# bash completion for pycache-d, pycache-cli and pycache-http (installed by the .deb in
# /usr/share/bash-completion/completions/, one link per command). Options come from each
# command's own --help, so they cannot drift from the parsers; commands and file arguments
# are completed here.

_pycache_options() {  # the long and short options a command's --help lists
    "$1" --help 2>/dev/null | grep -oE '(^|[ ,])--?[A-Za-z][-A-Za-z]*' | tr -d ' ,' | sort -u
}

_pycache() {
    local cur prev cmd sub i
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    cmd=${COMP_WORDS[0]##*/}
    case $prev in
        --config|--snapshot|--tls-cert|--tls-key|--tls-ca|--auth-file|--file|-f|--output|-o)
            COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --backend) COMPREPLY=($(compgen -W "auto native python" -- "$cur")); return ;;
        --log-level) COMPREPLY=($(compgen -W "critical error warning info debug" -- "$cur")); return ;;
    esac
    if [ "$cmd" = pycache-cli ]; then
        sub=
        for ((i = 1; i < COMP_CWORD; i++)); do
            case ${COMP_WORDS[i]} in
                get|set|delete|incr|decr|stats|flush) sub=${COMP_WORDS[i]}; break ;;
            esac
        done
        if [ -z "$sub" ] && [[ $cur != -* ]]; then
            COMPREPLY=($(compgen -W "get set delete incr decr stats flush" -- "$cur")); return
        fi
        if [ -n "$sub" ] && [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$("$cmd" "$sub" --help 2>/dev/null | grep -oE '(^|[ ,])--?[A-Za-z][-A-Za-z]*' | tr -d ' ,' | sort -u)" -- "$cur"))
            return
        fi
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_pycache_options "$cmd")" -- "$cur"))
    fi
}

complete -F _pycache pycache-d pycache-cli pycache-http
