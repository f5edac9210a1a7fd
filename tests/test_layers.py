"""Imports go down the layers only, and no module of ours imports itself back through others.

The layers, bottom up (the package docstring and the README's Layout say what each owns):

* base: ``pycache_d/log.py`` and ``pycache_d/_version.py``, which import nothing of ours;
* ``store``, then ``protocol``, then ``net``, then ``daemon``;
* the entry points, ``pycache_d/__init__.py`` and ``pycache_d/__main__.py``, which may import
  anything (the package's public names, ``python -m pycache_d``).

A module may import its own layer and the ones below. Every import counts: module level,
inside functions, under ``TYPE_CHECKING``, and the ``import``/``cimport`` lines of the Cython
sources, so a type-only or compiled circle fails here as a runtime one would.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pycache_d"
LAYERS = ("base", "store", "protocol", "net", "daemon", "entry")
RANK = {name: i for i, name in enumerate(LAYERS)}

# `from X import a, b` / `from X cimport a` / `import X` / `cimport X` in a .pyx or .pxd file.
_CY_FROM = re.compile(r"^\s*from\s+(\.*[\w.]*)\s+c?import\s+(.+?)\s*$")
_CY_IMPORT = re.compile(r"^\s*c?import\s+([\w.]+(?:\s*,\s*[\w.]+)*)\s*$")


def module_name(path: Path) -> str:
    """``pycache_d/store/_native.pyx`` -> ``pycache_d.store._native``; a package is its ``__init__``."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1 or parts[1] == "__main__":
        return "entry"
    return parts[1] if parts[1] in RANK else "base"


def sources() -> list[tuple[str, Path]]:
    """Every source file of the package with its module's name (a .pyx and its .pxd are one module)."""
    return [
        (module_name(path), path)
        for path in sorted(PACKAGE.rglob("*"))
        if path.suffix in (".py", ".pyx", ".pxd") and "__pycache__" not in path.parts
    ]


def _resolve(importer: str, is_package: bool, target: str) -> str:
    """The absolute name of ``target`` (``..store``, ``.wire``, ``pycache_d.log``) seen from ``importer``."""
    level = len(target) - len(target.lstrip("."))
    if not level:
        return target
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    rest = target[level:]
    return ".".join(base + ([rest] if rest else []))


def _ours(name: str, modules: set[str]) -> str | None:
    """The module of ours ``name`` is (``pycache_d.store.errors.Result`` -> ``pycache_d.store.errors``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: set[str]) -> set[str]:
    """The modules of ours that ``path`` imports (``from pkg import mod`` names the module)."""
    is_package = path.stem == "__init__"
    pairs: list[tuple[str, list[str]]] = []  # (module imported from, names imported)
    if path.suffix == ".py":
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                pairs.append(("." * node.level + (node.module or ""), [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                pairs += [(a.name, []) for a in node.names]
    else:
        for line in path.read_text().splitlines():
            if m := _CY_FROM.match(line):
                names = [n.split(" as ")[0].strip(" ()") for n in m.group(2).split(",")]
                pairs.append((m.group(1), names))
            elif m := _CY_IMPORT.match(line):
                pairs += [(name.strip(), []) for name in m.group(1).split(",")]
    found = set()
    for target, names in pairs:
        absolute = _resolve(module, is_package, target)
        if not absolute.startswith("pycache_d"):
            continue
        # `from pycache_d.daemon import snapshot` imports the module daemon.snapshot.
        for name in names or [""]:
            hit = _ours(f"{absolute}.{name}" if name else absolute, modules)
            if hit is not None and hit != module:
                found.add(hit)
    return found


def graph() -> dict[str, set[str]]:
    """Module -> the modules of ours it imports."""
    files = sources()
    modules = {name for name, _ in files}
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in files:
        edges[name] |= imports_of(name, path, modules)
    return edges


def upward(edges: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{a} ({layer_of(a)}) imports {b} ({layer_of(b)})"
        for a, targets in edges.items()
        for b in targets
        if RANK[layer_of(b)] > RANK[layer_of(a)]
    )


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, each once, as the path that closes it."""
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                loop = path[path.index(nxt) :] + [nxt]
                if frozenset(loop) not in seen:
                    seen.add(frozenset(loop))
                    found.append(loop)
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    return found


def test_every_module_is_read() -> None:
    edges = graph()
    # Enough to know the walk found the tree and its edges (a parser that reads nothing passes
    # every other check here).
    for module in (
        "pycache_d.store._native",
        "pycache_d.protocol._csession",
        "pycache_d.net._cstream",
        "pycache_d.daemon.server",
    ):
        assert module in edges, sorted(edges)
    assert "pycache_d.store._native" in edges["pycache_d.protocol._csession"]  # a cimport
    assert "pycache_d.protocol.session" in edges["pycache_d.net._cconnection"]  # a .pyx import
    assert "pycache_d.daemon.snapshot" in edges["pycache_d.daemon.main"]  # `from . import snapshot`
    assert "pycache_d.store.errors" in edges["pycache_d.protocol.meta"]  # `from ..store.errors`
    assert {layer_of(m) for m in edges} == set(LAYERS)


def test_imports_go_down_the_layers_only() -> None:
    assert upward(graph()) == []


def test_no_import_circles() -> None:
    assert cycles(graph()) == []


@pytest.mark.parametrize(
    ("edges", "up", "circles"),
    [
        ({"pycache_d.store.x": {"pycache_d.net.y"}, "pycache_d.net.y": set()}, 1, 0),
        (
            {
                "pycache_d.protocol.a": {"pycache_d.protocol.b"},
                "pycache_d.protocol.b": {"pycache_d.protocol.a"},
            },
            0,
            1,
        ),
        ({"pycache_d.log": {"pycache_d.store"}, "pycache_d.store": {"pycache_d.log"}}, 1, 1),
        ({"pycache_d": {"pycache_d.daemon.main"}, "pycache_d.daemon.main": {"pycache_d.store"}}, 0, 0),
    ],
)
def test_the_checks_catch_what_they_are_for(edges: dict[str, set[str]], up: int, circles: int) -> None:
    assert len(upward(edges)) == up
    assert len(cycles(edges)) == circles


def test_each_layer_says_what_it_owns_and_may_import() -> None:
    for layer in ("store", "protocol", "net", "daemon"):
        doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text()))
        assert doc and doc.startswith(f"The {layer} layer:"), layer
        assert "import" in doc, layer
