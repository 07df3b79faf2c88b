"""The package's imports follow docs/architecture.md: no import reaches up a layer, none crosses
between two parts of one layer, and no chain of imports comes back to where it started.

Imports are read from the source (``ast``), lazy ones inside functions and ``TYPE_CHECKING`` ones
included: a cycle that only bites at run time is still a knot for the reader."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "src" / "microaction"


def read_layers(doc: Path) -> dict[str, int]:
    """``{unit: layer}`` from the numbered list under "## Layers" of the architecture doc."""
    text = doc.read_text(encoding="utf-8")
    m = re.search(r"^## Layers.*?\n(.*?)(?=^## )", text, flags=re.S | re.M)
    if m is None:
        raise AssertionError(f"{doc}: no '## Layers' section")
    layers: dict[str, int] = {}
    for line in m.group(1).splitlines():
        item = re.match(r"^(\d+)\.\s+(.*)$", line)
        if item:
            for unit in re.findall(r"`([a-z_]+)`", item.group(2)):
                layers[unit] = int(item.group(1))
    return layers


def module_names(pkg: Path) -> dict[str, Path]:
    out = {}
    for f in sorted(pkg.rglob("*.py")):
        parts = f.relative_to(pkg.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def import_edges(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """``{module: {imported module: line}}`` for imports of the package's own modules."""
    edges: dict[str, dict[str, int]] = {m: {} for m in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    pkg = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    pkg = pkg[: len(pkg) - node.level + 1]
                    base = ".".join(pkg + ([base] if base else []))
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for t in targets:
                if t in modules and t != name:
                    edges[name].setdefault(t, node.lineno)
    return edges


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def find_cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(edges[w])))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on_stack.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    cycles.append(sorted(comp))
    return cycles


def layer_violations(edges: dict[str, dict[str, int]], layers: dict[str, int], modules: dict[str, Path]) -> list[str]:
    bad = []
    for src, targets in edges.items():
        su = unit_of(src)
        for dst, line in targets.items():
            du = unit_of(dst)
            if su == du or du == "microaction":
                continue
            where = f"{modules[src]}:{line}: {src} imports {dst}"
            if layers[du] > layers[su]:
                bad.append(f"{where} (layer {layers[su]} reaches up to layer {layers[du]})")
            elif layers[du] == layers[su]:
                bad.append(f"{where} ({su} and {du} share layer {layers[su]})")
    return bad


def test_every_unit_has_a_layer() -> None:
    layers = read_layers(REPO / "docs" / "architecture.md")
    units = {unit_of(m) for m in module_names(PKG)}
    assert units <= set(layers), f"not in docs/architecture.md's layers: {sorted(units - set(layers))}"


def test_no_import_reaches_up_or_across() -> None:
    modules = module_names(PKG)
    bad = layer_violations(import_edges(modules), read_layers(REPO / "docs" / "architecture.md"), modules)
    assert not bad, "\n".join(bad)


def test_no_import_cycle() -> None:
    cycles = find_cycles(import_edges(module_names(PKG)))
    assert not cycles, cycles


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / "microaction" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / "microaction"


def test_checks_catch_a_cycle_and_an_upward_import(tmp_path: Path) -> None:
    pkg = _write(
        tmp_path,
        {
            "__init__.py": "",
            "data/__init__.py": "",
            "data/a.py": "def f():\n    from microaction.data.b import g\n",
            "data/b.py": "from microaction.data import a\nfrom microaction.models.net import Net\n",
            "models/__init__.py": "",
            "models/net.py": "from .. import data\n\nclass Net: ...\n",
        },
    )
    modules = module_names(pkg)
    edges = import_edges(modules)
    assert edges["microaction.models.net"] == {"microaction.data": 1}  # relative import resolved
    assert find_cycles(edges) == [["microaction.data.a", "microaction.data.b"]]
    bad = layer_violations(edges, {"data": 2, "models": 3}, modules)
    assert len(bad) == 1 and "microaction.data.b imports microaction.models.net" in bad[0]
    assert "reaches up" in bad[0]
    bad = layer_violations(edges, {"data": 3, "models": 3}, modules)
    assert len(bad) == 2 and all("share layer 3" in b for b in bad)


@pytest.mark.parametrize("section", ["", "## Layers\n\n1. `data`\n2. `models`\n\n## Next\n"])
def test_read_layers(tmp_path: Path, section: str) -> None:
    doc = tmp_path / "arch.md"
    doc.write_text("# Doc\n\n" + section)
    if not section:
        with pytest.raises(AssertionError, match="no '## Layers' section"):
            read_layers(doc)
    else:
        assert read_layers(doc) == {"data": 1, "models": 2}
