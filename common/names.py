"""Clip and file names that the project's text formats can carry.

The datalist (`sharp blur_-2 ... render`, one sample per line), `bbox.txt` and
`crop_boxes.txt` are whitespace-separated, as in the original repository
(rwenqi/3Dfacedeblurring), and every path in them starts with the clip name. A name with
whitespace (`my clip`) would split into two columns; one with a path separator or a leading
dot would land in another folder or be hidden from the folder scans. Such names are checked
where they enter (preprocess) instead of being written into a file no tool can read back.
"""
from __future__ import annotations

import re
import unicodedata

_SEPARATORS = ("/", "\\")


def name_problem(name: str) -> str | None:
    """Why `name` cannot be a clip/file name in the project's formats, or None when it can.

    Refused: empty, '.'/'..' or a leading '.', whitespace of any kind (str.split() splits on
    it), path separators, control characters.
    """
    if not name or name in (".", ".."):
        return "is empty or a relative folder"
    if name.startswith("."):
        return "starts with '.' (hidden files and folders are skipped by the folder scans)"
    if any(c.isspace() for c in name):
        return ("contains whitespace, which separates the columns of the datalist "
                "(sharp blur_-2 ... render), bbox.txt and crop_boxes.txt")
    if any(sep in name for sep in _SEPARATORS):
        return "contains a path separator"
    if any(unicodedata.category(c) == "Cc" for c in name):
        return "contains control characters"
    return None


def safe_name(name: str) -> str:
    """`name` made usable: whitespace runs, separators and control characters -> '_', leading
    dots dropped ('my clip' -> 'my_clip'); 'clip' when nothing is left."""
    s = re.sub(r"[\s/\\]+", "_", name)
    s = "".join("_" if unicodedata.category(c) == "Cc" else c for c in s).lstrip(".")
    return s if s and s not in (".", "..") else "clip"
