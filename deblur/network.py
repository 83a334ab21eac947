"""The deblurring generator of "Face Video Deblurring via 3D Facial Priors" (Ren et al., ICCV 2019).

Corresponds to `DEBLUR.generator` in the original `models/model.py` (TF1 + slim), itself the
scale-recurrent network of SRN-Deblur (Tao et al., CVPR 2018) with two face priors added:

* the 3-channel render of the 3D face, concatenated after the first convolution (32 -> 35
  feature channels at full resolution), and
* the 80 identity coefficients (+1 zero) as a 9x9 patch, zero-padded into one extra channel at
  the bottleneck (128 -> 129 channels at 1/4 resolution).

Layout of one scale (all convolutions 5x5, "same" padding, ReLU unless noted)::

    [blur frames, previous prediction x n_frames] -> enc1_1 (32) [+ render] -> enc1_2..4 (ResBlocks)
    -> enc2_1 (64, stride 2) -> enc2_2..4 -> enc3_1 (128, stride 2) -> enc3_2..4
    [-> conv-LSTM (model=lstm)] [+ coefficient channel]
    -> dec3_3..1 -> dec2_4 (4x4 transposed, stride 2, 64) + enc2 skip -> dec2_3..1
    -> dec1_4 (4x4 transposed, stride 2) + enc1 skip -> dec1_3..1 -> dec1_0 (C, linear)

`levels` scales (factor 0.5, coarsest first) share every weight. Inputs are resized with TF1's
legacy bilinear resize (no half-pixel centres), which the authors' weights were trained with.

Layer names mirror the TF1 variable scopes (`enc1_1`, `enc1_2/conv1`, ...), so `tf1_names()`
maps every Keras variable to its original checkpoint name 1:1 (`g_net/enc1_2/conv1/weights`).
Spatial sizes must be multiples of `size_multiple(levels)` and large enough for the 9x9
coefficient patch (`min_size(levels)`); `pad_to_valid` / `crop_back` handle any frame size.
"""
from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from deblur.config import NetworkConfig

SCOPE = "g_net"


def uses_render(face: str) -> bool:
    return face in ("both", "render")


def uses_coeff(face: str) -> bool:
    return face in ("both", "coeff")


def image_channels(model: str) -> int:
    """Channels per frame: 1 for the gray model, 3 (RGB) otherwise (lstm is a colour model)."""
    return 1 if model == "gray" else 3


def size_multiple(levels: int) -> int:
    """Every scale is downsampled twice by stride-2 convs, so each must divide by 4."""
    return 4 * 2 ** (levels - 1)


def min_size(levels: int, face: str = "both") -> int:
    """Smallest frame side that fits the 9x9 coefficient patch in the coarsest bottleneck."""
    if not uses_coeff(face):
        return size_multiple(levels)
    return 36 * 2 ** (levels - 1)


def coeff_patch(coeff) -> np.ndarray:
    """Coefficient vector (239 or 257 floats) -> the 9x9 identity patch of the original.

    The original loads the first 81 values (80 identity + the first expression value),
    zeroes index 80 and reshapes row-major to 9x9. Accepts (..., K) arrays.
    """
    c = np.asarray(coeff, dtype=np.float32)
    patch = c[..., :81].copy()
    patch[..., 80] = 0.0
    return patch.reshape(c.shape[:-1] + (9, 9))


# ----------------------------------------------------------------------------- resizing

def resize_bilinear_tf1(x, out_h, out_w):
    """TF1 `tf.image.resize_images(method=BILINEAR)`: align_corners=False, no half-pixel centres.

    Output pixel i samples input position i * in/out (clamped at the last row/column), which
    differs from Keras' half-pixel `ops.image.resize`; the authors' weights expect this one.
    x: [B, H, W, C]; out_h, out_w: ints or scalar tensors.
    """
    in_h, in_w = ops.shape(x)[1], ops.shape(x)[2]

    def axis_coords(n_in, n_out):
        scale = ops.cast(n_in, "float32") / ops.cast(n_out, "float32")
        src = ops.cast(ops.arange(n_out), "float32") * scale
        lo = ops.floor(src)
        frac = src - lo
        lo = ops.cast(lo, "int32")
        hi = ops.minimum(lo + 1, ops.cast(n_in, "int32") - 1)
        return lo, hi, frac

    y0, y1, fy = axis_coords(in_h, out_h)
    x0, x1, fx = axis_coords(in_w, out_w)
    fx = ops.cast(ops.reshape(fx, (1, 1, -1, 1)), x.dtype)
    fy = ops.cast(ops.reshape(fy, (1, -1, 1, 1)), x.dtype)
    rows0, rows1 = ops.take(x, y0, axis=1), ops.take(x, y1, axis=1)
    top = ops.take(rows0, x0, axis=2)
    top = top + (ops.take(rows0, x1, axis=2) - top) * fx
    bottom = ops.take(rows1, x0, axis=2)
    bottom = bottom + (ops.take(rows1, x1, axis=2) - bottom) * fx
    return top + (bottom - top) * fy


