"""Build the native extension; everything else is declared in pyproject.toml.

Build switches (environment variables, read here):
  PYCACHE_D_NO_EXTENSIONS=1  build no extension: the pure-Python backend only
  PYCACHE_D_DEBUG=1          -O0 -g and Cython line tracing
  PYCACHE_D_SANITIZE=1       AddressSanitizer and UndefinedBehaviorSanitizer
  PYCACHE_D_ANNOTATE=1       write Cython's HTML annotation beside each .pyx

Without a working C compiler (none installed, CC=/nonexistent/cc) the build says so in one
warning and installs the pure-Python backend: the daemon then runs with ``backend python``.
"""

import os
import sys
from pathlib import Path

from setuptools import Extension, setup


def flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def compiler_works() -> bool:
    """Compile and link a tiny C file with the compiler the build would use (CC, LDSHARED...)."""
    import tempfile

    from setuptools._distutils import sysconfig as dsysconfig
    from setuptools._distutils.ccompiler import new_compiler
    from setuptools._distutils.errors import CCompilerError, DistutilsError

    compiler = new_compiler()
    dsysconfig.customize_compiler(compiler)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text("int probe(void) { return 0; }\n")
        try:
            objects = compiler.compile([str(src)], output_dir=tmp)
            compiler.link_shared_object(objects, str(Path(tmp) / "probe.so"))
        except (CCompilerError, DistutilsError, OSError):
            return False
    return True


NO_EXTENSIONS = flag("PYCACHE_D_NO_EXTENSIONS") or sys.implementation.name != "cpython"
# NOTE: only for builds that would compile (not sdist, egg_info...): a probe before setup()
# rather than a failed build_ext halfway, so nothing half-built is installed.
BUILDS = {"build", "build_ext", "build_clib", "bdist_wheel", "install", "develop", "editable_wheel"}
if not NO_EXTENSIONS and BUILDS & set(sys.argv[1:]) and not compiler_works():
    print(
        f"WARNING: pycache-d: no working C compiler (CC={os.environ.get('CC', 'cc')}): installing the "
        "pure-Python backend only (slower; for the native one install gcc and python3-dev, then reinstall "
        "with pip's --no-cache-dir)",
        file=sys.stderr,
    )
    NO_EXTENSIONS = True
DEBUG = flag("PYCACHE_D_DEBUG")
SANITIZE = flag("PYCACHE_D_SANITIZE")
ANNOTATE = flag("PYCACHE_D_ANNOTATE")

CSRC = ["csrc/siphash.c", "csrc/slabs.c", "csrc/assoc.c", "csrc/expiry.c", "csrc/store.c"]
HEADERS = sorted(str(p) for p in Path("csrc").glob("*.h"))

# Our own C is held to -Werror; Cython's generated C only to the defaults.
opt = ["-O0", "-g"] if DEBUG else ["-O2"]
san = (
    ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
    if SANITIZE
    else []
)
own_cflags = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-fPIC", "-fvisibility=hidden", *opt, *san]
macros = [("CYTHON_TRACE_NOGIL", "1")] if DEBUG else []


def extensions() -> list:
    if NO_EXTENSIONS:
        return []
    from Cython.Build import cythonize

    def extension(name: str, libraries: list[str]) -> Extension:
        # Every module reads the C structs (the connection through the compiled session's),
        # so every one includes csrc/ and is rebuilt when a header changes. ``name`` is dotted
        # below pycache_d (``store._native``): each extension lives in its layer's package.
        return Extension(
            f"pycache_d.{name}",
            sources=[f"pycache_d/{name.replace('.', '/')}.pyx"],
            include_dirs=["csrc"],
            libraries=libraries,
            # NOTE: the C sources too, for the modules linking the store's static library: a
            # change to csrc/*.c must relink them, not only rebuild the library.
            depends=HEADERS + (CSRC if libraries else []),
            extra_compile_args=[*opt, *san],
            extra_link_args=san,
            define_macros=macros,
        )

    modules = [
        extension("store._native", ["pycache_store"]),
        extension("protocol._csession", ["pycache_store"]),
        extension("net._cconnection", []),
        extension("net._cstream", []),
    ]
    directives = {"language_level": "3", "embedsignature": True}
    if DEBUG:
        directives["linetrace"] = True
    return cythonize(modules, compiler_directives=directives, annotate=ANNOTATE)


setup(
    # The man page lands in <prefix>/share/man/man1 (packaging/manpage.py writes it from the parser).
    data_files=[("share/man/man1", ["packaging/man/pycache-d.1"])],
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
