"""Fixtures shared by the whole suite: the store backends and a clock the tests control."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest

from pycache_d.store import BACKENDS


class FakeClock:
    """A store clock that only moves when a test says so."""

    def __init__(self, now: int = 1_700_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: int) -> None:
        self.now += seconds


BACKEND_NAMES = ["native", "python"]


def backend_class(name: str):
    """Return the store class for ``name``, skipping the test if it is not built here."""
    if name not in BACKENDS:
        if os.environ.get("PYCACHE_D_NO_EXTENSIONS"):
            pytest.skip("native backend disabled by PYCACHE_D_NO_EXTENSIONS")
        pytest.fail("native backend is not built (run make venv)")
    return BACKENDS[name]


@pytest.fixture(params=BACKEND_NAMES)
def backend(request) -> str:
    """The name of each store backend in turn (test ids say which ran)."""
    return request.param


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store_cls(backend):
    return backend_class(backend)


@pytest.fixture
def make_store(store_cls, clock):
    """Build a store of the current backend on the fake clock: ``make_store(max_bytes=...)``."""

    def make(max_bytes: int = 64 * 1024 * 1024, **kwargs):
        kwargs.setdefault("clock", clock)
        return store_cls(max_bytes, **kwargs)

    return make


@pytest.fixture
def store(make_store):
    return make_store()


@contextlib.contextmanager
def mount_tmpfs(mnt: Path, size: str):
    """Mount a tmpfs of ``size`` (``64k``, ``2m``) at the new directory ``mnt`` for a test.

    Skips the test unless we may mount (root: chmod cannot stop root writing, so a real small
    or read-only filesystem is the only honest way to make writes fail).
    """
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    argv = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)]
    rc = subprocess.run(argv, capture_output=True)
    if rc.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {rc.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.fixture
def tiny_tmpfs(tmp_path: Path):
    """A 64 KiB tmpfs mounted for the test, to fill up for real (skips unless we may mount)."""
    with mount_tmpfs(tmp_path / "tiny", "64k") as mnt:
        yield mnt
