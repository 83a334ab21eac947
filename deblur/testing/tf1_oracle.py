"""Independent TF1-style test oracle for the TF1 checkpoint importer (test-only).

Corresponds to ``DEBLUR.generator`` of rwenqi/3Dfacedeblurring ``models/model.py``
together with ``ResnetBlock`` (jiangsutx/SRN-Deblur ``util/util.py``) and
``BasicConvLSTMCell`` (SRN-Deblur ``util/BasicConvLSTMCell.py``), rebuilt as a
graph-mode ``tf.compat.v1`` + ``tf_slim`` graph so that its variables carry the
original TF1 names (``g_net/enc1_1/weights``, ``g_net/enc1_2/conv1/biases``,
``g_net/convLSTM/LSTM_conv/weights`` ...).  It is written from a reading of the
original, independently of the project's Keras network, and is used only by the
tests: it writes a real TF1 checkpoint (``tf.compat.v1.train.Saver``) with random
weights and runs the original graph on it, so the importer can be compared to it.

Graph, per scale i = 0..L-1 (scale 0.5**(L-1-i), coarsest first, shared weights):

* ``hi, wi = round(H * s), round(W * s)`` (Python 3 ``round``); the blurry stack,
  the previous prediction (the blurry stack itself at scale 0, gradient-stopped)
  and the render are resized with the TF1 ``resize_images(method=0)``, i.e.
  bilinear, ``align_corners=False``, no half-pixel centres;
* ``enc1_1`` 5x5 conv ReLU on ``[blur, pred]`` (2*C*n_frames channels) -> c1;
  face render|both: render concatenated -> c1 + C channels; 3 ResnetBlocks
  (``conv1`` 5x5 ReLU, ``conv2`` 5x5 linear, + input); ``enc2_1`` stride 2 -> c2 +
  3 blocks; ``enc3_1`` stride 2 -> c3 + 3 blocks;
* model lstm: ``convLSTM`` (3x3, c3 features, forget bias 1.0, state [c, h]
  concatenated on channels, zero at the start, resized bilinearly to
  (hi//4, wi//4) before every scale);
* face coeff|both: the 9x9 coefficient map zero-padded centred to the bottleneck
  size, one more channel (top/left pad = round((h-9)/2), round((w-9)/2));
* decoder ``dec3_3..dec3_1`` blocks, ``dec2_4`` 4x4 stride-2 transposed conv ReLU
  + enc2 skip, ``dec2_3..dec2_1``, ``dec1_4`` + enc1 skip, ``dec1_3..dec1_1``,
  ``dec1_0`` 5x5 linear -> C channels: the output of the scale, replicated
  n_frames times on channels as the next scale's previous prediction.

Widths are (c1, c2, c3) = (channels, 2*channels, 4*channels); ``channels=32`` is the
original (7,008,467 parameters for face both, levels 1, color, 5 frames).

Interpretations where the original is silent or broken (documented, not guessed
silently):

* ``n_frames`` and ``channels`` are generalised (the original fixes 5 and 32).
* The render has C channels (3 colour, 1 gray) and widens level 1 by C; the
  original hard-codes 35, which only works in colour (gray + render crashes there).
* The coefficient map needs a bottleneck of at least 9x9 at every scale (the
  original's ``tf.pad`` fails otherwise): H, W >= 36 * 2**(levels-1); every scale
  size must also be a multiple of 4 so the transposed convs meet the skips.
  ``run_oracle`` raises ``ValueError`` for sizes the original graph cannot run.
* The training step counter is created as the original does,
  ``tf.Variable(0, dtype=int32, trainable=False)``, so it is saved as
  ``Variable`` (not ``global_step``); Adam adds ``<var>/Adam``, ``<var>/Adam_1``,
  ``beta1_power`` and ``beta2_power``.
* ``BasicConvLSTMCell`` of 3Dfacedeblurring ships only as ``.pyc``; the names
  follow SRN-Deblur's cell, whose ``_conv_linear`` is a ``slim.conv2d`` with scope
  ``LSTM_conv`` inside ``variable_scope('convLSTM')`` (no ``Matrix``/``Bias``).
"""
from __future__ import annotations

