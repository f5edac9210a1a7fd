"""``pycache-http``'s command line: --version, and every bad option refused in one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "pycache-http"


def http(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}  # no PYCACHE_HTTP_* from the caller
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env=env)


def test_version() -> None:
    out = http("--version")
    assert (out.returncode, out.stdout, out.stderr) == (0, "pycache-http 0.1.0\n", "")


@pytest.mark.parametrize(
    "args, error",
    [
        (["--cache", "127.0.0.1:1121x"], "--cache: bad port in server address '127.0.0.1:1121x'"),
        (["--cache", "127.0.0.1:99999"], "--cache: port out of range"),
        (["--cache", ","], "--cache names no server"),
        (["--timeout", "-1"], "--timeout must be a number of seconds above 0, got -1.0"),
        (["--timeout", "0"], "--timeout must be a number of seconds above 0"),
        (["--timeout", "nan"], "--timeout must be a number of seconds above 0, got nan"),
        (["--port", "70000"], "--port must be 0..65535, got 70000"),
        (["--workers", "0"], "--workers must be at least 1, got 0"),
        (["--pool-size", "0"], "--pool-size must be at least 1, got 0"),
    ],
)
def test_a_bad_option_is_one_line_and_exit_2(args: list[str], error: str) -> None:
    out = http("--port", "0", *args)
    assert out.returncode == 2, out
    assert out.stderr.count("\n") == 1 and out.stderr.startswith(f"pycache-http: error: {error}"), out.stderr
    assert "Traceback" not in out.stderr
