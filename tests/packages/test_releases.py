"""The release artefacts of `make test-packages` (not `make test`: minutes, root, the network).

- every daemon wheel `make dist` wrote (one per supported CPython it found) installed into a fresh
  venv of its own interpreter, then the store, session and daemon smoke tests run from the
  installed package in another directory, never from the checkout;
- the sdist installed with no working C compiler: one warning, the pure-Python backend;
- the .deb of each Debian release built inside a debootstrapped root of that release
  (packaging/deb/in_release.sh), then installed, started, used, restarted with its keys kept,
  switched to socket activation as the README says, and purged under that release's own systemd
  booted as PID 1 of a container (tests/system/boot.sh with the release's root as its lower
  layer); a port taken at install is one line from the package's scripts and no restart loop.

Set PYCACHE_TEST_DIST to a directory `make dist` already filled to skip the rebuild.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "tests" / "system"))
pytest.register_assert_rewrite("sdcontainer")
from sdcontainer import BOOT, PREFIX, TOOLS, Container  # noqa: E402

BIN = Path(sys.executable).parent
ENV_WITH_BIN = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
SUPPORTED = ("3.11", "3.12", "3.13")
#: Debian release -> (version number, its python3's minor version).
RELEASES = {"bookworm": ("12", "3.11"), "trixie": ("13", "3.13")}
#: Clean environment for installed commands: nothing of this checkout or its venv leaks in.
CLEAN_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "LC_ALL": "C.UTF-8"}


def run(*cmd: str | Path, timeout: float = 1800, **kw) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; fail the test with its output when it exits non-zero."""
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}:\n{r.stdout[-4000:]}{r.stderr[-4000:]}"
    return r


def timed(label: str, start: float) -> None:
    print(f"\n[{label}: {time.monotonic() - start:.0f} s]", file=sys.stderr)


