"""Mirror self-ensemble (deblur.inference.Deblurrer(self_ensemble=True), `run_model.py --phase
test --self_ensemble`): each frame is also deblurred mirrored and the two outputs averaged before
rounding; batches give what single frames give; results say the ensemble made them."""
from __future__ import annotations

import json

import numpy as np
import pytest

from common.fileio import write_image
from deblur import checkpoint as ckpt
from deblur.config import NetworkConfig
from deblur.inference import Deblurrer


@pytest.fixture(scope="module")
def net():
    from deblur.network import build_network

    import keras

    keras.utils.set_random_seed(3)
    n = build_network(NetworkConfig(face="render", levels=1, channels=4, residual=True))
    # dec1_0 starts at zero under --residual (the identity): give the network something to say
    for w in n.weights:
        if "dec1_0" in w.path and w.path.endswith("kernel"):
            w.assign(np.random.default_rng(0).normal(0, 0.01, w.shape).astype("float32"))
    return n


def _inputs(seed, h=40, w=56):
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(5)]
    return frames, rng.integers(0, 256, (h, w, 3), dtype=np.uint8), None


def _mirror(frames, render, coeff):
    return [f[:, ::-1].copy() for f in frames], render[:, ::-1].copy(), coeff


def test_ensemble_averages_the_output_and_the_mirrored_output_of_the_mirrored_input(net):
    frames, render, _ = _inputs(0)
    plain = Deblurrer(net, net.deblur_config)
    a = plain.deblur(frames, render).astype(np.float64)
    b = plain.deblur(*_mirror(frames, render, None))[:, ::-1].astype(np.float64)
    assert np.abs(a - b).mean() > 0.5  # the network is not mirror-symmetric: the test can tell
    ens = Deblurrer(net, net.deblur_config, self_ensemble=True).deblur(frames, render).astype(np.float64)
    # averaged before rounding: within one 8-bit level of the mean of the two rounded outputs
    assert np.abs(ens - (a + b) / 2).max() <= 1.0
    assert np.abs(ens - a).mean() > 0.2
    # a mirror-symmetric input gives a mirror-symmetric output
    sym = [np.concatenate([f[:, :28], f[:, :28][:, ::-1]], axis=1) for f in frames]
    rsym = np.concatenate([render[:, :28], render[:, :28][:, ::-1]], axis=1)
    out = Deblurrer(net, net.deblur_config, self_ensemble=True).deblur(sym, rsym).astype(int)
    assert np.abs(out - out[:, ::-1]).max() <= 1


def test_ensemble_batches_give_what_single_frames_give(net):
    d = Deblurrer(net, net.deblur_config, self_ensemble=True)
    items = [_inputs(s) for s in (1, 2, 3)] + [_inputs(4, 48, 32)]  # one portrait, another size
    one = [d.deblur(*it) for it in items]
    for batch in (None, 2, 8):
        got = d.deblur_batch(items, batch_size=batch)
        assert len(got) == len(items)
        for g, o in zip(got, one):
            assert g.shape == o.shape and g.dtype == np.uint8
            assert np.abs(g.astype(int) - o).max() <= 1


def test_model_record_says_the_frames_are_a_self_ensemble(tmp_path):
    cfg = NetworkConfig(face="none", channels=4)
    plain = ckpt.model_record(tmp_path / "deblur-3.npz", cfg, 3)
    ens = ckpt.model_record(tmp_path / "deblur-3.npz", cfg, 3, self_ensemble=True)
    assert "self_ensemble" not in plain and "self-ensemble" not in plain["model"]
    assert ens["self_ensemble"] is True and ens["model"] == plain["model"] + ", mirror self-ensemble"


def test_run_model_self_ensemble_flag(tmp_path, net):
    import run_model
    from deblur.checkpoint import save_native

    save_native(tmp_path / "ck" / "deblur-5.npz", net, 5)
    frames, render, _ = _inputs(5, 32, 40)
    for o, f in zip(range(-2, 3), frames):
        write_image(tmp_path / "ts" / "clip" / f"blur_{o}" / "00001.png", f)
    write_image(tmp_path / "ts" / "clip" / "render" / "00001.png", render)
    outs = {}
    for name, extra in (("plain", []), ("ens", ["--self_ensemble"])):
        rc = run_model.main(["--phase", "test", "--input_path", str(tmp_path / "ts"),
                             "--output_path", str(tmp_path / name), "--checkpoint", str(tmp_path / "ck"),
                             "--precision", "fp32", *extra])
        assert rc == 0
        outs[name] = json.loads((tmp_path / name / "model.json").read_text())
    assert outs["ens"].get("self_ensemble") is True and "self_ensemble" not in outs["plain"]
    from common.fileio import read_image

    expect = Deblurrer(net, net.deblur_config, self_ensemble=True).deblur(frames, render)
    np.testing.assert_array_equal(read_image(tmp_path / "ens" / "clip" / "00001.png"), expect)
