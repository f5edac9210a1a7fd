"""One native store shared by threads through its lock (csrc/store_lock.h), checked in C.

tests/c/store_threads.c is built here with the store's own C files and run in check mode: many
threads on a few hot keys (incr, cas, get copied or pinned, set, delete, append), each key's
history then checked (incr totals exact and every reply distinct, one cas winner per version,
no torn or mixed value, every append kept once and in order) along with the store's accounting.
`make test-tsan` runs the same under ThreadSanitizer (TSAN=1 here).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CSRC = sorted(str(c) for c in (ROOT / "csrc").glob("*.c"))  # the store, as setup.py builds it
TSAN = os.environ.get("TSAN") == "1"

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("store_threads") / "store_threads"
    flags = ["-O1", "-g", "-fsanitize=thread"] if TSAN else ["-O2"]
    cmd = ["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread", *flags, f"-I{ROOT / 'csrc'}"]
    cmd += [str(ROOT / "tests/c/store_threads.c"), *CSRC, "-o", str(out)]
    subprocess.run(cmd, check=True)
    return out


@pytest.mark.parametrize("threads", [2, 4, 16])
def test_threads_on_hot_keys_leave_explainable_histories(harness: Path, threads: int) -> None:
    rounds = 5000 if TSAN else 20000
    env = dict(os.environ, TSAN_OPTIONS="halt_on_error=1:exitcode=66")
    cmd = [str(harness), "check", str(threads), str(rounds)]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stdout.startswith(f"ok: {threads} threads x {rounds} rounds")
    assert "WARNING: ThreadSanitizer" not in run.stderr


def test_the_bench_mode_reports_its_figures(harness: Path) -> None:
    cmd = [str(harness), "bench", "2", "1000", "100", "0.2", "1", "0"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    figures = dict(f.split("=") for f in run.stdout.split())
    assert figures["threads"] == "2" and float(figures["ops_per_s"]) > 0 and float(figures["hold_ns"]) > 0


def test_bad_arguments_are_refused(harness: Path) -> None:
    run = subprocess.run([str(harness), "check", "0", "10"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
