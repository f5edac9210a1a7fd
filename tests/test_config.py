"""The pure configuration layer: flags, environment, TOML file, precedence and validation."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from tlscerts import PKI, make_pki

from pycache_d.daemon.config import (
    LIVE_SETTINGS,
    Config,
    ConfigError,
    ConfigSource,
    Endpoint,
    describe_size,
    from_env,
    from_flags,
    load,
    validate,
)

MiB = 1024 * 1024


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "pycache-d.toml"
    path.write_text(text)
    return str(path)


def test_defaults_match_memcached_spirit() -> None:
    _, cfg = load([], {})
    assert cfg == Config()
    assert (cfg.port, cfg.listen, cfg.unix_mode) == (11211, ("127.0.0.1",), 0o700)
    assert (cfg.memory_limit, cfg.max_item_size, cfg.max_items) == (64 * MiB, MiB, 0)
    assert (cfg.max_connections, cfg.backend, cfg.verbose, cfg.config) == (1024, "auto", 0, None)
    assert cfg.endpoints == (Endpoint(host="127.0.0.1", port=11211),)


def test_short_and_long_flags() -> None:
    argv = ["-p", "0", "-l", "::1", "-l", "unix:/tmp/x.sock", "-m", "128", "-c", "10", "-I", "2m", "-vv"]
    _, cfg = load(argv + ["--max-items", "5", "--backend", "python", "--unix-mode", "0755"], {})
    assert cfg.port == 0
    assert cfg.listen == ("::1", "unix:/tmp/x.sock")
    assert cfg.memory_limit == 128 * MiB
    assert cfg.max_connections == 10
    assert cfg.max_item_size == 2 * MiB
    assert cfg.verbose == 2
    assert cfg.max_items == 5
    assert cfg.backend == "python"
    assert cfg.unix_mode == 0o755


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1", Endpoint(host="10.0.0.1", port=7)),
        ("10.0.0.1:99", Endpoint(host="10.0.0.1", port=99)),
        ("::1", Endpoint(host="::1", port=7)),
        ("[::1]", Endpoint(host="::1", port=7)),
        ("[::1]:99", Endpoint(host="::1", port=99)),
        ("localhost", Endpoint(host="localhost", port=7)),
        ("unix:/run/pc.sock", Endpoint(path="/run/pc.sock")),
        ("notls:10.0.0.1:99", Endpoint(host="10.0.0.1", port=99, notls=True)),
        ("notls:[::1]", Endpoint(host="::1", port=7, notls=True)),
    ],
)
def test_listen_address_forms(text: str, expected: Endpoint) -> None:
    _, cfg = load(["-p", "7", "-l", text], {})
    assert cfg.endpoints == (expected,)


def test_endpoint_str_brackets_ipv6() -> None:
    assert str(Endpoint(host="::1", port=5)) == "[::1]:5"
    assert str(Endpoint(host="127.0.0.1", port=5)) == "127.0.0.1:5"
    assert str(Endpoint(path="/x")) == "unix:/x"
    assert str(Endpoint(host="::1", port=5, notls=True)) == "notls:[::1]:5"


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("-I", "1024", 1024),
        ("-I", "512k", 512 * 1024),
        ("-I", "1M", MiB),
        ("-m", "1", MiB),
        ("-m", "2g", 2048 * MiB),
        ("-m", "4096k", 4 * MiB),
    ],
)
def test_size_suffixes(flag: str, value: str, expected: int) -> None:
    _, cfg = load([flag, value], {})
    assert (cfg.max_item_size if flag == "-I" else cfg.memory_limit) == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-p", "http"], "--port: expected an integer, got 'http'"),
        (["-p", "65536"], "--port: must be 0..65535, got 65536"),
        (["-m", "0"], "--memory-limit: expected a positive size"),
        (["-I", "100"], "--max-item-size: must be between 1k and 1024m"),
        (["-I", "2m", "-m", "1"], "--max-item-size: max item size (2097152 bytes) exceeds the memory limit"),
        (["-c", "0"], "--max-connections: must be 1..1000000, got 0"),
        (["--max-items", "-1"], "--max-items: must be 0..9223372036854775807, got -1"),
        (["-m", "9999999999999999"], "--memory-limit: too large: '9999999999999999'"),
        (["--backend", "rust"], "--backend: expected auto, native or python, got 'rust'"),
        (["--unix-mode", "999"], "--unix-mode: expected octal permissions like 0700, got '999'"),
        (["-l", "[::1"], "--listen: bad address '[::1'"),
        (["-l", "host:99999"], "--listen: must be 0..65535, got 99999"),
        (["-l", "unix:"], "--listen: unix: needs a socket path"),
        (["-l", "notls:unix:/x"], "--listen: notls: applies to TCP addresses only"),
        (["--idle-timeout", "-5"], "--idle-timeout: must be 0..2147483647, got -5"),
        (["--tls-key", "k.pem"], "--tls-key: needs a certificate (tls_cert) too"),
        (["--tls-ca", "ca.pem"], "--tls-ca: needs a certificate (tls_cert) too"),
        (["--tls-cert", "/nonexistent/c.pem"], "--tls-cert: cannot read /nonexistent/c.pem: No such file"),
        (["--tls-cert", ""], "--tls-cert: expected a file name (or false for none), got ''"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["-p"], "argument -p/--port: expected one argument"),
        (["stray"], "unrecognized arguments: stray"),
        (["--mem", "5"], "unrecognized arguments: --mem"),  # no abbreviations: they hide typos
    ],
)
def test_bad_flags_name_the_option(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(argv, {})
    text = str(info.value)
    assert text.startswith(message)
    assert "\n" not in text


def test_only_given_flags_are_recorded() -> None:
    assert from_flags(["-p", "5", "-v"]) == {"port": "5", "verbose": 1}
    assert from_flags([]) == {}


def test_environment_names_and_empty_values() -> None:
    env = {"PYCACHE_D_PORT": "99", "PYCACHE_D_MEMORY_LIMIT": "", "PYCACHE_D_LISTEN": "a, unix:/b"}
    assert from_env(env) == {"port": "99", "listen": "a, unix:/b"}
    _, cfg = load([], env)
    assert cfg.port == 99
    assert cfg.listen == ("a", "unix:/b")
    assert cfg.memory_limit == 64 * MiB


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^PYCACHE_D_MAX_CONNECTIONS: expected an integer, got 'many'$"):
        load([], {"PYCACHE_D_MAX_CONNECTIONS": "many"})


def test_file_keys_and_types(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'port = 1234\nlisten = ["127.0.0.2", "unix:/tmp/s"]\nunix_mode = 0o770\nmemory_limit = 32\n'
        'max_items = 9\nmax_connections = 3\nmax_item_size = "64k"\nbackend = "python"\nverbose = 1\n',
    )
    _, cfg = load(["--config", path], {})
    assert cfg == Config(
        port=1234,
        listen=("127.0.0.2", "unix:/tmp/s"),
        unix_mode=0o770,
        memory_limit=32 * MiB,
        max_items=9,
        max_connections=3,
        max_item_size=64 * 1024,
        backend="python",
        verbose=1,
        config=path,
    )


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 1\nmemory_limit = 10\nmax_items = 100\nmax_connections = 7\n")
    env = {"PYCACHE_D_CONFIG": path, "PYCACHE_D_PORT": "2", "PYCACHE_D_MEMORY_LIMIT": "20"}
    _, cfg = load(["-p", "3"], env)
    assert cfg.port == 3  # flag beats env and file
    assert cfg.memory_limit == 20 * MiB  # env beats file
    assert cfg.max_items == 100  # file beats default
    assert cfg.max_item_size == MiB  # default
    assert cfg.config == path


def test_config_flag_beats_config_env(tmp_path: Path) -> None:
    a = write(tmp_path, "port = 1\n")
    b = tmp_path / "b.toml"
    b.write_text("port = 2\n")
    _, cfg = load(["--config", str(b)], {"PYCACHE_D_CONFIG": a})
    assert cfg.port == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port = 'x'\n", ": port: expected an integer, got 'x'"),
        ("port = true\n", ": port: expected an integer, got True"),
        ("memory-limit = 5\n", ": unknown key 'memory-limit' (did you mean 'memory_limit'?)"),
        ("colour = 5\n", ": unknown key 'colour'"),
        ("config = 'other.toml'\n", ": unknown key 'config'"),
        ("port = \n", ": invalid TOML: "),
        ("listen = [1, 2]\n", ": listen: expected an address or a list of addresses, got [1, 2]"),
    ],
)
def test_bad_file_names_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(["--config", path], {})
    assert str(info.value).startswith(path + message)


def test_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"nope.toml: cannot read config file: No such file or directory$"):
        load(["--config", path], {})


def test_source_rereads_the_file_but_keeps_flags_and_env(tmp_path: Path) -> None:
    path = write(tmp_path, "memory_limit = 10\nmax_items = 1\n")
    source, cfg = load(["--config", path, "--max-items", "5"], {})
    assert (cfg.memory_limit, cfg.max_items) == (10 * MiB, 5)
    Path(path).write_text("memory_limit = 30\nmax_items = 2\n")
    again = source.resolve()
    assert (again.memory_limit, again.max_items) == (30 * MiB, 5)
    assert isinstance(source, ConfigSource)
    assert source.path == path


def test_config_is_frozen() -> None:
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.port = 1  # type: ignore[misc]


def test_verbosity_counts_and_caps() -> None:
    assert validate([("flag", {"verbose": 5})]).verbose == 2
    assert load(["-v"], {})[1].verbose == 1
    assert load(["--verbose", "--verbose"], {})[1].verbose == 2
    assert load([], {"PYCACHE_D_VERBOSE": "1"})[1].verbose == 1


def test_describe_size() -> None:
    sizes = (64 * MiB, 512 * 1024, 1000, 2048 * MiB)
    assert [describe_size(n) for n in sizes] == ["64m", "512k", "1000", "2g"]


def test_idle_timeout_everywhere_and_live(tmp_path: Path) -> None:
    assert load([], {})[1].idle_timeout == 0
    path = write(tmp_path, "idle_timeout = 30\n")
    assert load(["--config", path], {})[1].idle_timeout == 30
    assert load(["--config", path], {"PYCACHE_D_IDLE_TIMEOUT": "20"})[1].idle_timeout == 20
    assert (
        load(["--config", path, "--idle-timeout", "10"], {"PYCACHE_D_IDLE_TIMEOUT": "20"})[1].idle_timeout
        == 10
    )
    assert "idle_timeout" in LIVE_SETTINGS


# -- TLS: the files are loaded while validating, so certificates are made with openssl ---------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_tls_settings_precedence(tmp_path: Path, pki: PKI) -> None:
    path = write(tmp_path, f"tls_cert = '{pki.server_combined}'\ntls_ca = '{pki.ca}'\n")
    _, cfg = load(["--config", path], {})
    assert (cfg.tls, cfg.tls_cert, cfg.tls_key, cfg.tls_ca) == (
        True,
        str(pki.server_combined),
        None,
        str(pki.ca),
    )
    env = {"PYCACHE_D_TLS_CERT": str(pki.server_cert), "PYCACHE_D_TLS_KEY": str(pki.server_key)}
    _, cfg = load(["--config", path], env)
    assert (cfg.tls_cert, cfg.tls_key, cfg.tls_ca) == (str(pki.server_cert), str(pki.server_key), str(pki.ca))
    _, cfg = load(["--config", path, "--tls-cert", str(pki.server_combined)], env)
    assert cfg.tls_cert == str(pki.server_combined)
    assert not load([], {})[1].tls
    # TOML has no null: false is "none", as for snapshot.
    none = write(tmp_path, "tls_cert = false\ntls_key = false\ntls_ca = false\n")
    assert load(["--config", none], {})[1] == Config(config=none)


def test_bad_tls_files_name_the_option_where_it_was_set(tmp_path: Path, pki: PKI) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    path = write(tmp_path, f"tls_cert = '{junk}'\ntls_key = '{pki.server_key}'\n")
    with pytest.raises(ConfigError) as info:
        load(["--config", path], {})
    assert str(info.value) == f"{path}: tls_cert: {junk}: damaged PEM certificate (OpenSSL: PEM lib)"
    env = {"PYCACHE_D_TLS_CERT": str(pki.server_cert), "PYCACHE_D_TLS_KEY": str(pki.client_key)}
    with pytest.raises(
        ConfigError, match=r"^PYCACHE_D_TLS_KEY: .*client.key: the key does not match the certificate"
    ):
        load([], env)
    with pytest.raises(ConfigError, match=r"^--tls-ca: .*server.key: no PEM certificate in it$"):
        load(["--tls-cert", str(pki.server_combined), "--tls-ca", str(pki.server_key)], {})
    with pytest.raises(
        ConfigError, match=r"^--tls-cert: .*server.pem: no PEM private key in it \(give the key"
    ):
        load(["--tls-cert", str(pki.server_cert)], {})


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")
def test_encrypted_key_is_refused_without_a_prompt(tmp_path: Path, pki: PKI) -> None:
    encrypted = tmp_path / "encrypted.key"
    subprocess.run(
        [
            "openssl",
            "pkey",
            "-in",
            str(pki.server_key),
            "-aes256",
            "-passout",
            "pass:secret",
            "-out",
            str(encrypted),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    with pytest.raises(ConfigError, match=r"^--tls-key: .*encrypted.key: the private key is encrypted"):
        load(["--tls-cert", str(pki.server_cert), "--tls-key", str(encrypted)], {})


# -- the auth file: loaded while validating --------------------------------------------------


def test_auth_file_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "auth"
    creds.write_text("alice:pw\n")
    assert load([], {})[1].auth_file is None
    assert load(["--auth-file", str(creds)], {})[1].auth_file == str(creds)
    assert load([], {"PYCACHE_D_AUTH_FILE": str(creds)})[1].auth_file == str(creds)
    assert load(["--config", write(tmp_path, "auth_file = false\n")], {})[1].auth_file is None
    # systemd's LoadCredential= directory, for a config file that cannot know it.
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    path = write(tmp_path, 'auth_file = "$CREDENTIALS_DIRECTORY/auth"\n')
    assert load(["--config", path], {})[1].auth_file == str(creds)
    assert load(["--auth-file", "${CREDENTIALS_DIRECTORY}/auth"], {})[1].auth_file == str(creds)
    assert "auth_file" not in LIVE_SETTINGS  # SIGHUP re-reads the file, a new path needs a restart


def test_bad_auth_file_names_the_option_never_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "auth"
    bad.write_text("alice:pw\nhunter2-without-colon\n")
    with pytest.raises(ConfigError, match=r"^--auth-file: .*auth: line 2 is not user:password$") as info:
        load(["--auth-file", str(bad)], {})
    assert "hunter2" not in str(info.value)
    with pytest.raises(ConfigError, match=r"^PYCACHE_D_AUTH_FILE: cannot read .*missing"):
        load([], {"PYCACHE_D_AUTH_FILE": str(tmp_path / "missing")})
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match=r"CREDENTIALS_DIRECTORY is not set"):
        load(["--auth-file", "$CREDENTIALS_DIRECTORY/auth"], {})
