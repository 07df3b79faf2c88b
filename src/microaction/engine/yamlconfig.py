"""Typed YAML configs: one file per experiment mapped onto dataclasses.

Unknown keys and values of the wrong type are errors naming the key, the file and its line;
numbers written like ``1e-3`` parse as numbers (PyYAML's YAML 1.1 reads them as strings);
``--set a.b=c`` overrides any field.

A file may start from another: ``base: other.yaml`` (relative to the file; a base may have a base
of its own, a cycle is an error naming the files) and then list only the keys it changes. The
merge follows the dataclasses: a section (a field whose type is a dataclass, e.g. ``optim``) is
merged key by key; any other value replaces the base's whole, whether a number, a string, a list
or a free-form mapping such as ``model.kwargs``. The result is validated as a flat file would
be, and what a run records is that resolved, flat config (``to_dict``; no ``base`` in it).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = ["BASE_KEY", "ConfigError", "apply_overrides", "from_dict", "load_config", "resolve_config", "to_dict"]

T = TypeVar("T")

BASE_KEY = "base"  # top-level key naming the file a config starts from; never a dataclass field


class ConfigError(ValueError):
    """A config file or override that does not fit the config's dataclasses."""


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: cannot be null")
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where=where)
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        vt = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value)
            except ValueError:
                pass
            else:
                if f.is_integer():
                    return int(f)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], *, where: str = "config") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys raise ``ConfigError`` naming them."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(fields)})")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing required key {missing[0]!r}")
    return cls(**kwargs)


def to_dict(obj: Any) -> Any:
    """Plain YAML-able data from a (nested) dataclass."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def apply_overrides(data: dict[str, Any], overrides: list[str], *, source: str = "--set") -> dict[str, Any]:
    """Apply ``a.b=c`` overrides (values parsed as YAML) to a nested mapping, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{source}: {item!r} is not key=value")
        path, raw = item.split("=", 1)
        keys = path.strip().split(".")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"{source}: {item!r}: {e}") from None
        node = data
        for k in keys[:-1]:
            nxt = node.setdefault(k, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"{source}: {path!r}: {k!r} is not a section")
            node = nxt
        node[keys[-1]] = value
    return data


def _read_mapping(path: Path) -> tuple[dict[str, Any], str]:
    """A YAML file's top-level mapping and its text (for line numbers); errors name the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data, text


def _at(path: Path, text: str, keys: tuple[str, ...]) -> str:
    """``path:line`` of the key at ``keys`` in ``text`` (``path`` alone where it cannot be found)."""
    node: yaml.Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
    line = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            break
        found = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(key)]
        if not found:
            break
        line, node = found[-1][0].start_mark.line + 1, found[-1][1]
    return f"{path}:{line}" if line is not None else str(path)


def _section(tp: Any) -> type | None:
    """The dataclass of a field that is a section (``X`` or ``X | None``), else None."""
    for t in (tp, *typing.get_args(tp)):
        if dataclasses.is_dataclass(t) and isinstance(t, type):
            return t
    return None


def _check_file(cls: type, data: dict[str, Any], path: Path, text: str, keys: tuple[str, ...] = ()) -> None:
    """Unknown keys and values of the wrong type in one file, named with the file and line that
    wrote them (the merged config is checked again as a whole: required keys, overrides)."""
    hints = typing.get_type_hints(cls)
    for k, v in data.items():
        at = (*keys, k)
        if k not in hints:
            inside = f" {'.'.join(keys)}:" if keys else ""
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ConfigError(f"{_at(path, text, at)}:{inside} unknown key {k!r} (known: {known})")
        sub = _section(hints[k])
        if sub is not None and isinstance(v, dict):
            _check_file(sub, v, path, text, at)
            continue
        try:
            _coerce(v, hints[k], ".".join(map(str, at)))
        except ConfigError as e:
            raise ConfigError(f"{_at(path, text, at)}: {e}") from None


def _merge(cls: type, base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: sections merged key by key, every other value replaced whole."""
    hints = typing.get_type_hints(cls)
    out = dict(base)
    for k, v in over.items():
        sub = _section(hints[k]) if k in hints else None
        if sub is not None and isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(sub, out[k], v)
        else:
            out[k] = v
    return out


def resolve_config(cls: type, path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The mapping a config file stands for: its ``base`` chain merged (see the module docstring),
    every file's keys and values checked against ``cls``; no ``base`` key left in it."""
    path = Path(path)
    chain = (*_chain, path)
    data, text = _read_mapping(path)
    base = data.pop(BASE_KEY, None)
    _check_file(cls, data, path, text)
    if base is None:
        return data
    where = _at(path, text, (BASE_KEY,))
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{where}: base must name a YAML file (relative to this one), got {base!r}")
    target = path.parent / base
    if any(target.resolve() == p.resolve() for p in chain):
        raise ConfigError(f"{where}: base cycle: {' -> '.join(str(p) for p in (*chain, target))}")
    if not target.is_file():
        raise ConfigError(f"{where}: base {base!r}: no such file ({target})")
    return _merge(cls, resolve_config(cls, target, chain), data)


def load_config(cls: type[T], path: str | Path, overrides: list[str] | None = None) -> T:
    """Read a YAML file (and its ``base`` chain) into dataclass ``cls``; errors name the file and,
    for what a file wrote (YAML syntax, unknown keys, values of the wrong type), the line."""
    data = resolve_config(cls, path)
    apply_overrides(data, overrides or [])
    return from_dict(cls, data, where=str(path))