@keras.saving.register_keras_serializable(package="facedeblur")
class ResizeToScale(layers.Layer):
    """Resize to round(size * scale) of a reference tensor (TF1 bilinear); identity at scale 1."""

    def __init__(self, scale: float, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, x, reference):
        if self.scale == 1.0:
            return x
        h, w = ops.shape(reference)[1], ops.shape(reference)[2]
        hi = ops.cast(ops.round(ops.cast(h, "float32") * self.scale), "int32")
        wi = ops.cast(ops.round(ops.cast(w, "float32") * self.scale), "int32")
        return resize_bilinear_tf1(x, hi, wi)

    def compute_output_shape(self, x_shape, reference_shape):
        return (x_shape[0], None, None, x_shape[-1])

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="facedeblur")
class ResizeLike(layers.Layer):
    """TF1 bilinear resize of `x` to the spatial size of `like` (gradient optionally stopped)."""

    def __init__(self, stop_gradient: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.stop_gradient = bool(stop_gradient)

    def call(self, x, like):
        y = resize_bilinear_tf1(x, ops.shape(like)[1], ops.shape(like)[2])
        return ops.stop_gradient(y) if self.stop_gradient else y

    def compute_output_shape(self, x_shape, like_shape):
        return (x_shape[0], like_shape[1], like_shape[2], x_shape[-1])

    def get_config(self):
        return {**super().get_config(), "stop_gradient": self.stop_gradient}


# ----------------------------------------------------------------------------- blocks

def _conv(filters, kernel, name, stride=1, activation="relu", init="glorot_uniform"):
    return layers.Conv2D(filters, kernel, strides=stride, padding="same", activation=activation,
                         kernel_initializer=init, bias_initializer="zeros", name=name)


@keras.saving.register_keras_serializable(package="facedeblur")
class ResBlock(layers.Layer):
    """SRN-Deblur `ResnetBlock`: conv 5x5 ReLU -> conv 5x5 linear -> + input (scopes conv1/conv2)."""

    def __init__(self, filters: int, kernel_size: int = 5, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.conv1 = _conv(self.filters, self.kernel_size, "conv1")
        self.conv2 = _conv(self.filters, self.kernel_size, "conv2", activation=None)

    def build(self, input_shape):
        self.conv1.build(input_shape)
        self.conv2.build(tuple(input_shape[:-1]) + (self.filters,))

    def call(self, x):
        return self.conv2(self.conv1(x)) + x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size}

    def tf1_variables(self):
        return {f"{self.name}/{c.name}/{n}": v for c in (self.conv1, self.conv2)
                for n, v in (("weights", c.kernel), ("biases", c.bias))}


@keras.saving.register_keras_serializable(package="facedeblur")
class ConvLSTM(layers.Layer):
    """SRN-Deblur `BasicConvLSTMCell` (3x3, forget bias 1.0, tanh) at the bottleneck.

    State is [c, h] concatenated on channels (2*features). Gates come from one slim conv over
    [inputs, h] split in the order i, j, f, o: the original's `_conv_linear`, called in scope
    `convLSTM`, creates `convLSTM/LSTM_conv/weights` [k, k, in+features, 4*features] and
    `.../biases` (truncated-normal init, stddev 1e-3). Returns (h_new, state_new).
    """

    def __init__(self, features: int = 128, kernel_size: int = 3, forget_bias: float = 1.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.features = int(features)
        self.kernel_size = int(kernel_size)
        self.forget_bias = float(forget_bias)

    def build(self, x_shape, state_shape=None):
        in_ch = x_shape[-1]
        self.matrix = self.add_weight(
            name="weights", shape=(self.kernel_size, self.kernel_size, in_ch + self.features,
                                   4 * self.features),
            initializer=keras.initializers.TruncatedNormal(stddev=1e-3))
        self.bias_term = self.add_weight(name="biases", shape=(4 * self.features,),
                                         initializer="zeros")

    def call(self, x, state):
        c, h = ops.split(state, 2, axis=-1)
        z = ops.conv(ops.concatenate([x, h], axis=-1), self.matrix, padding="same") + self.bias_term
        i, j, f, o = ops.split(z, 4, axis=-1)
        new_c = c * ops.sigmoid(f + self.forget_bias) + ops.sigmoid(i) * ops.tanh(j)
        new_h = ops.tanh(new_c) * ops.sigmoid(o)
        return new_h, ops.concatenate([new_c, new_h], axis=-1)

    def compute_output_shape(self, x_shape, state_shape):
        return (tuple(x_shape[:-1]) + (self.features,), tuple(x_shape[:-1]) + (2 * self.features,))

    def get_config(self):
        return {**super().get_config(), "features": self.features,
                "kernel_size": self.kernel_size, "forget_bias": self.forget_bias}

    def tf1_variables(self):
        return {f"{self.name}/LSTM_conv/weights": self.matrix,
                f"{self.name}/LSTM_conv/biases": self.bias_term}


@keras.saving.register_keras_serializable(package="facedeblur")
class ZeroState(layers.Layer):
    """Zero conv-LSTM state shaped like the bottleneck with 2*features channels."""

    def __init__(self, features: int = 128, **kwargs):
        super().__init__(**kwargs)
        self.features = int(features)

    def call(self, x):
        s = ops.shape(x)
        return ops.zeros((s[0], s[1], s[2], 2 * self.features), dtype=x.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (2 * self.features,)

    def get_config(self):
        return {**super().get_config(), "features": self.features}


@keras.saving.register_keras_serializable(package="facedeblur")
class CoeffChannel(layers.Layer):
    """9x9 coefficient patch zero-padded, centred, into one channel the size of `like`.

    Top/left padding = round((h - 9) / 2), round((w - 9) / 2) with Python 3's round
    (half to even), as the original `pad_coeff`; ops.round rounds half to even as well.
    """

    def call(self, coeff, like):
        h, w = ops.shape(like)[1], ops.shape(like)[2]
        top = ops.cast(ops.round(ops.cast(h - 9, "float32") * 0.5), "int32")
        left = ops.cast(ops.round(ops.cast(w - 9, "float32") * 0.5), "int32")
        # Scatter by index arithmetic instead of ops.pad so the pad widths may be tensors.
        rows = ops.arange(h) - top
        cols = ops.arange(w) - left
        valid = (ops.expand_dims((rows >= 0) & (rows < 9), 1)
                 & ops.expand_dims((cols >= 0) & (cols < 9), 0))
        r = ops.clip(rows, 0, 8)
        c = ops.clip(cols, 0, 8)
        patch = ops.take(ops.take(ops.cast(coeff, like.dtype), r, axis=1), c, axis=2)
        patch = ops.where(ops.expand_dims(valid, 0), patch, ops.zeros_like(patch))
        return ops.expand_dims(patch, -1)

    def compute_output_shape(self, coeff_shape, like_shape):
        return (coeff_shape[0], like_shape[1], like_shape[2], 1)


@keras.saving.register_keras_serializable(package="facedeblur")
class Tile(layers.Layer):
    """Repeat the prediction n times on channels (the original's concat loop)."""

    def __init__(self, times: int, **kwargs):
        super().__init__(**kwargs)
        self.times = int(times)

    def call(self, x):
        return ops.concatenate([x] * self.times, axis=-1)

    def compute_output_shape(self, s):
        return tuple(s[:-1]) + (None if s[-1] is None else s[-1] * self.times,)

    def get_config(self):
        return {**super().get_config(), "times": self.times}


@keras.saving.register_keras_serializable(package="facedeblur")
class CentreFrame(layers.Layer):
    """Channels [start, start + count) of the stacked blurry frames: the centre frame."""

    def __init__(self, start: int, count: int, **kwargs):
        super().__init__(**kwargs)
        self.start, self.count = int(start), int(count)

    def call(self, x):
        return x[..., self.start:self.start + self.count]

    def compute_output_shape(self, s):
        return tuple(s[:-1]) + (self.count,)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "count": self.count}


# ----------------------------------------------------------------------------- generator

def build_generator(face: str = "both", levels: int = 1, model: str = "color",
                    n_frames: int = 5, channels: int = 32, residual: bool = False,
                    name: str = SCOPE) -> keras.Model:
    """`build_network` from keyword settings (the fields of NetworkConfig)."""
    return build_network(NetworkConfig(face, levels, model, n_frames, channels, residual), name)


def build_network(config: NetworkConfig, name: str = SCOPE) -> keras.Model:
    """Build the generator as a functional Keras model; `net.deblur_config` is `config`.

    Inputs (dict): `blur` [B, H, W, C*n_frames] in [0, 1] (frames t-2..t+2 stacked on channels,
    C = 3 RGB or 1 gray); `render` [B, H, W, C] when face is render|both; `coeff` [B, 9, 9] when
    face is coeff|both (see `coeff_patch`). H and W must be multiples of `size_multiple(levels)`
    (and >= `min_size` with coeff). Outputs: `levels` tensors [B, H*s, W*s, C], coarsest first,
    s = 0.5**(levels-1-i); the last one is the restored centre frame.
    `channels` sets the widths (channels, 2*channels, 4*channels); 32 is the original.
    `residual=True` is this project's departure from the paper (off by default, and for every
    TF1 checkpoint): each scale outputs its blurry centre frame plus `dec1_0`, whose kernel
    starts at zero, so an untrained network is the identity and training only has to learn the
    correction. The original (like SRN-Deblur) predicts the image directly, which on 2 CPU
    cores takes longer to reach the blurry input's own PSNR than a session lasts
    (checkpoints/MODEL_CARD.md). Same variables either way: weights load into both.
    """
    face, levels, model, n_frames = config.face, config.levels, config.model, config.n_frames
    channels, residual = config.channels, config.residual
    C = image_channels(model)
    w1, w2, w3 = channels, 2 * channels, 4 * channels
    w1r = w1 + (C if uses_render(face) else 0)  # the render has the frames' channel count
    w3c = w3 + (1 if uses_coeff(face) else 0)

    inputs = {"blur": keras.Input((None, None, C * n_frames), name="blur")}
    if uses_render(face):
        inputs["render"] = keras.Input((None, None, C), name="render")
    if uses_coeff(face):
        inputs["coeff"] = keras.Input((9, 9), name="coeff")

    enc1_1 = _conv(w1, 5, "enc1_1")
    enc1 = [ResBlock(w1r, name=f"enc1_{k}") for k in (2, 3, 4)]
    enc2_1 = _conv(w2, 5, "enc2_1", stride=2)
    enc2 = [ResBlock(w2, name=f"enc2_{k}") for k in (2, 3, 4)]
    enc3_1 = _conv(w3, 5, "enc3_1", stride=2)
    enc3 = [ResBlock(w3, name=f"enc3_{k}") for k in (2, 3, 4)]
    dec3 = [ResBlock(w3c, name=f"dec3_{k}") for k in (3, 2, 1)]
    dec2_4 = layers.Conv2DTranspose(w2, 4, strides=2, padding="same", activation="relu",
                                    kernel_initializer="glorot_uniform", name="dec2_4")
    dec2 = [ResBlock(w2, name=f"dec2_{k}") for k in (3, 2, 1)]
    dec1_4 = layers.Conv2DTranspose(w1r, 4, strides=2, padding="same", activation="relu",
                                    kernel_initializer="glorot_uniform", name="dec1_4")
    dec1 = [ResBlock(w1r, name=f"dec1_{k}") for k in (3, 2, 1)]
    dec1_0 = _conv(C, 5, "dec1_0", activation=None, init="zeros" if residual else "glorot_uniform")
    centre = slice(C * (n_frames // 2), C * (n_frames // 2 + 1))
    lstm = ConvLSTM(w3, name="convLSTM") if model == "lstm" else None

    blur = inputs["blur"]
    pred = blur
    state = None
    outputs = []
    for i in range(levels):
        scale = 0.5 ** (levels - 1 - i)
        # At scale 1 the resize is the identity, and at the first scale the previous prediction
        # is the blurry input resized exactly as inp_blur: both skipped (exact; at 672x672 the
        # two full-size gathers cost ~0.45 s of CPU per frame).
        inp_blur = blur if scale == 1.0 else ResizeToScale(scale, name=f"scale{i}_blur")(blur, blur)
        pred = inp_blur if i == 0 else ResizeLike(stop_gradient=True, name=f"scale{i}_pred")(pred, inp_blur)
        x = layers.Concatenate(name=f"scale{i}_inp")([inp_blur, pred])
        x = enc1_1(x)
        if uses_render(face):
            render = ResizeToScale(scale, name=f"scale{i}_render")(inputs["render"], blur)
            x = layers.Concatenate(name=f"scale{i}_with_render")([x, render])
        for b in enc1:
            x = b(x)
        skip1 = x
        x = enc2_1(x)
        for b in enc2:
            x = b(x)
        skip2 = x
        x = enc3_1(x)
        for b in enc3:
            x = b(x)
        if lstm is not None:
            if state is None:
                state = ZeroState(w3, name="lstm_zero_state")(x)
            else:
                state = ResizeLike(name=f"scale{i}_lstm_state")(state, x)
            x, state = lstm(x, state)
        if uses_coeff(face):
            coeff = CoeffChannel(name=f"scale{i}_coeff")(inputs["coeff"], x)
            x = layers.Concatenate(name=f"scale{i}_with_coeff")([x, coeff])
        for b in dec3:
            x = b(x)
        x = layers.Add(name=f"scale{i}_skip2")([dec2_4(x), skip2])
        for b in dec2:
            x = b(x)
        x = layers.Add(name=f"scale{i}_skip1")([dec1_4(x), skip1])
        for b in dec1:
            x = b(x)
        out = dec1_0(x)
        if residual:
            # In float32 even under a mixed policy: bf16 keeps 8 bits of mantissa, so a bf16 sum
            # rounds the frame to 1/512 (half a grey level) and a nearly sharp frame could not be
            # returned unchanged; the correction itself is small and fine in bf16.
            frame = CentreFrame(centre.start, C, dtype="float32", name=f"scale{i}_centre")(inp_blur)
            out = layers.Add(dtype="float32", name=f"scale{i}_residual")([out, frame])
        # Keep the restored image in float32 under mixed-precision policies.
        outputs.append(layers.Activation("linear", dtype="float32", name=f"out{i}")(out))
        if i + 1 < levels:
            pred = Tile(n_frames, name=f"scale{i}_tile")(out)

    net = keras.Model(inputs, outputs, name=name)
    net.deblur_config = config
    return net


def tf1_names(net: keras.Model) -> dict:
    """Map original TF1 variable names (`g_net/enc1_2/conv1/weights`) -> Keras variables."""
    out = {}
    for layer in net.layers:
        if isinstance(layer, (ResBlock, ConvLSTM)):
            items = layer.tf1_variables().items()
        elif isinstance(layer, (layers.Conv2D, layers.Conv2DTranspose)):
            items = ((f"{layer.name}/weights", layer.kernel), (f"{layer.name}/biases", layer.bias))
        else:
            continue
        out.update({f"{SCOPE}/{k}": v for k, v in items})
    return out


# ----------------------------------------------------------------------------- any size

def pad_to_valid(x: np.ndarray, levels: int, face: str = "both") -> tuple[np.ndarray, tuple]:
    """Edge-pad [..., H, W, C] at the bottom/right to a valid size; returns (padded, (H, W))."""
    h, w = x.shape[-3], x.shape[-2]
    m = size_multiple(levels)
    lo = min_size(levels, face)
    H = max(math.ceil(h / m) * m, lo)
    W = max(math.ceil(w / m) * m, lo)
    pad = [(0, 0)] * (x.ndim - 3) + [(0, H - h), (0, W - w), (0, 0)]
    return np.pad(x, pad, mode="edge"), (h, w)


def crop_back(y: np.ndarray, size: tuple) -> np.ndarray:
    h, w = size
    return y[..., :h, :w, :]
