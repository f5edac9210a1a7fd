"""An installation without the compiled backend (the sdist with no C compiler) says so once at
start, where an operator looks: pip hides the build's own warning unless run with -v."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

WARNING = "the native backend is not built into this installation"
#: The daemon as installed without its extension: the import of _native fails as it would there.
BLOCKED = (
    "import sys; sys.modules['pycache_d.store._native'] = None\n"
    "from pycache_d.daemon.main import main; sys.exit(main(sys.argv[1:]))"
)


def start_log(*, blocked: bool, extra_env: dict[str, str] | None = None, backend: str = "auto") -> list[str]:
    """Start the daemon on an ephemeral port; return its log up to the started line; stop it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYCACHE_D_") and k != "STATE_DIRECTORY"}
    env.update(extra_env or {})
    cmd = [sys.executable, "-c", BLOCKED] if blocked else [sys.executable, "-m", "pycache_d"]
    proc = subprocess.Popen(
        [*cmd, "-p", "0", "-l", "127.0.0.1", "--backend", backend], stderr=subprocess.PIPE, text=True, env=env
    )
    lines = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            if " started: " in line:
                break
        else:
            raise AssertionError(f"the daemon exited {proc.wait(60)} before starting: {lines}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    return lines


def test_a_daemon_without_its_extension_warns_once_and_serves_python() -> None:
    lines = start_log(blocked=True)
    assert sum(WARNING in line for line in lines) == 1, lines
    assert any("warning: " + WARNING in line for line in lines), lines
    assert "backend python" in lines[-1], lines


@pytest.mark.parametrize(
    ("blocked", "env", "backend"),
    [
        (True, {"PYCACHE_D_NO_EXTENSIONS": "1"}, "auto"),  # chosen on purpose: nothing to warn about
        (True, {}, "python"),  # asked for python
    ],
)
def test_no_warning_when_python_was_chosen(blocked: bool, env: dict[str, str], backend: str) -> None:
    lines = start_log(blocked=blocked, extra_env=env, backend=backend)
    assert not any(WARNING in line for line in lines), lines
    assert "backend python" in lines[-1], lines


@pytest.mark.skipif(bool(os.environ.get("PYCACHE_D_NO_EXTENSIONS")), reason="extensions disabled on purpose")
def test_no_warning_with_the_extension_built() -> None:
    lines = start_log(blocked=False)
    assert not any(WARNING in line for line in lines), lines
    assert "backend native" in lines[-1], lines
