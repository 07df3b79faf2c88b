"""The docs name only what exists: README.md and docs/*.md are read (code spans, shell code blocks
and links), and every file path, config, benchmark script, ``python -m`` module, ``make`` target,
``mar`` subcommand and ``--flag`` they name is looked up in the repository and in the CLI's own
argparse parsers. ``test_the_check_can_fail`` feeds it a snippet with one mistake of each kind."""

from __future__ import annotations

import argparse
import functools
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_SKIP_DIRS = {".git", ".venv", "runs", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "node_modules"}
_SHELL_FENCES = {"", "bash", "sh", "shell", "console"}
_PLACEHOLDER = re.compile(r"[<>*…]|\.\.\.|\$|^[A-Z][A-Z0-9_]*(/|$)|/[A-Z][A-Z0-9_]*(/|$)")
_FLAG = re.compile(r"^--[A-Za-z][\w-]*")
_ADD_ARG = re.compile(r"""add_argument\(\s*((?:["'][^"']+["']\s*,\s*)+)""")


# -- what exists ------------------------------------------------------------------------------
@functools.cache
def repo_files() -> tuple[str, ...]:
    out = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        out += [(Path(root) / f).relative_to(REPO).as_posix() for f in files]
    return tuple(sorted(out))


def path_exists(token: str, doc_dir: Path) -> bool:
    """A repository path as docs write it: from the root, relative to the doc, or a tail of a
    path (``extract/skeleton.py``, ``motions.py``) that names one file of the repository."""
    t = token.strip("/")
    if (REPO / t).exists() or (doc_dir / token).exists():
        return True
    if t.startswith("../shared/"):
        return (REPO / t).exists()
    return any(f == t or f.endswith("/" + t) for f in repo_files())


def flags_of_source(path: Path) -> set[str]:
    """The ``--flags`` a script declares with ``add_argument`` (read, never run)."""
    text = path.read_text(encoding="utf-8")
    flags = set()
    for m in _ADD_ARG.finditer(text):
        flags |= {f for f in re.findall(r"""["']([^"']+)["']""", m.group(1)) if f.startswith("--")}
    return flags | {"--help"}


