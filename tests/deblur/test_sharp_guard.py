"""Sharp-frame guard (deblur.inference.apply_sharp_guard, `--sharp_guard TAU`): a frame's
correction is scaled by rms^2 / (rms^2 + tau^2); small corrections (frames that are already
sharp) shrink, large ones stay; the checkpoint can store tau, the command line overrides it, and
results say it was used."""
from __future__ import annotations

import json

import numpy as np
import pytest

from common.fileio import read_image, write_image
from deblur import checkpoint as ckpt
from deblur.config import NetworkConfig
from deblur.inference import Deblurrer, apply_sharp_guard


def _frame(seed, h=24, w=32):
    return np.random.default_rng(seed).integers(30, 220, (h, w, 3), dtype=np.uint8)


def test_guard_scales_the_correction_by_its_rms():
    centre = _frame(0)
    c = centre.astype(np.float64) / 255
    for rms_levels, tau in ((0.5, 1.0), (1.0, 1.0), (6.0, 1.0), (2.0, 0.5)):
        correction = np.where(np.indices(centre.shape).sum(0) % 2, 1.0, -1.0) * rms_levels / 255
        out = apply_sharp_guard(c + correction, centre, tau)
        g = rms_levels ** 2 / (rms_levels ** 2 + tau ** 2)
        np.testing.assert_allclose(out, c + g * correction, atol=1e-6)
        assert out.dtype == np.float32
    # a one-level correction is halved at tau 1; a six-level one keeps 97%
    np.testing.assert_allclose(apply_sharp_guard(c + 6 / 255, centre, 1.0) - c, 6 / 255 * 36 / 37, atol=1e-6)


def test_guard_zero_is_off_and_no_correction_stays_none():
    centre = _frame(1)
    restored = np.clip(centre / 255 + _frame(2) / 255 * 0.01, 0, 1).astype(np.float32)
    np.testing.assert_array_equal(apply_sharp_guard(restored, centre, 0.0), restored)
    same = centre.astype(np.float32) / 255
    np.testing.assert_allclose(apply_sharp_guard(same, centre, 1.0), same, atol=1e-7)
    with pytest.raises(ValueError):
        apply_sharp_guard(restored, centre, -1.0)
    with pytest.raises(ValueError):
        apply_sharp_guard(restored, centre, float("nan"))


@pytest.fixture(scope="module")
def net():
    import keras

    from deblur.network import build_network

    keras.utils.set_random_seed(4)
    n = build_network(NetworkConfig(face="none", levels=1, channels=4, residual=True))
    for w in n.weights:  # dec1_0 starts at zero under --residual: make the correction non-zero
        if "dec1_0" in w.path and w.path.endswith("kernel"):
            w.assign(np.random.default_rng(0).normal(0, 0.002, w.shape).astype("float32"))
    return n


def _inputs(seed, h=32, w=40):
    return [_frame(seed + k, h, w) for k in range(5)], None, None


def test_deblurrer_applies_the_guard_to_the_network_output(net):
    frames, _, _ = _inputs(10)
    plain = Deblurrer(net, net.deblur_config).restore_batch([(frames, None, None)])[0]
    centre = frames[2]
    rms = np.sqrt(np.mean((plain.astype(np.float64) - centre / 255) ** 2)) * 255
    assert 0.3 < rms < 30  # the network changes the frame: the guard has something to scale
    for tau in (rms / 2, rms, 3 * rms):
        guarded = Deblurrer(net, net.deblur_config, sharp_guard=tau)
        got = guarded.restore_batch([(frames, None, None)])[0]
        np.testing.assert_allclose(got, apply_sharp_guard(plain, centre, tau), atol=1e-6)
        # the rounded frame moves towards the input
        d_plain = np.abs(np.round(plain * 255) - centre).mean()
        d_guard = np.abs(guarded.deblur(frames).astype(float) - centre).mean()
        assert d_guard < d_plain
    # with the self-ensemble the guard scales the averaged correction
    ens = Deblurrer(net, net.deblur_config, self_ensemble=True).restore_batch([(frames, None, None)])[0]
    both = Deblurrer(net, net.deblur_config, self_ensemble=True, sharp_guard=rms)
    np.testing.assert_allclose(both.restore_batch([(frames, None, None)])[0],
                               apply_sharp_guard(ens, centre, rms), atol=1e-6)


