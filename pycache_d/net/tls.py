"""TLS for the TCP listeners: the server's ``ssl.SSLContext``, built from PEM files.

memcached's model (``-Z``): once a certificate is configured every TCP listener speaks TLS, except
those written ``notls:host:port``; unix sockets stay plain. TLS 1.2 is the minimum (memcached's
default ``ssl_min_version``). With a CA file, clients must present a certificate it signed
(``CERT_REQUIRED``, memcached's ``ssl_verify_mode`` 2).

Loading is checked up front so a bad file is one clear line and exit status 2 instead of OpenSSL's
``PEM lib (_ssl.c:NNNN)``: :func:`server_context` raises :class:`TLSError` naming the option at
fault. SIGHUP re-reads the files into the live context (:func:`reload_context`, memcached's
``refresh_certs``); connections already open keep the certificate they started with.
"""

from __future__ import annotations

import re
import ssl

#: What ``stats settings`` reports as ``ssl_min_version`` (memcached's spelling).
MIN_VERSION_NAME = "tlsv1.2"

#: A client must finish its handshake within this many seconds (it holds a slot of
#: --max-connections meanwhile; see pycache_d.net.handshake).
HANDSHAKE_TIMEOUT = 10.0


class TLSError(ValueError):
    """Raised when a certificate, key or CA file cannot be used.

    ``option`` is the setting at fault (``tls_cert``, ``tls_key`` or ``tls_ca``); ``str(error)``
    is one line that names the file and the problem, not the option.
    """

    def __init__(self, option: str, message: str) -> None:
        super().__init__(message)
        self.option = option


def _read(option: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSError(option, f"cannot read {path}: {e.strerror}") from None


def _load_chain(ctx: ssl.SSLContext, cert: str, key: str | None) -> None:
    """Load the certificate chain and its key into ``ctx``, explaining what is wrong if it fails."""
    key_option, key_path = ("tls_key", key) if key else ("tls_cert", cert)
    if b"-----BEGIN CERTIFICATE-----" not in _read("tls_cert", cert):
        raise TLSError("tls_cert", f"{cert}: no PEM certificate in it")
    if b"PRIVATE KEY-----" not in _read(key_option, key_path):
        where = "" if key else " (give the key with --tls-key if it is in a file of its own)"
        raise TLSError(key_option, f"{key_path}: no PEM private key in it{where}")

    def refuse_password() -> str:
        # NOTE: without a callback OpenSSL would prompt on the terminal for an encrypted key.
        raise TLSError(
            key_option, f"{key_path}: the private key is encrypted; pycache-d needs it unencrypted"
        )

    try:
        ctx.load_cert_chain(cert, key, password=refuse_password)
    except ssl.SSLError as e:
        if e.reason == "KEY_VALUES_MISMATCH":
            raise TLSError(key_option, f"{key_path}: the key does not match the certificate {cert}") from None
        # A damaged PEM body: find out which file it is in.
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=cert)
        except ssl.SSLError:
            raise TLSError("tls_cert", f"{cert}: damaged PEM certificate ({_why(e)})") from None
        raise TLSError(key_option, f"{key_path}: damaged PEM private key ({_why(e)})") from None


def _why(e: ssl.SSLError) -> str:
    """OpenSSL's reason, without Python's ``[LIB]`` prefix and ``(_ssl.c:NNNN)`` suffix."""
    text = str(e.reason or e.strerror or e)
    return "OpenSSL: " + re.sub(r"^\[\w+\]\s*|\s*\(_ssl\.c:\d+\)$", "", text)


def _load_ca(ctx: ssl.SSLContext, ca: str) -> None:
    if b"-----BEGIN CERTIFICATE-----" not in _read("tls_ca", ca):
        raise TLSError("tls_ca", f"{ca}: no PEM certificate in it")
    try:
        ctx.load_verify_locations(cafile=ca)
    except ssl.SSLError as e:
        raise TLSError("tls_ca", f"{ca}: damaged PEM certificate ({_why(e)})") from None


def server_context(cert: str, key: str | None = None, ca: str | None = None) -> ssl.SSLContext:
    """Return a server context: TLS 1.2 or newer, ``cert``'s chain, client certificates if ``ca``.

    Args:
        cert: PEM file with the server certificate (and its chain, and the key if ``key`` is None).
        key: PEM file with the unencrypted private key.
        ca: PEM file with the CA certificates client certificates must be signed by; None: no
            client certificates are asked for.

    Raises:
        TLSError: a file is unreadable, holds no PEM, is damaged, or the key does not match.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(ctx, cert, key)
    if ca:
        _load_ca(ctx, ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def reload_context(ctx: ssl.SSLContext, cert: str, key: str | None = None, ca: str | None = None) -> None:
    """Re-read the files into the live ``ctx``, used by every TLS listener; new handshakes use them.

    Everything is loaded into a scratch context first, so a bad file leaves ``ctx`` untouched.
    NOTE: OpenSSL can only add CA certificates to a context: one removed from the CA file stays
    trusted until a restart.

    Raises:
        TLSError: as :func:`server_context`.
    """
    server_context(cert, key, ca)
    _load_chain(ctx, cert, key)
    if ca:
        _load_ca(ctx, ca)
