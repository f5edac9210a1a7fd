"""``pycache-http``: serve the HTTP API with uvicorn.

Every flag defaults to its ``PYCACHE_HTTP_*`` environment variable, then to :class:`Config`'s
default. With ``--workers N`` uvicorn starts N processes, each building the app from the
environment (the flags are exported there first), so every worker has its own client pool.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .config import Config

FACTORY = "pycache_client.http.app:app_from_env"


def parse_config(argv: Sequence[str] | None = None) -> Config:
    """Return the config from the environment and the command line (exit 2 on bad input)."""
    parser = argparse.ArgumentParser(prog="pycache-http", description="Serve the pycache HTTP API.")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port to bind (default 5000)")
    parser.add_argument("--cache", help="cache servers, comma-separated host:port or unix:/path")
    parser.add_argument("--workers", type=int, help="worker processes (default 1)")
    parser.add_argument("--timeout", type=float, help="seconds per cache request (default 1)")
    parser.add_argument("--pool-size", type=int, help="cache connections per worker and server")
    parser.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)
    try:
        return Config.from_env(**{k: v for k, v in vars(args).items()})
    except ValueError as exc:
        parser.exit(2, f"pycache-http: error: {exc}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``pycache-http``."""
    config = parse_config(argv)
    import uvicorn  # NOTE: imported late so --help works and a bad flag fails fast

    os.environ.update(config.to_env())
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
