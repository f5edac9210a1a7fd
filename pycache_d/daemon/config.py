"""The daemon's settings: command-line flags, ``PYCACHE_D_*`` environment variables and a TOML file.

Pure: nothing here opens a socket or touches the store, so every rule is unit-testable. The
result is a frozen :class:`Config`; :class:`ConfigSource` remembers the flags and environment a
daemon was started with so SIGHUP can re-read only the file (:meth:`ConfigSource.resolve`).

Precedence, per option: flag > environment > file > default.

==========================  =========================  ===========================================
flag                        TOML key / environment     meaning (default)
==========================  =========================  ===========================================
``-p/--port``               ``port``                   TCP port, 0 = any free one (11211)
``-l/--listen``             ``listen``                 ``host``, ``host:port``, ``[v6]:port`` or
                                                       ``unix:/path``; repeatable; a list in TOML,
                                                       comma-separated in the environment; a
                                                       ``notls:`` prefix keeps a TCP address
                                                       plain when TLS is on (127.0.0.1)
``--unix-mode``             ``unix_mode``              unix socket permissions, octal (0700)
``-m/--memory-limit``       ``memory_limit``           item memory: megabytes, or with a k/m/g
                                                       suffix (64)
``--max-items``             ``max_items``              item count limit, 0 = none (0)
``-c/--max-connections``    ``max_connections``        concurrent clients (1024)
``-I/--max-item-size``      ``max_item_size``          bytes, or with a k/m/g suffix (1m)
``--backend``               ``backend``                auto, native or python (auto)
``-v/--verbose``            ``verbose`` (a number)     -v connection events, -vv every request (0)
``--snapshot PATH``,        ``snapshot`` (a path, or   items saved there on SIGTERM and loaded at
``--no-snapshot``           false in TOML)             start ($STATE_DIRECTORY/pycache-d.snapshot
                                                       under systemd, else none)
``--idle-timeout``          ``idle_timeout``           close clients idle this many seconds,
                                                       0 = never (0)
``--tls-cert FILE``         ``tls_cert`` (a path, or   PEM certificate (chain): every TCP
                            false in TOML)             listener speaks TLS 1.2+, except
                                                       ``notls:`` ones; unix sockets stay plain
                                                       (none: no TLS)
``--tls-key FILE``          ``tls_key`` (idem)         its PEM private key, unencrypted (none:
                                                       the key is in the certificate file)
``--tls-ca FILE``           ``tls_ca`` (idem)          PEM CA certificates: clients must present a
                                                       certificate signed by one (none)
``--auth-file FILE``        ``auth_file`` (a path, or  memcached's -Y file of ``user:password``
                            false in TOML)             lines: text clients must pass memcached's
                                                       ASCII auth, binary ones SASL PLAIN; re-read
                                                       on SIGHUP; ``$CREDENTIALS_DIRECTORY`` in
                                                       it is systemd's LoadCredential= directory
                                                       (none: no authentication)
``-X/--disable-dumping``    ``disable_dumping``        memcached's -X: ``stats cachedump`` and
                            (true/false)               ``lru_crawler metadump`` refused (off)
``-A/--enable-shutdown``    ``enable_shutdown``        memcached's -A: the ``shutdown`` command
                            (true/false)               stops the daemon (off)
``--config``                (environment only)         the TOML file (none)
``--check-config``          (flag only)                validate everything (flags, environment,
                                                       file, TLS and auth files, backend), print
                                                       one line and exit: 0 valid, 2 not
==========================  =========================  ===========================================

Environment variables are ``PYCACHE_D_`` + the upper-case key (``PYCACHE_D_MEMORY_LIMIT``,
``PYCACHE_D_CONFIG``); TOML keys are the long flag names with underscores (``memory_limit = 128``).
A key spelled with dashes is rejected with a hint rather than silently ignored, as is any unknown
key. An empty environment variable counts as unset.

The TLS files (:func:`pycache_d.net.tls.server_context`) and the auth file are loaded once here, so
a missing, damaged or mismatched one is a ConfigError naming the option, like any other bad value.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from .._version import __version__
from ..net import tls
from ..net.listeners import Endpoint
from ..protocol import auth

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

ENV_PREFIX = "PYCACHE_D_"

_I64_MAX = 2**63 - 1

#: memcached's bounds for -I: at least 1 KiB, at most 1 GiB.
MIN_ITEM_SIZE = 1 * KiB
MAX_ITEM_SIZE = 1 * GiB


class ConfigError(Exception):
    """Raised when a flag, environment variable or file value is invalid.

    ``str(error)`` is one line that names the option (as the user spelled it) and the problem.
    """


@dataclass(frozen=True)
class Config:
    """Validated settings of one daemon. Sizes are in bytes."""

    port: int = 11211
    listen: tuple[str, ...] = ("127.0.0.1",)
    unix_mode: int = 0o700
    memory_limit: int = 64 * MiB
    max_items: int = 0
    max_connections: int = 1024
    max_item_size: int = 1 * MiB
    backend: str = "auto"
    verbose: int = 0
    config: str | None = None
    #: A path, False for none, or None: the default (see ``snapshot.default_path``).
    snapshot: str | bool | None = None
    #: Seconds without input after which a client is closed; 0: never.
    idle_timeout: int = 0
    #: PEM files; TLS is on when ``tls_cert`` is set (see :mod:`pycache_d.net.tls`).
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    #: memcached's -Y file; authentication is on when it is set (see :mod:`pycache_d.protocol.auth`).
    auth_file: str | None = None
    disable_dumping: bool = False
    enable_shutdown: bool = False

    @property
    def tls(self) -> bool:
        """True when the TCP listeners (except ``notls:`` ones) speak TLS."""
        return self.tls_cert is not None

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """The listening addresses, with ``port`` filled in where an address names none."""
        return tuple(_endpoint(addr, self.port) for addr in self.listen)


#: Settings SIGHUP can apply to a running daemon; the others need a restart.
LIVE_SETTINGS = ("memory_limit", "max_items", "max_item_size", "verbose", "max_connections", "idle_timeout")

#: The TLS files: SIGHUP re-reads them (new certificates at the same paths, memcached's
#: ``refresh_certs``); turning TLS or client certificates on or off needs a restart.
TLS_SETTINGS = ("tls_cert", "tls_key", "tls_ca")


# -- value parsers: each takes what the user gave (a string, or a TOML value) ----------------------


def _integer(value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected an integer, got {value!r}")
    try:
        number = int(value) if isinstance(value, int) else int(value.strip(), 10)
    except ValueError:
        raise ValueError(f"expected an integer, got {value!r}") from None
    if number < low or (high is not None and number > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"must be {bound}, got {number}")
    return number


def _size(value: object, unit: int) -> int:
    """Parse a size: a bare number counts in ``unit`` bytes; a k/m/g suffix overrides it."""
    number: object = value
    if isinstance(value, str):
        text = value.strip().lower()
        if text[-1:] in ("k", "m", "g"):
            unit = {"k": KiB, "m": MiB, "g": GiB}[text[-1]]
            text = text[:-1]
        number = text
    try:
        size = _integer(number, 1) * unit
    except ValueError:
        raise ValueError(f"expected a positive size like 64, 512k or 2g, got {value!r}") from None
    if size > _I64_MAX:  # the stores count bytes in a signed 64-bit integer
        raise ValueError(f"too large: {value!r}")
    return size


def _port(value: object) -> int:
    return _integer(value, 0, 65535)


def _listen(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        items = [v.strip() for v in value]
    else:
        raise ValueError(f"expected an address or a list of addresses, got {value!r}")
    if not items or any(not item for item in items):
        raise ValueError(f"empty address in {value!r}")
    for item in items:
        _endpoint(item, 0)  # validate the syntax now; Config.endpoints fills in the port
    return tuple(items)


def _endpoint(text: str, default_port: int) -> Endpoint:
    """Parse ``host``, ``host:port``, ``[v6]``, ``[v6]:port``, a bare IPv6 address or ``unix:/path``.

    Any TCP form may carry a ``notls:`` prefix.
    """
    if text.startswith("notls:"):
        if text[6:].startswith("unix:"):
            raise ValueError(f"notls: applies to TCP addresses only (unix sockets are never TLS): {text!r}")
        return dataclasses.replace(_endpoint(text[6:], default_port), notls=True)
    if text.startswith("unix:"):
        path = text[5:]
        if not path:
            raise ValueError("unix: needs a socket path")
        return Endpoint(path=path)
    host, port = text, default_port
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close or (rest and not rest.startswith(":")):
            raise ValueError(f"bad address {text!r}")
        if rest:
            port = _port(rest[1:])
    elif text.count(":") == 1:  # host:port; more colons make it a bare IPv6 address
        host, _, rest = text.partition(":")
        port = _port(rest)
    if not host:
        raise ValueError(f"bad address {text!r}")
    return Endpoint(host=host, port=port)


def _unix_mode(value: object) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip(), 8)
        except ValueError:
            raise ValueError(f"expected octal permissions like 0700, got {value!r}") from None
    return _integer(value, 0, 0o777)


def _backend(value: object) -> str:
    if value not in ("auto", "native", "python"):
        raise ValueError(f"expected auto, native or python, got {value!r}")
    return str(value)


def _config_path(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a file name, got {value!r}")
    return value


def _tls_file(value: object) -> str | None:
    if value is False:  # TOML has no null: false spells "none", as for snapshot
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a file name (or false for none), got {value!r}")
    return value


#: What an auth file path may start with, for systemd's LoadCredential= (see the unit file).
_CREDENTIALS = ("${CREDENTIALS_DIRECTORY}", "$CREDENTIALS_DIRECTORY")


def _auth_file(value: object) -> str | None:
    if value is False:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a file name (or false for none), got {value!r}")
    for var in _CREDENTIALS:
        if value.startswith(var):
            # NOTE: the one variable expanded here; systemd sets it for LoadCredential=.
            directory = os.environ.get("CREDENTIALS_DIRECTORY")
            if not directory:
                raise ValueError(f"{var} is not set (systemd sets it for LoadCredential=)")
            return directory + value[len(var) :]
    return value


def _boolean(value: object) -> bool:
    """A switch: true/false in TOML, 1/0, yes/no, true/false or on/off in the environment."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("1", "yes", "true", "on"):
            return True
        if word in ("0", "no", "false", "off"):
            return False
    raise ValueError(f"expected true or false, got {value!r}")


