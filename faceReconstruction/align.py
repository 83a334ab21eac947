"""Five-point face alignment: POS, the R-Net input crop and the restore of a render into a frame.

Corresponds to `faceReconstruction/preprocess_img.py` (`POS`, `process_img`, `restore_img`,
`Preprocess`, `Restore`) and `load_lm3d` in `faceReconstruction/load_data.py` of the original
code (rwenqi/3Dfacedeblurring, itself from microsoft/Deep3DFaceReconstruction). The image
operations go through PIL exactly as the original does (same affine transforms, same
resampling filters, same integer truncations), so the crops and restored renders match the
files the original writes.

Coordinates
-----------
* Frame landmarks: pixel coordinates of the frame, x right, y down, pixel centres on integers
  (what the landmark detectors write in `dataset/<video>/face/NNNNN.txt`).
* POS works on y flipped (y' = h0 - 1 - y, y up), as the original.
* `t` (2,) is the image position (x, y', flipped) of the 3D origin of the alignment points,
  `s` the image size of one 3D unit in frame pixels. The crop rescales the frame by 102 / s
  (`CROP_SCALE`), so one model unit becomes 102 pixels, close to the 1015 / 10 pixels of the
  render camera (focal 1015 at distance 10).
* Crop points (`frame_to_crop`): pixel coordinates in the 224x224 crop, pixel centres on
  integers. The render camera's projection `u = 1015 X / (10 - Z) + 112` uses continuous
  coordinates (image edges at 0 and 224), i.e. crop pixel coordinate + 0.5.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import loadmat

from common.fileio import InputError

CROP_SIZE = 224
CROP_SCALE = 102.0
LM3D_NAME = "similarity_Lm3D_all.mat"

# 0-based rows of the 68-point (iBUG / dlib) layout used to build the five alignment points.
_NOSE = 30
_LEFT_EYE = (36, 39)
_RIGHT_EYE = (42, 45)
_LEFT_MOUTH = 48
_RIGHT_MOUTH = 54


def five_from_68(lm68) -> np.ndarray:
    """(68, D) points in the iBUG order -> (5, D): left eye, right eye, nose, left/right mouth.

    Eye points are the means of the two eye corners, as `load_lm3d` of the original.
    """
    lm68 = np.asarray(lm68, dtype=np.float64)
    if lm68.shape[0] != 68:
        raise ValueError(f"five_from_68: expected 68 points, got {lm68.shape}")
    return np.stack([
        lm68[list(_LEFT_EYE)].mean(0),
        lm68[list(_RIGHT_EYE)].mean(0),
        lm68[_NOSE],
        lm68[_LEFT_MOUTH],
        lm68[_RIGHT_MOUTH],
    ])


def load_lm3d(path=None, bfm=None) -> np.ndarray:
    """The five 3D alignment points (5, 3) in model units (x right, y up, z towards the camera).

    path: `similarity_Lm3D_all.mat` (key `lm`, 68x3 mean-face landmarks, from the
    Deep3DFaceReconstruction `BFM/` folder). Without a path, the points are taken from `bfm`
    (a loaded model): its 68 keypoints on the mean shape, centred like `face_shape` centres it.
    Order: left eye, right eye, nose tip, left mouth corner, right mouth corner.
    """
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: 3D landmark file (similarity_Lm3D_all.mat) not found")
        try:
            lm = np.asarray(loadmat(str(path))["lm"], dtype=np.float64)
        except (KeyError, ValueError, OSError) as e:
            raise InputError(f"{path}: cannot read key 'lm' from the 3D landmark file ({e})") from None
        if lm.shape != (68, 3):
            raise InputError(f"{path}: expected 'lm' of shape (68, 3), got {lm.shape}")
        return five_from_68(lm)
    if bfm is None:
        raise ValueError("load_lm3d needs a similarity_Lm3D_all.mat path or a loaded BFM")
    mean = np.asarray(bfm.meanshape, dtype=np.float64).reshape(-1, 3) - bfm.center
    return five_from_68(mean[np.asarray(bfm.keypoints).reshape(-1)])


def find_lm3d(lm3d_path=None, bfm_path=None, bfm=None, warn=True) -> np.ndarray:
    """Resolve the 3D alignment points the way `demo.py` / `demo_render.py` do.

    `--lm3d PATH` when given; otherwise `similarity_Lm3D_all.mat` next to the BFM file;
    otherwise the `lm3d` (68, 3) a model file carries (the shipped ICT model stores the
    `similarity_Lm3D_all.mat` points its frame was fitted to, so its crops are the original's);
    otherwise the model's own 68 keypoints (with a warning, since crops then differ slightly
    from the ones the original R-Net was trained on).
    """
    if lm3d_path is not None:
        return load_lm3d(lm3d_path)
    if bfm_path is not None:
        beside = Path(bfm_path).with_name(LM3D_NAME)
        if beside.is_file():
            return load_lm3d(beside)
    stored = None if bfm is None else bfm.extra.get("lm3d")
    if stored is not None and np.shape(stored) == (68, 3):
        return five_from_68(stored)
    if bfm is None:
        raise ValueError("find_lm3d: no similarity_Lm3D_all.mat found and no model given")
    if warn:
        warnings.warn(
            f"{LM3D_NAME} not found (give --lm3d or put it next to the BFM file): the five 3D "
            "alignment points are taken from the model's 68 keypoints instead",
            stacklevel=2,
        )
    return load_lm3d(None, bfm=bfm)


def pos(lm2d, lm3d, h0):
    """Scaled-orthographic fit of 3D points to image points (the original `POS`).

    lm2d (n, 2) frame pixels (y down), lm3d (n, 3), h0 the frame height in pixels.
    Returns t (2,) = (x, h0 - 1 - y) image position of the 3D origin and s, the scale in
    pixels per model unit: the mean norm of the two rows of the 2x3 affine camera.
    """
    lm2d = np.asarray(lm2d, dtype=np.float64)
    lm3d = np.asarray(lm3d, dtype=np.float64)
    n = lm2d.shape[0]
    if lm2d.shape != (n, 2) or lm3d.shape != (n, 3) or n < 4:
        raise ValueError(f"pos: expected (n,2) and (n,3) points, got {lm2d.shape} and {lm3d.shape}")
    xp = np.stack([lm2d[:, 0], h0 - 1 - lm2d[:, 1]], axis=1)
    a = np.zeros((2 * n, 8))
    a[0::2, 0:3] = lm3d
    a[0::2, 3] = 1
    a[1::2, 4:7] = lm3d
    a[1::2, 7] = 1
    k = np.linalg.lstsq(a, xp.reshape(-1), rcond=None)[0]
    s = (np.linalg.norm(k[0:3]) + np.linalg.norm(k[4:7])) / 2
    return np.array([k[3], k[7]]), float(s)


def scaled_size(frame_size, s):
    """(w, h): the frame size after scaling by 102 / s, truncated as the original does."""
    w0, h0 = frame_size
    return int(np.int32(w0 / s * CROP_SCALE)), int(np.int32(h0 / s * CROP_SCALE))


def _crop_origin(w, h):
    """Top-left corner of the 224 crop in the scaled frame (negative when it is smaller)."""
    return int(np.int32(w / 2 - CROP_SIZE / 2)), int(np.int32(h / 2 - CROP_SIZE / 2))


def align_crop(img, lm2d, lm3d):
    """The R-Net input crop of a frame (the original `Preprocess` / `process_img`).

    img uint8 (h0, w0, 3) RGB; lm2d (5, 2) frame pixels; lm3d (5, 3).
    Returns (crop uint8 (224, 224, 3) RGB, t (2,), s). Parts of the crop outside the frame are
    black. The R-Net takes it as BGR (`crop[..., ::-1]`), 0-255 floats.
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"align_crop: expected uint8 HxWx3, got {img.dtype} {img.shape}")
    h0, w0 = img.shape[:2]
    t, s = pos(lm2d, lm3d, h0)
    im = Image.fromarray(img)
    im = im.transform((w0, h0), Image.Transform.AFFINE, (1, 0, t[0] - w0 / 2, 0, 1, h0 / 2 - t[1]))
    w, h = scaled_size((w0, h0), s)
    im = im.resize((w, h), resample=Image.Resampling.BILINEAR)
    left, up = _crop_origin(w, h)
    im = im.crop((left, up, left + CROP_SIZE, up + CROP_SIZE))
    return np.asarray(im), t, s


