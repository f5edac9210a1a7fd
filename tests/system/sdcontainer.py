"""A real systemd as PID 1 of a throw-away container: :class:`Container` and the ``container`` fixture.

Load it with ``pytest_plugins = ["sdcontainer"]`` in a test module: a conftest.py here would take
the module name ``conftest`` from tests/conftest.py, which other tests import.

``boot.sh`` (beside this file) builds the container from plain namespaces: the host's / below a
tmpfs overlay, so this checkout and its interpreter are visible at the same paths and nothing
written inside reaches the host. One container serves the whole session; it is torn down in a
``finally``, and containers left behind by dead sessions are removed when a session starts.

Everything skips, with the reason, when not root, when a tool is missing, or when the kernel
refuses the namespaces. Every command inside runs with a timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
BOOT = HERE / "boot.sh"
CHECKOUT = HERE.parent.parent
#: Container names carry the pytest pid, so a session only clears containers of dead sessions.
PREFIX = "pytest"

TOOLS = ("unshare", "nsenter", "script", "setsid", "setpriv", "systemctl")


class Container:
    """One booted container: run commands in it, reach its files through ``root``."""

    def __init__(self, name: str, pid1: int) -> None:
        self.name = name
        self.pid1 = pid1
        #: The container's / as seen from the host (write unit files through it).
        self.root = Path(f"/proc/{pid1}/root")

    def run(self, *cmd: str, timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside the container; return the finished process (text output)."""
        r = subprocess.run(
            [str(BOOT), "exec", self.name, *cmd], capture_output=True, text=True, timeout=timeout
        )
        if check and r.returncode != 0:
            raise AssertionError(f"{cmd} exited {r.returncode}:\n{r.stdout}{r.stderr}")
        return r

    def systemctl(
        self, *args: str, timeout: float = 30, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--no-pager", *args, timeout=timeout, check=check)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        """``systemctl show -p ...`` as a dict."""
        r = self.systemctl("show", unit, *(f"--property={p}" for p in props), check=True)
        return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)

    def journal(self, unit: str) -> list[dict[str, str]]:
        """The unit's journal entries (``journalctl -o json``)."""
        r = self.run("journalctl", "--no-pager", "-o", "json", "-u", unit, check=True)
        return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]

    def python(self, code: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run Python ``code`` in the container (this checkout's interpreter)."""
        return self.run(sys.executable, "-c", code, timeout=timeout)


#: Host trees the container's fresh /tmp and /var/tmp would hide: a checkout under them (a CI
#: clone may be) is bound back at its own path (boot.sh reads PYCACHE_SYSTEST_BIND).
_IN_TMP = CHECKOUT.parts[1:2] == ("tmp",) or CHECKOUT.parts[1:3] == ("var", "tmp")
UNDER_TMP = [str(CHECKOUT)] if _IN_TMP else []


def _boot(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYCACHE_SYSTEST_BIND=":".join(UNDER_TMP))
    return subprocess.run([str(BOOT), *args], capture_output=True, text=True, timeout=timeout, env=env)


def _clear_stale() -> None:
    listed = _boot("list", timeout=10).stdout.split()
    for name in listed:
        if not name.startswith(PREFIX):
            continue
        try:
            os.kill(int(name[len(PREFIX) :]), 0)
            continue  # its session is still running
        except (ValueError, ProcessLookupError):
            pass
        except PermissionError:
            continue
        _boot("down", name, timeout=60)


@pytest.fixture(scope="session")
def container() -> Iterator[Container]:
    """A running systemd container for the session (skips with the reason when it cannot be had)."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("system tests boot systemd in a namespace container: they need root on Linux")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing or not Path("/lib/systemd/systemd").exists():
        pytest.skip(f"system tests need systemd and util-linux; missing: {missing or '/lib/systemd/systemd'}")
    _clear_stale()
    name = f"{PREFIX}{os.getpid()}"
    try:
        try:
            r = _boot("up", name, timeout=120)
        except subprocess.TimeoutExpired:
            pytest.skip("systemd container did not boot within 120 s")
        if r.returncode != 0:
            pytest.skip(f"cannot boot a systemd container here: {r.stderr.strip()[-500:]}")
        yield Container(name, int(r.stdout.split()[-1]))
    finally:
        _boot("down", name, timeout=120)