def _snapshot(value: object) -> str | bool:
    if value is False or (isinstance(value, str) and value):
        return value
    raise ValueError(f"expected a file name (or false for none), got {value!r}")


#: Every option by its canonical name, with its parser.
PARSERS: dict[str, Callable[[object], Any]] = {
    "port": _port,
    "listen": _listen,
    "unix_mode": _unix_mode,
    "memory_limit": lambda v: _size(v, MiB),
    "max_items": lambda v: _integer(v, 0, _I64_MAX),
    "max_connections": lambda v: _integer(v, 1, 1_000_000),
    "max_item_size": lambda v: _size(v, 1),
    "backend": _backend,
    "verbose": lambda v: _integer(v, 0),
    "config": _config_path,
    "snapshot": _snapshot,
    # NOTE: an int bound keeps the sweep's timer arithmetic far from overflow (memcached: an int).
    "idle_timeout": lambda v: _integer(v, 0, 2**31 - 1),
    "tls_cert": _tls_file,
    "tls_key": _tls_file,
    "tls_ca": _tls_file,
    "auth_file": _auth_file,
    "disable_dumping": lambda v: _boolean(v),
    "enable_shutdown": lambda v: _boolean(v),
}


# -- the three sources ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error raises ConfigError (one line) instead of printing usage."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser; options the user did not give stay absent."""
    p = _Parser(
        prog="pycache-d",
        description="A memcached-compatible LRU cache daemon.",
        argument_default=argparse.SUPPRESS,
        allow_abbrev=False,
    )
    p.add_argument("-p", "--port", help="TCP port to listen on, 0 for any free one (default: 11211)")
    p.add_argument(
        "-l",
        "--listen",
        action="append",
        metavar="ADDR",
        help="host, host:port, [v6]:port or unix:/path; repeatable (default: 127.0.0.1)",
    )
    p.add_argument("--unix-mode", metavar="MODE", help="permissions of unix sockets, octal (default: 0700)")
    p.add_argument(
        "-m", "--memory-limit", metavar="MB", help="item memory in megabytes, or 512k/2g (default: 64)"
    )
    p.add_argument("--max-items", metavar="N", help="maximum number of items, 0 for no limit (default: 0)")
    p.add_argument(
        "-c", "--max-connections", metavar="N", help="maximum concurrent connections (default: 1024)"
    )
    p.add_argument(
        "-I", "--max-item-size", metavar="SIZE", help="largest item, bytes or with k/m/g (default: 1m)"
    )
    p.add_argument("--backend", metavar="NAME", help="store backend: auto, native or python (default: auto)")
    p.add_argument(
        "-v", "--verbose", action="count", help="log connection events; twice to log every request"
    )
    p.add_argument("--config", metavar="FILE", help="TOML file with the same settings (keys like max_items)")
    p.add_argument(
        "--snapshot", metavar="PATH", help="save items to PATH on SIGTERM, load them at start (warm restart)"
    )
    p.add_argument(
        "--no-snapshot", dest="snapshot", action="store_const", const=False, help="no snapshot file at all"
    )
    p.add_argument(
        "--idle-timeout", metavar="SECONDS", help="close clients idle this long, 0 for never (default: 0)"
    )
    p.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="PEM certificate: TCP listeners speak TLS (except -l notls:ADDR) (default: no TLS)",
    )
    p.add_argument("--tls-key", metavar="FILE", help="PEM private key, if not in the --tls-cert file")
    p.add_argument(
        "--tls-ca", metavar="FILE", help="PEM CA certificates; clients must present one they signed"
    )
    p.add_argument(
        "--auth-file",
        metavar="FILE",
        help="user:password lines (memcached's -Y): clients must authenticate (default: none)",
    )
    p.add_argument(
        "--check-config",
        action="store_true",
        help="validate the settings (flags, environment, --config FILE) and exit: 0 valid, 2 not",
    )
    p.add_argument(
        "-X",
        "--disable-dumping",
        action="store_true",
        help="refuse stats cachedump and lru_crawler metadump (memcached's -X)",
    )
    p.add_argument(
        "-A",
        "--enable-shutdown",
        action="store_true",
        help="let clients stop the daemon with the shutdown command (memcached's -A)",
    )
    p.add_argument("-V", "--version", action="version", version=f"pycache-d {__version__}")
    return p


