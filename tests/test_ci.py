"""CI cannot lose the browser tests to a quiet skip: with ``MAR_REQUIRE_CHROMIUM=1`` (which .ci/run
sets when ``CI=true``) a Chromium that cannot be installed fails ``make chromium`` and the tests'
fixture; without it both go on and say the browser tests are skipped."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _bin(tmp_path: Path, scripts: dict[str, str], links: tuple[str, ...] = ()) -> Path:
    """A PATH folder with only ``links`` (real tools) and ``scripts`` (fakes): no Chromium in it."""
    d = tmp_path / "bin"
    d.mkdir()
    for name in links:
        real = shutil.which(name)
        assert real, f"{name} is needed for this test"
        (d / name).symlink_to(real)
    for name, body in scripts.items():
        (d / name).write_text(f"#!/bin/sh\n{body}\n")
        (d / name).chmod(0o755)
    return d


def _env(path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MAR_CHROMIUM", "MAR_REQUIRE_CHROMIUM", "CI")}
    return {**env, "PATH": str(path), **extra}


@pytest.mark.parametrize("required", [True, False])
def test_make_chromium_is_an_error_only_where_required(tmp_path: Path, required: bool) -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make here (.ci/run needs it)")
    fake = _bin(tmp_path, {"apt-get": "echo 'E: Unable to locate package chromium' >&2; exit 100"}, ("id", "tail"))
    env = _env(fake, TMPDIR=str(tmp_path), **({"MAR_REQUIRE_CHROMIUM": "1"} if required else {}))
    res = subprocess.run([make, "-s", "-C", str(REPO), "chromium"], env=env, capture_output=True, text=True)
    if required:
        assert res.returncode != 0, res.stdout
        assert "error: chromium could not be installed" in res.stderr and "Unable to locate" in res.stderr
    else:
        assert res.returncode == 0, res.stderr
        assert "browser tests will be skipped" in res.stdout


def test_ci_run_requires_chromium_on_ci(tmp_path: Path) -> None:
    """.ci/run hands ``MAR_REQUIRE_CHROMIUM=1`` to ``make test`` when ``CI=true``, and says loudly
    when the browser tests were skipped elsewhere."""
    fake = _bin(
        tmp_path, {"make": 'echo "make $* MAR_REQUIRE_CHROMIUM=${MAR_REQUIRE_CHROMIUM:-unset}"'}, ("bash", "dirname")
    )
    ci = subprocess.run([str(REPO / ".ci" / "run")], env=_env(fake, CI="true"), capture_output=True, text=True)
    assert ci.returncode == 0, ci.stderr
    assert ci.stdout.splitlines() == ["make test MAR_REQUIRE_CHROMIUM=1"]
    local = subprocess.run([str(REPO / ".ci" / "run")], env=_env(fake), capture_output=True, text=True)
    assert "make test MAR_REQUIRE_CHROMIUM=unset" in local.stdout
    assert "browser tests were SKIPPED" in local.stdout


def test_missing_chromium_fails_the_browser_test_where_required(tmp_path: Path) -> None:
    only_python = _bin(tmp_path, {}, ())
    test = "tests/test_timeline.py::test_chromium_screenshot_shows_coloured_segments"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test]
    env = _env(only_python, MAR_REQUIRE_CHROMIUM="1", PYTHONPATH=str(REPO / "src"))
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stdout[-2000:]
    assert "1 error" in res.stdout and "MAR_REQUIRE_CHROMIUM=1 makes this an error" in res.stdout
