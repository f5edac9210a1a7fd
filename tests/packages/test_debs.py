"""The .deb of each Debian release, built in a debootstrapped root of that release and used
under that release's own systemd, booted as PID 1 of a container whose / is that root.

Per release: install (enabled, started, with the release's python3), set/get, a restart keeps
the keys (snapshot), the socket unit enabled exactly as the README says, purge leaving nothing,
then a reinstall with 11211 taken: one line from the package's scripts and no restart loop.
Root only; the first run debootstraps each root (4-5 minutes each, cached in
/var/cache/pycache-d-rootfs; packaging/deb/in_release.sh).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "system"))
pytest.register_assert_rewrite("pkgfixtures", "sdcontainer")
from pkgfixtures import ROOT, run  # noqa: E402
from sdcontainer import BOOT, PREFIX, TOOLS, Container  # noqa: E402

pytest_plugins = ["pkgfixtures"]
pytestmark = pytest.mark.slow

IN_RELEASE = ROOT / "packaging" / "deb" / "in_release.sh"
#: Release -> (Debian version, its python3).
RELEASES = {"bookworm": ("12", "3.11"), "trixie": ("13", "3.13")}

#: memcached commands sent from inside the container with the release's python3; prints the reply.
CLIENT = (
    "import socket, sys; s = socket.create_connection(('127.0.0.1', 11211), timeout=30);"
    "s.sendall(sys.argv[1].encode().decode('unicode_escape').encode() + b'quit\\r\\n'); out = b''\n"
    "while (chunk := s.recv(65536)): out += chunk\n"
    "print(out)"
)


def can_boot() -> None:
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("the .deb tests debootstrap and boot systemd in a namespace container: root on Linux")
    missing = [t for t in (*TOOLS, "debootstrap", "dpkg-deb") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {missing}")


@pytest.fixture(scope="module", params=list(RELEASES))
def release(request: pytest.FixtureRequest) -> str:
    can_boot()
    return request.param


@pytest.fixture(scope="module")
def deb(release: str, dist: Path) -> Path:
    """in_release.sh RELEASE build: the .deb, built with that release's python3."""
    number, _ = RELEASES[release]
    for old in dist.glob(f"pycache-d_*+deb{number}_amd64.deb"):
        old.unlink()
    run(IN_RELEASE, release, "build", dist, timeout=2400)
    (built,) = dist.glob(f"pycache-d_*+deb{number}_amd64.deb")
    return built


@pytest.fixture(scope="module")
def box(release: str) -> Iterator[Container]:
    """A systemd container whose / is (an overlay on) the release's debootstrapped root."""
    rootfs = run(IN_RELEASE, release, "rootfs", timeout=2400).stdout.split()[-1]
    # NOTE: sessions clear containers named PREFIX<pid> whose pid is dead: name ours after a
    # process that lives exactly as long as the container.
    keeper = subprocess.Popen(["sleep", "infinity"])
    name = f"{PREFIX}{keeper.pid}"
    env = dict(os.environ, PYCACHE_SYSTEST_ROOTFS=rootfs)
    try:
        r = subprocess.run([BOOT, "up", name], capture_output=True, text=True, timeout=120, env=env)
        if r.returncode != 0:
            pytest.skip(f"cannot boot a systemd container of {release}: {r.stderr.strip()[-500:]}")
        sd = Container(name, int(r.stdout.split()[-1]))
        # A Docker image's policy-rc.d ("exit 101") would forbid starting services; stock Debian has none.
        sd.run("rm", "-f", "/usr/sbin/policy-rc.d", check=True)
        yield sd
    finally:
        subprocess.run([BOOT, "down", name], capture_output=True, timeout=120)
        keeper.kill()
        keeper.wait()


def send(sd: Container, commands: str) -> str:
    return sd.run("/usr/bin/python3", "-c", CLIENT, commands, timeout=60, check=True).stdout.strip()


def test_deb_metadata_and_contents(release: str, deb: Path) -> None:
    number, pyver = RELEASES[release]
    major, minor = pyver.split(".")
    assert deb.name == f"pycache-d_0.1.0+deb{number}_amd64.deb"
    fields = dict(l.split(": ", 1) for l in run("dpkg-deb", "-f", deb).stdout.splitlines() if ": " in l)  # noqa: E741
    assert fields["Version"] == f"0.1.0+deb{number}", fields
    depends = [d.strip() for d in fields["Depends"].split(",")]
    assert f"python3 (>= {pyver})" in depends and f"python3 (<< {major}.{int(minor) + 1})" in depends, depends
    listing = run("dpkg-deb", "-c", deb).stdout
    paths = {line.split()[5] for line in listing.splitlines()}
    for needed in (
        "./usr/share/man/man1/pycache-d.1.gz",
        "./usr/share/man/man1/pycache-cli.1.gz",
        "./usr/share/man/man1/pycache-http.1.gz",
        "./usr/share/bash-completion/completions/pycache-d",
        "./usr/share/doc/pycache-d/copyright",
        "./usr/share/doc/pycache-d/changelog.gz",
        f"./opt/pycache-d/lib/python{pyver}/site-packages/pycache_d/__init__.py",
    ):
        assert needed in paths, needed
    assert not any(p.startswith("./opt/pycache-d/share/") for p in paths), "man pages left in the venv"


