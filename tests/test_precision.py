"""run.precision: auto / fp32 / bf16 / bf16! resolved per device (CPU capabilities mocked)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from microaction.cli import main as mar
from microaction.engine import precision as P
from microaction.engine.config import load_experiment
from microaction.engine.testing import make_random_dataset
from microaction.engine.yamlconfig import ConfigError

AVX2 = {"architecture": "x86_64", "cpu_name": "AMD EPYC", "avx2": True, "avx512_f": False, "avx512_bf16": False}
AVX512 = {**AVX2, "cpu_name": "Intel Xeon", "avx512_f": True}  # AVX-512 without its bf16 extension
AVX512_BF16 = {**AVX512, "avx512_bf16": True}
AMX = {**AVX512, "amx_tile": True, "amx_bf16": True}
ARM_BF16 = {"architecture": "aarch64", "neon": True, "bf16": True}


@pytest.mark.parametrize(
    ("caps", "used"), [(AVX2, "fp32"), (AVX512, "fp32"), (AVX512_BF16, "bf16"), (AMX, "bf16"), (ARM_BF16, "bf16")]
)
def test_auto_follows_the_cpu(caps: dict[str, Any], used: str) -> None:
    p = P.resolve_precision("auto", "cpu", caps=caps)
    assert (p.requested, p.used) == ("auto", used)
    assert ("emulates" in p.reason) == (used == "fp32")
    assert f"precision {used} (requested auto)" in p.describe()


def test_explicit_bf16_is_refused_where_emulated_unless_forced() -> None:
    with pytest.raises(P.PrecisionError, match=r"bf16 was asked for.*no AVX-512 BF16 / AMX-BF16.*bf16!"):
        P.resolve_precision("bf16", "cpu", caps=AVX2)
    assert P.resolve_precision("bf16", "cpu", caps=AMX).used == "bf16"
    forced = P.resolve_precision("bf16!", "cpu", caps=AVX2)
    assert forced.used == "bf16" and "forced" in forced.reason
    # inference of a run trained in bf16 elsewhere: fp32 here, and it says why
    inf = P.resolve_precision("bf16", "cpu", caps=AVX2, for_inference=True)
    assert inf.used == "fp32" and "emulates" in inf.reason
    assert P.resolve_precision("fp32", "cpu", caps=AMX).used == "fp32"
    with pytest.raises(P.PrecisionError, match="one of auto, fp32, bf16, bf16!"):
        P.resolve_precision("fp16", "cpu", caps=AMX)


def test_cuda_without_a_gpu_and_unknown_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert P.resolve_precision("auto", "cuda").used == "fp32"
    with pytest.raises(P.PrecisionError, match="CUDA is not available"):
        P.resolve_precision("bf16", "cuda")
    assert P.native_bf16("meta")[0] is None  # unknown: auto stays fp32, an explicit bf16 is the user's call
    assert P.resolve_precision("auto", "meta").used == "fp32"
    assert P.resolve_precision("bf16", "meta").used == "bf16"


def test_capabilities_of_this_machine_and_the_cpuinfo_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(P.CPU_BF16_ENV, raising=False)
    caps = P.cpu_capabilities()
    assert isinstance(caps, dict)
    native, why = P.native_bf16("cpu")
    assert native == bool(P.cpu_bf16_features(caps)) and why
    monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)  # older PyTorch: /proc/cpuinfo flags
    fallback = P.cpu_capabilities()
    if Path("/proc/cpuinfo").is_file() and caps.get("architecture") == "x86_64":
        assert bool(fallback.get("avx512_bf16")) == bool(caps.get("avx512_bf16"))
        assert bool(fallback.get("amx_bf16")) == bool(caps.get("amx_bf16"))


def test_environment_replaces_the_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(P, "cpu_capabilities", lambda: dict(AMX))
    monkeypatch.setenv(P.CPU_BF16_ENV, "0")
    assert P.resolve_precision("auto", "cpu").used == "fp32"  # what the test suite runs with (conftest)
    with pytest.raises(P.PrecisionError, match="MAR_CPU_BF16=0"):
        P.resolve_precision("bf16", "cpu")
    monkeypatch.setattr(P, "cpu_capabilities", lambda: dict(AVX2))
    monkeypatch.setenv(P.CPU_BF16_ENV, "1")
    assert P.resolve_precision("bf16", "cpu").used == "bf16"
    monkeypatch.setenv(P.CPU_BF16_ENV, "")
    assert P.resolve_precision("auto", "cpu").used == "fp32"


def test_autocast_context() -> None:
    with P.autocast("cpu", P.resolve_precision("bf16!", "cpu")):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        y = torch.nn.functional.linear(torch.randn(2, 4), torch.randn(3, 4))
    assert y.dtype == torch.bfloat16
    with P.autocast("cpu", "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with pytest.raises(P.PrecisionError, match="resolved"):
        P.autocast("cpu", "auto")


# ---------------------------------------------------------------------------------------------
# the training paths


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_random_dataset(
        tmp_path_factory.mktemp("prec"), num_classes=4, num_body=2, splits={"train": 16, "val": 8}
    )


def _config(ds: dict[str, Any], tmp: Path, name: str, precision: str) -> Path:
    cfg = {
        "data": {"store": str(ds["store"]), "taxonomy": str(ds["taxonomy"]), "manifest": str(ds["manifest"])},
        "model": {"name": "mean_mlp", "preset": "tiny"},
        "run": {"name": name, "out_dir": str(tmp), "epochs": 1, "batch_size": 8, "progress": False, "threads": 1},
    }
    cfg["run"]["precision"] = precision
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def emulating_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(P.CPU_BF16_ENV, raising=False)
    monkeypatch.setattr(P, "cpu_capabilities", lambda: dict(AVX2))


def test_train_refuses_emulated_bf16_before_writing(
    ds: dict[str, Any], tmp_path: Path, emulating_cpu: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert mar(["train", str(_config(ds, tmp_path, "b", "bf16"))]) == 1
    err = capsys.readouterr().err
    assert "bf16 was asked for" in err and "AMD EPYC" in err and "bf16!" in err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(("caps", "used"), [(AVX2, "fp32"), (AMX, "bf16")])
def test_train_writes_the_precision_used(
    ds: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caps: dict[str, Any], used: str
) -> None:
    monkeypatch.delenv(P.CPU_BF16_ENV, raising=False)
    monkeypatch.setattr(P, "cpu_capabilities", lambda: dict(caps))
    assert mar(["train", str(_config(ds, tmp_path, "a", "auto"))]) == 0
    run = tmp_path / "a"
    saved = yaml.safe_load((run / "config.yaml").read_text())["run"]
    assert (saved["precision"], saved["precision_used"]) == ("auto", used)
    assert f"precision {used} (requested auto)" in (run / "log.txt").read_text()
    assert json.loads((run / "metrics.json").read_text())["epochs"][0]["train_loss"] > 0
    load_experiment(run / "config.yaml")  # the written config reads back
    assert mar(["eval", str(run), "--quiet", "--precision", "fp32"]) == 0


def test_config_names(tmp_path: Path) -> None:
    base = "data:\n  store: s\n  manifest: m.csv\nrun:\n  precision: {}\n"
    for ok in ("auto", "fp32", "bf16", "bf16!"):
        (tmp_path / "c.yaml").write_text(base.format(ok))
        assert load_experiment(tmp_path / "c.yaml").run.precision == ok
    (tmp_path / "c.yaml").write_text(base.format("half"))
    with pytest.raises(ConfigError, match=r"run\.precision must be one of auto, fp32, bf16, bf16!"):
        load_experiment(tmp_path / "c.yaml")
    (tmp_path / "c.yaml").write_text(base.format("auto") + "  precision_used: fp16\n")
    with pytest.raises(ConfigError, match="precision_used"):
        load_experiment(tmp_path / "c.yaml")


def test_face_train_refuses_emulated_bf16(
    tmp_path: Path, emulating_cpu: None, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(Path(__file__).resolve().parents[1] / "configs" / "face_primary.yaml")
    args = ["face", "train", config, "--quiet", "--set", f"out_dir={tmp_path}", "--set", f"data.root={tmp_path / 'f'}"]
    assert mar([*args, "--set", "precision=bf16"]) == 1
    assert "bf16 was asked for" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    assert mar([*args, "--set", "precision=fp16"]) == 1
    assert "precision" in capsys.readouterr().err
