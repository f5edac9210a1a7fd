"""The wheel: pure Python, nothing but the package, and usable with no dependency installed."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
from daemon_procs import Daemon

CLIENT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    build = tmp_path_factory.mktemp("build")  # setuptools still leaves build/ in client/ (ignored)
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(CLIENT)],
        check=True,
        capture_output=True,
        timeout=120,
        cwd=build,
    )
    (whl,) = out.glob("*.whl")
    return whl


@pytest.mark.slow
def test_wheel_is_pure_python_with_only_the_package(wheel: Path) -> None:
    assert wheel.name == "pycache_client-0.1.0-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.split("/")[0] for n in names}
    # The .data directory holds only the man pages (share/man/man1, from packaging/manpage.py).
    assert packages == {"pycache_client", "pycache_client-0.1.0.dist-info", "pycache_client-0.1.0.data"}
    data = sorted(n for n in names if n.startswith("pycache_client-0.1.0.data/") and not n.endswith("/"))
    assert data == [
        "pycache_client-0.1.0.data/data/share/man/man1/pycache-cli.1",
        "pycache_client-0.1.0.data/data/share/man/man1/pycache-http.1",
    ], data
    assert "pycache_client/py.typed" in names and "pycache_client/http/app.py" in names
    metadata = zipfile.ZipFile(wheel).read("pycache_client-0.1.0.dist-info/METADATA").decode()
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert requires and all("extra ==" in line for line in requires), requires  # no bare dependency
    entry_points = zipfile.ZipFile(wheel).read("pycache_client-0.1.0.dist-info/entry_points.txt").decode()
    assert "pycache-cli = pycache_client.cli:main" in entry_points
    assert "pycache-http = pycache_client.http.__main__:main" in entry_points


@pytest.mark.slow
def test_installed_wheel_works_without_dependencies(wheel: Path, tmp_path: Path, daemon: Daemon) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    zipfile.ZipFile(wheel).extractall(site)  # a wheel install is an unzip for a pure wheel
    # Run from an unrelated directory so only the installed copy can be imported.
    code = (
        "import sys, pycache_client as p; "
        "assert 'falcon' not in sys.modules and 'site-packages' in p.__file__, p.__file__; "
        f"c = p.Client({daemon.address!r}); c.set('wheel', 'ok'); print(c.get('wheel'))"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ok\n"
