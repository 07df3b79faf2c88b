"""Shared test fixtures. Real files come from ``../shared`` beside the checkout; nothing is
downloaded (hub access is switched off for the whole session)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# `precision: auto` would pick bf16 on a CPU with AVX-512 BF16 / AMX and fp32 elsewhere: the suite
# sees a CPU without native bf16 (also in the processes it starts), so results do not depend on the
# machine; tests/test_precision.py covers the detection itself.
os.environ.setdefault("MAR_CPU_BF16", "0")

# Property tests: the same examples on every run (a CI failure replays locally) and no 1 s deadline,
# which a loaded 2-core machine overruns now and then; a runaway example still fails at 30 s.
# `HYPOTHESIS_PROFILE=explore` draws fresh random examples for a local hunt.
settings.register_profile(
    "suite",
    deadline=30_000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("explore", parent=settings.get_profile("suite"), derandomize=False, max_examples=500)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "suite"))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MAR_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """``../shared/data``; the real benchmark files the tests check against."""
    data = SHARED / "data"
    if not data.is_dir():
        pytest.fail(f"{data} is missing: the tests need ../shared beside the checkout")
    return data


@pytest.fixture(scope="session")
def ma52_dir(shared: Path) -> Path:
    return shared / "ma52"


@pytest.fixture(scope="session")  # session: set up (and skipped) before a module's training fixtures
def chromium() -> str:
    """The headless browser (``MAR_CHROMIUM`` or the usual names). Skips when there is none, but
    fails where ``MAR_REQUIRE_CHROMIUM=1`` (set by .ci/run on CI): CI must not lose the browser tests
    to a quiet skip."""
    for name in (os.environ.get("MAR_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name) if name else None
        if found:
            return found
    why = "Chromium is not installed (`make chromium` installs it with apt-get; it needs root)"
    if os.environ.get("MAR_REQUIRE_CHROMIUM") == "1":
        pytest.fail(f"{why}; MAR_REQUIRE_CHROMIUM=1 makes this an error", pytrace=False)
    pytest.skip(why)


@pytest.fixture
def one_thread():
    """torch on one CPU thread for the test (tiny convolutions on a loaded 2-core machine run 30x
    faster on one thread than on two)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
