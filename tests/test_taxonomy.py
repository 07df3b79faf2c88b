"""Label sets as data: the built-in taxonomies against the benchmarks' own files, user YAML files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from microaction.data.annotations import AnnotationError, check_label_names, read_label_names
from microaction.taxonomy import BUILTIN, Taxonomy, TaxonomyError, load_taxonomy

# ../shared/README.md: body group of each MA-52 action id range
MA52_BODY_RANGES = [(0, 4, 0), (5, 10, 1), (11, 23, 2), (24, 31, 3), (32, 37, 4), (38, 47, 5), (48, 51, 6)]


def test_ma52_names_equal_label_name_file(ma52_dir: Path) -> None:
    t = load_taxonomy("ma52")
    names = read_label_names(ma52_dir / "annotations" / "label_name.txt")
    assert tuple(names) == t.names
    assert t.num_classes == 52
    check_label_names(ma52_dir / "annotations" / "label_name.txt", t)


def test_imigue_names_equal_shared_label_name_file(shared: Path) -> None:
    t = load_taxonomy("imigue")
    names = read_label_names(shared / "imigue" / "label_name.txt")
    assert tuple(names) == t.names
    assert t.num_classes == 32 and not t.has_body
    assert t.names[31] == "illustrative"
    # the release numbers classes from 1, with 99 for "illustrative"; label_id reads the label
    # set's own ids unless told the file's base
    assert t.from_raw(99, base=1) == t.label_id("99", base=1) == 31 and t.from_raw(4, base=1) == 3
    with pytest.raises(TaxonomyError, match=r"label 99 out of range 0\.\.31"):
        t.label_id(99)


def test_ma52_body_map_matches_readme_ranges() -> None:
    t = load_taxonomy("ma52")
    expected = np.empty(52, dtype=np.int64)
    for lo, hi, body in MA52_BODY_RANGES:
        expected[lo : hi + 1] = body
    assert np.array_equal(t.body_map, expected)
    assert t.num_body == 7
    assert list(t.body_of(np.array([0, 9, 45, 51]))) == [0, 1, 5, 6]


def test_ma52_train_counts_cover_the_train_list() -> None:
    t = load_taxonomy("ma52")
    assert sum(t.train_counts) == 11250
    assert t.train_counts[t.index("nodding")] == 1283
    assert t.train_counts[t.index("covering face")] == 6


def test_other_builtins() -> None:
    mpii = load_taxonomy("mpiigi")
    assert mpii.multi_label and mpii.num_classes == 14
    assert mpii.names[0] == "Settle" and mpii.names[13] == "Smearing hands" and mpii.names[7] == "Gesture"
    sg = load_taxonomy("socialgesture")
    assert [n.lower() for n in sg.names] == ["pointing", "showing", "giving", "reaching"]
    for name in BUILTIN:
        t = load_taxonomy(name)
        assert Taxonomy.from_dict(t.to_dict()) == t


def test_label_name_mismatch_names_the_line(tmp_path: Path, ma52_dir: Path) -> None:
    lines = (ma52_dir / "annotations" / "label_name.txt").read_text().splitlines()
    lines[3], lines[4] = "3\trising up", "4\tturning around"  # the paper's figure order
    bad = tmp_path / "label_name.txt"
    bad.write_text("\n".join(lines))
    with pytest.raises(AnnotationError, match=r"label_name.txt: line 4: 'rising up' != 'turning around'"):
        check_label_names(bad, load_taxonomy("ma52"))


def test_user_yaml_taxonomy_loads(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: lab\nbody_names: [head, hands]\nclasses:\n"
        "  - {id: 0, name: nod, body: 0}\n  - {id: 1, name: fidget, body: 1}\n  - {id: 2, name: wave, body: 1}\n"
    )
    t = load_taxonomy(path)
    assert t.name == "lab" and t.names == ("nod", "fidget", "wave")
    assert list(t.body_map) == [0, 1, 1]
    assert t.label_id("Fidget") == 1 and t.label_id("2") == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: x\n", "expected a mapping with 'name' and 'classes'"),
        ("classes: []\n", "'classes' must be a non-empty list"),
        ("classes:\n  - {id: 1, name: a}\n", "ids must be 0..C-1 in order"),
        ("classes:\n  - {id: 0}\n", "each class needs 'id' and 'name'"),
        ("classes:\n  - {id: 0, name: a}\n  - {id: 1, name: A}\n", "duplicate class names"),
        ("body_names: [h]\nclasses:\n  - {id: 0, name: a, body: 3}\n", "'body' must be a body group id"),
        ("classes:\n  - {id: 0, name: a, train_count: 3}\n  - {id: 1, name: b}\n", "given for some classes only"),
        ("classes: [\n", "not a readable YAML label set"),
    ],
)
def test_bad_taxonomy_files_give_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(TaxonomyError, match=message) as info:
        load_taxonomy(path)
    assert "bad.yaml" in str(info.value)


def test_unknown_taxonomy_and_labels() -> None:
    with pytest.raises(TaxonomyError, match="not one of"):
        load_taxonomy("no-such-taxonomy")
    t = load_taxonomy("ma52")
    with pytest.raises(TaxonomyError, match=r"out of range 0\.\.51"):
        t.label_id("52", source="f.csv:3")
    with pytest.raises(TaxonomyError, match=r"f\.csv:3: 'dancing' is not a class"):
        t.label_id("dancing", source="f.csv:3")
    with pytest.raises(TaxonomyError, match="entry 2"):
        t.validate([1, 60])
