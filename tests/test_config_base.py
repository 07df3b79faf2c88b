"""Configs that start from another (``base: other.yaml``): merge rule, chains, cycles, errors that
name the file that wrote the key, and a run folder whose config.yaml is the flat, resolved config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from microaction.engine.config import config_to_yaml, load_experiment
from microaction.engine.yamlconfig import ConfigError, load_config, resolve_config, to_dict
from microaction.face.config import load_face_config

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Optim:
    lr: float = 1e-3
    steps: int = 10
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class Cfg:
    name: str
    optim: Optim = field(default_factory=Optim)
    extra: Optim | None = None  # an optional section merges like any other
    kwargs: dict[str, Any] = field(default_factory=dict)  # free-form: replaced whole
    tags: list[str] = field(default_factory=list)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_sections_merge_key_by_key_other_values_replace(tmp_path: Path) -> None:
    _write(
        tmp_path / "base.yaml",
        "name: b\noptim: {lr: 0.5, steps: 3}\nextra: {steps: 4}\nkwargs: {a: 1, b: 2}\ntags: [x, y]\n",
    )
    v = _write(
        tmp_path / "v.yaml", "base: base.yaml\noptim: {steps: 7, betas: [0.5, 0.6]}\nkwargs: {c: 3}\ntags: [z]\n"
    )
    cfg = load_config(Cfg, v)
    assert cfg.name == "b"  # inherited
    assert (cfg.optim.lr, cfg.optim.steps, cfg.optim.betas) == (0.5, 7, [0.5, 0.6])  # section: key by key
    assert cfg.extra is not None and cfg.extra.steps == 4 and cfg.extra.lr == 1e-3
    assert cfg.kwargs == {"c": 3}  # free-form mapping: replaced whole, not merged with {a, b}
    assert cfg.tags == ["z"]  # lists replace
    assert "base" not in resolve_config(Cfg, v)
    # an empty mapping clears a free-form one; overrides apply after the merge
    v.write_text("base: base.yaml\nkwargs: {}\n")
    cfg = load_config(Cfg, v, ["optim.lr=0.25", "kwargs.d=4"])
    assert cfg.kwargs == {"d": 4} and cfg.optim.lr == 0.25 and cfg.optim.steps == 3


def test_chained_base_paths_relative_to_each_file(tmp_path: Path) -> None:
    _write(tmp_path / "root" / "a.yaml", "name: a\noptim: {lr: 0.1, steps: 1}\ntags: [a]\n")
    _write(tmp_path / "root" / "mid" / "b.yaml", "base: ../a.yaml\noptim: {steps: 2}\n")
    c = _write(tmp_path / "c.yaml", "base: root/mid/b.yaml\nname: c\n")
    cfg = load_config(Cfg, c)
    assert (cfg.name, cfg.optim.lr, cfg.optim.steps, cfg.tags) == ("c", 0.1, 2, ["a"])


def test_base_cycle_names_the_files(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.yaml", "base: b.yaml\nname: a\n")
    _write(tmp_path / "b.yaml", "name: b\nbase: c.yaml\n")
    _write(tmp_path / "c.yaml", "base: ./a.yaml\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:1: base cycle: .*a\.yaml -> .*b\.yaml -> .*c\.yaml -> .*a\.yaml"):
        load_config(Cfg, a)
    _write(tmp_path / "self.yaml", "name: s\nbase: self.yaml\n")
    with pytest.raises(ConfigError, match=r"self\.yaml:2: base cycle"):
        load_config(Cfg, tmp_path / "self.yaml")


def test_unknown_key_named_with_the_file_and_line_that_wrote_it(tmp_path: Path) -> None:
    _write(tmp_path / "base.yaml", "name: b\noptim:\n  lr: 0.5\n")
    v = _write(tmp_path / "variant.yaml", "base: base.yaml\noptim:\n  steps: 2\n  lrr: 1\n")
    with pytest.raises(ConfigError, match=r"variant\.yaml:4: optim: unknown key 'lrr' \(known: lr, steps, betas\)"):
        load_config(Cfg, v)
    # a typo in the base is reported in the base, not in the file that was asked for
    _write(tmp_path / "base.yaml", "name: b\n\nbogus: 1\n")
    v.write_text("base: base.yaml\n")
    with pytest.raises(ConfigError, match=r"base\.yaml:3: unknown key 'bogus'"):
        load_config(Cfg, v)
    # base is a top-level key only
    v.write_text("name: v\noptim:\n  base: base.yaml\n")
    with pytest.raises(ConfigError, match=r"variant\.yaml:3: optim: unknown key 'base'"):
        load_config(Cfg, v)


def test_bad_base_values(tmp_path: Path) -> None:
    v = _write(tmp_path / "v.yaml", "name: v\nbase: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"v\.yaml:2: base 'nowhere\.yaml': no such file"):
        load_config(Cfg, v)
    for bad in ("[a.yaml]", "''", "3"):
        v.write_text(f"name: v\nbase: {bad}\n")
        with pytest.raises(ConfigError, match=r"v\.yaml:2: base must name a YAML file"):
            load_config(Cfg, v)
    _write(tmp_path / "broken.yaml", "name: [\n")
    v.write_text("base: broken.yaml\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:\d+: invalid YAML"):
        load_config(Cfg, v)


SHIPPED = sorted(p for p in (REPO / "configs").glob("*.yaml") if "base" in yaml.safe_load(p.read_text()))


def test_some_shipped_configs_use_a_base() -> None:
    assert len(SHIPPED) >= 10, [p.name for p in SHIPPED]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_variants_resolve_to_a_flat_config(path: Path, tmp_path: Path) -> None:
    """What --print-config shows (and a run folder records) has no base and loads alone to the same."""
    if path.name.startswith("face_"):
        cfg: Any = load_face_config(path)
        flat = yaml.safe_dump(to_dict(cfg), sort_keys=False)
        again: Any = load_face_config(_write(tmp_path / "flat.yaml", flat))
    else:
        cfg = load_experiment(path)
        flat = config_to_yaml(cfg)
        again = load_experiment(_write(tmp_path / "flat.yaml", flat))
    assert "base" not in yaml.safe_load(flat)
    assert to_dict(again) == to_dict(cfg)


def test_run_folder_config_is_flat_and_equals_the_flat_equivalent(tmp_path: Path) -> None:
    from microaction.engine import train
    from microaction.engine.testing import make_random_dataset

    ds = make_random_dataset(tmp_path / "data", num_classes=4, num_body=2, splits={"train": 16, "val": 8})
    flat = {
        "data": {"store": str(ds["store"]), "taxonomy": str(ds["taxonomy"]), "manifest": str(ds["manifest"])},
        "model": {"name": "mean_mlp", "preset": "tiny", "kwargs": {"dropout": 0.2}},
        "optim": {"lr": 3e-3, "warmup_epochs": 0.5},
        "loss": {"label_smoothing": 0.1},
        "run": {"name": "r", "epochs": 1, "batch_size": 8, "progress": False, "threads": 1, "max_steps": 1},
    }
    _write(tmp_path / "cfg" / "flat.yaml", yaml.safe_dump(flat))
    parent = {**flat, "model": {"name": "mean_mlp", "preset": "tiny", "kwargs": {"dropout": 0.5, "x": 1}},
              "run": {**flat["run"], "epochs": 3}}  # fmt: skip
    _write(tmp_path / "cfg" / "shared" / "parent.yaml", yaml.safe_dump({**parent, "loss": {"label_smoothing": 0.3}}))
    _write(tmp_path / "cfg" / "mid.yaml", "base: shared/parent.yaml\nloss: {label_smoothing: 0.1}\n")
    variant = _write(
        tmp_path / "cfg" / "variant.yaml", "base: mid.yaml\nmodel: {kwargs: {dropout: 0.2}}\nrun: {epochs: 1}\n"
    )
    texts = []
    for name, path in (("flat", tmp_path / "cfg" / "flat.yaml"), ("variant", variant)):
        run_dir = train(path, [f"run.out_dir={tmp_path / name}"])
        texts.append((run_dir / "config.yaml").read_text().replace(str(tmp_path / name), "OUT"))
    assert "base" not in yaml.safe_load(texts[1])
    assert texts[1] == texts[0]
    assert yaml.safe_load(texts[1])["model"]["kwargs"] == {"dropout": 0.2}


def test_wrong_type_named_with_the_file_and_line_that_wrote_it(tmp_path: Path) -> None:
    _write(tmp_path / "base.yaml", "name: b\noptim:\n  lr: 0.5\n  steps: many\n")
    v = _write(tmp_path / "variant.yaml", "base: base.yaml\noptim: {lr: 0.1}\n")
    with pytest.raises(ConfigError, match=r"base\.yaml:4: optim\.steps: expected an integer, got 'many'"):
        load_config(Cfg, v)
    _write(tmp_path / "base.yaml", "name: b\n")
    v.write_text("base: base.yaml\n\noptim: {betas: [0.9, x]}\n")
    with pytest.raises(ConfigError, match=r"variant\.yaml:3: optim\.betas\[1\]: expected a number"):
        load_config(Cfg, v)
    # required keys are checked on the merged config: a variant need not repeat them
    _write(tmp_path / "base.yaml", "optim: {lr: 0.5}\n")
    v.write_text("base: base.yaml\n")
    with pytest.raises(ConfigError, match=r"variant\.yaml: missing required key 'name'"):
        load_config(Cfg, v)
