"""Fail loudly when the compiled backend silently fell back to Python."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pycache_d
from pycache_d import store

pytestmark = pytest.mark.asan


@pytest.mark.skipif(bool(os.environ.get("PYCACHE_D_NO_EXTENSIONS")), reason="extensions disabled on purpose")
def test_native_backend_is_the_default():
    assert store.NativeStore is not None, (
        "pycache_d.store._native did not import: the build fell back to Python"
    )
    assert pycache_d.Store is store.NativeStore
    assert pycache_d.Store().backend == "native"
    assert store.store_class("auto") is store.NativeStore


def test_native_comes_from_the_expected_build():
    """Under make test-asan the sanitizer build must be the one tested, not the in-place one."""
    expected = os.environ.get("PYCACHE_D_EXPECT_NATIVE_FROM")
    if not expected:
        pytest.skip("no PYCACHE_D_EXPECT_NATIVE_FROM set (only make test-asan sets it)")
    from pycache_d.store import _native

    assert Path(_native.__file__).resolve().is_relative_to(Path(expected).resolve())


def test_no_extensions_switch_selects_python():
    code = "import pycache_d; print(pycache_d.Store.__module__, sorted(pycache_d.BACKENDS))"
    env = dict(os.environ, PYCACHE_D_NO_EXTENSIONS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["pycache_d.store._pystore", "['python']"]


def test_unknown_or_missing_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown backend"):
        store.store_class("rust")
    assert store.store_class("python") is store.PyStore


@pytest.mark.skipif(bool(os.environ.get("PYCACHE_D_NO_EXTENSIONS")), reason="extensions disabled on purpose")
def test_native_store_gets_the_compiled_session():
    from pycache_d import protocol

    assert protocol.NativeSession is not None, "pycache_d.protocol._csession did not import"
    assert type(protocol.new_session(store.NativeStore())).__name__ == "NativeSession"
    assert type(protocol.new_session(store.PyStore())).__name__ == "Session"


@pytest.mark.skipif(bool(os.environ.get("PYCACHE_D_NO_EXTENSIONS")), reason="extensions disabled on purpose")
def test_connections_use_the_compiled_hot_path():
    from pycache_d.net import connection

    assert connection.ConnectionBase.__module__ == "pycache_d.net._cconnection", (
        "the build fell back to Python"
    )


@pytest.mark.skipif(bool(os.environ.get("PYCACHE_D_NO_EXTENSIONS")), reason="extensions disabled on purpose")
def test_plain_sockets_use_the_compiled_driver():
    if os.environ.get("PYCACHE_D_STREAMS") == "uvloop":
        pytest.skip("PYCACHE_D_STREAMS=uvloop asks for the loop's transports")
    from pycache_d.net import streams

    assert streams.Poller is not None, (
        "pycache_d.net._cstream did not import: the build fell back to uvloop's transports"
    )
    assert streams.Poller.__module__ == "pycache_d.net._cstream"


def test_streams_switch_selects_the_loops_transports():
    code = "from pycache_d.net import streams; print(streams.Poller)"
    for env in ({"PYCACHE_D_STREAMS": "uvloop"}, {"PYCACHE_D_NO_EXTENSIONS": "1"}):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == "None", env
