"""Access control: an optional auth file of bearer tokens and basic-auth users.

The file (``pycache-http --auth-file FILE``, under systemd the ``http-auth`` credential) holds one
entry a line; blank lines and lines starting with ``#`` are skipped::

    alice:correct horse battery   a basic-auth user and password (memcached's -Y file format)
    6f1c0e4b9a...                 a bearer token (a line without ":")

A request then needs ``Authorization: Bearer <token>`` or ``Authorization: Basic`` with a user's
password, or with a token as the password of any user name (so a browser's own login prompt
works with a token file too). Every route but ``/healthz`` answers 401 with a
``WWW-Authenticate`` challenge without one. A file without any entry (empty, or comments only:
the unit's default credential) leaves access control off, and ``pycache-http`` says so at start.

Without an auth file, an app listening on a loopback address serves everything, as before. One
listening beyond loopback without an auth file warns at start and never serves writes or the
key browser (403, saying why); reads, stats, metrics and the dashboard stay up.

APPSEC: entries are kept only as SHA-256 digests, every entry is compared (``hmac.compare_digest``,
no early exit) so timing tells nothing of which part matched, and nothing presented or stored is
ever logged or echoed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
from dataclasses import dataclass

import falcon
import falcon.asgi

REALM = "pycache-http"
#: Routes served without a credential even when one is configured (liveness probes).
OPEN_ROUTES = frozenset({"/healthz"})
#: Largest auth file read (APPSEC: a wrong path, e.g. a log, must not be read whole).
MAX_FILE = 1024 * 1024


class AuthFileError(ValueError):
    """Raised when the auth file cannot be read or has no entry; the message names the file only."""


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


@dataclass(frozen=True)
class Credentials:
    """The digests of an auth file's users and tokens."""

    users: tuple[tuple[bytes, bytes], ...]
    tokens: tuple[bytes, ...]

    @property
    def enabled(self) -> bool:
        """Return True if the file had any entry (access control is on)."""
        return bool(self.users or self.tokens)

    @classmethod
    def load(cls, path: str) -> Credentials:
        """Read ``path``; a file without entries gives no credentials (access control off).

        Raises:
            AuthFileError: unreadable, too large, not UTF-8, or a ``user:`` line without password.
        """
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_FILE + 1)
        except OSError as exc:
            raise AuthFileError(f"cannot read auth file {path}: {exc.strerror or exc}") from None
        if len(raw) > MAX_FILE:
            raise AuthFileError(f"auth file {path} is larger than {MAX_FILE} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise AuthFileError(f"auth file {path} is not UTF-8") from None
        users: list[tuple[bytes, bytes]] = []
        tokens: list[bytes] = []
        for line in text.splitlines():
            entry = line.strip()
            if not entry or entry.startswith("#"):
                continue
            user, sep, password = entry.partition(":")
            if sep:
                if not user or not password:
                    raise AuthFileError(f"auth file {path}: a user line needs user:password")
                users.append((_digest(user.encode()), _digest(password.encode())))
            else:
                tokens.append(_digest(entry.encode()))
        return cls(tuple(users), tuple(tokens))

    def allows(self, authorization: str | None) -> bool:
        """Return True if the ``Authorization`` header carries a valid token or user password."""
        if not authorization:
            return False
        scheme, _, value = authorization.strip().partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer":
            return self._token(_digest(value.encode()))
        if scheme != "basic":
            return False
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        user_d, pass_d = _digest(user.encode()), _digest(password.encode())
        ok = self._token(pass_d)
        for u, p in self.users:
            # Both comparisons always run: & on bools, not `and`.
            ok |= hmac.compare_digest(u, user_d) & hmac.compare_digest(p, pass_d)
        return ok

    def _token(self, presented: bytes) -> bool:
        ok = False
        for t in self.tokens:
            ok |= hmac.compare_digest(t, presented)
        return ok


NO_CREDENTIALS = Credentials((), ())


def is_loopback(host: str) -> bool:
    """Return True if binding ``host`` serves this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@dataclass(frozen=True)
class AccessPolicy:
    """What an app serves: the credentials it asks for, and whether writes are allowed."""

    credentials: Credentials
    #: False when the app listens beyond loopback without credentials.
    writes: bool
    reason: str = ""

    @classmethod
    def for_config(cls, host: str, auth_file: str) -> AccessPolicy:
        """Return the policy for a listening ``host`` and an optional ``auth_file`` path.

        Raises:
            AuthFileError: the auth file is unusable.
        """
        credentials = Credentials.load(auth_file) if auth_file else NO_CREDENTIALS
        if credentials.enabled or is_loopback(host):
            return cls(credentials, True)
        reason = (
            f"pycache-http listens on {host} (beyond loopback) without --auth-file entries: writes "
            "and the key browser are off; give it an auth file to turn them on"
        )
        return cls(credentials, False, reason)

    def warnings(self, auth_file: str) -> list[str]:
        """Return what ``pycache-http`` should say at start about this policy (nothing secret)."""
        out = [self.reason] if self.reason else []
        if auth_file and not self.credentials.enabled:
            out.append(f"auth file {auth_file} has no user:password or token line: access control is off")
        return out


#: Methods that change nothing; any other is a write.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The key browser's routes (they list keys, so they are refused with the writes).
BROWSER_PREFIX = "/api/keys"


class AccessControl:
    """Middleware: ask for the credential on every route but :data:`OPEN_ROUTES`, refuse writes
    and the key browser when the policy says so."""

    def __init__(self, policy: AccessPolicy) -> None:
        self._policy = policy
        self._credentials = policy.credentials

    async def process_request(self, req: falcon.asgi.Request, resp: falcon.asgi.Response) -> None:
        """Raise 401 unless the request is authorised (or the route open), 403 for a refused write."""
        if not self._policy.writes and (
            req.method not in READ_METHODS or req.path.startswith(BROWSER_PREFIX)
        ):
            raise falcon.HTTPForbidden(description=self._policy.reason)
        if not self._credentials.enabled or req.path in OPEN_ROUTES:
            return
        if self._credentials.allows(req.get_header("Authorization")):
            return
        raise falcon.HTTPUnauthorized(
            title="401 Unauthorized",
            description="send Authorization: Bearer <token>, or Basic with a user of the auth file",
            challenges=[f'Basic realm="{REALM}", charset="UTF-8"', f'Bearer realm="{REALM}"'],
        )
