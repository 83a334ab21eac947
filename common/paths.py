"""Path safety for names and output folders that come from users.

A clip name becomes a folder name (`dataset/<name>/...`), so a name like `..`, `../x` or `a/b`
would write outside the output folder; and an output folder that is the input folder would
overwrite (or re-read) the user's own files. Both are refused with an InputError.
"""
from __future__ import annotations

import os
from pathlib import Path

from common.errors import InputError

_SEPARATORS = ("/", "\\", os.sep) + ((os.altsep,) if os.altsep else ())


def check_clip_name(name: str, source=None) -> str:
    """Return `name` when it is one plain folder name; InputError otherwise.

    Refused: empty, `.` or `..`, names containing a path separator or a NUL byte, names starting
    with `.` (hidden, and the tools' temporary files start with `.`). `source` (the video the
    name came from) is named in the message.
    """
    what = f"{source}: clip name {name!r}" if source is not None else f"clip name {name!r}"
    if not name or name in (".", ".."):
        raise InputError(f"{what} is not a folder name (give another one with --name)")
    if any(s in name for s in _SEPARATORS) or "\0" in name:
        raise InputError(f"{what} contains a path separator; outputs must stay inside the output "
                         "folder (give a plain name with --name)")
    if name.startswith("."):
        raise InputError(f"{what} starts with '.', which the tools reserve for temporary files "
                         "(give another one with --name)")
    return name


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
