"""Authentication: the ``--auth-file`` credentials, memcached's ASCII auth and SASL PLAIN.

The file is memcached's ``-Y`` format (``authfile.c``): one ``user:password`` per line, the user
ending at the first ``:``, the password at the end of the line (a ``\\r`` or NUL ends it
too). memcached's own limits, and where we differ:

* a line without ``:`` (an empty line too) makes the whole file invalid: as memcached;
* a line longer than 255 bytes: memcached silently splits it into two entries; here the
  file is invalid;
* more than 8 entries: memcached silently ignores the ninth and later; here all count.

A text client authenticates with memcached's ASCII auth (``proto_text.c``,
``try_read_command_asciiauth``): before anything else it sends ``set <any> <any> <any> <n>``
and a data block of ``<n>`` bytes holding ``<user> <password>``; any other line is answered
``CLIENT_ERROR unauthenticated`` (the connection stays open). A binary client authenticates
with SASL PLAIN (see :mod:`.binary`). Both check against the same entries.

APPSEC: passwords are compared in constant time (``hmac.compare_digest``), against every entry
whatever matched before, and never logged; an error names a line by its number, never its text.
"""

from __future__ import annotations

import hmac
import os
import stat
from dataclasses import dataclass
from typing import Any

from .wire import parse_u32

#: memcached reads at most this many bytes of a line (MAX_ENTRY_LEN - 1 for fgets' NUL).
MAX_ENTRY = 255
#: Our bound on the file: far above any real one; a larger file is refused.
MAX_FILE = 1024 * 1024
#: memcached closes an unauthenticated text client whose input has no newline in this many bytes.
MAX_LINE = 2048
#: What SASL_LIST_MECHS answers.
MECHANISMS = b"PLAIN"
#: Our bound on an ASCII auth data block: a valid one is at most 2 x MAX_ENTRY bytes.
MAX_TEXT_PAYLOAD = 4096

UNAUTHENTICATED = b"CLIENT_ERROR unauthenticated\r\n"
AUTH_FAILURE = b"CLIENT_ERROR authentication failure\r\n"
BAD_TOKEN_FORMAT = b"CLIENT_ERROR bad authentication token format\r\n"
BAD_TERMINATION = b"CLIENT_ERROR bad command line termination\r\n"
STORED = b"STORED\r\n"


class AuthFileError(ValueError):
    """Raised when the auth file cannot be read or is not in memcached's format."""


@dataclass(frozen=True)
class Credentials:
    """The entries of an auth file, as (user, password) byte pairs."""

    entries: tuple[tuple[bytes, bytes], ...]

    def check(self, user: bytes, password: bytes) -> bool:
        """Return True if ``user`` and ``password`` match an entry; constant time per entry."""
        ok = False
        for u, p in self.entries:
            # APPSEC: both comparisons always run, and every entry is tried.
            same_user = hmac.compare_digest(u, user)
            same_password = hmac.compare_digest(p, password)
            ok |= same_user & same_password
        return ok


def parse(data: bytes) -> Credentials:
    """Parse an auth file's bytes (the format is in the module docstring).

    Raises:
        AuthFileError: a line is malformed or too long; the message gives its number only.
    """
    entries = []
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the file's final newline
    for number, line in enumerate(lines, 1):
        if len(line) > MAX_ENTRY:
            raise AuthFileError(f"line {number} is longer than {MAX_ENTRY} bytes")
        nul = line.find(b"\0")
        if nul >= 0:
            line = line[:nul]
        user, colon, password = line.partition(b":")
        if not colon:
            raise AuthFileError(f"line {number} is not user:password")
        cr = password.find(b"\r")
        entries.append((user, password if cr < 0 else password[:cr]))
    return Credentials(tuple(entries))


