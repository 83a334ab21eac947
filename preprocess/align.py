"""Neighbour alignment and datalists (the original `generateAlignments.m` + datalist files).

For every blurry frame t of `dataset/<video>/blurry/`, the neighbours t-r ... t+r
(r = n_frames // 2: t-2..t+2 for 5 frames, t-4..t+4 for 9) are warped onto frame t and written
to `<out>/<video>/blur_<o>/NNNNN.png` (o = -r..r; blur_0 is frame t itself). Indices beyond
the sequence are clamped to the first/last frame, as in the original. Methods:
  none        the neighbour as is;
  flow        optical flow from t to the neighbour (TV-L1 or DIS at a smaller side of
              `flow_side` px, see flow.py), neighbour backward-warped (bicubic); with
              occlusion "centre" the pixels that fail the forward-backward check take frame
              t's value (flow.occlusion_mask; "warp" = the original, warped everywhere);
  homography  SIFT + RANSAC homography; when estimation fails the unwarped neighbour is used
              (as the original) and the fallback is counted in the summary.

Datalist (the original training list format), one line per frame that has a sharp target:
  <video>/sharp/N.png <video>/blur_-2/N.png ... <video>/blur_2/N.png <video>/face/N.txt <video>/render/N.png
The sharp path is relative to the dataset folder; the others are relative to `out`
(training_set): `face/N.txt` is where demo.py writes the 3D coefficients and `render/N.png`
where demo_render.py writes the pasted-back render. With 9 frames the list has 12 columns
(blur_-4 ... blur_4); in general n_frames + 3.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.names import name_problem, safe_name

from common.flags import DEFAULT_FLOW, DEFAULT_OCCLUSION, OCCLUSION_MODES
from common.frames import frame_offsets, list_frames, list_videos

from .blur import FrameReader
from common.fileio import InputError, write_image, write_text
from .flow import align_flow, align_homography
from common.parallel import chunks, run_tasks

ALIGN_METHODS = ("none", "flow", "homography")


def neighbour_index(t: int, offset: int, n: int) -> int:
    """0-based neighbour index of frame t, clamped to [0, n-1] (the original's end handling)."""
    return min(max(t + offset, 0), n - 1)


def align_neighbour(ref: np.ndarray, other: np.ndarray, method: str = "flow", flow: str = DEFAULT_FLOW,
                    flow_side: int | None = 200, occlusion: str = DEFAULT_OCCLUSION) -> tuple[np.ndarray, bool]:
    """Warp `other` onto `ref`; returns (image uint8, False if homography fell back to identity)."""
    if method == "none":
        return other, True
    if method == "flow":
        return align_flow(ref, other, flow, flow_side, occlusion), True
    if method == "homography":
        return align_homography(ref, other)
    raise ValueError(f"unknown --align {method!r} (choose from {ALIGN_METHODS})")


def _align_task(task) -> dict:
    video, out_video, names, offsets, method, flow, flow_side, occlusion, on_error = task
    files = list_frames(Path(video) / "blurry", "blurry frames")
    index = {p.name: i for i, p in enumerate(files)}
    load = FrameReader(files).__getitem__

    fallbacks = 0
    errors = []
    for name in names:
        t = index[name]
        try:
            ref = load(t)
            for o in offsets:
                dst = Path(out_video) / f"blur_{o}" / name
                if dst.exists():
                    continue
                j = neighbour_index(t, o, len(files))
                if j == t:
                    img, ok = ref, True
                else:
                    img, ok = align_neighbour(ref, load(j), method, flow, flow_side, occlusion)
                fallbacks += not ok
                write_image(dst, img)
        except InputError as e:  # the frame or a neighbour cannot be read
            if on_error != "skip":
                raise
            errors.append(f"{Path(out_video) / 'blur_*' / name} not written: {e}")
    return dict(frames=len(names), fallbacks=fallbacks, errors=errors)


def align_dataset(dataset, out, datalist=None, align: str = "flow", flow: str = DEFAULT_FLOW,
                  n_frames: int = 5, jobs: int = 1, chunk: int = 8, flow_side: int | None = 200,
                  videos=None, datalist_videos=None, on_error: str = "stop",
                  occlusion: str = DEFAULT_OCCLUSION) -> dict:
    """Align every `dataset/<video>/blurry/` into `out/<video>/blur_*`; optionally write a datalist.

    Frames whose outputs all exist are skipped. The datalist lists every aligned video of the
    dataset (or only `datalist_videos`), not just those aligned by this call, so running clip
    after clip keeps one complete list. Returns a summary dict (frames, skipped,
    homography fallbacks, datalist lines). on_error "skip": frames whose own or neighbour
    frames cannot be read are left out (counted in `errors_skipped`; not in the datalist, which
    lists only frames with every file).
    """
    offsets = frame_offsets(n_frames)
    if flow_side is not None and flow_side < 8:
        raise ValueError(f"--flow_side must be at least 8 pixels (or 0 for full size), got {flow_side}")
    if align not in ALIGN_METHODS:
        raise ValueError(f"unknown --align {align!r} (choose from {ALIGN_METHODS})")
    if occlusion not in OCCLUSION_MODES:
        raise ValueError(f"unknown --occlusion {occlusion!r} (choose from {OCCLUSION_MODES})")
    vids = [v for v in list_videos(dataset, "blurry") if not videos or v.name in videos]
    if datalist:
        # Refuse before aligning anything what the datalist could not carry.
        check_datalist_names([v for v in vids if (v / "sharp").is_dir()
                              and (not datalist_videos or v.name in datalist_videos)])
    tasks, total, skipped = [], 0, 0
    for v in vids:
        files = list_frames(v / "blurry", "blurry frames")
        o_v = Path(out) / v.name
        todo = [p.name for p in files
                if not all((o_v / f"blur_{o}" / p.name).exists() for o in offsets)]
        total += len(files)
        skipped += len(files) - len(todo)
        tasks += [(str(v), str(o_v), c, offsets, align, flow, flow_side, occlusion, on_error)
                  for c in chunks(todo, chunk)]
    res = run_tasks(_align_task, tasks, jobs, desc=f"align ({align})", unit="frame",
                    weights=lambda t: len(t[2]))
    errors = [e for r in res for e in r["errors"]]
    summary = dict(frames=total, written=total - skipped - len(errors), skipped=skipped,
                   fallbacks=sum(r["fallbacks"] for r in res))
    if errors:
        summary.update(errors_skipped=len(errors), errors=errors[:10])
    if datalist:
        summary["datalist_lines"] = write_datalist(dataset, out, datalist, n_frames, datalist_videos)
    return summary


def datalist_line(video: str, name: str, offsets) -> str:
    stem = Path(name).stem
    cols = [f"{video}/sharp/{name}"] + [f"{video}/blur_{o}/{name}" for o in offsets]
    cols += [f"{video}/face/{stem}.txt", f"{video}/render/{stem}.png"]
    return " ".join(cols)


def check_datalist_names(video_dirs) -> None:
    """InputError naming the first clip folder or frame whose name cannot go into the
    whitespace-separated datalist (common/names.py); nothing is written then."""
    for v in video_dirs:
        v = Path(v)
        problem = name_problem(v.name)
        if problem:
            raise InputError(f"{v}: clip folder name {problem}; rename the folder (e.g. to "
                             f"{safe_name(v.name)!r}) and run again")
        for sub in ("sharp", "blurry"):
            if (v / sub).is_dir():
                for p in (v / sub).glob("*.png"):
                    if not p.name.startswith(".") and name_problem(p.name):
                        raise InputError(f"{p}: frame file name {name_problem(p.name)}; rename it "
                                         f"(the project's frames are named 00001.png ...)")


def write_datalist(dataset, out, path, n_frames: int = 5, videos=None) -> int:
    """Write the datalist for every video that has sharp frames and aligned neighbours.

    A frame is listed only when its sharp target and all of its blur_* files exist (coefficient
    and render paths are listed where demo.py / demo_render.py will write them). Returns the
    number of lines; when there are none (test clips without sharp frames) no file is written
    and 0 is returned.
    """
    offsets = frame_offsets(n_frames)
    lines = []
    # A test clip without ground truth (no sharp/) is not listed: nothing to train on.
    vids = [v for v in list_videos(dataset, "blurry")
            if (v / "sharp").is_dir() and (not videos or v.name in videos)]
    check_datalist_names(vids)
    for v in vids:
        for p in list_frames(v / "blurry", "blurry frames"):
            o_v = Path(out) / v.name
            if (v / "sharp" / p.name).exists() and all((o_v / f"blur_{o}" / p.name).exists() for o in offsets):
                lines.append(datalist_line(v.name, p.name, offsets))
    if not lines:
        return 0
    write_text(path, "\n".join(lines) + "\n")
    return len(lines)