@functools.cache
def mar_parsers() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every ``mar`` parser by its command path: (), ("extract",), ("face", "train"), ..."""
    from microaction.cli import build_parser

    out: dict[tuple[str, ...], argparse.ArgumentParser] = {}

    def walk(p: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        out[path] = p
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    walk(sub, (*path, name))

    walk(build_parser(), ())
    return out


def options(p: argparse.ArgumentParser) -> set[str]:
    return {s for a in p._actions for s in a.option_strings}


@functools.cache
def all_flags() -> frozenset[str]:
    """Flags any ``mar`` parser, benchmark script or CLI module declares (for a flag named alone)."""
    flags = set().union(*(options(p) for p in mar_parsers().values()))
    for f in repo_files():
        if f.endswith(".py") and (f.startswith("benchmarks/") or f.startswith("src/")):
            flags |= flags_of_source(REPO / f)
    return frozenset(flags)


@functools.cache
def make_targets() -> frozenset[str]:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return frozenset(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, flags=re.M))


# -- reading the docs -------------------------------------------------------------------------
@dataclass
class Snippets:
    shell: list[tuple[int, str]] = field(default_factory=list)  # (line, command line)
    spans: list[tuple[int, str]] = field(default_factory=list)  # (line, inline code)
    links: list[tuple[int, str]] = field(default_factory=list)  # (line, relative link target)


def snippets(text: str) -> Snippets:
    out = Snippets()
    fence: str | None = None
    pending = ""
    for n, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip().lower()
            continue
        if fence is not None:
            if fence in _SHELL_FENCES:
                body = re.sub(r"(^|\s)#.*$", "", line).rstrip()
                if body.endswith("\\"):
                    pending += body[:-1] + " "
                    continue
                out.shell.append((n, pending + body))
                pending = ""
            continue
        for m in re.finditer(r"`([^`]+)`", line):
            out.spans.append((n, m.group(1)))
        for m in re.finditer(r"\]\(([^)\s]+)\)", line):
            target = m.group(1).split("#", 1)[0]
            if target and not re.match(r"^[a-z]+:", target):
                out.links.append((n, target))
    return out


def _expand_braces(token: str) -> list[str]:
    m = re.search(r"\{([^{}]*,[^{}]*)\}", token)
    if not m:
        return [token]
    return [x for alt in m.group(1).split(",") for x in _expand_braces(token[: m.start()] + alt + token[m.end() :])]


def _tokens(text: str) -> list[str]:
    try:
        return shlex.split(text, comments=False)
    except ValueError:
        return text.split()


def _segments(text: str) -> list[list[str]]:
    """Shell segments (split at ``&&``, ``||``, ``|``, ``;``), brackets of usage lines dropped."""
    segs: list[list[str]] = [[]]
    for t in _tokens(text):
        if t in ("&&", "||", "|", ";"):
            segs.append([])
            continue
        segs[-1].extend(x for x in re.split(r"[\[\]]", t) if x)
    return [s for s in segs if s]


def _is_path_like(tok: str) -> bool:
    if _PLACEHOLDER.search(tok) or "=" in tok or tok.startswith(("-", "/", "~", "runs/")) or "(" in tok:
        return False  # placeholders, options, absolute paths and run outputs are no repository files
    if tok.startswith(("configs/", "docs/", "benchmarks/", "src/", "tests/", "../shared/")):
        return True
    return bool(re.fullmatch(r"[\w./-]+\.(py|md)", tok)) and not tok.startswith(("http", "www."))


def check_path_token(tok: str, doc_dir: Path) -> str | None:
    tok = tok.rstrip(".,:;")
    if not _is_path_like(tok):
        return None
    for t in _expand_braces(tok):
        if "*" in t or "?" in t:
            if not any(REPO.glob(t)):
                return f"{t}: no file matches"
        elif not path_exists(t, doc_dir):
            return f"{t}: no such file in the repository"
    return None


def check_command(seg: list[str], doc_dir: Path) -> list[str]:
    """Errors in one shell segment: a ``mar`` command, ``python -m``, a benchmark script, ``make``."""
    errors: list[str] = []
    i = 0
    while i < len(seg) and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", seg[i]):
        i += 1  # environment assignments
    words = seg[i:]
    if not words:
        return errors
    rest: list[str] | None = None
    if words[0] == "mar":
        rest = words[1:]
    elif words[0] in ("python", "python3", "torchrun") and "-m" in words:
        j = words.index("-m")
        module = words[j + 1] if j + 1 < len(words) else ""
        if module == "microaction.cli":
            rest = words[j + 2 :]
        elif module.startswith("microaction."):
            src = REPO / "src" / (module.replace(".", "/") + ".py")
            if not src.is_file():
                return [f"python -m {module}: no such module in src/"]
            return [
                f"python -m {module} {f}: no such option"
                for f in _flags(words[j + 2 :])
                if f not in flags_of_source(src)
            ]
        return errors
    elif words[0] == "make":
        return [
            f"make {t}: no such Makefile target"
            for t in words[1:2]
            if not t.startswith("-") and t not in make_targets()
        ]
    script = next((w for w in words[:2] if w.endswith(".py") and w.startswith(("benchmarks/", "bench_"))), None)
    if script is not None and rest is None:
        matches = [f for f in repo_files() if f == script or f.endswith("/" + script)]
        if matches:
            flags = flags_of_source(REPO / matches[0])
            errors += [
                f"{script} {f}: no such option" for f in _flags(words[words.index(script) + 1 :]) if f not in flags
            ]
        return errors
    if rest is None:
        return errors
    return errors + check_mar(rest)


def _flags(words: list[str]) -> list[str]:
    return [m.group(0) for w in words if (m := _FLAG.match(w))]


def check_mar(rest: list[str]) -> list[str]:
    """Errors in the words after ``mar``: the (sub)command path, then every ``--flag`` against the
    options of the parsers along that path."""
    parsers = mar_parsers()
    path: tuple[str, ...] = ()
    for w in rest:
        if w.startswith("-"):
            continue
        subs = [k[-1] for k in parsers if len(k) == len(path) + 1 and k[: len(path)] == path]
        if not subs:
            break
        if w not in subs:
            return [f"mar {' '.join((*path, w))}: no such command (mar {' '.join(path)} takes {', '.join(subs)})"]
        path = (*path, w)
    known = set().union(*(options(parsers[path[:k]]) for k in range(len(path) + 1)))
    return [f"mar {' '.join(path)} {f}: no such option" for f in _flags(rest) if f not in known]


def check_doc(text: str, doc_dir: Path, source: str) -> list[str]:
    """Every problem in one markdown text, as ``source:line: what``."""
    sn = snippets(text)
    errors: list[str] = []
    for n, line in sn.shell:
        for seg in _segments(line):
            errors += [f"{source}:{n}: {e}" for e in check_command(seg, doc_dir)]
            errors += [f"{source}:{n}: {e}" for t in seg if (e := check_path_token(t, doc_dir))]
    for n, span in sn.spans:
        segs = _segments(span)
        for seg in segs:
            errors += [f"{source}:{n}: {e}" for e in check_command(seg, doc_dir)]
            errors += [f"{source}:{n}: {e}" for t in seg if (e := check_path_token(t, doc_dir))]
        words = [t for s in segs for t in s]
        if words and words[0].startswith("--"):  # a flag named alone: some parser must have it
            f = _FLAG.match(words[0])
            if f and f.group(0) not in all_flags():
                errors.append(f"{source}:{n}: {f.group(0)}: no command or script has this option")
    for n, target in sn.links:
        if not (doc_dir / target).exists() and not (REPO / target).exists():
            errors.append(f"{source}:{n}: link {target}: no such file")
    return errors


# -- tests ------------------------------------------------------------------------------------
@pytest.mark.parametrize("doc", DOCS, ids=[d.relative_to(REPO).as_posix() for d in DOCS])
def test_docs_name_only_what_exists(doc: Path) -> None:
    errors = check_doc(doc.read_text(encoding="utf-8"), doc.parent, doc.relative_to(REPO).as_posix())
    assert not errors, "\n".join(errors)


BAD = """\
Run `mar extrakt --videos DIR --out STORE` or `mar train configs/no_such.yaml`, then
`mar extract --videos DIR --out S --colour`, `mar face train CONFIG --no-such`, `mar face tran`.

