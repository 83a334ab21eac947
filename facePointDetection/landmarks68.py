"""Optional 68-point landmarks with dlib (iBUG 300-W layout), for 3D fitting and metrics.

Not part of the original pipeline (which only uses five points). dlib's
`shape_predictor_68_face_landmarks.dat` ships with the `face-recognition-models` package; its
directory is found with importlib (importing the package itself needs pkg_resources, which
recent setuptools removed). The predictor was trained on dlib HOG detector boxes, which are
tighter than MTCNN's (those include the forehead), so the MTCNN box is first mapped to a
HOG-like box built from the five points (`box_from_five`). Output: (68, 2) float, x right,
y down, image pixels; rows in the standard 300-W order (0-16 jaw, 36-41 / 42-47 the eyes on
the image left / right).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.fileio import InputError
from common.paths import dlib_model_path


def predictor_path(name: str = "shape_predictor_68_face_landmarks.dat") -> Path:
    path = dlib_model_path(name)
    if path is None:
        raise InputError(f"dlib model {name} not found: 68 points need the face-recognition-models "
                         f"package (`pip install face-recognition-models`), which ships it")
    return path


def box_from_five(pts5: np.ndarray) -> tuple[float, float, float, float]:
    """Square HOG-style face box (l, t, r, b) from five points (rows as in face/*.txt).

    Side = 1.8 x the eye-centre to mouth-centre distance, at least 1.6 x the inter-ocular
    distance (so open mouths and turned heads both get a sane box), centred on the midpoint of
    the eye and mouth centres: on vd001 frame 1 (original
    points) its edges are within 7 px of dlib's own HOG box on that frame.
    """
    p = np.asarray(pts5, float)
    eye, mouth = p[:2].mean(0), p[3:].mean(0)
    side = max(1.8 * np.linalg.norm(mouth - eye), 1.6 * np.linalg.norm(p[1] - p[0]))
    cx, cy = (eye + mouth) / 2
    return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2


class Predictor68:
    """dlib 68-point shape predictor; `__call__(img RGB uint8, pts5 (5,2)) -> (68, 2)`."""

    def __init__(self):
        import dlib

        self._dlib = dlib
        self._sp = dlib.shape_predictor(str(predictor_path()))

    def __call__(self, img: np.ndarray, pts5: np.ndarray) -> np.ndarray:
        l, t, r, b = (int(round(v)) for v in box_from_five(pts5))
        shape = self._sp(np.ascontiguousarray(img), self._dlib.rectangle(l, t, r, b))
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], float)
