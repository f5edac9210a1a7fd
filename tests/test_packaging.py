"""The wheel carries the compiled extension and its stubs, never the C or Cython sources."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.skipif(bool(os.environ.get("PYCACHE_D_NO_EXTENSIONS")), reason="extensions disabled on purpose")
def test_wheel_and_sdist_contents(tmp_path):
    # --no-isolation: build with this venv's setuptools and Cython, so the test needs no network.
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("pycache_d-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("pycache_d/_native.") and n.endswith(".so") for n in names), names
    assert "pycache_d/_native.pyi" in names and "pycache_d/py.typed" in names
    for module in ("_csession", "_cconnection", "_cstream"):
        assert any(n.startswith(f"pycache_d/{module}.") and n.endswith(".so") for n in names), names
        assert f"pycache_d/{module}.pyi" in names, names
    leaked = [n for n in names if n.endswith((".c", ".h", ".pyx", ".pxd"))]
    assert not leaked, f"sources in the wheel: {leaked}"
    assert "-cp3" in wheel.name and "linux" in wheel.name  # a platform wheel, not py3-none-any

    (sdist,) = tmp_path.glob("pycache_d-*.tar.gz")
    members = {Path(m).as_posix().split("/", 1)[1] for m in tarfile.open(sdist).getnames() if "/" in m}
    for needed in (
        "csrc/store.c",
        "csrc/slabs.h",
        "pycache_d/_native.pyx",
        "pycache_d/_store_c.pxd",
        "setup.py",
    ):
        assert needed in members, needed