```bash
python benchmarks/bench_nothing.py --quick
python benchmarks/bench_extract.py --no-such-flag
mar predict RUN clip.mp4 \\
    --overlay out.mp4 --confidence 0.3   # a flag predict does not have
make no_such_target
python -m microaction.nothing
```

See `src/microaction/extract/no_such.py`, `configs/demo_{bmoe,nope}.yaml`, `--frobnicate` and
[the missing doc](docs/missing.md).
"""

GOOD = """\
`mar extract --videos DIR --out STORE --encoder pose`, `mar face train CONFIG --set a=1`,
`mar train configs/demo_bmoe.yaml`, `configs/dualnet_{st,ts}.yaml`, `extract/pipeline.py`,
`--face-size 32`, `python benchmarks/bench_extract.py --quick`, [docs](docs/synthetic.md).

```bash
mar extract --verify STORE --repair && mar predict RUN clip.mp4 --verbose --quiet
python -m microaction.cli models
make test
```
"""


def test_the_check_can_fail() -> None:
    errors = check_doc(BAD, REPO, "bad.md")
    expected = [
        "mar extrakt: no such command",
        "configs/no_such.yaml: no such file",
        "mar extract --colour: no such option",
        "mar face train --no-such: no such option",
        "mar face tran: no such command",
        "benchmarks/bench_nothing.py: no such file",
        "bench_extract.py --no-such-flag: no such option",
        "mar predict --confidence: no such option",
        "make no_such_target: no such Makefile target",
        "python -m microaction.nothing: no such module",
        "src/microaction/extract/no_such.py: no such file",
        "configs/demo_nope.yaml: no such file",
        "--frobnicate: no command or script has this option",
        "link docs/missing.md: no such file",
    ]
    text = "\n".join(errors)
    for e in expected:
        assert e in text, f"not caught: {e}\n{text}"
    assert len(errors) == len(expected), text
    assert check_doc(GOOD, REPO, "good.md") == []