def frame_to_crop(pts, frame_size, t, s):
    """Frame pixel coordinates (n, 2) -> crop pixel coordinates (n, 2) of `align_crop`.

    Follows the three image operations in continuous coordinates (pixel centres at +0.5):
    the shift by (t_x - w0/2, h0/2 - t_y), the resize to `scaled_size` and the crop.
    The shift is applied with nearest-neighbour sampling, i.e. rounded to whole pixels.
    """
    pts = np.asarray(pts, dtype=np.float64)
    w0, h0 = frame_size
    w, h = scaled_size(frame_size, s)
    left, up = _crop_origin(w, h)
    dx, dy = _nearest_shift(t[0] - w0 / 2), _nearest_shift(h0 / 2 - t[1])
    x = (pts[:, 0] + 0.5 - dx) * (w / w0) - left - 0.5
    y = (pts[:, 1] + 0.5 - dy) * (h / h0) - up - 0.5
    return np.stack([x, y], axis=1)


def crop_to_frame(pts, frame_size, t, s):
    """Inverse of `frame_to_crop`: crop pixel coordinates (n, 2) -> frame pixel coordinates."""
    pts = np.asarray(pts, dtype=np.float64)
    w0, h0 = frame_size
    w, h = scaled_size(frame_size, s)
    left, up = _crop_origin(w, h)
    dx, dy = _nearest_shift(t[0] - w0 / 2), _nearest_shift(h0 / 2 - t[1])
    x = (pts[:, 0] + 0.5 + left) * (w0 / w) + dx - 0.5
    y = (pts[:, 1] + 0.5 + up) * (h0 / h) + dy - 0.5
    return np.stack([x, y], axis=1)


