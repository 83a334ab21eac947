"""demo/run_demo.py (`make demo`) on bad flags: one message naming the flag or the file, exit 2,
nothing written. The full demo run is tests/deblur/test_shipped_model.py's."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import ROOT, script_env


def _demo(*args):
    return subprocess.run([sys.executable, "demo/run_demo.py", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=script_env(TF_CPP_MIN_LOG_LEVEL="3"))


@pytest.mark.parametrize("flag, value, message", [
    ("--frames", 0, "--frames must be at least 1, got 0"),
    ("--size", -5, "--size must be at least 32, got -5"),
    ("--lr", 0, "--lr must be above 0, got 0.0"),
])
def test_a_bad_flag_is_named(tmp_path, flag, value, message):
    run = _demo("--work", tmp_path / "w", flag, value)
    assert run.returncode == 2 and message in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "w").exists()


def test_a_missing_checkpoint_is_refused_before_anything_is_written(tmp_path):
    run = _demo("--work", tmp_path / "w", "--checkpoint", tmp_path / "nope.npz")
    assert run.returncode == 2, run.stderr
    assert f"{tmp_path / 'nope.npz'}: no deblurring checkpoint there" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "w").exists()
