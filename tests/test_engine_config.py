"""Experiment configs: strict keys, types, enums, overrides, and every shipped config loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from microaction.engine.config import config_to_yaml, experiment_from_dict, load_experiment
from microaction.engine.yamlconfig import ConfigError
from microaction.models import model_entry

REPO = Path(__file__).resolve().parents[1]
MINIMAL = "data:\n  store: s\n  manifest: m.csv\n"


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "exp.yaml"
    p.write_text(text)
    return p


def test_defaults_and_overrides(tmp_path: Path) -> None:
    cfg = load_experiment(_write(tmp_path, MINIMAL + "optim:\n  lr: 3e-4\n"), ["run.epochs=7", "model.kwargs.hidden=8"])
    assert cfg.optim.lr == 3e-4 and cfg.run.epochs == 7 and cfg.model.kwargs == {"hidden": 8}
    assert cfg.run_dir == Path("runs/run")
    again = experiment_from_dict(__import__("yaml").safe_load(config_to_yaml(cfg)))
    assert again == cfg  # the resolved config written into a run folder reads back identically


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (MINIMAL + "optim:\n  lrr: 1\n", r"exp\.yaml.*optim.*unknown key 'lrr'"),
        (MINIMAL + "bogus: 1\n", r"exp\.yaml.*unknown key 'bogus'"),
        (MINIMAL + "run:\n  epochs: many\n", r"run\.epochs.*integer"),
        (MINIMAL + "run:\n  precision: fp8\n", r"exp\.yaml.*run\.precision"),
        (MINIMAL + "data2: {}\n", r"unknown key 'data2'"),
        ("model: {name: bmoe}\n", r"missing required key 'data'"),
        ("data:\n  store: s\n", r"data needs a manifest"),
        (MINIMAL + "  annotations: {train: a.txt}\n", r"not both"),
        (MINIMAL + "  train_sampling: random\n", r"data\.train_sampling"),
        (MINIMAL + "model:\n  kwargs: {num_classes: 3}\n", r"num_classes is set from the taxonomy"),
        (MINIMAL + "loss:\n  class_weights: magic\n", r"loss\.class_weights"),
        (MINIMAL + "data:\n  store: [1\n", r"exp\.yaml:\d+: invalid YAML"),
    ],
)
def test_config_errors_name_key_and_file(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_experiment(_write(tmp_path, text))


def test_bad_override(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        load_experiment(_write(tmp_path, MINIMAL), ["run.nope=1"])
    with pytest.raises(ConfigError, match="not key=value"):
        load_experiment(_write(tmp_path, MINIMAL), ["run.epochs"])


@pytest.mark.parametrize(
    "path", sorted(p.name for p in (REPO / "configs").glob("*.yaml") if not p.name.startswith("face_"))
)
def test_shipped_configs_load(path: str) -> None:
    cfg = load_experiment(REPO / "configs" / path)
    entry = model_entry(cfg.model.name)
    assert cfg.model.preset is None or cfg.model.preset in entry.presets
    import inspect

    params = inspect.signature(entry.cls.__init__).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = set(cfg.model.kwargs) - set(params)
        assert not unknown, f"model.kwargs the model does not take: {unknown}"
    if cfg.stages.pretrain_epochs > 0:
        assert hasattr(entry.cls, "stage1_streams"), "the two-stage recipe needs a B-MoE model"


def test_expected_shipped_set() -> None:
    names = {p.stem for p in (REPO / "configs").glob("*.yaml")}
    for model in ("bmoe", "m3e_global", "mean_mlp", "bmoe_uniform", "bmoe_concat"):
        for prefix in ("ma52", "imigue", "demo"):
            assert f"{prefix}_{model}" in names
    assert load_experiment(REPO / "configs" / "ma52_bmoe.yaml").data.expect["region_dim"] == 1408


def test_paper_configs_have_no_routing_supervision() -> None:
    # body-part routing supervision is ours, not the paper's: off in every config named after it
    for stem in ("demo_bmoe", "ma52_bmoe", "imigue_bmoe"):
        assert load_experiment(REPO / "configs" / f"{stem}.yaml").loss.routing_weight == 0.0, stem
    assert load_experiment(REPO / "configs" / "demo_bmoe_routed.yaml").loss.routing_weight > 0


def test_routing_supervision_needs_body_groups(tmp_path: Path) -> None:
    # iMiGUE has no body level: the run is refused before any data is read, saying why
    from microaction.engine import train

    text = MINIMAL + f"  taxonomy: imigue\nloss:\n  routing_weight: 0.5\nrun:\n  out_dir: {tmp_path / 'runs'}\n"
    with pytest.raises(ConfigError, match=r"routing_weight 0.5: label set 'imigue' has no body groups"):
        train(_write(tmp_path, text))  # the store "s" does not exist: refused before it is opened
