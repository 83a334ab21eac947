"""Importing the authors' TF1 checkpoints: an independent TF1/slim graph of the original
(deblur/testing/tf1_oracle.py) writes a real `tf.compat.v1.train.Saver` checkpoint with random weights
and Adam slots; our Keras network loads it by name and must reproduce its outputs."""
from __future__ import annotations

import numpy as np
import pytest

import run_model
from deblur.testing import tf1_oracle
from deblur import checkpoint as ckpt
from deblur.network import uses_coeff, uses_render

TOL = 1e-4


def _inputs(model, n_frames, h, w, seed=0):
    rng = np.random.default_rng(seed)
    c = 1 if model == "gray" else 3
    blur = rng.random((1, h, w, c * n_frames), dtype=np.float32)
    render = rng.random((1, h, w, c), dtype=np.float32)
    coeff = rng.normal(size=(1, 9, 9)).astype(np.float32)
    return blur, render, coeff


def _compare(tmp_path, face, levels, model, channels, h, w, n_frames=5):
    prefix = tf1_oracle.build_oracle_checkpoint(
        tmp_path / "tf1", face=face, levels=levels, model=model, n_frames=n_frames,
        channels=channels, seed=3)
    blur, render, coeff = _inputs(model, n_frames, h, w)
    ref = tf1_oracle.run_oracle(prefix, blur, render, coeff, face=face, levels=levels,
                                model=model, n_frames=n_frames, channels=channels)
    # Load from the directory (the `checkpoint` file), as users point at checkpoints/both_1_256.
    net, cfg, step = ckpt.load_generator(tmp_path / "tf1", {"levels": levels})
    assert step == 1234 and cfg.face == face and cfg.model == model
    x = {"blur": blur}
    if uses_render(face):
        x["render"] = render
    if uses_coeff(face):
        x["coeff"] = coeff
    out = net(x)
    out = out if isinstance(out, (list, tuple)) else [out]
    assert len(out) == len(ref) == levels
    for o, r in zip(out, ref):
        o = np.asarray(o)
        assert o.shape == r.shape
        # Guard against a vacuous comparison: the outputs vary and are not tiny.
        assert r.std() > 1e-3
        assert np.abs(o - r).max() < TOL, (face, levels, model, np.abs(o - r).max())
    return net, x, ref


@pytest.mark.parametrize("face", ["both", "render", "coeff", "none"])
@pytest.mark.parametrize("levels", [1, 3])
def test_tf1_checkpoint_reproduces_the_original_graph(tmp_path, face, levels):
    _compare(tmp_path, face, levels, "color", channels=8, h=144, w=160)


@pytest.mark.parametrize("levels", [1, 3])
def test_tf1_lstm_checkpoint(tmp_path, levels):
    _compare(tmp_path, "both", levels, "lstm", channels=8, h=144, w=160)


def test_tf1_gray_checkpoint(tmp_path):
    _compare(tmp_path, "both", 2, "gray", channels=8, h=72, w=80)


def test_full_size_tf1_checkpoint_and_native_round_trip(tmp_path):
    net, x, ref = _compare(tmp_path, "both", 1, "color", channels=32, h=48, w=64)
    assert net.count_params() == 7_008_467
    # run_model.py --phase import writes a native checkpoint that gives the same outputs.
    rc = run_model.main(["--phase", "import", "--checkpoint", str(tmp_path / "tf1"),
                         "--output_path", str(tmp_path / "native"), "--gpu", "-1"])
    assert rc == 0
    native = tmp_path / "native" / "deblur-1234.npz"
    assert native.is_file()
    net2, cfg, step = ckpt.load_generator(native)
    assert step == 1234 and cfg.channels == 32
    np.testing.assert_allclose(np.asarray(net2(x)), ref[-1], atol=TOL)


def test_optimizer_slots_are_ignored_and_other_names_reported(tmp_path):
    tf1_oracle.build_oracle_checkpoint(tmp_path / "tf1", face="both", channels=8)
    arrays, prefix = ckpt.read_tf1_checkpoint(tmp_path / "tf1")
    assert prefix.endswith("deblur.model-1234")
    assert all(n.startswith("g_net/") for n in arrays)
    assert not any(n.endswith("/Adam") or n.endswith("/Adam_1") for n in arrays)
    from deblur.network import build_generator

    # A checkpoint of the render-only network does not load into the both-priors network.
    tf1_oracle.build_oracle_checkpoint(tmp_path / "render", face="render", channels=8)
    arrays_r, _ = ckpt.read_tf1_checkpoint(tmp_path / "render")
    with pytest.raises(ckpt.CheckpointMismatch, match="shape mismatch"):
        ckpt.assign_by_name(build_generator("both", 1, channels=8), arrays_r, "render ckpt")


def test_checkpoint_file_naming_another_machine(tmp_path):
    tf1_oracle.build_oracle_checkpoint(tmp_path / "both_1_256", face="both", channels=8)
    # As released: the `checkpoint` file holds the authors' absolute paths.
    (tmp_path / "both_1_256" / "checkpoint").write_text(
        'model_checkpoint_path: "/home/author/3Dfacedeblurring/checkpoints/both_1_256/'
        'deblur.model-1234"\nall_model_checkpoint_paths: "/home/author/3Dfacedeblurring/'
        'checkpoints/both_1_256/deblur.model-1234"\n')
    arrays, prefix = ckpt.read_tf1_checkpoint(tmp_path / "both_1_256")
    assert prefix == str(tmp_path / "both_1_256" / "deblur.model-1234")
    assert "g_net/enc1_1/weights" in arrays


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "testing_set").mkdir()
    rc = run_model.main(["--phase", "test", "--checkpoint", str(tmp_path / "nothing"),
                         "--input_path", str(tmp_path / "testing_set"), "--gpu", "-1"])
    err = capsys.readouterr().err
    assert rc == 2 and "no checkpoint found" in err and "Traceback" not in err
