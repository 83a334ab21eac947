"""Sanity tests of the independent TF1 oracle (deblur/testing/tf1_oracle.py) of 3Dfacedeblurring models/model.py.

The oracle is the reference the TF1 checkpoint importer is compared against, so
these tests pin what it must be: the original variable names and shapes, the
pinned parameter count, per-scale output shapes for every flag, a checkpoint that
looks like a real training checkpoint, and the TF1 resize semantics.
Narrow networks (channels=8) and small frames keep it to seconds on CPU.
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from deblur.testing.tf1_oracle import (
    _resize_tf1,
    build_oracle_checkpoint,
    oracle_variable_shapes,
    run_oracle,
)

NARROW = 8

# tf_slim builds its layers through the legacy Keras layer.apply, which warns on every layer.
pytestmark = pytest.mark.filterwarnings("ignore:`layer.apply` is deprecated:UserWarning")


def _inputs(batch, h, w, model, n_frames=5, seed=1):
    rng = np.random.RandomState(seed)
    c = 1 if model == "gray" else 3
    blur = rng.rand(batch, h, w, c * n_frames).astype(np.float32)
    render = rng.rand(batch, h, w, c).astype(np.float32)
    coeff = rng.randn(batch, 9, 9).astype(np.float32)
    coeff[:, 8, 8] = 0.0
    return blur, render, coeff


def test_full_size_parameter_count_and_names():
    shapes = oracle_variable_shapes(face="both", levels=1, model="color", n_frames=5)
    assert sum(int(np.prod(s)) for s in shapes.values()) == 7_008_467
    assert len(shapes) == 84
    assert shapes["g_net/enc1_1/weights"] == (5, 5, 30, 32)
    assert shapes["g_net/enc1_2/conv1/weights"] == (5, 5, 35, 35)
    assert shapes["g_net/enc1_2/conv2/biases"] == (35,)
    assert shapes["g_net/enc3_4/conv2/weights"] == (5, 5, 128, 128)
    assert shapes["g_net/dec3_3/conv1/weights"] == (5, 5, 129, 129)
    # slim.conv2d_transpose kernels are (h, w, out, in)
    assert shapes["g_net/dec2_4/weights"] == (4, 4, 64, 129)
    assert shapes["g_net/dec1_4/weights"] == (4, 4, 35, 64)
    assert shapes["g_net/dec1_0/weights"] == (5, 5, 35, 3)
    assert not any("LSTM" in n for n in shapes)


def test_variable_shapes_follow_the_flags():
    none = oracle_variable_shapes(face="none", levels=1, model="color", n_frames=5)
    assert none["g_net/enc1_2/conv1/weights"] == (5, 5, 32, 32)
    assert none["g_net/dec3_1/conv2/weights"] == (5, 5, 128, 128)
    assert none["g_net/dec2_4/weights"] == (4, 4, 64, 128)

    lstm = oracle_variable_shapes(face="both", levels=1, model="lstm", n_frames=5)
    base = oracle_variable_shapes(face="both", levels=1, model="color", n_frames=5)
    extra = {k: v for k, v in lstm.items() if k not in base}
    assert extra == {"g_net/convLSTM/LSTM_conv/weights": (3, 3, 256, 512),
                     "g_net/convLSTM/LSTM_conv/biases": (512,)}
    assert set(base) <= set(lstm)

    gray = oracle_variable_shapes(face="render", levels=1, model="gray", n_frames=5)
    assert gray["g_net/enc1_1/weights"] == (5, 5, 10, 32)
    assert gray["g_net/enc1_2/conv1/weights"] == (5, 5, 33, 33)
    assert gray["g_net/dec1_0/weights"] == (5, 5, 33, 1)

    nine = oracle_variable_shapes(face="coeff", levels=3, model="color", n_frames=9, channels=NARROW)
    assert nine["g_net/enc1_1/weights"] == (5, 5, 54, 8)
    assert nine["g_net/dec3_2/conv1/weights"] == (5, 5, 33, 33)
    # levels share weights: no per-scale copies
    assert nine.keys() == oracle_variable_shapes(face="coeff", levels=1, model="color", n_frames=9,
                                                 channels=NARROW).keys()


# (face, levels, model, H, W): coefficient faces need a >= 9x9 bottleneck at every scale.
CASES = [
    ("both", 1, "color", 48, 44),
    ("render", 1, "color", 32, 48),
    ("coeff", 1, "color", 48, 44),
    ("none", 1, "color", 32, 48),
    ("both", 3, "color", 192, 192),
    ("none", 3, "color", 32, 48),
    ("both", 1, "lstm", 48, 44),
    ("both", 3, "lstm", 192, 192),
    ("render", 1, "gray", 32, 48),
    ("none", 3, "gray", 32, 48),
]


@pytest.mark.parametrize("face,levels,model,h,w", CASES)
def test_output_shapes_per_scale(tmp_path, face, levels, model, h, w):
    prefix = build_oracle_checkpoint(str(tmp_path), face=face, levels=levels, model=model,
                                     channels=NARROW, with_adam=False)
    blur, render, coeff = _inputs(2, h, w, model)
    outs = run_oracle(prefix, blur, render, coeff, face=face, levels=levels, model=model, n_frames=5,
                      channels=NARROW)
    c = 1 if model == "gray" else 3
    expected = [(2, round(h * 0.5 ** (levels - 1 - i)), round(w * 0.5 ** (levels - 1 - i)), c)
                for i in range(levels)]
    assert [o.shape for o in outs] == expected
    for o in outs:
        assert np.all(np.isfinite(o))
        # random weights of a sensible scale: outputs neither vanish nor explode
        assert 0.01 < float(o.std()) < 10.0


def test_checkpoint_looks_like_a_training_checkpoint(tmp_path):
    prefix = build_oracle_checkpoint(str(tmp_path), face="both", levels=1, model="lstm", channels=NARROW,
                                     step=1234, with_adam=True)
    assert prefix == str(tmp_path / "deblur.model-1234")
    assert tf.train.latest_checkpoint(str(tmp_path)) == prefix
    assert (tmp_path / "deblur.model-1234.index").exists()
    assert list(tmp_path.glob("deblur.model-1234.data-*"))

    reader = tf.train.load_checkpoint(prefix)
    stored = reader.get_variable_to_shape_map()
    g_vars = oracle_variable_shapes(face="both", levels=1, model="lstm", n_frames=5, channels=NARROW)
    for name, shape in g_vars.items():
        assert tuple(stored[name]) == shape
        assert tuple(stored[name + "/Adam"]) == shape
        assert tuple(stored[name + "/Adam_1"]) == shape
        value = reader.get_tensor(name)
        # every tensor random and non-zero, biases included, so a mis-mapping would show
        assert float(np.abs(value).min()) > 0.0 and float(value.std()) > 0.0
    # the original's unnamed step counter, and Adam's non-slot variables
    assert int(reader.get_tensor("Variable")) == 1234
    assert {"beta1_power", "beta2_power"} <= set(stored)
    assert set(stored) == set(g_vars) | {n + "/Adam" for n in g_vars} | {n + "/Adam_1" for n in g_vars} | {
        "Variable", "beta1_power", "beta2_power"}


def test_without_adam_only_generator_variables(tmp_path):
    prefix = build_oracle_checkpoint(str(tmp_path), face="none", levels=1, model="color", channels=NARROW,
                                     with_adam=False)
    reader = tf.train.load_checkpoint(prefix)
    stored = reader.get_variable_to_shape_map()
    assert int(reader.get_tensor("Variable")) == 1234
    assert set(stored) - {"Variable"} == set(
        oracle_variable_shapes(face="none", levels=1, model="color", n_frames=5, channels=NARROW))


def test_seed_controls_the_weights(tmp_path):
    kw = dict(face="coeff", levels=1, model="color", channels=NARROW, with_adam=False)
    a = tf.train.load_checkpoint(build_oracle_checkpoint(str(tmp_path / "a"), seed=3, **kw))
    b = tf.train.load_checkpoint(build_oracle_checkpoint(str(tmp_path / "b"), seed=3, **kw))
    c = tf.train.load_checkpoint(build_oracle_checkpoint(str(tmp_path / "c"), seed=4, **kw))
    name = "g_net/dec3_1/conv2/weights"
    np.testing.assert_array_equal(a.get_tensor(name), b.get_tensor(name))
    assert not np.allclose(a.get_tensor(name), c.get_tensor(name))


def test_outputs_use_exactly_the_priors_the_face_flag_names(tmp_path):
    # One batch holds the base input and three variants: render changed, coeff
    # changed, blur changed; samples are independent through the whole network.
    blur, render, coeff = _inputs(1, 48, 44, "color")
    render2 = np.random.RandomState(7).rand(*render.shape).astype(np.float32)
    blur_b = np.concatenate([blur, blur, blur, blur * 0.5])
    render_b = np.concatenate([render, render2, render, render])
    coeff_b = np.concatenate([coeff, coeff, coeff * 3.0, coeff])
    diffs = {}
    for face in ("both", "none"):
        prefix = build_oracle_checkpoint(str(tmp_path / face), face=face, levels=1, model="color",
                                         channels=NARROW, with_adam=False)
        out = run_oracle(prefix, blur_b, render_b, coeff_b, face=face, levels=1, model="color", n_frames=5,
                         channels=NARROW)[-1]
        diffs[face] = [float(np.abs(out[k] - out[0]).max()) for k in (1, 2, 3)]
    assert min(diffs["both"]) > 1e-3
    assert diffs["none"][0] == 0.0 and diffs["none"][1] == 0.0 and diffs["none"][2] > 1e-3


def test_resize_is_tf1_bilinear_without_half_pixel_centres():
    # TF1 resize_images(method=0): source coordinate = dst * in / out, linear between
    # floor and floor+1 (clamped); differs from TF2 tf.image.resize (half-pixel centres).
    x = np.arange(5 * 7, dtype=np.float32).reshape(1, 5, 7, 1) ** 1.5
    got = _resize_tf1(tf.constant(x), [3, 4]).numpy()[0, :, :, 0]

    def axis_weights(n_in, n_out):
        m = np.zeros((n_out, n_in), np.float64)
        for o in range(n_out):
            src = o * n_in / n_out
            i0 = int(np.floor(src))
            i1 = min(i0 + 1, n_in - 1)
            m[o, i0] += 1.0 - (src - i0)
            m[o, i1] += src - i0
        return m

    ref = axis_weights(5, 3) @ x[0, :, :, 0].astype(np.float64) @ axis_weights(7, 4).T
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)
    tf2 = tf.image.resize(x, [3, 4], method="bilinear").numpy()[0, :, :, 0]
    assert np.abs(tf2 - ref).max() > 1.0


def test_sizes_the_original_cannot_run_are_refused(tmp_path):
    prefix = build_oracle_checkpoint(str(tmp_path), face="both", levels=1, model="color", channels=NARROW,
                                     with_adam=False)
    blur, render, coeff = _inputs(1, 32, 48, "color")
    with pytest.raises(ValueError, match="9x9"):
        run_oracle(prefix, blur, render, coeff, face="both", levels=1, model="color", n_frames=5,
                   channels=NARROW)
    blur, render, coeff = _inputs(1, 40, 42, "color")
    with pytest.raises(ValueError, match="multiple of 4"):
        run_oracle(prefix, blur, render, coeff, face="both", levels=1, model="color", n_frames=5,
                   channels=NARROW)