def load(path: str) -> Credentials:
    """Read and parse the auth file at ``path``.

    Raises:
        AuthFileError: it cannot be read, is too large, or is malformed.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE + 1)
    except OSError as e:
        raise AuthFileError(f"cannot read {path}: {e.strerror or e}") from None
    if len(data) > MAX_FILE:
        raise AuthFileError(f"{path} is larger than {MAX_FILE} bytes")
    try:
        return parse(data)
    except AuthFileError as e:
        raise AuthFileError(f"{path}: {e}") from None


def exposed(path: str) -> bool:
    """Return True if the file at ``path`` is readable by its group or by others."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IRGRP | stat.S_IROTH))


def check_sasl(creds: Credentials | None, mech: bytes, payload: bytes) -> bool:
    """Check a SASL_AUTH: mechanism PLAIN, payload ``[authzid] NUL user NUL password``.

    An authorization identity, if given, must be the user itself (Cyrus SASL's rule without
    proxy rights).
    """
    if creds is None or mech.upper() != MECHANISMS:
        return False
    parts = payload.split(b"\0")
    if len(parts) != 3:
        return False
    authzid, user, password = parts
    ok = creds.check(user, password)
    return ok and (not authzid or authzid == user)


class TextAuth:
    """memcached's ASCII auth in front of an unauthenticated text session.

    :meth:`feed` answers what it can; once a client authenticated it returns the input after
    the auth exchange, for the text session to answer as usual.
    """

    def __init__(self) -> None:
        self._buf = b""
        self._need = 0  # > 0: the size of the auth data block (+ 2) awaited
        self._swallow = 0  # > 0: an over-long data block to discard before failing it

    @property
    def idle(self) -> bool:
        """True when no partial line or block is held."""
        return not self._buf and not self._need and not self._swallow

    def feed(self, data: bytes, ctx: Any, out: list[bytes]) -> tuple[bytes | None, bool]:
        """Consume ``data``; append replies to ``out``.

        Returns:
            ``(rest, closing)``: ``rest`` is None while unauthenticated, else the input that
            followed the auth exchange; ``closing`` asks to close the connection.
        """
        buf = self._buf + data if self._buf else data
        self._buf = b""
        pos = 0
        end = len(buf)
        while pos < end:
            if self._swallow:
                taken = min(self._swallow, end - pos)
                self._swallow -= taken
                pos += taken
                if not self._swallow:
                    self._failed(ctx, out)
                continue
            if self._need:
                if end - pos < self._need:
                    break
                block = buf[pos : pos + self._need]
                pos += self._need
                self._need = 0
                if self._check(block, ctx, out):
                    return buf[pos:], False
                continue
            eol = buf.find(b"\n", pos)
            if eol < 0:
                if end - pos > MAX_LINE:
                    return None, True  # memcached: junk without a newline, closed
                break
            line = buf[pos:eol]
            pos = eol + 1
            nul = line.find(b"\0")
            if nul >= 0:
                line = line[:nul]
            toks = [t for t in line.split(b" ") if t]
            size = parse_u32(toks[4]) if len(toks) >= 5 and toks[0] == b"set" else None
            if size is None:
                out.append(UNAUTHENTICATED)
            elif size > MAX_TEXT_PAYLOAD:
                self._swallow = size + 2  # APPSEC: never buffered
            else:
                self._need = size + 2
        self._buf = buf[pos:]
        return None, False

    @staticmethod
    def _failed(ctx: Any, out: list[bytes]) -> None:
        ctx.counters["auth_cmds"] += 1
        ctx.counters["auth_errors"] += 1
        out.append(AUTH_FAILURE)

    def _check(self, block: bytes, ctx: Any, out: list[bytes]) -> bool:
        """Check one auth data block (``<user> <password>\\r\\n``); True if it authenticated."""
        if not block.endswith(b"\r\n"):
            out.append(BAD_TERMINATION)
            return False
        payload = block[:-2]
        nul = payload.find(b"\0")
        if nul >= 0:
            payload = payload[:nul]
        toks = [t for t in payload.split(b" ") if t]
        if len(toks) < 2:
            out.append(BAD_TOKEN_FORMAT)
            return False
        creds = ctx.auth
        if creds is not None and creds.check(toks[0], toks[1]):
            ctx.counters["auth_cmds"] += 1
            out.append(STORED)
            return True
        self._failed(ctx, out)
        return False