def _nearest_shift(c):
    """Whole-pixel shift PIL's nearest AFFINE applies for offset c: output x reads input x + it."""
    return float(np.floor(c + 0.5))


def restore_render(render, frame_size, t, s, fix_small=True):
    """Paste a 224x224 render of the aligned crop back into frame coordinates (`Restore`).

    render uint8 (224, 224, 3) RGB (an RGBA render is taken without its alpha, as the original
    does); frame_size (w0, h0); t, s from `pos`. Returns uint8 (h0, w0, 3), black outside the
    render.

    The render is placed in a canvas of the scaled frame size (w, h) at the crop's corner,
    resized to (w0, h0) bilinearly and shifted back by the inverse affine (nearest). When w and
    h exceed 224 this is the original's zero padding (left pad int((w - 224) / 2)) and the
    result is identical to it. When w or h <= 224 the original skips the padding and stretches
    the whole 224 render over the frame, so the face lands at the wrong place and scale;
    `fix_small=True` (default) instead cuts the render to the part the crop took from the
    frame, so it lands on the face. `fix_small=False` keeps the original behaviour.
    """
    render = np.asarray(render)
    if render.ndim != 3 or render.shape[:2] != (CROP_SIZE, CROP_SIZE) or render.shape[2] not in (3, 4):
        raise ValueError(f"restore_render: expected a 224x224 RGB(A) render, got {render.shape}")
    render = np.ascontiguousarray(render[..., :3]).astype(np.uint8, copy=False)
    w0, h0 = frame_size
    w, h = scaled_size(frame_size, s)
    if fix_small:
        canvas = np.zeros((max(h, 1), max(w, 1), 3), np.uint8)
        left, up = _crop_origin(w, h)
        _paste(canvas, render, left, up)
    else:
        pad_x = (w - CROP_SIZE) // 2 if w > CROP_SIZE else 0
        pad_y = (h - CROP_SIZE) // 2 if h > CROP_SIZE else 0
        rest_x = w - CROP_SIZE - pad_x if w > CROP_SIZE else 0
        rest_y = h - CROP_SIZE - pad_y if h > CROP_SIZE else 0
        canvas = np.pad(render, ((pad_y, rest_y), (pad_x, rest_x), (0, 0)))
    im = Image.fromarray(canvas).resize((w0, h0), resample=Image.Resampling.BILINEAR)
    im = im.transform((w0, h0), Image.Transform.AFFINE, (1, 0, w0 / 2 - t[0], 0, 1, t[1] - h0 / 2))
    return np.asarray(im)


def _paste(canvas, patch, left, up):
    """Copy `patch` into `canvas` with its top-left corner at (left, up), clipped to the canvas."""
    h, w = canvas.shape[:2]
    ph, pw = patch.shape[:2]
    x0, y0 = max(left, 0), max(up, 0)
    x1, y1 = min(left + pw, w), min(up + ph, h)
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = patch[y0 - up:y1 - up, x0 - left:x1 - left]


def restore(render, frame_size, lm2d, lm3d, fix_small=True):
    """`restore_render` with POS computed from the frame's five points (the original `Restore`)."""
    t, s = pos(lm2d, lm3d, frame_size[1])
    return restore_render(render, frame_size, t, s, fix_small=fix_small)