def test_deb_venv_points_at_its_install_location(release: str, deb: Path, tmp_path: Path) -> None:
    _, pyver = RELEASES[release]
    run("dpkg-deb", "-x", deb, tmp_path)
    venv = tmp_path / "opt" / "pycache-d"
    for cmd in ("pycache-d", "pycache-cli", "pycache-http"):
        assert (venv / "bin" / cmd).read_text().splitlines()[0] == "#!/opt/pycache-d/bin/python", cmd
    assert os.readlink(venv / "bin" / "python3") == "/usr/bin/python3"
    cfg = (venv / "pyvenv.cfg").read_text()
    assert "home = /usr/bin" in cfg and f"version = {pyver}." in cfg and str(tmp_path) not in cfg, cfg
    # Byte-compiled under its final name, so tracebacks name the installed files.
    pyc = next(venv.glob(f"lib/python{pyver}/site-packages/pycache_d/daemon/__pycache__/config.*.pyc"))
    assert f"/opt/pycache-d/lib/python{pyver}/".encode() in pyc.read_bytes()


def test_install_start_set_get_and_restart_keeps_keys(release: str, deb: Path, box: Container) -> None:
    _, pyver = RELEASES[release]
    shutil.copy(deb, box.root / "tmp" / deb.name)
    r = box.run("dpkg", "-i", f"/tmp/{deb.name}", timeout=300, check=True)
    assert "pycache-d" not in r.stderr, r.stderr  # started: the scripts have nothing to say
    assert box.systemctl("is-enabled", "pycache-d.service").stdout.strip() == "enabled"
    props = box.show("pycache-d.service", "ActiveState", "SubState", "ExecMainPID")
    assert props["ActiveState"] == "active" and props["SubState"] == "running", props
    exe = box.run("readlink", f"/proc/{props['ExecMainPID']}/exe", check=True).stdout.strip()
    assert exe == f"/usr/bin/python{pyver}", exe  # the release's own interpreter

    assert send(box, r"set pkg 0 0 5\r\nhello\r\n") == repr(b"STORED\r\n")
    box.systemctl("restart", "pycache-d.service", timeout=120, check=True)
    assert send(box, r"get pkg\r\n") == repr(b"VALUE pkg 0 5\r\nhello\r\nEND\r\n")

    for cmd in ("pycache-d", "pycache-cli", "pycache-http"):
        assert box.run(cmd, "--version", check=True).stdout.strip() == f"{cmd} 0.1.0"
    # The CLI with its option after the command, as the man page shows it.
    got = box.run("pycache-cli", "get", "pkg", "-s", "127.0.0.1:11211", check=True).stdout
    assert got == "hello\n", got
    copyright_ = box.run("cat", "/usr/share/doc/pycache-d/copyright", check=True).stdout
    assert "License: MIT" in copyright_ and "Permission is hereby granted" in copyright_


def test_socket_unit_enables_as_the_readme_says(box: Container) -> None:
    readme = (ROOT / "README.md").read_text()
    steps = [line.strip() for line in readme.splitlines() if line.strip().startswith("systemctl disable --now pycache-d.service")]
    assert steps == ["systemctl disable --now pycache-d.service && systemctl enable --now pycache-d.socket"], steps
    for step in steps[0].split(" && "):
        box.run(*step.split(), timeout=120, check=True)
    assert box.show("pycache-d.socket", "ActiveState")["ActiveState"] == "active"
    assert box.show("pycache-d.service", "ActiveState")["ActiveState"] == "inactive"
    # The first connection starts the service, which loads the snapshot the stop wrote.
    assert send(box, r"get pkg\r\n") == repr(b"VALUE pkg 0 5\r\nhello\r\nEND\r\n")
    assert box.show("pycache-d.service", "ActiveState")["ActiveState"] == "active"
    box.systemctl("enable", "pycache-http.service", check=True)  # another link the purge must remove


def test_purge_leaves_nothing(box: Container) -> None:
    box.run("dpkg", "--purge", "pycache-d", timeout=300, check=True)
    left = box.run("find", "/etc", "/lib/systemd", "/usr/lib/systemd", "/opt", "/usr/bin", "/usr/share", "/var/lib",
                   "-name", "*pycache*", "-not", "-path", "/var/lib/dpkg/*")  # fmt: skip
    assert left.stdout.split() == [], left.stdout
    assert box.run("dpkg", "-s", "pycache-d").returncode != 0
    units = box.systemctl("list-unit-files", "pycache*", "--no-legend").stdout.split()
    assert units == [], units


def test_taken_port_at_install_is_one_line_and_no_restart_loop(deb: Path, box: Container) -> None:
    holder = (
        "import socket, time; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
        "s.bind(('127.0.0.1', 11211)); s.listen(); time.sleep(3600)"
    )
    box.run("systemd-run", "--unit=holder", "--property=Type=exec", "/usr/bin/python3", "-c", holder, check=True)
    box.run("/usr/bin/python3", "-c", "import socket; socket.create_connection(('127.0.0.1', 11211), timeout=30)",
            timeout=60, check=True)  # fmt: skip
    try:
        r = box.run("dpkg", "-i", f"/tmp/{deb.name}", timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        ours = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(ours) == 1, r.stderr
        assert ours[0].startswith("pycache-d: installed but not started: "), ours
        assert "cannot listen on 127.0.0.1:11211: address already in use" in ours[0], ours
        assert "systemctl start pycache-d.service" in ours[0], ours
        props = box.show("pycache-d.service", "ActiveState", "SubState", "NRestarts")
        assert props["ActiveState"] in ("inactive", "failed") and props["SubState"] != "auto-restart", props
        assert box.systemctl("is-enabled", "pycache-d.service").stdout.strip() == "enabled"
        # Once the port is free, the line's own advice works.
        box.systemctl("stop", "holder", check=True)
        box.systemctl("start", "pycache-d.service", timeout=120, check=True)
        assert send(box, r"version\r\n").startswith("b'VERSION ")
    finally:
        box.systemctl("stop", "holder")
        box.run("dpkg", "--purge", "pycache-d", timeout=300)
