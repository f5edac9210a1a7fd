"""Fuzz target: the pure-Python session on the python store (the checks are harness.check_python).

``make fuzz`` runs it; by hand, with any libFuzzer flags and corpus directories::

    PYCACHE_D_NO_EXTENSIONS=1 .venv/bin/python fuzz/fuzz_session.py -dict=fuzz/protocol.dict \\
        -max_len=8192 build/fuzz/corpus/session fuzz/corpus
"""

import sys

import atheris

# Only the daemon's own modules get coverage counters: the fuzzer steers by their branches.
with atheris.instrument_imports(include=["pycache_d"]):
    import harness


def main() -> None:
    atheris.Setup(sys.argv, harness.check_python)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