@pytest.fixture(scope="session")
def pythons() -> dict[str, Path]:
    """The supported interpreters packaging/pythons.sh finds, by minor version."""
    r = subprocess.run([ROOT / "packaging" / "pythons.sh"], capture_output=True, text=True, timeout=60)
    print(r.stderr, file=sys.stderr, end="")
    found = {}
    for line in r.stdout.split():
        v = run(line, "-c", "import sys; print('%d.%d' % sys.version_info[:2])").stdout.strip()
        found[v] = Path(line)
    if not found:
        pytest.skip(f"no supported CPython found: {r.stderr.strip()}")
    return found


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make dist` into a temporary directory (or PYCACHE_TEST_DIST when set)."""
    given = os.environ.get("PYCACHE_TEST_DIST")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("dist")
    start = time.monotonic()
    make = ("make", "--no-print-directory", "-o", "venv", f"DIST={out}", f"PY={sys.executable}", f"BIN={BIN}")
    run(*make, "dist", cwd=ROOT, env=ENV_WITH_BIN)
    timed("make dist", start)
    return out


def daemon_wheel(dist: Path, version: str) -> Path:
    tag = "cp" + version.replace(".", "")
    wheels = sorted(dist.glob(f"pycache_d-*-{tag}-{tag}-manylinux*.whl"))
    assert len(wheels) == 1, (tag, sorted(p.name for p in dist.iterdir()))
    return wheels[0]


def test_one_repaired_wheel_per_supported_python(dist: Path, pythons: dict[str, Path]) -> None:
    names = sorted(p.name for p in dist.glob("pycache_d-*.whl"))
    assert not any("-linux_x86_64" in n for n in names), names
    assert len(names) == len(pythons), (names, pythons)
    for version in pythons:
        wheel = daemon_wheel(dist, version)
        meta = zipfile.ZipFile(wheel).read("pycache_d-0.1.0.dist-info/METADATA").decode()
        assert "Requires-Python: <3.14,>=3.11" in meta, meta[:500]  # setuptools orders the clauses
        assert "pycache_d-0.1.0.data/data/share/man/man1/pycache-d.1" in zipfile.ZipFile(wheel).namelist()


SMOKE = r"""
import os, socket, subprocess, sys, time
import pycache_d
from pycache_d.protocol.session import Session

# Installed, not the checkout: every module comes from the venv's site-packages.
assert pycache_d.__file__.startswith(sys.prefix), pycache_d.__file__
store = pycache_d.Store()
print("backend", store.backend)
# store
assert store.backend == sys.argv[1], store.backend
# session: the text protocol over the store, sans IO
reply = Session(store).feed(b"set k 0 0 2\r\nhi\r\nget k\r\n")
assert reply == b"STORED\r\nVALUE k 0 2\r\nhi\r\nEND\r\n", reply
if sys.argv[1] == "native":
    from pycache_d.protocol import _csession  # the compiled session loads too
# daemon: the console script, on a free port, one round trip, a clean SIGTERM
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
exe = os.path.join(os.path.dirname(sys.executable), "pycache-d")
proc = subprocess.Popen([exe, "-p", str(port)], stderr=subprocess.PIPE)
deadline = time.monotonic() + 60
while True:
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=5); break
    except OSError:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.1)
c.sendall(b"set d 0 0 3\r\nabc\r\nget d\r\nversion\r\n")
out = b""
while not out.endswith(b"\r\n") or b"VERSION" not in out:
    out += c.recv(65536)
assert out.startswith(b"STORED\r\nVALUE d 0 3\r\nabc\r\nEND\r\nVERSION "), out
c.close()
proc.terminate()
assert proc.wait(60) == 0
print("smoke ok")
"""


@pytest.mark.parametrize("version", SUPPORTED)
def test_each_wheel_in_a_fresh_venv_of_its_python(
    version: str, dist: Path, pythons: dict[str, Path], tmp_path: Path
) -> None:
    if version not in pythons:
        pytest.skip(f"CPython {version} not found (packaging/pythons.sh); no wheel built for it")
    start = time.monotonic()
    venv = tmp_path / "venv"
    run(pythons[version], "-m", "venv", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", daemon_wheel(dist, version))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = run(venv / "bin" / "python", "-c", SMOKE, "native", cwd=elsewhere, env=CLEAN_ENV)
    assert "smoke ok" in r.stdout, r.stdout
    version_line = run(venv / "bin" / "pycache-d", "--version", env=CLEAN_ENV).stdout
    assert version_line == "pycache-d 0.1.0\n"
    assert (venv / "share" / "man" / "man1" / "pycache-d.1").is_file()
    timed(f"wheel cp{version.replace('.', '')}: venv, install, smoke", start)


def test_sdist_without_a_compiler_installs_the_python_backend(
    dist: Path, pythons: dict[str, Path], tmp_path: Path
) -> None:
    version = max(pythons)
    (sdist,) = dist.glob("pycache_d-*.tar.gz")
    venv = tmp_path / "venv"
    run(pythons[version], "-m", "venv", venv)
    start = time.monotonic()
    env = dict(os.environ, CC="/nonexistent/cc")
    # --no-cache-dir: a pure wheel pip cached from an earlier run would skip the build and its warning.
    r = run(venv / "bin" / "python", "-m", "pip", "install", "-v", "--no-cache-dir", sdist, env=env)
    timed("sdist without a compiler", start)
    warnings = [line for line in (r.stdout + r.stderr).splitlines() if "WARNING: pycache-d:" in line]
    assert len(warnings) == 1, warnings
    assert "no working C compiler (CC=/nonexistent/cc): installing the pure-Python backend" in warnings[0]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = run(venv / "bin" / "python", "-c", SMOKE, "python", cwd=elsewhere, env=CLEAN_ENV).stdout
    assert "smoke ok" in out, out


# -- the .deb of each Debian release ---------------------------------------------------------------


def need_root() -> None:
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("debootstrap, chroot and the systemd container need root on Linux")
    missing = [t for t in (*TOOLS, "debootstrap", "unshare", "chroot") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"missing tools: {missing} (apt-get install debootstrap)")


@pytest.fixture(scope="session", params=sorted(RELEASES))
def release(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def rootfs_and_deb(release: str, dist: Path, pythons: dict[str, Path]) -> tuple[Path, Path]:
    need_root()
    number, pyver = RELEASES[release]
    tool = ROOT / "packaging" / "deb" / "in_release.sh"
    start = time.monotonic()
    rootfs = Path(run(tool, release, "rootfs", timeout=1800).stdout.strip())
    timed(f"{release} root (debootstrap, cached after the first)", start)
    if pyver not in pythons:
        pytest.skip(f"no cp{pyver.replace('.', '')} wheel: CPython {pyver} not found")
    start = time.monotonic()
    # build.sh names the file as the build root sees DIST (/dist/...): the same file in ours.
    deb = dist / Path(run(tool, release, "build", dist, timeout=1200).stdout.split()[-1]).name
    timed(f"{release} .deb build in its root", start)
    assert deb.name == f"pycache-d_0.1.0+deb{number}_amd64.deb", deb
    return rootfs, deb


@pytest.fixture
def container(rootfs_and_deb: tuple[Path, Path]) -> Iterator[Container]:
    """A fresh systemd container whose / is the release's root (the host's systemd is not used)."""
    rootfs, _ = rootfs_and_deb
    keeper = subprocess.Popen(["sleep", "infinity"])  # names the container after a live pid
    name = f"{PREFIX}{keeper.pid}"
    env = dict(os.environ, PYCACHE_SYSTEST_ROOTFS=str(rootfs))
    try:
        r = subprocess.run([BOOT, "up", name], capture_output=True, text=True, timeout=120, env=env)
        if r.returncode != 0:
            pytest.skip(f"cannot boot a systemd container of {rootfs}: {r.stderr.strip()[-500:]}")
        yield Container(name, int(r.stdout.split()[-1]))
    finally:
        subprocess.run([BOOT, "down", name], capture_output=True, timeout=120)
        keeper.kill()
        keeper.wait()


PYTHON = "/usr/bin/python3"  # the release's own, inside the container


def memcached(sd: Container, commands: bytes) -> bytes:
    code = (
        "import socket, sys; s = socket.create_connection(('127.0.0.1', 11211), timeout=10);"
        f"s.sendall({commands!r}); s.shutdown(socket.SHUT_WR); out = b''\n"
        "while (chunk := s.recv(65536)): out += chunk\n"
        "sys.stdout.write(out.hex())"
    )
    r = sd.run(PYTHON, "-c", code, check=True)
    return bytes.fromhex(r.stdout)


def install(sd: Container, deb: Path) -> subprocess.CompletedProcess[str]:
    shutil.copy(deb, sd.root / "tmp" / deb.name)
    return sd.run("dpkg", "-i", f"/tmp/{deb.name}", timeout=180, check=True)


def test_deb_metadata(rootfs_and_deb: tuple[Path, Path], release: str) -> None:
    _, deb = rootfs_and_deb
    pyver = RELEASES[release][1]
    minor = int(pyver.split(".")[1])
    fields = dict(
        line.split(": ", 1) for line in run("dpkg-deb", "-f", deb).stdout.splitlines() if ": " in line
    )
    depends = [d.strip() for d in fields["Depends"].split(",")]
    assert f"python3 (>= {pyver})" in depends and f"python3 (<< 3.{minor + 1})" in depends, depends
    listing = run("dpkg-deb", "-c", deb).stdout
    for needed in (
        "./usr/share/man/man1/pycache-d.1.gz",
        "./usr/share/man/man1/pycache-cli.1.gz",
        "./usr/share/man/man1/pycache-http.1.gz",
        "./usr/share/bash-completion/completions/pycache-d",
        "./usr/share/doc/pycache-d/copyright",
        "./usr/share/doc/pycache-d/changelog.gz",
        f"./opt/pycache-d/lib/python{pyver}/site-packages/pycache_d/",
    ):
        assert needed in listing, needed


def test_deb_lifecycle_under_the_release_systemd(
    container: Container, rootfs_and_deb: tuple[Path, Path]
) -> None:
    sd = container
    _, deb = rootfs_and_deb
    start = time.monotonic()
    install(sd, deb)
    assert sd.systemctl("is-active", "pycache-d.service").stdout.strip() == "active"
    exe = sd.run("readlink", f"/proc/{sd.show('pycache-d.service', 'MainPID')['MainPID']}/exe", check=True)
    assert exe.stdout.strip().startswith("/usr/bin/python3"), exe.stdout

    # set/get, then a restart keeps the keys (the snapshot in StateDirectory=)
    assert memcached(sd, b"set pkg 0 0 5\r\nhello\r\n") == b"STORED\r\n"
    sd.systemctl("restart", "pycache-d.service", timeout=90, check=True)
    assert memcached(sd, b"get pkg\r\n") == b"VALUE pkg 0 5\r\nhello\r\nEND\r\n"

    # the commands, their man pages and completion work from the installed package
    assert sd.run("pycache-cli", "get", "pkg", check=True).stdout == "hello\n"
    for cmd in ("pycache-d", "pycache-cli", "pycache-http"):
        assert sd.run(cmd, "--version", check=True).stdout.strip() == f"{cmd} 0.1.0"
    assert sd.run("pycache-d", "--check-config", "--config", "/etc/pycache-d/pycache-d.toml", check=True)
    # A reload of a broken file fails visibly; the running daemon keeps its items.
    conf = sd.root / "etc" / "pycache-d" / "pycache-d.toml"
    good = conf.read_text()
    conf.write_text(good + "\nmax_itemz = 1\n")
    r = sd.systemctl("reload", "pycache-d.service", timeout=60)
    assert r.returncode != 0
    conf.write_text(good)
    assert memcached(sd, b"get pkg\r\n") == b"VALUE pkg 0 5\r\nhello\r\nEND\r\n"

    # socket activation, word for word as the README says
    r = sd.run(
        "sh",
        "-c",
        "systemctl disable --now pycache-d.service && systemctl enable --now pycache-d.socket",
        timeout=90,
    )
    assert r.returncode == 0, r.stderr
    assert memcached(sd, b"get pkg\r\n") == b"VALUE pkg 0 5\r\nhello\r\nEND\r\n"  # activated, snapshot loaded
    sd.systemctl("enable", "pycache-http.service", check=True)

    # purge: nothing left, enablement links included
    sd.run("dpkg", "--purge", "pycache-d", timeout=180, check=True)
    for gone in (
        "/etc/pycache-d",
        "/opt/pycache-d",
        "/usr/bin/pycache-d",
        "/lib/systemd/system/pycache-d.socket",
        "/usr/share/doc/pycache-d",
        "/usr/share/man/man1/pycache-d.1.gz",
        "/var/lib/private/pycache-d",  # the snapshot: a purge removes it too (a remove keeps it)
    ):
        assert sd.run("test", "-e", gone).returncode != 0, f"{gone} left after purge"
    links = sd.run("find", "/etc/systemd/system", "-name", "pycache*", check=True).stdout
    assert links == "", links
    helper = sd.run(
        "sh", "-c", "ls /var/lib/systemd/deb-systemd-helper-enabled 2>/dev/null | grep pycache || true"
    )
    assert helper.stdout == "", helper.stdout
    timed("deb lifecycle", start)


def test_deb_install_with_the_port_taken(container: Container, rootfs_and_deb: tuple[Path, Path]) -> None:
    sd = container
    _, deb = rootfs_and_deb
    hold = (
        "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 11211)); s.listen(); time.sleep(600)"
    )
    holder = subprocess.Popen([str(BOOT), "exec", sd.name, PYTHON, "-c", hold])
    try:
        deadline = time.monotonic() + 30
        while sd.run("sh", "-c", "cat /proc/net/tcp | grep -qi ':2BCB 00000000:0000 0A'").returncode != 0:
            assert time.monotonic() < deadline, "the port holder did not listen"
            time.sleep(0.2)
        r = install(sd, deb)  # installs (exit 0) ...
        lines = [line for line in r.stderr.splitlines() if line.startswith("pycache-d:")]
        assert len(lines) == 1, r.stderr
        assert lines[0].startswith("pycache-d: installed but not started: "), lines
        assert "cannot listen on 127.0.0.1:11211: address already in use" in lines[0], lines
        assert lines[0].endswith("; fix it, then: systemctl start pycache-d.service"), lines
        assert "Could not execute systemctl" not in r.stderr
        time.sleep(3)  # ... and no restart loop: still stopped, never retried
        props = sd.show("pycache-d.service", "ActiveState", "NRestarts")
        assert props["ActiveState"] in ("inactive", "failed") and props["NRestarts"] in ("0", "1"), props
        time.sleep(2)
        assert sd.show("pycache-d.service", "NRestarts") == {"NRestarts": props["NRestarts"]}
    finally:
        holder.kill()
        holder.wait()
