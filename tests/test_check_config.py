"""``pycache-d --check-config``: the whole validation a start does, one line, exit 0 or 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "packaging" / "pycache-d.toml"


def daemon(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}  # no PYCACHE_D_* from the caller
    return subprocess.run(
        [sys.executable, "-m", "pycache_d", *args], capture_output=True, text=True, timeout=60, env=env
    )


def test_the_shipped_config_passes() -> None:
    r = daemon("--check-config", "--config", str(SHIPPED))
    assert (r.returncode, r.stdout, r.stderr) == (0, f"pycache-d: config OK: {SHIPPED}\n", "")


def test_no_file_passes_and_says_so() -> None:
    r = daemon("--check-config")
    assert (r.returncode, r.stdout) == (0, "pycache-d: config OK (no config file)\n")


@pytest.mark.parametrize(
    "content, error",
    [
        (
            b"memory_limit = 1\nmax_item_size = '2m'\n",
            "max item size (2097152 bytes) exceeds the memory limit",
        ),
        (b"max_itemz = 3\n", "unknown key 'max_itemz'"),
        (b"port = \n", "invalid TOML"),
        (b"tls_cert = '/nonexistent/cert.pem'\n", "tls_cert"),
        (b"auth_file = '/nonexistent/auth'\n", "auth_file"),
        (b"# caf\xe9\n", "not UTF-8 (byte 0xe9 at offset 5)"),
    ],
)
def test_every_error_is_one_line_and_exit_2(tmp_path: Path, content: bytes, error: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    r = daemon("--check-config", "--config", str(path))
    assert r.returncode == 2 and r.stdout == "", r
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"pycache-d: error: {path}: "), r.stderr
    assert error in r.stderr and "Traceback" not in r.stderr


def test_a_non_utf8_file_at_start_is_one_line_too(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes("# réglages\nport = 0\n".encode("latin-1"))
    r = daemon("--config", str(path))
    assert r.returncode == 2, r
    assert r.stderr == f"pycache-d: error: {path}: not UTF-8 (byte 0xe9 at offset 3)\n"


def test_the_flags_are_checked_too() -> None:
    r = daemon("--check-config", "-m", "0")
    assert r.returncode == 2 and r.stderr.startswith("pycache-d: error: --memory-limit: "), r
