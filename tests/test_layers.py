"""The import graph keeps its shape (ARCHITECTURE.md, "Layers"): no module imports one of a higher layer,
the two model families never import each other, and no two modules import each other in a circle
(imports inside functions count too). Read from the source with `ast`; nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("contracts", "render", "manifests", "training", "viewer", "pipeline")

# Bottom to top; a module belongs to the longest prefix that names it. A module may import modules of its
# own layer or of a lower one.
LAYERS: list[tuple[str, ...]] = [
    ("contracts",),
    ("render",),
    ("manifests",),
    ("training", "training.config", "training.geometry", "training.rng", "training.device", "training.checkpoint",
     "training.ddp", "training.viz"),
    ("training.data",),
    ("training.render",),
    ("training.losses",),
    ("training.models", "training.models.blocks", "training.models.fast"),
    ("training.eval",),
    ("training.models.lrm4d", "training.models.l4gm"),
    ("training.models.registry",),
    ("training.train", "training.evaluate", "training.export"),
    ("training.cli", "training.__main__"),
    ("viewer",),
    ("pipeline",),
]
APART = [("training.models.lrm4d", "training.models.l4gm")]  # siblings that never import each other


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")) if (REPO / pkg).is_dir() else []:
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


def _imports(name: str, path: Path, mods: dict[str, Path]) -> set[str]:
    """Modules of ours that `name` imports anywhere in its file (the longest module prefix of each)."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in mods:
                t = t.rpartition(".")[0]
            if t and t != name and not name.startswith(t + "."):  # a package's own __init__ is no edge
                found.add(t)
    return found


def _layer(name: str) -> int:
    best, best_len = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    assert best >= 0, f"{name}: in no layer of tests/test_layers.py (add it where it belongs)"
    return best


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, mods) for m, p in mods.items()}


def test_no_module_imports_a_higher_layer():
    bad = [f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
           for m, targets in _graph().items() for t in sorted(targets) if _layer(t) > _layer(m)]
    assert not bad, "imports that run up the layers:\n" + "\n".join(bad)


def test_the_model_families_do_not_import_each_other():
    bad = [f"{m} imports {t}" for m, targets in _graph().items() for t in targets for a, b in APART
           if (m.startswith(a) and t.startswith(b)) or (m.startswith(b) and t.startswith(a))]
    assert not bad, "\n".join(bad)


def test_no_import_circles_between_modules():
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, "modules that import each other in a circle: " + "; ".join(" <-> ".join(c) for c in circles)


def test_the_checker_sees_a_forbidden_import(tmp_path, monkeypatch):
    """The test above can fail: an upward import and a circle planted in a copy of two modules are found."""
    mods = _modules()
    low, high = "training.data.views", "training.train"
    planted = {low: "import training.train\n", high: "from training.data import views\n"}
    graph = {m: _imports(m, mods[m], mods) for m in (low, high)}
    for m, src in planted.items():
        f = tmp_path / f"{m}.py"
        f.write_text(src)
        graph[m] |= _imports(m, f, mods)
    assert high in graph[low] and _layer(high) > _layer(low)
    assert low in graph[high]


def test_every_package_is_installed_by_pyproject():
    """`pip install -e .` exposes only the packages pyproject.toml's find includes: a top-level package
    missing there imports in the tests (run from the checkout) but not from the `pipeline` command."""
    import tomllib

    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    tops = sorted(p.parent.name for p in REPO.glob("*/__init__.py") if p.parent.name != "tests")
    assert set(tops) == set(PACKAGES), f"top-level packages {tops} differ from the layer list {PACKAGES}"
    for name in tops:
        assert f"{name}*" in include, f"pyproject.toml [tool.setuptools.packages.find] include lacks {name}*"
