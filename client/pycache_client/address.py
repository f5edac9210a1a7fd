"""Server addresses: ``host:port`` (IPv6 as ``[::1]:port``), or ``unix:/path/to/socket``."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_PORT = 11211


@dataclass(frozen=True, slots=True)
class Address:
    """One server: a TCP host and port, or a unix socket path (``host`` is then ``None``)."""

    host: str | None = None
    port: int = DEFAULT_PORT
    path: str | None = None
    weight: int = 1

    @property
    def name(self) -> str:
        """Return the canonical ``host:port`` or ``unix:/path`` form, also the hash-ring name."""
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return self.name


def parse_address(spec: str | Address, weight: int = 1) -> Address:
    """Parse ``host:port``, ``host`` (port 11211), ``[v6]:port`` or ``unix:/path``.

    Raises:
        ValueError: an empty spec, a bad port, or a non-positive weight.
    """
    if isinstance(spec, Address):
        return spec
    if weight < 1:
        raise ValueError(f"server weight must be >= 1, not {weight}")
    spec = spec.strip()
    if spec.startswith("unix:"):
        path = spec[len("unix:") :]
        if not path:
            raise ValueError("unix: address needs a socket path")
        return Address(path=path, weight=weight)
    if not spec:
        raise ValueError("empty server address")
    if spec.startswith("["):
        host, sep, rest = spec[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad IPv6 address {spec!r}; use [addr]:port")
    elif spec.count(":") == 1:
        host, _, port_text = spec.partition(":")
    else:
        host, port_text = spec, ""
    if not port_text:
        return Address(host=host or "127.0.0.1", weight=weight)
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"bad port in server address {spec!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"port out of range in server address {spec!r}")
    return Address(host=host or "127.0.0.1", port=port, weight=weight)