import os
import re

import numpy as np
import tensorflow as tf
import tf_slim as slim

v1 = tf.compat.v1

FACES = ("both", "render", "coeff", "none")
MODELS = ("color", "lstm", "gray")
MODEL_PREFIX = "deblur.model"
KERNEL_GAIN = 0.7  # keeps every output O(0.5): measured std 0.2-0.6 at channels 8 and 32


def _check_flags(face, levels, model, n_frames, channels):
    if face not in FACES:
        raise ValueError(f"face must be one of {FACES}, got {face!r}")
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    if int(levels) < 1 or int(n_frames) < 1 or int(channels) < 1:
        raise ValueError(f"levels, n_frames, channels must be >= 1, got {levels}, {n_frames}, {channels}")


def _chns(model):
    return 1 if model == "gray" else 3


def _scale_sizes(height, width, levels):
    """(hi, wi) per scale, coarsest first, rounded like the original (Python 3 round)."""
    sizes = []
    for i in range(levels):
        s = 0.5 ** (levels - i - 1)
        sizes.append((int(round(height * s)), int(round(width * s))))
    return sizes


def check_size(height, width, *, face, levels):
    """Raise ValueError when the original graph cannot run at (height, width)."""
    uses_coeff = face in ("coeff", "both")
    for hi, wi in _scale_sizes(height, width, levels):
        if hi % 4 or wi % 4:
            raise ValueError(
                f"scale size {hi}x{wi} (from {height}x{width}, levels {levels}) is not a multiple of 4: "
                "the original's transposed convs would not meet the encoder skips")
        if uses_coeff and (hi // 4 < 9 or wi // 4 < 9):
            raise ValueError(
                f"bottleneck {hi // 4}x{wi // 4} at scale {hi}x{wi} is smaller than the 9x9 coefficient map: "
                f"the original cannot pad it; use H, W >= {36 * 2 ** (levels - 1)} for face {face}")


def min_size(*, face, levels):
    """Smallest square side (multiple of 4 at every scale) the original graph accepts."""
    side = 4 * 2 ** (levels - 1)
    if face in ("coeff", "both"):
        side = 36 * 2 ** (levels - 1)
    return side


def _resize_tf1(x, size):
    # TF1 tf.image.resize_images(method=0): bilinear, corner-aligned grid without half-pixel offset.
    return v1.image.resize_bilinear(x, size, align_corners=False, half_pixel_centers=False)


def _resnet_block(x, dim, scope):
    with v1.variable_scope(scope):
        net = slim.conv2d(x, dim, [5, 5], scope="conv1")
        net = slim.conv2d(net, dim, [5, 5], activation_fn=None, scope="conv2")
        return net + x


def _conv_lstm(inputs, state, num_features):
    """SRN-Deblur BasicConvLSTMCell.__call__ with its default scope 'convLSTM'."""
    with v1.variable_scope("convLSTM"):
        c, h = tf.split(state, 2, axis=3)
        with slim.arg_scope([slim.conv2d], stride=1, padding="SAME", activation_fn=None,
                            weights_initializer=v1.truncated_normal_initializer(stddev=1.0e-3),
                            biases_initializer=v1.constant_initializer(0.0)):
            gates = slim.conv2d(tf.concat([inputs, h], axis=3), 4 * num_features, [3, 3], scope="LSTM_conv")
        # Gate order along the 4*F output channels of LSTM_conv is (i, j, f, o); the
        # importer must keep it, so the oracle splits exactly as the original.
        i, j, f, o = tf.split(gates, 4, axis=3)
        new_c = c * tf.sigmoid(f + 1.0) + tf.sigmoid(i) * tf.tanh(j)
        new_h = tf.tanh(new_c) * tf.sigmoid(o)
        return new_h, tf.concat([new_c, new_h], axis=3)


def _pad_coeff(coeff, h, w):
    # Python 3 round (half to even): the original ships Python 3.6 bytecode caches; Python 2
    # would round x.5 away from zero and shift the map by one pixel when h or w is
    # 2 mod 4 (e.g. 10, 14, 18). Sizes in the tests avoid that ambiguity.
    top = int(round((h - 9) * 0.5))
    left = int(round((w - 9) * 0.5))
    padded = tf.pad(coeff, [[0, 0], [top, h - 9 - top], [left, w - 9 - left]])
    return tf.cast(tf.expand_dims(padded, 3), tf.float32)


def _generator(inputs, render, coeff, *, face, levels, model, n_frames, channels):
    """Build the original generator in the current graph; returns one output per scale."""
    n, h, w, _ = inputs.get_shape().as_list()
    chns = _chns(model)
    c1, c2, c3 = channels, 2 * channels, 4 * channels
    use_render = face in ("render", "both")
    use_coeff = face in ("coeff", "both")

    rnn_state = None
    if model == "lstm":
        rnn_state = tf.zeros([n, h // 4, w // 4, 2 * c3], tf.float32)

    outputs = []
    with v1.variable_scope("g_net"):
        with slim.arg_scope([slim.conv2d, slim.conv2d_transpose], activation_fn=tf.nn.relu, padding="SAME",
                            normalizer_fn=None,
                            weights_initializer=v1.initializers.glorot_uniform(),
                            biases_initializer=v1.constant_initializer(0.0)):
            inp_pred = inputs
            for i, (hi, wi) in enumerate(_scale_sizes(h, w, levels)):
                inp_blur = _resize_tf1(inputs, [hi, wi])
                inp_pred = tf.stop_gradient(_resize_tf1(inp_pred, [hi, wi]))
                inp_all = tf.concat([inp_blur, inp_pred], axis=3)
                if rnn_state is not None:
                    rnn_state = _resize_tf1(rnn_state, [hi // 4, wi // 4])

                conv1_1 = slim.conv2d(inp_all, c1, [5, 5], scope="enc1_1")
                w1 = c1
                if use_render:
                    conv1_1 = tf.concat([conv1_1, _resize_tf1(render, [hi, wi])], axis=3)
                    w1 = c1 + chns
                x = conv1_1
                for k in (2, 3, 4):
                    x = _resnet_block(x, w1, f"enc1_{k}")
                conv1_4 = x
                x = slim.conv2d(conv1_4, c2, [5, 5], stride=2, scope="enc2_1")
                for k in (2, 3, 4):
                    x = _resnet_block(x, c2, f"enc2_{k}")
                conv2_4 = x
                x = slim.conv2d(conv2_4, c3, [5, 5], stride=2, scope="enc3_1")
                for k in (2, 3, 4):
                    x = _resnet_block(x, c3, f"enc3_{k}")

                if rnn_state is not None:
                    x, rnn_state = _conv_lstm(x, rnn_state, c3)

                w3 = c3
                if use_coeff:
                    _, hc, wc, _ = x.get_shape().as_list()
                    x = tf.concat([x, _pad_coeff(coeff, hc, wc)], axis=3)
                    w3 = c3 + 1

                for k in (3, 2, 1):
                    x = _resnet_block(x, w3, f"dec3_{k}")
                x = slim.conv2d_transpose(x, c2, [4, 4], stride=2, scope="dec2_4") + conv2_4
                for k in (3, 2, 1):
                    x = _resnet_block(x, c2, f"dec2_{k}")
                x = slim.conv2d_transpose(x, w1, [4, 4], stride=2, scope="dec1_4") + conv1_4
                for k in (3, 2, 1):
                    x = _resnet_block(x, w1, f"dec1_{k}")
                pred = slim.conv2d(x, chns, [5, 5], activation_fn=None, scope="dec1_0")

                outputs.append(pred)
                if i == 0:
                    v1.get_variable_scope().reuse_variables()
                inp_pred = tf.concat([pred] * n_frames, axis=3)
    return outputs


def _placeholders(batch, height, width, *, model, n_frames):
    chns = _chns(model)
    blur = v1.placeholder(tf.float32, [batch, height, width, chns * n_frames], name="blur")
    render = v1.placeholder(tf.float32, [batch, height, width, chns], name="render")
    coeff = v1.placeholder(tf.float32, [batch, 9, 9], name="coeff")
    return blur, render, coeff


def _random_value(name, shape, rng):
    """Random, non-zero values of a scale that keeps activations O(1) through the deep net.

    Kernels: normal * KERNEL_GAIN / sqrt(fan_in) (fan_in of a stride-2 transposed
    4x4 conv is 4*in);
    biases: normal * 0.05.  Distinct per variable, so a mis-mapped or transposed
    tensor changes the output.
    """
    shape = tuple(shape)
    if name.endswith("/biases"):
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)
    kh, kw = shape[0], shape[1]
    if re.search(r"/dec[12]_4/weights$", name):
        fan_in = kh * kw * shape[3] / 4.0
    else:
        fan_in = kh * kw * shape[2]
    return (rng.standard_normal(shape) * (KERNEL_GAIN / np.sqrt(fan_in))).astype(np.float32)


def oracle_variable_shapes(*, face, levels, model, n_frames, channels=32):
    """Trainable variables of the original graph: {'g_net/enc1_1/weights': (5, 5, 30, 32), ...}.

    Names are the TF1 variable names without ':0'; kernels are HWIO, transposed-conv
    kernels H, W, out, in (slim.conv2d_transpose layout).
    """
    _check_flags(face, levels, model, n_frames, channels)
    side = min_size(face=face, levels=levels)
    graph = tf.Graph()
    with graph.as_default():
        blur, render, coeff = _placeholders(1, side, side, model=model, n_frames=n_frames)
        _generator(blur, render, coeff, face=face, levels=levels, model=model, n_frames=n_frames,
                   channels=channels)
        return {v.op.name: tuple(v.shape.as_list()) for v in v1.trainable_variables()}


def build_oracle_checkpoint(ckpt_dir, *, face="both", levels=1, model="color", n_frames=5, height=32,
                            width=48, batch=1, channels=32, seed=0, step=1234, with_adam=True):
    """Write a TF1 checkpoint of the original graph with random weights; return its prefix.

    ckpt_dir gets ``checkpoint``, ``deblur.model-<step>.index`` and ``.data-*`` as the
    original's ``Saver.save(sess, ckpt_dir/deblur.model, global_step=step)`` writes
    them.  Weights: seeded random values (see ``_random_value``), biases included.
    with_adam: also the training-only variables the original checkpoint holds
    (``<var>/Adam``, ``<var>/Adam_1`` with random moments, ``beta1_power``,
    ``beta2_power``).  The original's unnamed step counter ``Variable`` = step is
    always saved.
    height/width/batch: placeholder size of the graph that creates the variables;
    the variables depend neither on it nor on ``levels`` (the scales share them),
    so sizes the original cannot run (see ``check_size``) are replaced by the
    smallest valid square and one scale is built.
    Returns ``ckpt_dir/deblur.model-<step>``.
    """
    _check_flags(face, levels, model, n_frames, channels)
    try:
        check_size(height, width, face=face, levels=1)
    except ValueError:
        height = width = min_size(face=face, levels=1)
    os.makedirs(ckpt_dir, exist_ok=True)
    rng = np.random.RandomState(seed)
    graph = tf.Graph()
    with graph.as_default():
        # Created before the model, unnamed, as the original's train() does.
        global_step = v1.Variable(initial_value=0, dtype=tf.int32, trainable=False)
        blur, render, coeff = _placeholders(batch, height, width, model=model, n_frames=n_frames)
        # One scale creates every variable (the scales share them); building all
        # `levels` scales would only cost graph-construction time.
        _generator(blur, render, coeff, face=face, levels=1, model=model, n_frames=n_frames,
                   channels=channels)
        g_vars = v1.trainable_variables()
        if with_adam:
            # Any loss over all generator variables creates the same slots; a weight
            # norm avoids building the conv backward graph.
            loss = tf.add_n([tf.reduce_sum(tf.square(v)) for v in g_vars])
            v1.train.AdamOptimizer(1e-4).minimize(loss, global_step=global_step, var_list=g_vars)
        values = [(global_step, np.int32(step))]
        for var in sorted(g_vars, key=lambda v: v.op.name):
            values.append((var, _random_value(var.op.name, var.shape.as_list(), rng)))
        if with_adam:
            for var in sorted(v1.global_variables(), key=lambda v: v.op.name):
                name, shape = var.op.name, var.shape.as_list()
                if name.endswith("/Adam"):
                    values.append((var, (rng.standard_normal(shape) * 1e-3).astype(np.float32)))
                elif name.endswith("/Adam_1"):
                    values.append((var, (rng.random_sample(shape) * 1e-6).astype(np.float32)))
                elif name in ("beta1_power", "beta2_power"):
                    beta = 0.9 if name == "beta1_power" else 0.999
                    values.append((var, np.float32(beta ** (step + 1))))
        # One run for all assignments: a session run per variable costs ~50 ms each.
        holders = [v1.placeholder(var.dtype.base_dtype, var.shape) for var, _ in values]
        assign_all = tf.group(*[var.assign(ph) for (var, _), ph in zip(values, holders)])
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            sess.run(assign_all, feed_dict={ph: val for (_, val), ph in zip(values, holders)})
            saver = v1.train.Saver(max_to_keep=50)
            return saver.save(sess, os.path.join(ckpt_dir, MODEL_PREFIX), global_step=step,
                              write_meta_graph=False)


def run_oracle(ckpt_prefix, blur, render, coeff, *, face, levels, model, n_frames, channels=32):
    """Run the original graph restored from a TF1 checkpoint; one output per scale, coarsest first.

    blur: float32 [B, H, W, C*n_frames], 0..1, frames stacked on channels (C = 3,
    or 1 with model gray); render: [B, H, W, C], 0..1 (ignored unless face render|both);
    coeff: [B, 9, 9], the first 81 coefficients with index 80 set to 0, row-major
    (ignored unless face coeff|both).  Returns float32 arrays [B, hi, wi, C].
    """
    _check_flags(face, levels, model, n_frames, channels)
    blur = np.asarray(blur, np.float32)
    render = np.asarray(render, np.float32)
    coeff = np.asarray(coeff, np.float32)
    if blur.ndim != 4 or blur.shape[3] != _chns(model) * n_frames:
        raise ValueError(f"blur must be [B, H, W, {_chns(model) * n_frames}], got {blur.shape}")
    b, h, w, _ = blur.shape
    if render.shape != (b, h, w, _chns(model)):
        raise ValueError(f"render must be {(b, h, w, _chns(model))}, got {render.shape}")
    if coeff.shape != (b, 9, 9):
        raise ValueError(f"coeff must be {(b, 9, 9)}, got {coeff.shape}")
    check_size(h, w, face=face, levels=levels)
    graph = tf.Graph()
    with graph.as_default():
        p_blur, p_render, p_coeff = _placeholders(b, h, w, model=model, n_frames=n_frames)
        outs = _generator(p_blur, p_render, p_coeff, face=face, levels=levels, model=model,
                          n_frames=n_frames, channels=channels)
        saver = v1.train.Saver(v1.global_variables())
        with v1.Session(graph=graph) as sess:
            saver.restore(sess, ckpt_prefix)
            res = sess.run(outs, feed_dict={p_blur: blur, p_render: render, p_coeff: coeff})
    return [np.asarray(r, np.float32) for r in res]
