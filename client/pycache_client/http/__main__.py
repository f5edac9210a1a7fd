"""``pycache-http``: serve the HTTP API with uvicorn.

Every flag defaults to its ``PYCACHE_HTTP_*`` environment variable, then to :class:`Config`'s
default. With ``--workers N`` uvicorn starts N processes, each building the app from the
environment (the flags are exported there first), so every worker has its own client pool.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence

from .. import __version__
from ..address import parse_address
from .auth import AccessPolicy
from .config import Config
from .metrics import MULTIPROC_ENV

FACTORY = "pycache_client.http.app:app_from_env"


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser (exposed for tests and the man page)."""
    parser = argparse.ArgumentParser(prog="pycache-http", description="Serve the pycache HTTP API.")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (default 5000)")
    parser.add_argument("--cache", help="cache servers, comma-separated host:port or unix:/path")
    parser.add_argument("--workers", type=int, help="worker processes (default 1)")
    parser.add_argument("--timeout", type=float, help="seconds per cache request (default 1)")
    parser.add_argument("--pool-size", type=int, help="cache connections per worker and server")
    parser.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument("--auth-file", help="tokens and user:password lines required of every client")
    parser.add_argument("-V", "--version", action="version", version=f"pycache-http {__version__}")
    return parser


def check(config: Config) -> None:
    """Validate what the app would only find out at startup (in a traceback) or never.

    Raises:
        ValueError: the first bad setting, one line naming it.
    """
    if not 0 <= config.port <= 65535:
        raise ValueError(f"--port must be 0..65535, got {config.port}")
    if not config.servers:
        raise ValueError("--cache names no server")
    for spec in config.servers:
        try:
            parse_address(spec)
        except ValueError as exc:
            raise ValueError(f"--cache: {exc}") from None
    # NOTE: not (x > 0) rather than (x <= 0): NaN fails every comparison and must be refused too.
    for name in ("timeout", "connect_timeout"):
        value = getattr(config, name)
        if not (0 < value < 86400):
            raise ValueError(f"--{name.replace('_', '-')} must be a number of seconds above 0, got {value}")
    for name in ("workers", "pool_size", "max_body"):
        if getattr(config, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(config, name)}")


def parse_config(argv: Sequence[str] | None = None) -> Config:
    """Return the config from the environment and the command line (exit 2 on bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = Config.from_env(**{k: v for k, v in vars(args).items()})
        check(config)
        policy = AccessPolicy.for_config(config.host, config.auth_file)  # fail here, in one line
    except ValueError as exc:
        parser.exit(2, f"pycache-http: error: {exc}\n")
    for warning in policy.warnings(config.auth_file):
        print(f"pycache-http: warning: {warning}", file=sys.stderr)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pycache-http``."""
    config = parse_config(argv)
    import uvicorn  # NOTE: imported late so --help works and a bad flag fails fast

    os.environ.update(config.to_env())
    made = None
    if config.workers > 1 and not os.environ.get(MULTIPROC_ENV):
        # Each worker keeps its HTTP metrics in files here and a scrape adds every worker's up
        # (see .metrics). A fresh directory each start: old files would count twice.
        made = tempfile.mkdtemp(prefix="pycache-http-metrics-")
        os.environ[MULTIPROC_ENV] = made
    try:
        uvicorn.run(
            FACTORY,
            factory=True,
            host=config.host,
            port=config.port,
            workers=config.workers,
            lifespan="on",
            log_level=config.log_level,
            access_log=False,  # PERF: /metrics counts requests; a log line each halves throughput
        )
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
