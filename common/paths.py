"""Path safety for names and output folders that come from users; where shipped model files are.

An output folder that is the input folder would overwrite (or re-read) the user's own files:
refused with an InputError. (Clip names, which become folder names and datalist columns, are
checked by common/names.py: no `..`, separators, whitespace or leading dot.)
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from common.errors import InputError


def inside(child, parent) -> bool:
    """True when `child` is `parent` or lies under it (paths resolved, links followed)."""
    c, p = Path(child).resolve(), Path(parent).resolve()
    return c == p or p in c.parents


def check_output(output, inputs, what: str = "output") -> None:
    """Refuse an output path that is one of the `inputs` (a file or folder the tool reads).

    Writing there would replace the user's files (e.g. `deblur_video.py in.mp4 in.mp4`, or
    `--frames_out` = the input folder of frames) or make the tool read its own outputs back.
    """
    for src in inputs:
        if src is None:
            continue
        if Path(output).resolve() == Path(src).resolve():
            raise InputError(f"{output}: the {what} is the input {src} itself; it would be "
                             "overwritten. Choose another path")


def dlib_model_path(name: str) -> Path | None:
    """Path of a dlib model file (e.g. `shape_predictor_5_face_landmarks.dat`) shipped by the
    `face-recognition-models` package, or None when the package or file is missing.

    The package's own import needs pkg_resources (gone from recent setuptools), so its folder
    is located with importlib instead of being imported.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    return path if path.is_file() else None