#: Flags that are actions, not settings: from_flags leaves them out of the options.
ACTIONS = ("check_config",)


def from_flags(argv: Sequence[str]) -> dict[str, object]:
    """Return the options given on the command line, unvalidated, by canonical name.

    Raises:
        ConfigError: unknown flag, missing value or stray argument.
    """
    ns = build_parser().parse_args(list(argv))
    return {k: v for k, v in vars(ns).items() if k not in ACTIONS}


def wants_check(argv: Sequence[str]) -> bool:
    """True when the command line asks for ``--check-config`` (parsed, so a value never counts).

    Raises:
        ConfigError: the command line itself is invalid.
    """
    return bool(getattr(build_parser().parse_args(list(argv)), "check_config", False))


def from_env(environ: Mapping[str, str]) -> dict[str, object]:
    """Return the options set by ``PYCACHE_D_<NAME>`` variables (empty ones count as unset)."""
    out: dict[str, object] = {}
    for name in PARSERS:
        value = environ.get(ENV_PREFIX + name.upper(), "")
        if value.strip():
            out[name] = value
    return out


def from_file(path: str) -> dict[str, object]:
    """Read a TOML config file and return its options by canonical name.

    Raises:
        ConfigError: unreadable file, bad TOML, or an unknown key.
    """
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config file: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except UnicodeDecodeError as e:  # TOML is UTF-8 only; tomllib lets the decode error through
        raise ConfigError(f"{path}: not UTF-8 (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None
    for key in data:
        if key not in PARSERS or key == "config":
            hint = key.replace("-", "_")
            extra = f" (did you mean {hint!r}?)" if hint in PARSERS else ""
            raise ConfigError(f"{path}: unknown key {key!r}{extra}")
    return data


def _label(name: str, origin: str) -> str:
    """Name an option the way the user spelled it in ``origin``."""
    if origin == "flag":
        return "--" + name.replace("_", "-")
    if origin == "env":
        return ENV_PREFIX + name.upper()
    return f"{origin}: {name}"


def validate(layers: Sequence[tuple[str, Mapping[str, object]]]) -> Config:
    """Merge option layers, highest precedence first, into a validated :class:`Config`.

    Each layer is ``(origin, options)`` where origin is ``"flag"``, ``"env"`` or a file name.

    Raises:
        ConfigError: a value is invalid; the message names the option as that layer spells it.
    """
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for origin, options in reversed(layers):
        for name, raw in options.items():
            try:
                values[name] = PARSERS[name](raw)
            except ValueError as e:
                raise ConfigError(f"{_label(name, origin)}: {e}") from None
            origins[name] = origin
    if "verbose" in values:
        values["verbose"] = min(values["verbose"], 2)
    cfg = Config(**values)
    if cfg.max_item_size < MIN_ITEM_SIZE or cfg.max_item_size > MAX_ITEM_SIZE:
        # memcached's own bounds for -I.
        label = _label("max_item_size", origins["max_item_size"])
        raise ConfigError(f"{label}: must be between 1k and 1024m, got {cfg.max_item_size} bytes")
    if cfg.max_item_size > cfg.memory_limit:
        name = "max_item_size" if "max_item_size" in origins else "memory_limit"
        raise ConfigError(
            f"{_label(name, origins.get(name, 'flag'))}: max item size ({cfg.max_item_size} bytes) "
            f"exceeds the memory limit ({cfg.memory_limit} bytes)"
        )
    _check_tls(cfg, origins)
    if cfg.auth_file is not None:
        try:
            auth.load(cfg.auth_file)
        except auth.AuthFileError as e:
            raise ConfigError(f"{_label('auth_file', origins['auth_file'])}: {e}") from None
    return cfg


def _check_tls(cfg: Config, origins: Mapping[str, str]) -> None:
    """Load the TLS files once, so a bad one is a ConfigError naming the option."""
    if cfg.tls_cert is None:
        for name in ("tls_key", "tls_ca"):
            if getattr(cfg, name) is not None:
                raise ConfigError(f"{_label(name, origins[name])}: needs a certificate (tls_cert) too")
        return
    try:
        tls.server_context(cfg.tls_cert, cfg.tls_key, cfg.tls_ca)
    except tls.TLSError as e:
        raise ConfigError(f"{_label(e.option, origins[e.option])}: {e}") from None


@dataclass(frozen=True)
class ConfigSource:
    """Where a daemon's settings come from: its flags, its environment, and the file they name."""

    flags: Mapping[str, object]
    env: Mapping[str, object]

    @property
    def path(self) -> str | None:
        """The config file, named by ``--config`` or ``PYCACHE_D_CONFIG``."""
        raw = self.flags.get("config", self.env.get("config"))
        return str(raw) if raw else None

    def resolve(self) -> Config:
        """(Re-)read the config file and return the validated settings.

        Raises:
            ConfigError: any invalid value, or an unreadable or invalid file.
        """
        layers: list[tuple[str, Mapping[str, object]]] = [("flag", self.flags), ("env", self.env)]
        if self.path:
            layers.append((self.path, from_file(self.path)))
        return validate(layers)


def load(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> tuple[ConfigSource, Config]:
    """Parse the command line and environment, read the file, and return the source and settings.

    Raises:
        ConfigError: anything invalid, with a one-line message.
    """
    source = ConfigSource(flags=from_flags(argv), env=from_env(os.environ if environ is None else environ))
    return source, source.resolve()


def describe_size(n: int) -> str:
    """Render a byte count the way the flags accept it (``64m``, ``512k``, ``1000``)."""
    for unit, suffix in ((GiB, "g"), (MiB, "m"), (KiB, "k")):
        if n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)
