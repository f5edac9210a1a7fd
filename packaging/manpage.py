"""Write the man pages of pycache-d, pycache-cli and pycache-http from their argparse parsers.

Usage: python packaging/manpage.py [--check]   (from the checkout, with both packages importable)

The pages land in packaging/man/pycache-d.1 and client/man/pycache-{cli,http}.1, each beside the
distribution that ships it (setup's data_files put them in the wheel's share/man/man1; the .deb
installs them in /usr/share/man/man1). ``--check`` only compares and exits 1 when a page is out
of date with its parser (tests/test_packaging.py runs it), so a new flag cannot miss its page.

Only what argparse knows goes in: the usage line, the description, every option with its
metavar and help, and per subcommand its usage and options; plus a short EXIT STATUS section
from the module docstrings' rule, written here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

EXIT = {
    "pycache-d": "0 after a clean shutdown or a valid --check-config; 1 when a listener cannot be "
    "opened or a snapshot cannot be consumed; 2 for an invalid flag, environment variable or config value.",
    "pycache-cli": "0 success; 1 a miss where the miss is the answer; 2 a usage error; "
    "3 the server could not be reached or failed.",
    "pycache-http": "0 after a clean shutdown; 2 for an invalid option or auth file.",
}
SEE_ALSO = {
    "pycache-d": r"\fBpycache-cli\fR(1), \fBpycache-http\fR(1), \fBmemcached\fR(1), \fBsystemctl\fR(1)",
    "pycache-cli": r"\fBpycache-d\fR(1), \fBpycache-http\fR(1)",
    "pycache-http": r"\fBpycache-d\fR(1), \fBpycache-cli\fR(1)",
}


def _roff(text: str) -> str:
    """Escape text for roff: backslashes, and a leading dot or quote would be a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + line) if line[:1] in (".", "'") else line for line in text.splitlines())


def _usage(parser: argparse.ArgumentParser) -> str:
    """The usage line on one line: argparse wraps it at the terminal's width ($COLUMNS)."""
    return _roff(" ".join(parser.format_usage().removeprefix("usage: ").split()))


def _options(parser: argparse.ArgumentParser) -> list[str]:
    out: list[str] = []
    for action in parser._actions:  # noqa: SLF001 - argparse has no public listing of its actions
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            metavar = ""
            if action.nargs != 0:
                metavar = " " + (action.metavar or action.dest.upper())
            names = ", ".join(f"\\fB{_roff(o)}\\fR{_roff(metavar)}" for o in action.option_strings)
        else:
            names = f"\\fI{_roff(str(action.metavar or action.dest))}\\fR"
        help_text = action.help or ""
        if "%(" in help_text:
            help_text %= {"default": action.default, "prog": parser.prog}
        if action.choices and not isinstance(action, argparse._SubParsersAction):
            help_text += f" (one of: {', '.join(map(str, action.choices))})"
        out += [".TP", names, _roff(help_text)]
    return out


def page(name: str, parser: argparse.ArgumentParser, version: str) -> str:
    """Return the man page of ``parser`` as roff."""
    lines = [
        f'.TH {name.upper()} 1 "" "{name} {version}" "User Commands"',
        ".SH NAME",
        f"{_roff(name)} \\- {_roff(parser.description or '')}",
        ".SH SYNOPSIS",
        ".nf",
        _usage(parser),
        ".fi",
        ".SH OPTIONS",
        *_options(parser),
    ]
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]  # noqa: SLF001
    if subs:
        lines.append(".SH COMMANDS")
        helps = {c.dest: c.help for c in subs[0]._choices_actions}  # noqa: SLF001
        for command, sub in subs[0].choices.items():
            lines += [f".SS {_roff(command)}", _roff(helps.get(command) or ""), ".PP", ".nf"]
            lines += [_usage(sub), ".fi"]
            own = [a for a in sub._actions if a.dest not in ("help", "server", "timeout")]  # noqa: SLF001
            sub_parser = argparse.ArgumentParser(prog=sub.prog, add_help=False)
            sub_parser._actions = own  # noqa: SLF001
            lines += _options(sub_parser)
    lines += [".SH EXIT STATUS", _roff(EXIT[name]), ".SH SEE ALSO", SEE_ALSO[name]]
    return "\n".join(lines) + "\n"


def pages() -> dict[Path, str]:
    """Every page by its path in the checkout."""
    from pycache_client import __version__ as client_version
    from pycache_client.cli import build_parser as cli_parser
    from pycache_client.http.__main__ import build_parser as http_parser
    from pycache_d._version import __version__ as daemon_version
    from pycache_d.daemon.config import build_parser as daemon_parser

    return {
        ROOT / "packaging" / "man" / "pycache-d.1": page("pycache-d", daemon_parser(), daemon_version),
        ROOT / "client" / "man" / "pycache-cli.1": page("pycache-cli", cli_parser(), client_version),
        ROOT / "client" / "man" / "pycache-http.1": page("pycache-http", http_parser(), client_version),
    }


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    stale = []
    for path, text in pages().items():
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(
            f"manpage.py: out of date (run python packaging/manpage.py): {', '.join(stale)}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