def test_checkpoint_stores_tau_and_run_model_uses_it_unless_told(tmp_path, net):
    import run_model

    ckpt.save_native(tmp_path / "ck" / "deblur-5.npz", net, 5)
    assert ckpt.stored_inference(tmp_path / "ck") == ckpt.INFERENCE_DEFAULTS
    exported = tmp_path / "guarded.npz"
    assert run_model.main(["--phase", "export", "--checkpoint", str(tmp_path / "ck"),
                           "--output_path", str(exported), "--sharp_guard", "1.5"]) == 0
    assert ckpt.stored_inference(exported)["sharp_guard"] == 1.5
    # what every command runs: the stored values unless a flag is given
    assert ckpt.inference_settings(exported) == (False, 1.5)
    assert ckpt.inference_settings(exported, True, 0.0) == (True, 0.0)
    with pytest.raises(ValueError):
        ckpt.inference_settings(exported, None, -1.0)
    for bad in (True, "1", float("inf"), float("nan")):  # one rule for given and stored values
        with pytest.raises(ValueError):
            ckpt.check_sharp_guard(bad)
    assert ckpt.check_sharp_guard(np.float32(0.5)) == 0.5
    assert ckpt.inference_label(True, 1.0) == ", mirror self-ensemble, sharp-frame guard 1"
    assert ckpt.inference_label(False, 0.0) == ""
    # a re-export keeps it; --sharp_guard 0 stores none
    again = tmp_path / "again.npz"
    assert run_model.main(["--phase", "export", "--checkpoint", str(exported), "--output_path", str(again)]) == 0
    assert ckpt.stored_inference(again)["sharp_guard"] == 1.5
    off = tmp_path / "off.npz"
    assert run_model.main(["--phase", "export", "--checkpoint", str(exported), "--output_path", str(off),
                           "--sharp_guard", "0"]) == 0
    assert ckpt.stored_inference(off)["sharp_guard"] == 0.0 and "sharp_guard" not in ckpt.read_meta(off)

    frames, _, _ = _inputs(20)
    for o, f in zip(range(-2, 3), frames):
        write_image(tmp_path / "ts" / "clip" / f"blur_{o}" / "00001.png", f)
    runs = {"stored": [], "flag": ["--sharp_guard", "0.25"], "off": ["--sharp_guard", "0"]}
    for name, extra in runs.items():
        assert run_model.main(["--phase", "test", "--input_path", str(tmp_path / "ts"),
                               "--output_path", str(tmp_path / name), "--checkpoint", str(exported),
                               "--precision", "fp32", *extra]) == 0
    net16, cfg, _ = ckpt.load_generator(exported, {}, verbose=False)  # the float16 weights
    for name, tau in (("stored", 1.5), ("flag", 0.25), ("off", 0.0)):
        rec = json.loads((tmp_path / name / "model.json").read_text())
        assert rec.get("sharp_guard", 0.0) == tau
        assert ("sharp-frame guard" in rec["model"]) == (tau > 0)
        expect = Deblurrer(net16, cfg, sharp_guard=tau).deblur(frames)
        np.testing.assert_array_equal(read_image(tmp_path / name / "clip" / "00001.png"), expect)


