"""Settings of the HTTP API: defaults, ``PYCACHE_HTTP_*`` environment variables, command line."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

ENV_PREFIX = "PYCACHE_HTTP_"


@dataclass(frozen=True)
class Config:
    """Everything :func:`~pycache_client.http.create_app` and ``pycache-http`` need.

    Each field can be set by the environment variable ``PYCACHE_HTTP_<FIELD>`` (upper case),
    e.g. ``PYCACHE_HTTP_CACHE=127.0.0.1:11211,127.0.0.1:11212``; command-line flags win.
    """

    host: str = "127.0.0.1"
    port: int = 5000
    #: Comma-separated cache servers (``host:port`` or ``unix:/path``), sharded by ketama.
    cache: str = "127.0.0.1:11211"
    workers: int = 1
    #: Seconds for one cache request; a slow or dead daemon gives 503 after at most this long.
    timeout: float = 1.0
    connect_timeout: float = 1.0
    pool_size: int = 20
    #: Largest request body read, in bytes; larger ones are refused with 413 without reading.
    #: The daemon's own item size limit (``-I``) also answers 413.
    max_body: int = 8 * 1024 * 1024
    log_level: str = "info"
    #: Tokens and ``user:password`` lines (see :mod:`.auth`); empty: access control off.
    auth_file: str = ""

    @property
    def servers(self) -> list[str]:
        """Return the cache servers as a list."""
        return [s.strip() for s in self.cache.split(",") if s.strip()]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Config:
        """Build a config from the environment, then ``overrides`` (None values are ignored).

        Raises:
            ValueError: a variable does not parse as its field's type.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                kind = type(getattr(cls(), f.name))
                try:
                    values[f.name] = kind(raw)
                except ValueError:
                    raise ValueError(
                        f"{ENV_PREFIX}{f.name.upper()}={raw!r} is not a valid {kind.__name__}"
                    ) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """Return the environment variables that reproduce this config (for worker processes)."""
        return {ENV_PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}
