"""Build the native extension; everything else is declared in pyproject.toml.

Build switches (environment variables, read here):
  PYCACHE_D_NO_EXTENSIONS=1  build no extension: the pure-Python backend only
  PYCACHE_D_DEBUG=1          -O0 -g and Cython line tracing
  PYCACHE_D_SANITIZE=1       AddressSanitizer and UndefinedBehaviorSanitizer
  PYCACHE_D_ANNOTATE=1       write Cython's HTML annotation beside each .pyx
"""

import os
import sys
from pathlib import Path

from setuptools import Extension, setup


def flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


NO_EXTENSIONS = flag("PYCACHE_D_NO_EXTENSIONS") or sys.implementation.name != "cpython"
DEBUG = flag("PYCACHE_D_DEBUG")
SANITIZE = flag("PYCACHE_D_SANITIZE")
ANNOTATE = flag("PYCACHE_D_ANNOTATE")

CSRC = ["csrc/siphash.c", "csrc/slabs.c", "csrc/assoc.c", "csrc/expiry.c", "csrc/store.c"]
HEADERS = sorted(str(p) for p in Path("csrc").glob("*.h"))

# Our own C is held to -Werror; Cython's generated C only to the defaults.
opt = ["-O0", "-g"] if DEBUG else ["-O2"]
san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"] if SANITIZE else []
own_cflags = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-fPIC", "-fvisibility=hidden", *opt, *san]
macros = [("CYTHON_TRACE_NOGIL", "1")] if DEBUG else []


def extensions() -> list:
    if NO_EXTENSIONS:
        return []
    from Cython.Build import cythonize

    native = Extension(
        "pycache_d._native",
        sources=["pycache_d/_native.pyx"],
        include_dirs=["csrc"],
        libraries=["pycache_store"],
        depends=HEADERS,
        extra_compile_args=[*opt, *san],
        extra_link_args=san,
        define_macros=macros,
    )
    session = Extension(
        "pycache_d._csession",
        sources=["pycache_d/_csession.pyx"],
        include_dirs=["csrc"],
        libraries=["pycache_store"],
        depends=HEADERS,
        extra_compile_args=[*opt, *san],
        extra_link_args=san,
        define_macros=macros,
    )
    connection = Extension(
        "pycache_d._cconnection",
        sources=["pycache_d/_cconnection.pyx"],
        include_dirs=["csrc"],  # it calls the compiled session, whose fields are C structs
        depends=HEADERS,
        extra_compile_args=[*opt, *san],
        extra_link_args=san,
        define_macros=macros,
    )
    directives = {"language_level": "3", "embedsignature": True}
    if DEBUG:
        directives["linetrace"] = True
    return cythonize([native, session, connection], compiler_directives=directives, annotate=ANNOTATE)


setup(
    ext_modules=extensions(),
    libraries=[]
    if NO_EXTENSIONS
    else [
        (
            "pycache_store",
            # obj_deps: a changed header rebuilds every object (the extensions read the same
            # structs; a stale object would disagree with them about the layout).
            {"sources": CSRC, "include_dirs": ["csrc"], "cflags": own_cflags, "obj_deps": {"": HEADERS}},
        )
    ],
)
