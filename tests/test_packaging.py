"""The wheel carries the compiled extensions and their stubs, never the C or Cython sources, and
works installed: every layer imports from it, away from the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(os.environ.get("PYCACHE_D_NO_EXTENSIONS")), reason="extensions disabled on purpose"
    ),
]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel, built once for the module."""
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: build with this venv's setuptools and Cython, so the test needs no network.
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return out


def test_wheel_and_sdist_contents(dist: Path) -> None:
    (wheel,) = dist.glob("pycache_d-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "pycache_d/py.typed" in names
    # Each extension sits in its layer's package, with its stub beside it.
    for module in ("store/_native", "protocol/_csession", "net/_cconnection", "net/_cstream"):
        assert any(n.startswith(f"pycache_d/{module}.") and n.endswith(".so") for n in names), names
        assert f"pycache_d/{module}.pyi" in names, names
    for package in ("store", "protocol", "net", "daemon"):
        assert f"pycache_d/{package}/__init__.py" in names, names
    leaked = [n for n in names if n.endswith((".c", ".h", ".pyx", ".pxd"))]
    assert not leaked, f"sources in the wheel: {leaked}"
    assert "-cp3" in wheel.name and "linux" in wheel.name  # a platform wheel, not py3-none-any

    (sdist,) = dist.glob("pycache_d-*.tar.gz")
    members = {Path(m).as_posix().split("/", 1)[1] for m in tarfile.open(sdist).getnames() if "/" in m}
    for needed in (
        "csrc/store.c",
        "csrc/slabs.h",
        "pycache_d/store/_native.pyx",
        "pycache_d/store/_store_c.pxd",
        "pycache_d/protocol/_csession.pxd",
        "setup.py",
    ):
        assert needed in members, needed


def test_every_layer_imports_from_the_installed_wheel(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("pycache_d-*.whl")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    # From an unrelated directory, with the installed copy first on the path: the source tree
    # (and its in-place build) cannot be what answers.
    code = (
        "import pycache_d, pycache_d.store, pycache_d.protocol, pycache_d.net, pycache_d.daemon; "
        "from pycache_d.daemon import main; from pycache_d.net import streams; "
        f"assert pycache_d.__file__.startswith({str(target)!r}), pycache_d.__file__; "
        "s = pycache_d.protocol.new_session(pycache_d.Store()); "
        "print(pycache_d.Store().backend, type(s).__name__, streams.Poller.__module__); "
        "print(s.feed(b'set k 0 0 2\\r\\nhi\\r\\nget k\\r\\n'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(target)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "native NativeSession pycache_d.net._cstream",
        repr(b"STORED\r\nVALUE k 0 2\r\nhi\r\nEND\r\n"),
    ]
    version = subprocess.run(
        [sys.executable, "-m", "pycache_d", "--version"],
        env={**os.environ, "PYTHONPATH": str(target)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert version.returncode == 0 and version.stdout.startswith("pycache-d "), version
