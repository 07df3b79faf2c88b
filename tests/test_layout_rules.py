"""The house rules of docs/architecture.md that a reader can check by eye, checked for them: one
meaning per public name (no top-level function or class of one name in two modules of src/), no
file over 600 lines, no function over 100 lines."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "src" / "microaction"

MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 100
# the subcommand protocol (``commands/<name>.py``: ``add_arguments`` and ``run``) and entry points
PROTOCOL = {"add_arguments", "run", "main"}


def _files() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def _rel(f: Path) -> str:
    return f.relative_to(PKG).as_posix() if f.is_relative_to(PKG) else f.name


def public_names(files: list[Path]) -> dict[str, list[str]]:
    """``{name: [module file, ...]}`` for every public top-level function and class."""
    where: dict[str, list[str]] = defaultdict(list)
    for f in files:
        for node in ast.parse(f.read_text(encoding="utf-8")).body:
            is_def = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            if is_def and not node.name.startswith("_") and node.name not in PROTOCOL:
                where[node.name].append(_rel(f))
    return where


def long_functions(f: Path) -> list[tuple[str, int]]:
    """``[(qualname, lines)]`` of the functions (methods and nested ones included) over the limit."""
    out: list[tuple[str, int]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    lines = (child.end_lineno or child.lineno) - child.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        out.append((name, lines))
                walk(child, name + ".")
            else:
                walk(child, prefix)

    walk(ast.parse(f.read_text(encoding="utf-8")), "")
    return out


def test_one_module_per_public_name() -> None:
    twice = {n: fs for n, fs in public_names(_files()).items() if len(fs) > 1}
    assert not twice, "public names defined in more than one module (give each meaning its own name):\n" + "\n".join(
        f"  {n}: {', '.join(fs)}" for n, fs in sorted(twice.items())
    )


def test_no_file_over_the_limit() -> None:
    over = []
    for f in _files():
        n = len(f.read_text(encoding="utf-8").splitlines())
        if n > MAX_FILE_LINES:
            over.append(f"  {_rel(f)}: {n} lines")
    assert not over, f"files over {MAX_FILE_LINES} lines (split them):\n" + "\n".join(over)


def test_no_function_over_the_limit() -> None:
    over = []
    for f in _files():
        over.extend(f"  {_rel(f)}: {name} ({n} lines)" for name, n in long_functions(f))
    assert not over, f"functions over {MAX_FUNCTION_LINES} lines (split into named steps):\n" + "\n".join(over)


def test_the_checks_see_what_they_check(tmp_path: Path) -> None:
    """The readers above find a name defined twice and a long function (so a green run means something)."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    a.write_text(f"class Same:\n    def long(self):\n{body}\n\ndef run(): pass\n")
    b.write_text("def Same(): pass\ndef _private(): pass\ndef run(): pass\n")
    assert {n: fs for n, fs in public_names([a, b]).items() if len(fs) > 1} == {"Same": ["a.py", "b.py"]}
    assert long_functions(a) == [("Same.long", MAX_FUNCTION_LINES + 1)]
