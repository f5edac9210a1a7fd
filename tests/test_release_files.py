"""What a newcomer looks for beside the code: LICENSE, CHANGELOG, man pages that match the
parsers, bash completion, `requires-python`, and a `make run` that says only what is true."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_license_is_mit_as_both_packages_say() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "Permission is hereby granted, free of charge" in text
    assert (ROOT / "client" / "LICENSE").read_text() == text
    for project in (ROOT / "pyproject.toml", ROOT / "client" / "pyproject.toml"):
        meta = tomllib.loads(project.read_text())["project"]
        assert meta["license"] == "MIT"
        assert meta["requires-python"] == ">=3.11,<3.14"  # what make dist and test-packages cover


def test_changelog_names_the_current_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f"## {version} " in (ROOT / "CHANGELOG.md").read_text()


def test_man_pages_are_up_to_date_with_the_parsers() -> None:
    r = subprocess.run(
        [sys.executable, ROOT / "packaging" / "manpage.py", "--check"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    page = (ROOT / "packaging" / "man" / "pycache-d.1").read_text()
    assert "\\-\\-check\\-config" in page and ".SH EXIT STATUS" in page
    cli = (ROOT / "client" / "man" / "pycache-cli.1").read_text()
    assert ".SS set" in cli and "\\-\\-file" in cli
    if shutil.which("man"):
        out = subprocess.run(["man", "-l", ROOT / "client" / "man" / "pycache-http.1"], capture_output=True,
                             text=True, env=dict(os.environ, MANPAGER="cat", MANWIDTH="100"))  # fmt: skip
        assert out.returncode == 0 and "--timeout" in out.stdout and "--version" in out.stdout, out.stderr


def complete(line: str) -> list[str]:
    """What bash completion offers for ``line`` (the cursor at its end)."""
    words = line.split(" ")
    script = (
        f"source {ROOT / 'packaging' / 'completion' / 'pycache.bash'}\n"
        f"PATH={BIN}:$PATH\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
        "_pycache; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
    )
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [w for w in r.stdout.split("\n") if w]


def test_bash_completion() -> None:
    assert complete("pycache-cli s") == ["set", "stats"]
    assert "--check-config" in complete("pycache-d --check")
    assert complete("pycache-d --backend n") == ["native"]
    assert "--file" in complete("pycache-cli set k --f")
    assert "--version" in complete("pycache-http --ver")


def make_run(*args: str) -> subprocess.Popen[str]:
    # -o venv: the suite runs inside the venv already; make must not rebuild it under us.
    cmd = ["make", "--no-print-directory", "-o", "venv", f"PY={sys.executable}", f"BIN={BIN}", "run", *args]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_make_run_stops_with_the_daemon_error_when_the_port_is_taken() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        proc = make_run(f"PORT={port}", f"HTTP_PORT={free_port()}")
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    # make's own closing line: "make: ***", or "make[1]: ***" when make test runs this test
    lines = [line for line in out.splitlines() if not re.match(r"make(\[\d+\])?: \*\*\*", line)]
    assert lines[-1].endswith(f"error: cannot listen on 127.0.0.1:{port}: address already in use"), out
    assert "HTTP API on" not in out and "Uvicorn running" not in out, out  # never started


def test_make_run_serves_on_the_given_ports_and_ctrl_c_stops_both() -> None:
    port, http_port = free_port(), free_port()
    proc = make_run(f"PORT={port}", f"HTTP_PORT={http_port}")
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "make run: pycache-d on" in line:
                assert f"127.0.0.1:{port}" in line and f"127.0.0.1:{http_port}" in line, line
                break
        else:
            raise AssertionError("make run ended before saying it serves")
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/readyz", timeout=5) as r:
                    assert r.status == 200
                    break
            except OSError:
                import time

                time.sleep(0.1)
        else:
            raise AssertionError("the HTTP API never answered")
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
        rest, _ = proc.communicate(timeout=60)
    assert "Traceback" not in rest, rest
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_fresh_clone_makefile_prints_no_error_before_the_venv_exists(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", ROOT, clone], check=True, timeout=120)
    # -n: what `make run` would do, without doing it; the Makefile is read as on a fresh clone.
    r = subprocess.run(["make", "-n", "run"], cwd=clone, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr  # was four `.venv/bin/python: No such file or directory`
    assert "cpython-3" in r.stdout  # EXT_SUFFIX came from $(PYTHON) before the venv exists
