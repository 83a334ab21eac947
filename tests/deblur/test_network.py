"""The generator: shapes for every flag combination, parameter count, resize, coefficient patch,
serialisation round trip, padding to any size."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf

from deblur.config import FACE_MODES, MODELS
from deblur.network import (build_generator, coeff_patch, crop_back,
                            image_channels, min_size, pad_to_valid, resize_bilinear_tf1,
                            size_multiple, tf1_names, uses_coeff, uses_render)
from deblur.precision import precision_scope


def _inputs(face, model, n_frames, h, w, batch=1, seed=0):
    rng = np.random.default_rng(seed)
    c = image_channels(model)
    x = {"blur": rng.random((batch, h, w, c * n_frames), dtype=np.float32)}
    if uses_render(face):
        x["render"] = rng.random((batch, h, w, c), dtype=np.float32)
    if uses_coeff(face):
        x["coeff"] = rng.normal(size=(batch, 9, 9)).astype(np.float32)
    return x


def _as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def test_full_size_parameter_count_is_the_originals():
    net = build_generator("both", 1, "color", 5)
    assert net.count_params() == 7_008_467
    # Every variable has a TF1 name, and the names cover every parameter exactly once.
    names = tf1_names(net)
    assert sum(int(np.prod(v.shape)) for v in names.values()) == 7_008_467
    assert names["g_net/enc1_1/weights"].shape == (5, 5, 30, 32)
    assert names["g_net/enc1_2/conv1/weights"].shape == (5, 5, 35, 35)
    assert names["g_net/dec3_3/conv2/weights"].shape == (5, 5, 129, 129)
    assert names["g_net/dec2_4/weights"].shape == (4, 4, 64, 129)
    assert names["g_net/dec1_0/biases"].shape == (3,)


def test_parameter_count_follows_the_priors():
    base = build_generator("none", 1, "color", 5).count_params()
    # render: +3 channels through enc1_2..4, dec1_1..3 and dec1_4/dec1_0; coeff: +1 at dec3_*.
    assert build_generator("both", 1, "color", 5).count_params() - base == 7_008_467 - base > 0
    assert build_generator("coeff", 1, "color", 5).count_params() > base
    # Levels share all weights.
    assert build_generator("both", 3, "color", 5).count_params() == 7_008_467
    # 9 frames widen only the first convolution.
    assert (build_generator("both", 1, "color", 9).count_params() - 7_008_467
            == 5 * 5 * 8 * 3 * 32)


@pytest.mark.parametrize("face,model,levels",
                         list(itertools.product(FACE_MODES, MODELS, (1, 3))))
def test_output_shapes_for_every_flag_combination(face, model, levels):
    net = build_generator(face, levels, model, 5, channels=4)
    h, w = 144, 160
    outs = _as_list(net(_inputs(face, model, 5, h, w, batch=2)))
    assert len(outs) == levels
    c = image_channels(model)
    for i, o in enumerate(outs):
        s = 0.5 ** (levels - 1 - i)
        assert tuple(o.shape) == (2, int(h * s), int(w * s), c)
        assert np.all(np.isfinite(np.asarray(o)))


def test_nine_frames():
    net = build_generator("both", 2, "color", 9, channels=4)
    out = _as_list(net(_inputs("both", "color", 9, 72, 80)))
    assert tuple(out[-1].shape) == (1, 72, 80, 3)


def test_priors_change_the_output():
    net = build_generator("both", 1, "color", 5, channels=4)
    x = _inputs("both", "color", 5, 64, 64)
    base = np.asarray(net(x))
    y = dict(x, coeff=x["coeff"] + 1.0)
    z = dict(x, render=np.zeros_like(x["render"]))
    assert np.abs(np.asarray(net(y)) - base).max() > 1e-6
    assert np.abs(np.asarray(net(z)) - base).max() > 1e-6


def test_resize_matches_tf1_legacy_bilinear():
    import tensorflow as tf

    x = np.random.default_rng(0).random((2, 9, 14, 3)).astype(np.float32)
    for size in ((18, 28), (5, 7), (9, 14), (4, 3), (20, 11)):
        ref = tf.compat.v1.image.resize_bilinear(x, size, align_corners=False,
                                                 half_pixel_centers=False)
        ours = resize_bilinear_tf1(x, *size)
        np.testing.assert_allclose(np.asarray(ours), ref.numpy(), atol=1e-6)
    # Keras' own resize uses half-pixel centres and would NOT match: guard against swapping it in.
    import keras

    half = keras.ops.image.resize(x, (18, 28), interpolation="bilinear")
    assert np.abs(np.asarray(half) - np.asarray(resize_bilinear_tf1(x, 18, 28))).max() > 1e-3


def test_identity_resizes_are_skipped_exactly():
    """At scale 1 the input resize, and at the first scale the previous-prediction resize, are
    identities (the original computes them; ~0.45 s CPU per 672x672 frame here): not built,
    and the output is the one the resizes would give."""
    from deblur.network import ResizeLike, ResizeToScale, build_network
    from deblur.config import NetworkConfig

    def resize_layers(net):
        return sorted(l.name for l in net.layers if isinstance(l, (ResizeLike, ResizeToScale)))

    assert resize_layers(build_generator("none", 1, channels=4)) == []
    assert resize_layers(build_generator("both", 2, channels=4)) == ["scale0_blur", "scale0_render",
                                                                     "scale1_pred", "scale1_render"]
    # the skipped ops are identities: resizing the input to its own size changes nothing
    x = _inputs("none", "color", 5, 40, 48)["blur"]
    np.testing.assert_array_equal(np.asarray(resize_bilinear_tf1(x, 40, 48)), x)
    net = build_network(NetworkConfig(face="none", levels=1, channels=4))
    assert np.isfinite(np.asarray(_as_list(net(x))[-1])).all()


def test_coefficient_patch_and_its_placement():
    c = np.arange(239, dtype=np.float64)
    p = coeff_patch(c)
    assert p.shape == (9, 9) and p[8, 8] == 0 and p[0, 1] == 1 and p[8, 7] == 79
    from deblur.network import CoeffChannel

    layer = CoeffChannel()
    for h, w in ((16, 20), (14, 9), (9, 9), (17, 40)):
        like = np.zeros((1, h, w, 2), np.float32)
        got = np.asarray(layer(p[None].astype(np.float32), like))[0, ..., 0]
        top, left = int(round((h - 9) * 0.5)), int(round((w - 9) * 0.5))  # Python 3 round
        ref = np.pad(p, [(top, h - 9 - top), (left, w - 9 - left)])
        np.testing.assert_array_equal(got, ref)


def test_serialisation_round_trip(tmp_path):
    import keras

    net = build_generator("both", 2, "lstm", 5, channels=4)
    x = _inputs("both", "lstm", 5, 72, 80)
    ref = [np.asarray(o) for o in _as_list(net(x))]
    path = tmp_path / "g.keras"
    net.save(path)
    back = keras.saving.load_model(path)
    got = [np.asarray(o) for o in _as_list(back(x))]
    for a, b in zip(ref, got):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert back.get_layer("enc1_2").get_config()["filters"] == 7


def test_pad_to_valid_and_crop_back():
    x = np.arange(2 * 37 * 50 * 3, dtype=np.float32).reshape(2, 37, 50, 3)
    for levels, face in ((1, "none"), (3, "none"), (1, "both"), (2, "coeff")):
        y, size = pad_to_valid(x, levels, face)
        assert y.shape[1] % size_multiple(levels) == 0 and y.shape[2] % size_multiple(levels) == 0
        assert min(y.shape[1:3]) >= min_size(levels, face)
        assert np.array_equal(crop_back(y, size), x)
        assert np.array_equal(y[:, -1, :50], np.broadcast_to(y[:, 36, :50], y[:, -1, :50].shape))


def test_bad_flags_are_rejected():
    with pytest.raises(ValueError, match="face"):
        build_generator("eyes")
    with pytest.raises(ValueError, match="model"):
        build_generator(model="rgb")
    with pytest.raises(ValueError, match="odd"):
        build_generator(n_frames=4)


def test_network_module_is_backend_portable():
    """The generator uses keras.layers / keras.ops only (runs under JAX or PyTorch too)."""
    import ast
    from pathlib import Path

    import deblur.network

    tree = ast.parse(Path(deblur.network.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
                for a in n.names}
    own = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
           and n.module.startswith("deblur")}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree)
                 if isinstance(n, ast.ImportFrom) and n.module and not n.module.startswith("deblur")}
    assert imported <= {"__future__", "math", "keras", "numpy"}, imported
    assert own <= {"deblur.config"}, own  # the configuration object: plain Python


def test_run_model_help_lists_the_flags(capsys):
    import run_model

    with pytest.raises(SystemExit) as e:
        run_model.parse_args(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--phase", "--datalist", "--face", "--levels", "--model", "--n_frames",
                 "--batch_size", "--patch_size", "--epoch", "--lr", "--gpu", "--input_path",
                 "--output_path", "--checkpoint", "--precision"):
        assert flag in text, flag
    assert "both,render,coeff,none" in text.replace(" ", "") or "{both,render,coeff,none}" in text


@pytest.mark.parametrize("levels", [1, 2])
def test_residual_sum_stays_float32_under_bf16(levels):
    """Under the bf16 policy (the default on AMX CPUs) the residual network adds its correction
    to the centre frame in float32: an untrained one returns the frame bit for bit, where a bf16
    sum would round it to 8 bits of mantissa (up to half a grey level on bright pixels)."""
    with precision_scope("bf16"):
        net = build_generator("none", levels, "color", 5, channels=4, residual=True)
    x = _inputs("none", "color", 5, 72, 80)
    centre = x["blur"][..., 6:9]
    rounded = np.asarray(tf.cast(tf.cast(centre, tf.bfloat16), tf.float32))
    assert np.abs(centre - rounded).max() > 1e-3  # the frame is not representable in bf16
    out = np.asarray(_as_list(net(x))[-1])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, centre)
    assert net.get_layer("enc1_1").compute_dtype == "bfloat16"  # the convolutions stay bf16


@pytest.mark.parametrize("face,levels", [("none", 1), ("both", 2)])
def test_residual_network_starts_as_the_identity(face, levels):
    """--residual: each scale adds the blurry centre frame; dec1_0 starts at zero, so an
    untrained network returns its input's centre frame exactly, at every scale."""
    net = build_generator(face, levels, "color", 5, channels=4, residual=True)
    x = _inputs(face, "color", 5, 72, 80)
    outs = _as_list(net(x))
    np.testing.assert_array_equal(np.asarray(outs[-1]), x["blur"][..., 6:9])
    # Same variables (and so the same TF1 names) as the paper's network.
    plain = build_generator(face, levels, "color", 5, channels=4)
    assert net.count_params() == plain.count_params()
    assert set(tf1_names(net)) == set(tf1_names(plain))
    assert net.deblur_config.residual is True and plain.deblur_config.residual is False
    # Once dec1_0 is non-zero the output departs from the input by exactly dec1_0's output.
    rng = np.random.default_rng(1)
    for v in (net.get_layer("dec1_0").kernel, plain.get_layer("dec1_0").kernel):
        v.assign(rng.normal(0, 0.01, v.shape).astype(np.float32))
    assert np.abs(np.asarray(_as_list(net(x))[-1]) - x["blur"][..., 6:9]).max() > 1e-4
