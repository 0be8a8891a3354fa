"""The import graph of wulff/ points one way: each module imports only its own layer or lower ones,
and no module imports itself back through others (docs/design.md, "Layers").

Imports are read from the source (every ``import`` / ``from ... import``, at any depth, lazy ones
included), so a function-level import cannot hide an upward arrow.
"""
from __future__ import annotations

import ast
from pathlib import Path

import wulff

ROOT = Path(wulff.__file__).parent

#: layer of each top-level part of the package, from the bottom up
LAYERS = {
    "errors": 0, "catalog": 0, "expressions": 0, "special": 0, "cache": 0, "progress": 0, "locking": 0,
    "distributions": 1, "splitting": 1,
    "certificate": 2,
    "diffmethod": 3, "levelset": 3, "uniform": 3,
    "selector": 4, "smoothing": 4,
    "certify": 5, "train": 5, "advisor": 5, "experiment": 5,
    "cli": 6, "__main__": 6,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The wulff modules a file imports (absolute names): ``from pkg import name`` counts as an import
    of the submodule pkg.name when there is one, else of pkg."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    return {m for m in found if m == "wulff" or m.startswith("wulff.")}


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in ROOT.rglob("*.py")}
    return {name: {m for m in imported_modules(path, set(files)) if m in files and m != name}
            for name, path in files.items()}


def layer(module: str) -> int:
    part = module.split(".")[1] if "." in module else "__init__"
    return LAYERS.get(part, 99 if part == "__init__" else -1)


def test_every_part_has_a_layer():
    unknown = {m for m in graph() if layer(m) == -1}
    assert not unknown, f"modules outside the declared layers: {sorted(unknown)}"


def test_no_upward_import():
    upward = [(m, n) for m, targets in graph().items() for n in targets
              if m != "wulff" and layer(n) > layer(m)]
    assert not upward, "upward imports (module -> imported): " + ", ".join(f"{m} -> {n}" for m, n in upward)


def test_no_import_cycle():
    edges = graph()
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])


def test_every_declared_layer_exists():
    parts = {path.relative_to(ROOT).parts[0].removesuffix(".py") for path in ROOT.rglob("*.py")}
    stale = sorted(set(LAYERS) - parts)
    assert not stale, f"layers declared for parts that do not exist: {stale}"


def test_train_and_certify_do_not_import_each_other():
    """What both need (the noisy forward pass, the soft smoothed classifier, PGD) lives below them in
    wulff.smoothing; training never reaches into certification for it."""
    crossing = [(m, n) for m, targets in graph().items() for n in targets
                if m.startswith("wulff.train") and n.startswith("wulff.certify")]
    assert not crossing, "train -> certify imports: " + ", ".join(f"{m} -> {n}" for m, n in crossing)
