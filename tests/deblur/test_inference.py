"""deblur/inference.py run_test: what made a results folder (model.json), Ctrl-C telling how to keep
the finished frames, and --skip_existing refusing to mix two models' frames. A stand-in deblurrer
(it returns the centre frame) keeps these tests free of TensorFlow."""
from __future__ import annotations

import json

import numpy as np
import pytest

from common.cli import EXIT_INTERRUPTED, run_cli
from common.errors import InputError, Interrupted
from common.fileio import read_image, write_image
from deblur import checkpoint as ckpt
from deblur.config import NetworkConfig
from deblur.evaluate import evaluate, format_table, write_reports
from deblur.inference import run_test

FRAMES = 3


class CentreFrame:
    """Deblurrer stand-in: the centre frame back; Ctrl-C on call `interrupt_at` (1-based)."""

    def __init__(self, interrupt_at: int | None = None):
        self.config = NetworkConfig(face="none", channels=4)
        self.calls = 0
        self.interrupt_at = interrupt_at

    def deblur(self, frames, render=None, coeff=None):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        return frames[len(frames) // 2]


@pytest.fixture
def testing_set(tmp_path):
    rng = np.random.default_rng(0)
    for k in range(1, FRAMES + 1):
        sharp = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
        write_image(tmp_path / "dataset" / "clip" / "sharp" / f"{k:05d}.png", sharp)
        for o in range(-2, 3):
            write_image(tmp_path / "ts" / "clip" / f"blur_{o}" / f"{k:05d}.png", sharp)
    return tmp_path


def _record(name: str, step: int = 7) -> dict:
    return ckpt.model_record(name, NetworkConfig(face="none", channels=4), step)


def test_model_record_names_the_shipped_model_and_others(tmp_path):
    rec = ckpt.model_record(ckpt.SHIPPED_CHECKPOINT, NetworkConfig(face="none", channels=16), 2000)
    assert rec["shipped"] and rec["model"].startswith("the shipped model facedeblur.npz")
    # the shipped file's provenance: its training step, or the two runs it interpolates
    made = "weight interpolation" if ckpt.read_meta(ckpt.SHIPPED_CHECKPOINT).get("interpolated") else "step 2000"
    assert made in rec["model"] and "--face none" in rec["model"]
    other = _record(str(tmp_path / "run" / "deblur-7.npz"))
    assert not other["shipped"] and other["model"].startswith(str(tmp_path / "run" / "deblur-7.npz"))
    assert ckpt.read_model_record(tmp_path) is None  # no record: unlabelled, never mislabelled
    (tmp_path / ckpt.MODEL_RECORD).write_text("{not json")
    assert ckpt.read_model_record(tmp_path) is None


def test_results_folder_records_the_model_and_evaluate_labels_it(testing_set):
    t = testing_set
    rec = _record(str(t / "run" / "deblur-7.npz"))
    res = run_test(CentreFrame(), t / "ts", t / "out", gt_path=t / "dataset", log=lambda *a: None, model=rec)
    assert json.loads((t / "out" / "model.json").read_text()) == rec
    assert res["model"] == rec["model"]
    assert json.loads((t / "out" / "metrics.json").read_text())["model"] == rec["model"]
    rep = evaluate(t / "out", t / "dataset", identity=False)
    assert f"result = {rec['model']}" in format_table(rep)
    _, js = write_reports(rep, t / "eval")
    assert json.loads(js.read_text())["model"] == rec["model"]
    # a record per video folder (deblur_video.py --frames_out DIR/<video>) counts too
    (t / "out" / "model.json").rename(t / "out" / "clip" / "model.json")
    assert evaluate(t / "out", t / "dataset", identity=False).model == rec["model"]
    # frames from elsewhere: said to be of an unrecorded model
    (t / "out" / "clip" / "model.json").unlink()
    assert "unrecorded model" in format_table(evaluate(t / "out", t / "dataset", identity=False))


def test_interrupt_says_how_to_keep_the_finished_frames(testing_set):
    t = testing_set
    rec = _record(str(t / "run" / "deblur-7.npz"))
    with pytest.raises(Interrupted, match="--skip_existing"):
        run_test(CentreFrame(interrupt_at=2), t / "ts", t / "out", log=lambda *a: None, model=rec)
    assert sorted(p.name for p in (t / "out" / "clip").iterdir()) == ["00001.png"]
    # continuing with the same model keeps the finished frame and does the rest
    again = CentreFrame()
    run_test(again, t / "ts", t / "out", skip_existing=True, log=lambda *a: None, model=rec)
    assert again.calls == FRAMES - 1
    assert len(list((t / "out" / "clip").glob("*.png"))) == FRAMES
    np.testing.assert_array_equal(read_image(t / "out" / "clip" / "00003.png"),
                                  read_image(t / "ts" / "clip" / "blur_0" / "00003.png"))


def test_skip_existing_refuses_to_mix_two_models(testing_set):
    t = testing_set
    run_test(CentreFrame(), t / "ts", t / "out", log=lambda *a: None, model=_record("model_a.npz"))
    other = _record("model_b.npz")
    with pytest.raises(InputError, match=r"--skip_existing would keep frames of model_a\.npz.*model_b\.npz"):
        run_test(CentreFrame(), t / "ts", t / "out", skip_existing=True, log=lambda *a: None, model=other)
    assert "model_a.npz" in json.loads((t / "out" / "model.json").read_text())["model"]
    # without --skip_existing every frame is made again, now by model_b, and the record says so
    fresh = CentreFrame()
    run_test(fresh, t / "ts", t / "out", log=lambda *a: None, model=other)
    assert fresh.calls == FRAMES and json.loads((t / "out" / "model.json").read_text()) == other


def test_cli_prints_the_commands_own_resume_advice(capsys):
    def main(argv):
        raise Interrupted("3 frames are complete; run it with --skip_existing to keep them.")

    assert run_cli(main, [], prog="tool.py") == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert err.strip() == "tool.py: interrupted. 3 frames are complete; run it with --skip_existing to keep them."

    def plain(argv):
        raise KeyboardInterrupt

    assert run_cli(plain, [], prog="tool.py") == EXIT_INTERRUPTED
    assert "running the same command again continues where it stopped" in capsys.readouterr().err
