"""Label sets as data.

Each benchmark's classes live in one YAML file beside this module (``ma52.yaml``, ``imigue.yaml``,
``socialgesture.yaml``, ``mpiigi.yaml``; ``synth_diagnostic.yaml``: the synthetic diagnostic
preset's classes); nothing else in the package spells out a class list or an
action → body mapping. A user's own label set is a YAML file of the same shape, loaded with
``load_taxonomy(path)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

__all__ = ["BUILTIN", "Taxonomy", "TaxonomyError", "load_taxonomy"]

_HERE = Path(__file__).resolve().parent
BUILTIN = ("ma52", "imigue", "socialgesture", "mpiigi", "synth_diagnostic")


class TaxonomyError(ValueError):
    """A label set or a label that does not fit it."""


@dataclass(frozen=True)
class Taxonomy:
    """A label set: class names and ids, and (optionally) a coarse body level above them."""

    name: str
    names: tuple[str, ...]
    multi_label: bool = False
    body_names: tuple[str, ...] = ()
    body_of_class: tuple[int, ...] = ()
    body_regions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    train_counts: tuple[int, ...] = ()
    raw_id_map: dict[int, int] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def num_body(self) -> int:
        """Number of body groups (0 when the label set has no body level)."""
        return len(self.body_names)

    @property
    def has_body(self) -> bool:
        return bool(self.body_names)

    @property
    def body_map(self) -> np.ndarray:
        """``[C]`` int64: body group of each action id."""
        if not self.has_body:
            raise TaxonomyError(f"taxonomy {self.name!r} has no body level")
        return np.asarray(self.body_of_class, dtype=np.int64)

    def body_of(self, action: int | np.ndarray) -> np.ndarray:
        """Body group(s) of action id(s)."""
        return self.body_map[np.asarray(action, dtype=np.int64)]

    def index(self, name: str) -> int:
        """Class id of a class name (exact, then case- and separator-insensitive)."""
        lookup = {_norm(n): i for i, n in enumerate(self.names)}
        key = _norm(name)
        if key not in lookup:
            raise TaxonomyError(f"{name!r} is not a class of taxonomy {self.name!r}")
        return lookup[key]

    def label_id(self, value: str | int, *, source: str = "<input>", base: int = 0) -> int:
        """Parse one label given as a class id (``"9"``) or a class name.

        ``base`` is the id base of the file the label comes from, a fact of each reader's format:
        0 for the ids of this label set, 1 for a release that numbers its classes from 1 (iMiGUE's
        instance CSV and per-video lists; see :meth:`from_raw`)."""
        text = str(value).strip()
        try:
            raw = int(text)
        except ValueError:
            try:
                return self.index(text)
            except TaxonomyError as e:
                raise TaxonomyError(f"{source}: {e}") from None
        if base:
            return self.from_raw(raw, base=base, source=source)
        if not 0 <= raw < self.num_classes:
            raise TaxonomyError(f"{source}: label {raw} out of range 0..{self.num_classes - 1} ({self.name})")
        return raw

    def from_raw(self, raw: int, *, base: int, source: str = "<input>") -> int:
        """Class id of a release's own class number: ``raw_id_map`` first (iMiGUE's 99 ->
        31 "illustrative"), else ``raw - base``. An id that ``raw_id_map`` spells otherwise
        (iMiGUE's 32: "illustrative" is 99 in the release) is refused like one out of range."""
        if raw in self.raw_id_map:
            return self.raw_id_map[raw]
        cid = raw - base
        if not 0 <= cid < self.num_classes or cid in self.raw_id_map.values():
            spelled = "".join(f", {k}" for k in sorted(self.raw_id_map))
            last = base + self.num_classes - 1 - len(set(self.raw_id_map.values()))
            hint = f"; a file numbered from {raw}?" if 0 <= raw < base else ""
            raise TaxonomyError(
                f"{source}: class {raw} is not a class number of this file ({self.name} numbered from {base}: "
                f"{base}..{last}{spelled}){hint}"
            )
        return cid

    def validate(self, labels: Iterable[int], *, source: str = "<labels>") -> None:
        """Raise naming the first position whose label is not a class id of this taxonomy."""
        for i, lab in enumerate(labels):
            if not 0 <= int(lab) < self.num_classes:
                raise TaxonomyError(
                    f"{source}: entry {i + 1}: label {lab} out of range 0..{self.num_classes - 1} ({self.name})"
                )

    def regions_of_body(self, body: int) -> tuple[str, ...]:
        """Feature-store regions a body group moves (ground truth for routing analyses)."""
        return self.body_regions.get(self.body_names[body], ())

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as stored in checkpoints (so a run needs no package data to predict)."""
        return {
            "name": self.name,
            "names": list(self.names),
            "multi_label": self.multi_label,
            "body_names": list(self.body_names),
            "body_of_class": list(self.body_of_class),
            "body_regions": {k: list(v) for k, v in self.body_regions.items()},
            "train_counts": list(self.train_counts),
            "raw_id_map": {str(k): v for k, v in self.raw_id_map.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Taxonomy:
        return cls(
            name=str(d["name"]),
            names=tuple(d["names"]),
            multi_label=bool(d.get("multi_label", False)),
            body_names=tuple(d.get("body_names", ())),
            body_of_class=tuple(int(x) for x in d.get("body_of_class", ())),
            body_regions={k: tuple(v) for k, v in d.get("body_regions", {}).items()},
            train_counts=tuple(int(x) for x in d.get("train_counts", ())),
            raw_id_map={int(k): int(v) for k, v in d.get("raw_id_map", {}).items()},
        )


def _norm(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


def _from_yaml(doc: Any, source: str) -> Taxonomy:
    if not isinstance(doc, dict) or "classes" not in doc:
        raise TaxonomyError(f"{source}: expected a mapping with 'name' and 'classes'")
    classes = doc["classes"]
    if not isinstance(classes, list) or not classes:
        raise TaxonomyError(f"{source}: 'classes' must be a non-empty list")
    body_names = tuple(str(b) for b in doc.get("body_names", ()) or ())
    names: list[str] = []
    bodies: list[int] = []
    counts: list[int] = []
    for pos, c in enumerate(classes):
        where = f"{source}: classes[{pos}]"
        if not isinstance(c, dict) or "id" not in c or "name" not in c:
            raise TaxonomyError(f"{where}: each class needs 'id' and 'name'")
        if int(c["id"]) != pos:
            raise TaxonomyError(f"{where}: ids must be 0..C-1 in order, got {c['id']}")
        names.append(str(c["name"]))
        if body_names:
            if "body" not in c or not 0 <= int(c["body"]) < len(body_names):
                raise TaxonomyError(f"{where}: 'body' must be a body group id 0..{len(body_names) - 1}")
            bodies.append(int(c["body"]))
        if "train_count" in c:
            counts.append(int(c["train_count"]))
    if len(set(map(_norm, names))) != len(names):
        raise TaxonomyError(f"{source}: duplicate class names")
    if counts and len(counts) != len(names):
        raise TaxonomyError(f"{source}: 'train_count' given for some classes only")
    regions = doc.get("body_regions", {}) or {}
    unknown = set(regions) - set(body_names)
    if unknown:
        raise TaxonomyError(f"{source}: body_regions names unknown body groups {sorted(unknown)}")
    return Taxonomy(
        name=str(doc.get("name", Path(source).stem)),
        names=tuple(names),
        multi_label=bool(doc.get("multi_label", False)),
        body_names=body_names,
        body_of_class=tuple(bodies),
        body_regions={k: tuple(v) for k, v in regions.items()},
        train_counts=tuple(counts),
        raw_id_map={int(k): int(v) for k, v in (doc.get("raw_id_map", {}) or {}).items()},
    )


@cache
def _load_builtin(name: str) -> Taxonomy:
    path = _HERE / f"{name}.yaml"
    return _from_yaml(yaml.safe_load(path.read_text(encoding="utf-8")), str(path))


def load_taxonomy(name_or_path: str | Path) -> Taxonomy:
    """A built-in label set by name (``ma52``, ``imigue``, ``socialgesture``, ``mpiigi``,
    ``synth_diagnostic``) or a YAML file."""
    key = str(name_or_path)
    if key.lower() in BUILTIN:
        return _load_builtin(key.lower())
    path = Path(key)
    if not path.is_file():
        raise TaxonomyError(f"unknown taxonomy {key!r}: not one of {list(BUILTIN)} and not a file")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise TaxonomyError(f"{path}: not a readable YAML label set ({e})") from None
    return _from_yaml(doc, str(path))


def check_names(names: Sequence[str], taxonomy: Taxonomy, *, source: str) -> None:
    """Check a label-name file (e.g. MA-52's label_name.txt) agrees with a taxonomy, id by id."""
    if len(names) != taxonomy.num_classes:
        raise TaxonomyError(f"{source}: {len(names)} names, taxonomy {taxonomy.name} has {taxonomy.num_classes}")
    for i, (a, b) in enumerate(zip(names, taxonomy.names)):
        if _norm(a) != _norm(b):
            raise TaxonomyError(f"{source}: line {i + 1}: {a!r} != {b!r} (taxonomy {taxonomy.name})")
