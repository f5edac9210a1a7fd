"""The files in packaging/: systemd units that systemd-analyze accepts and rates safe, the default config.

``systemd-analyze verify`` checks that every ``Exec*=`` binary exists and is executable, and
loads the units' dependencies (sysinit.target, ...). With systemd 252 what works without
installing anything is ``--root=DIR``: DIR holds stub executables at the units' paths
(``/usr/bin/pycache-d``, ``/bin/kill``, ...), a copy of the host's ``/usr/lib/systemd/system``
for the dependencies, and the units under test in ``/etc/systemd/system``; the units are passed
by their path inside DIR. Unknown keys and unparsable values are only warnings (rc stays 0), so
the tests also assert that nothing was printed.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from pycache_d.daemon import config

ROOT = Path(__file__).resolve().parent.parent
UNITS_DIR = ROOT / "packaging" / "systemd"
UNITS = sorted(p.name for p in UNITS_DIR.iterdir() if p.suffix in (".service", ".socket"))
HOST_UNITS = Path("/usr/lib/systemd/system")

#: Most exposure `systemd-analyze security` may rate a unit, times ten (its --threshold unit).
MAX_EXPOSURE = 10

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (package systemd)"
)


def exec_paths(unit: Path) -> list[str]:
    """The absolute binaries a unit's ``Exec*=`` lines run (prefixes like ``-`` or ``!`` dropped)."""
    out = []
    for line in unit.read_text().splitlines():
        m = re.match(r"Exec\w+=[-@:+!]*(/\S+)", line)
        if m:
            out.append(m[1])
    return out


@pytest.fixture(scope="module")
def verify_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root for ``systemd-analyze verify --root``: stub binaries, the host's units, ours."""
    if not HOST_UNITS.is_dir():
        pytest.skip(f"{HOST_UNITS} missing: no systemd units to resolve dependencies against")
    root = tmp_path_factory.mktemp("verify-root")
    shutil.copytree(HOST_UNITS, root / HOST_UNITS.relative_to("/"), symlinks=True)
    ours = root / "etc" / "systemd" / "system"
    shutil.copytree(UNITS_DIR, ours)
    for unit in ours.iterdir():
        for binary in exec_paths(unit):
            stub = root / binary.lstrip("/")
            stub.parent.mkdir(parents=True, exist_ok=True)
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
    return root


def test_every_unit_is_here():
    assert UNITS == ["pycache-d.service", "pycache-d.socket", "pycache-http.service"]
    assert not (ROOT / "packaging" / "__init__.py").exists(), "packaging/ must not shadow PyPI packaging"


def test_exec_paths_parses_the_service():
    # ExecStart=, then ExecReload= twice: the config check, then the SIGHUP.
    paths = exec_paths(UNITS_DIR / "pycache-d.service")
    assert paths == ["/usr/bin/pycache-d", "/usr/bin/pycache-d", "/bin/kill"]


@needs_analyze
@pytest.mark.parametrize("unit", UNITS)
def test_verify_is_clean(verify_root, unit):
    path = verify_root / "etc" / "systemd" / "system" / unit
    r = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={verify_root}", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


@needs_analyze
def test_verify_catches_a_bad_unit(verify_root, tmp_path):
    # The check above must be able to fail: a misspelt key and a missing binary are reported.
    system = verify_root / "etc" / "systemd" / "system"
    bad = system / "pycache-d-bad.service"
    text = (system / "pycache-d.service").read_text()
    bad.write_text(text.replace("Restart=on-failure", "Restart=on-failure\nWatchdogSecs=3"))
    try:
        r = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", f"--root={verify_root}", str(bad)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "Unknown key 'WatchdogSecs'" in r.stderr
        bad.write_text(text.replace("/usr/bin/pycache-d ", "/usr/bin/no-such-daemon "))
        r = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", f"--root={verify_root}", str(bad)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode != 0 and "no-such-daemon" in r.stderr
    finally:
        bad.unlink()


def security(unit: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--threshold={MAX_EXPOSURE}", unit],
        cwd=UNITS_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


@needs_analyze
@pytest.mark.parametrize("unit", ["pycache-d.service", "pycache-http.service"])
def test_security_exposure_at_most_one(unit):
    r = security(unit)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d)", r.stdout)
    assert m, r.stdout
    assert float(m[1]) <= MAX_EXPOSURE / 10, r.stdout


@needs_analyze
def test_security_threshold_can_fail(tmp_path):
    # An unsandboxed service scores far above the threshold, so the check above is meaningful.
    (tmp_path / "bare.service").write_text("[Service]\nExecStart=/bin/true\n")
    r = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--threshold={MAX_EXPOSURE}", "bare.service"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0


def test_service_does_what_the_daemon_expects():
    text = (UNITS_DIR / "pycache-d.service").read_text()
    for line in (
        "Type=notify",
        "ExecStart=/usr/bin/pycache-d --config /etc/pycache-d/pycache-d.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "RuntimeDirectory=pycache-d",
        "RuntimeDirectoryPreserve=yes",
    ):
        assert line in text.splitlines(), line
    assert "PrivateNetwork" not in text  # it serves the network
    socket_unit = (UNITS_DIR / "pycache-d.socket").read_text().splitlines()
    assert "ListenStream=127.0.0.1:11211" in socket_unit
    assert "ListenStream=/run/pycache-d/pycache-d.sock" in socket_unit  # inside RuntimeDirectory=


def test_default_config_documents_every_option_with_its_default():
    text = (ROOT / "packaging" / "pycache-d.toml").read_text()
    assert tomllib.loads(text) == {}, "every option is commented out"
    first: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"#([a-z_]+) = ", line)
        if m:
            first.setdefault(m[1], line[1:])
    assert set(first) == set(config.PARSERS) - {"config"}
    # The first example of each key, uncommented, is a valid file that gives the defaults (the
    # snapshot's default is no setting at all: the file in systemd's StateDirectory=).
    options = tomllib.loads("\n".join(first.values()))
    assert options["snapshot"] == "/var/lib/pycache-d/pycache-d.snapshot"
    default = dataclasses.replace(config.Config(), snapshot=options["snapshot"])
    assert config.validate([("pycache-d.toml", options)]) == default
