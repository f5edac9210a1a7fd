"""Make throwaway TLS certificates for tests with the ``openssl`` command.

:func:`make_pki` writes a test CA, a server certificate for 127.0.0.1/localhost signed by it, a
client certificate signed by it, and a client certificate from an unrelated CA. EC P-256 keys
keep generation quick. Tests skip (with the reason) when ``openssl`` is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class PKI:
    """Paths of the PEM files :func:`make_pki` wrote."""

    ca: Path
    server_cert: Path
    server_key: Path
    #: The server's certificate and key in one file (``--tls-cert`` alone).
    server_combined: Path
    client_cert: Path
    client_key: Path
    #: A client certificate signed by another CA, which the daemon must refuse.
    stranger_cert: Path
    stranger_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)


def _key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)


def _ca(d: Path, name: str) -> tuple[Path, Path]:
    key, cert = d / f"{name}.key", d / f"{name}.pem"
    _key(key)
    _openssl("req", "-x509", "-new", "-key", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}")
    return cert, key


def _signed(d: Path, name: str, ca: tuple[Path, Path], ext: str) -> tuple[Path, Path]:
    key, csr, cert, extfile = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem", d / f"{name}.ext"
    _key(key)
    _openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={name}")
    extfile.write_text(ext + "\n")
    _openssl(
        "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", extfile,
    )  # fmt: skip
    return cert, key


def make_pki(d: Path) -> PKI:
    """Write a small PKI into directory ``d``; skip the test if ``openssl`` is missing."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed (apt-get install openssl)")
    ca = _ca(d, "test-ca")
    server = _signed(
        d, "server", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"
    )
    client = _signed(d, "client", ca, "extendedKeyUsage=clientAuth")
    stranger = _signed(d, "stranger", _ca(d, "other-ca"), "extendedKeyUsage=clientAuth")
    combined = d / "server-combined.pem"
    combined.write_bytes(server[0].read_bytes() + server[1].read_bytes())
    return PKI(ca[0], server[0], server[1], combined, client[0], client[1], stranger[0], stranger[1])