def test_checkpoint_stores_the_self_ensemble_too(tmp_path, net):
    import run_model

    ckpt.save_native(tmp_path / "ck" / "deblur-5.npz", net, 5)
    exported = tmp_path / "ens.npz"
    assert run_model.main(["--phase", "export", "--checkpoint", str(tmp_path / "ck"), "--output_path",
                           str(exported), "--self_ensemble", "--sharp_guard", "0.5"]) == 0
    assert ckpt.stored_inference(exported) == {"self_ensemble": True, "sharp_guard": 0.5}
    frames, _, _ = _inputs(40)
    for o, f in zip(range(-2, 3), frames):
        write_image(tmp_path / "ts" / "clip" / f"blur_{o}" / "00001.png", f)
    net16, cfg, _ = ckpt.load_generator(exported, {}, verbose=False)
    for name, extra, ens in (("stored", [], True), ("off", ["--self_ensemble", "off"], False)):
        assert run_model.main(["--phase", "test", "--input_path", str(tmp_path / "ts"), "--output_path",
                               str(tmp_path / name), "--checkpoint", str(exported), "--precision", "fp32",
                               *extra]) == 0
        rec = json.loads((tmp_path / name / "model.json").read_text())
        assert rec.get("self_ensemble", False) is ens and rec["sharp_guard"] == 0.5
        expect = Deblurrer(net16, cfg, self_ensemble=ens, sharp_guard=0.5).deblur(frames)
        np.testing.assert_array_equal(read_image(tmp_path / name / "clip" / "00001.png"), expect)
    bad = tmp_path / "bad_ens.npz"
    ckpt.write_weights(bad, ckpt.network_arrays(net), {"format": "facedeblur-native-1",
                       "config": net.deblur_config.to_dict(), "step": 1, "self_ensemble": "yes"})
    with pytest.raises(ckpt.CheckpointDamaged, match="bad_ens.npz"):
        ckpt.stored_inference(bad)


def test_bad_tau_is_a_usage_error_and_a_bad_stored_one_names_the_file(tmp_path, net, capsys):
    import run_model

    with pytest.raises(SystemExit) as e:
        run_model.build_parser().parse_args(["--phase", "test", "--sharp_guard", "-1"])
    assert e.value.code == 2 and "--sharp_guard" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    ckpt.write_weights(bad, ckpt.network_arrays(net), {"format": "facedeblur-native-1",
                       "config": net.deblur_config.to_dict(), "step": 1, "sharp_guard": "high"})
    with pytest.raises(ckpt.CheckpointDamaged, match="bad.npz"):
        ckpt.stored_inference(bad)


def test_model_record_names_the_guard(tmp_path):
    cfg = NetworkConfig(face="none", channels=4)
    plain = ckpt.model_record(tmp_path / "deblur-3.npz", cfg, 3)
    guarded = ckpt.model_record(tmp_path / "deblur-3.npz", cfg, 3, sharp_guard=1.0)
    assert "sharp_guard" not in plain and guarded["sharp_guard"] == 1.0
    assert guarded["model"] == plain["model"] + ", sharp-frame guard 1"


def test_bench_sharp_guard_scores_each_tau():
    from bench.sharp_guard import score_taus
    from common import metrics

    sharp = _frame(30)
    checker = np.where(np.indices(sharp.shape).sum(0) % 2, 1.0, -1.0)
    # a blurred frame the network restores (a 4-level correction) and a nearly sharp one it
    # damages (a 1-level correction where one level of noise was all there was to fix)
    blurry_a = np.clip(sharp + 4 * checker, 0, 255).astype(np.uint8)
    restored_a = np.clip(sharp / 255 + 0.7 * checker / 255, 0, 1).astype(np.float32)
    blurry_b = sharp.copy()
    blurry_b[::7, ::5] += 1
    restored_b = np.clip(blurry_b / 255 + 1.2 * checker / 255, 0, 1).astype(np.float32)
    clean = (sharp, np.clip(sharp / 255 + checker / 255, 0, 1).astype(np.float32), sharp)
    scores = score_taus([(blurry_a, restored_a, sharp), (blurry_b, restored_b, sharp), clean], [0.0, 2.0])
    for tau in (0.0, 2.0):
        want = np.mean([metrics.psnr(np.round(apply_sharp_guard(r, b, tau) * 255).astype(np.uint8), sharp)
                        for b, r in ((blurry_a, restored_a), (blurry_b, restored_b))])
        assert scores[tau] == (pytest.approx(want), 2)  # the clean frame is left out
    assert scores[2.0][0] > scores[0.0][0] + 1  # the guard spares the nearly sharp frame
