"""Fuzz target: the compiled session on the native store, differential against the Python one.

The checks are harness.check_differential. The extension must come from the clang build that
``make fuzz`` makes in build/fuzz (ASan + UBSan + libFuzzer's coverage counters), run with the
ASan runtime that has libFuzzer linked in preloaded, so the C and Cython code's coverage reaches
the fuzzer (fuzz/README.md). By hand::

    cd build/fuzz && PYTHONPATH=$PWD/lib PYTHONMALLOC=malloc LD_PRELOAD=$PWD/asan_with_fuzzer.so \\
        ASAN_OPTIONS=detect_leaks=0 ../../.venv/bin/python ../../fuzz/fuzz_native.py \\
        -dict=../../fuzz/protocol.dict -max_len=8192 corpus/native ../../fuzz/corpus
"""

import os
import sys

import atheris

with atheris.instrument_imports(include=["pycache_d"]):
    import harness

    import pycache_d.store._native
    from pycache_d.protocol import NativeSession


def check(data: bytes) -> None:
    harness.check_differential(data, NativeSession)


def main() -> None:
    if NativeSession is None:
        sys.exit("fuzz_native: the compiled session is not built (see fuzz/README.md)")
    # Like PYCACHE_D_EXPECT_NATIVE_FROM in make test-asan: fail rather than fuzz the wrong build.
    expected = os.environ.get("PYCACHE_D_EXPECT_NATIVE_FROM")
    if expected and not pycache_d.store._native.__file__.startswith(expected):
        sys.exit(f"fuzz_native: loaded {pycache_d.store._native.__file__}, expected a build under {expected}")
    atheris.Setup(sys.argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
