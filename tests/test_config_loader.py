from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from microaction.engine.yamlconfig import ConfigError, load_config, to_dict


@dataclass
class Optim:
    lr: float = 1e-3
    steps: int = 10


@dataclass
class Cfg:
    name: str
    optim: Optim = field(default_factory=Optim)
    tags: list[str] = field(default_factory=list)
    size: int | None = None


def test_numbers_and_overrides(tmp_path: Path) -> None:
    p = tmp_path / "a.yaml"
    p.write_text("name: x\noptim:\n  lr: 3e-4\n  steps: 1e3\ntags: [a, b]\n")
    cfg = load_config(Cfg, p, ["optim.lr=0.5", "size=7"])
    assert cfg.optim.lr == 0.5 and cfg.optim.steps == 1000 and cfg.size == 7 and cfg.tags == ["a", "b"]
    assert to_dict(cfg)["optim"] == {"lr": 0.5, "steps": 1000}


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\noptim:\n  lrr: 1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*optim.*'lrr'"):
        load_config(Cfg, p)


def test_bad_type_and_yaml_syntax(tmp_path: Path) -> None:
    p = tmp_path / "t.yaml"
    p.write_text("name: x\noptim: {steps: many}\n")
    with pytest.raises(ConfigError, match=r"steps.*integer"):
        load_config(Cfg, p)
    p.write_text("name: x\noptim: [1,\n")
    with pytest.raises(ConfigError, match=r"t\.yaml:\d+: invalid YAML"):
        load_config(Cfg, p)
    p.write_text("optim: {}\n")
    with pytest.raises(ConfigError, match="missing required key 'name'"):
        load_config(Cfg, p)
