"""Five facial landmarks per frame with MTCNN (replaces the original Windows-only detector).

The original runs a CNN-cascade facial point detector (Windows executables) on every blurry
frame and writes `dataset/<video>/face/NNNNN.txt` (five `x y` rows) and `dataset/<video>/bbox.txt`
(`image/NNNNN.png left right top bottom`). Here MTCNN (Zhang et al. 2016, `mtcnn` 1.0 on
TensorFlow) gives the box and the five points.

Point order (same as the original files, checked on vd001): row 1 = the eye with the smaller
x (image left, the subject's right eye), row 2 = the other eye, row 3 = nose tip, row 4 = the
mouth corner with the smaller x, row 5 = the other mouth corner. MTCNN's `left_eye` /
`mouth_left` are the image-left ones, so its order maps 1:1. Coordinates are image pixels,
x right, y down, origin at the centre of the top-left pixel; floats with 4 decimals.

Test-time flip (default on): MTCNN is also run on the mirrored frame, its points mirrored back
(x -> W-1-x, left/right rows swapped) and averaged with the direct ones; on vd001 this lowers
the mean error / inter-ocular distance from 0.058 to 0.055 (see docs/landmarks.md).
"""
from __future__ import annotations

import os

import numpy as np

from common.parallel import WORKER_THREADS_ENV

# Row order of the original face/*.txt files (see module docstring).
POINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
_FLIP_ROWS = [1, 0, 2, 4, 3]


def _limit_tf_threads(n: int) -> None:
    """Cap TensorFlow's thread pools in a `--jobs` worker (possible only before TF runs an op)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TF already initialised in this process: keep its pools


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a (N,4) and b (M,4), [left, top, right, bottom] -> (N, M)."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)


class FivePointDetector:
    """MTCNN wrapper; build one per process (loading the three networks takes seconds).

    detect(img RGB uint8 HxWx3) -> list of dict(box=(4,) [l, t, r, b] float, confidence,
    points=(5, 2) float in POINT_NAMES order), sorted by decreasing box area;
    detect_many(list of images) -> one such list per image.
    """

    def __init__(self, flip: bool = True, min_face_size: int = 20):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        threads = os.environ.get(WORKER_THREADS_ENV)
        if threads:
            _limit_tf_threads(int(threads))
        import keras
        from mtcnn import MTCNN

        self.flip = flip
        self.min_face_size = min_face_size
        # MTCNN is built in float32 whatever global Keras policy the process has set (a
        # mixed_bfloat16 one from building the deblurring network makes its outputs bfloat16,
        # which numpy cannot mix with its boxes).
        before = keras.config.dtype_policy()
        keras.config.set_dtype_policy("float32")
        try:
            self._mtcnn = MTCNN()
        finally:
            keras.config.set_dtype_policy(before)

    def _raw(self, imgs: list[np.ndarray]) -> np.ndarray:
        # numpy output keeps sub-pixel landmarks (the JSON output rounds them to integers):
        # columns [image_id, l, t, r, b, confidence, x1..x5, y1..y5]. A list is run as one
        # batch (about 3x faster than frame by frame on CPU, identical results).
        r = self._mtcnn.detect_faces([np.ascontiguousarray(i) for i in imgs], output_type="numpy",
                                     box_format="xyxy", min_face_size=self.min_face_size)
        return np.asarray(r, float).reshape(-1, 16)

    def detect(self, img: np.ndarray) -> list[dict]:
        return self.detect_many([img])[0]

    def detect_many(self, imgs: list[np.ndarray]) -> list[list[dict]]:
        """`detect` for several frames at once (one MTCNN batch; frames may differ in size)."""
        for img in imgs:
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"expected RGB uint8 HxWx3 images, got {img.dtype} {img.shape}")
        r = self._raw(imgs)
        rf = self._raw([img[:, ::-1] for img in imgs]) if self.flip else np.empty((0, 16))
        return [self._merge(r[r[:, 0] == k], rf[rf[:, 0] == k], img.shape[1]) for k, img in enumerate(imgs)]

    @staticmethod
    def _merge(r: np.ndarray, rf: np.ndarray, w: int) -> list[dict]:
        boxes = r[:, 1:5].copy()
        pts = np.stack([r[:, 6:11], r[:, 11:16]], axis=2)
        if len(r) and len(rf):
            # Mirror the flipped pass back (x -> w-1-x, left/right rows swapped), then average
            # each direct detection with the mirrored one covering the same face.
            bf = np.stack([w - 1 - rf[:, 3], rf[:, 2], w - 1 - rf[:, 1], rf[:, 4]], axis=1)
            pf = np.stack([w - 1 - rf[:, 6:11], rf[:, 11:16]], axis=2)[:, _FLIP_ROWS]
            iou = box_iou(boxes, bf)
            for i in range(len(r)):
                j = int(np.argmax(iou[i]))
                if iou[i, j] > 0.5:
                    pts[i] = (pts[i] + pf[j]) / 2
                    boxes[i] = (boxes[i] + bf[j]) / 2
        order = np.argsort(-np.prod(boxes[:, 2:] - boxes[:, :2], axis=1), kind="stable")
        return [dict(box=boxes[i].copy(), confidence=float(r[i, 5]), points=pts[i].copy()) for i in order]


def select_track(dets: list[list[dict]], min_iou: float = 0.2) -> list[int | None]:
    """Index of the tracked face in every frame (None = no detection of that face).

    The track starts on the largest face of the first frame with any detection; each later
    frame takes the detection overlapping the last tracked box most (IoU >= min_iou), else the
    one whose centre is nearest, if closer than the last box's larger side, else none.
    """
    out: list[int | None] = []
    last = None
    for frame in dets:
        if not frame:
            out.append(None)
            continue
        boxes = np.array([d["box"] for d in frame], float)
        if last is None:
            k = int(np.argmax(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)))
        else:
            iou = box_iou(last[None], boxes)[0]
            k = int(np.argmax(iou))
            if iou[k] < min_iou:
                c = (boxes[:, :2] + boxes[:, 2:]) / 2
                d = np.hypot(*(c - (last[:2] + last[2:]) / 2).T)
                k = int(np.argmin(d))
                if d[k] > max(last[2] - last[0], last[3] - last[1]):
                    out.append(None)
                    continue
        out.append(k)
        last = boxes[k]
    return out
