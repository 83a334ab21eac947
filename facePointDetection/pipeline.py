"""Landmark files for a whole dataset: `dataset/<video>/blurry/` -> `face/`, `bbox.txt`, `face68/`.

Per video: MTCNN on every blurry frame (cut into chunks that run in `--jobs` worker processes;
each chunk's raw detections are cached in `<video>/.facepoints_raw/` so an interrupted run
resumes), one face tracked through the clip (`select_track`), frames without a detection of
that face in runs of at most `max_gap` frames filled by linear interpolation of points and box
from the nearest detected frames (a detector miss on a blurry frame; reported), optional
temporal Gaussian smoothing, points clipped into the image, then
  face/NNNNN.txt    five `x y` rows (see detect.py for order and conventions)
  bbox.txt          `image/NNNNN.png left right top bottom` per frame with a face, integer pixels
  noface.txt        names of the frames without a face: runs of more than `max_gap` frames
                    without a detection (the face left the picture, a cut). They get NO
                    landmark file: nothing downstream invents a face there.
  face68/NNNNN.txt  68 `x y` rows with `points=68` (dlib; beside face/, so tools that read
                    every face/*.txt still see five-point files only)
A video whose outputs all exist is skipped. `check_points` is the original check5points.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from common.frames import list_frames, list_videos
from common import tracks
from common.fileio import InputError, read_image, read_points, write_points, write_text
from common.parallel import chunks, run_tasks

from .detect import FivePointDetector, select_track

CACHE = ".facepoints_raw"
NOFACE = "noface.txt"
BATCH = 8  # frames per MTCNN batch
# Longest run of frames without a detection that is still taken for a detector miss (motion blur,
# a turned head) and filled by interpolation; longer runs are frames without a face. Two frames
# are 80 ms at 25 fps: shorter than a face can leave and come back.
MAX_GAP = 2
_DETECTOR: dict = {}


def _detector(flip: bool, min_face_size: int) -> FivePointDetector:
    key = (flip, min_face_size)
    if key not in _DETECTOR:
        _DETECTOR.clear()
        _DETECTOR[key] = FivePointDetector(flip=flip, min_face_size=min_face_size)
    return _DETECTOR[key]


def _cache_file(video: Path, names: list[str]) -> Path:
    return video / CACHE / f"{Path(names[0]).stem}-{Path(names[-1]).stem}.json"


def _detect_task(task) -> int:
    video, names, flip, min_face = task
    video = Path(video)
    det = _detector(flip, min_face)
    rows = {}
    for batch in chunks(names, BATCH):
        imgs = [read_image(video / "blurry" / n) for n in batch]
        for n, img, faces in zip(batch, imgs, det.detect_many(imgs)):
            rows[n] = dict(shape=list(img.shape[:2]),
                           faces=[dict(box=d["box"].tolist(), confidence=d["confidence"],
                                       points=d["points"].tolist()) for d in faces])
    write_text(_cache_file(video, names), json.dumps(rows))
    return len(names)


def no_face_frames(video: Path) -> set[str]:
    """Names of the frames facePointDetection found without a face (`<video>/noface.txt`)."""
    path = Path(video) / NOFACE
    return set(path.read_text().split()) if path.is_file() else set()


def _outputs_done(video: Path, names: list[str], points: int) -> bool:
    if not (video / "bbox.txt").is_file():
        return False
    dirs = ["face"] + (["face68"] if points == 68 else [])
    skip = no_face_frames(video)
    return all((video / d / Path(n).with_suffix(".txt")).is_file() for d in dirs for n in names if n not in skip)


def detect_dataset(dataset, points: int = 5, jobs: int = 1, flip: bool = True, smooth: float = 0.0,
                   min_face_size: int = 20, chunk: int = 32, videos=None, log=print,
                   max_gap: int = MAX_GAP) -> dict:
    """Write five-point (and optionally 68-point) files for every `dataset/<video>/blurry/`.

    Returns {video: dict(frames, interpolated=[names], no_face=[names], skipped=bool)}. Raises
    InputError naming the folder(s) of clips without any face detection, after finishing every
    other clip. `max_gap`: see `common.tracks.gap_fill_mask`.
    """
    if points not in (5, 68):
        raise ValueError(f"--points must be 5 or 68, got {points}")
    vids = [v for v in list_videos(dataset, "blurry") if not videos or v.name in videos]
    if jobs > 1:
        # Small datasets: smaller chunks so every worker gets some (cache names follow the
        # chunking, so a resumed run with other --jobs only redoes unfinished clips' chunks).
        n = sum(len(list_frames(v / "blurry", "blurry frames")) for v in vids)
        chunk = max(4, min(chunk, -(-n // jobs)))
    todo, tasks, summary = [], [], {}
    for v in vids:
        names = [p.name for p in list_frames(v / "blurry", "blurry frames")]
        if _outputs_done(v, names, points):
            summary[v.name] = dict(frames=len(names), interpolated=[], no_face=sorted(no_face_frames(v)),
                                   skipped=True)
            continue
        todo.append((v, names))
        for c in chunks(names, chunk):
            if not _cache_file(v, c).is_file():
                tasks.append((str(v), c, flip, min_face_size))
    run_tasks(_detect_task, tasks, jobs, desc="mtcnn", unit="frame", weights=lambda t: len(t[1]))
    pred68 = _pred68(points) if todo else None
    no_face = []
    for v, names in todo:
        raw = {}
        for c in chunks(names, chunk):
            raw.update(json.loads(_cache_file(v, c).read_text()))
        try:
            summary[v.name] = _finish_video(v, names, raw, smooth, points, pred68, max_gap)
        except InputError as e:
            no_face.append(str(e))  # finish the other clips first, then report them all
            continue
        if summary[v.name]["interpolated"]:
            miss = summary[v.name]["interpolated"]
            log(f"{v.name}: no face in {len(miss)}/{len(names)} frames, interpolated: "
                f"{', '.join(miss[:10])}{' ...' if len(miss) > 10 else ''}")
        if summary[v.name]["no_face"]:
            gone = summary[v.name]["no_face"]
            log(f"{v.name}: no face in {len(gone)}/{len(names)} frames (runs longer than {max_gap} frames), "
                f"left without landmarks: {', '.join(gone[:10])}{' ...' if len(gone) > 10 else ''}")
        shutil.rmtree(v / CACHE, ignore_errors=True)
    if no_face:
        raise InputError("; ".join(no_face) + (" (the other clips were processed; exclude these "
                                               "with --videos or remove them)" if len(todo) > 1 else ""))
    return summary


def _pred68(points: int):
    if points != 68:
        return None
    from .landmarks68 import Predictor68

    return Predictor68()


def finish_track(dets: list[list[dict]], smooth: float = 0.0, max_gap: int = MAX_GAP):
    """One face through a clip from per-frame detections (detect.py's dicts).

    Returns (points (T, 5, 2), boxes (T, 4) [l, t, r, b], keep (T,) bool, track): the face
    followed by `select_track`, runs of at most `max_gap` frames without it filled by linear
    interpolation, each run of frames with a face smoothed on its own (Gaussian, `smooth`
    frames); NaN where `keep` is False (no face). Raises ValueError when no frame has a face.
    The landmark stage (`detect_dataset`) and the video command both end here.
    """
    track = select_track(dets)
    if all(k is None for k in track):
        raise ValueError("no face detected in any frame")
    pts = np.full((len(dets), 5, 2), np.nan)
    boxes = np.full((len(dets), 4), np.nan)
    for t, k in enumerate(track):
        if k is not None:
            pts[t], boxes[t] = dets[t][k]["points"], dets[t][k]["box"]
    keep = tracks.gap_fill_mask([k is not None for k in track], max_gap)
    # fill and smooth each run of frames with a face on its own: a stretch without a face
    # neither receives invented points nor pulls its neighbours' points
    for a, b in tracks.runs(keep):
        pts[a:b] = tracks.smooth(tracks.fill_gaps(pts[a:b]), smooth)
        boxes[a:b] = tracks.smooth(tracks.fill_gaps(boxes[a:b]), smooth)
    pts[~keep], boxes[~keep] = np.nan, np.nan
    return pts, boxes, keep, track


def _finish_video(video: Path, names: list[str], raw: dict, smooth: float, points: int, pred68,
                  max_gap: int = MAX_GAP) -> dict:
    dets = [[dict(box=np.array(f["box"]), points=np.array(f["points"]), confidence=f["confidence"])
             for f in raw[n]["faces"]] for n in names]
    try:
        pts, boxes, keep, track = finish_track(dets, smooth, max_gap)
    except ValueError:
        raise InputError(f"{video / 'blurry'}: no face detected in any of the {len(names)} frames") from None
    lines = []
    for t, n in enumerate(names):
        stem = Path(n).stem
        if not keep[t]:
            for d in ("face", "face68"):  # a re-run with a smaller max_gap: drop old files
                (video / d / f"{stem}.txt").unlink(missing_ok=True)
            continue
        h, w = raw[n]["shape"]
        p = pts[t].copy()
        p[:, 0] = np.clip(p[:, 0], 0, w - 1)
        p[:, 1] = np.clip(p[:, 1], 0, h - 1)
        write_points(video / "face" / f"{stem}.txt", p)
        if pred68 is not None:
            img = read_image(video / "blurry" / n)
            p68 = pred68(img, p)
            p68[:, 0] = np.clip(p68[:, 0], 0, w - 1)
            p68[:, 1] = np.clip(p68[:, 1], 0, h - 1)
            write_points(video / "face68" / f"{stem}.txt", p68)
        l, tp, r, b = np.rint(boxes[t]).astype(int)
        lines.append(f"image/{n} {max(l, 0)} {min(r, w - 1)} {max(tp, 0)} {min(b, h - 1)}\n")
    no_face = [n for n, k in zip(names, keep) if not k]
    if no_face:
        write_text(video / NOFACE, "".join(f"{n}\n" for n in no_face))
    else:
        (video / NOFACE).unlink(missing_ok=True)
    write_text(video / "bbox.txt", "".join(lines))
    interpolated = [n for n, k, f in zip(names, track, keep) if k is None and f]
    return dict(frames=len(names), interpolated=interpolated, no_face=no_face, skipped=False)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"{path}: cannot read image ({e})") from None


def check_points(dataset, videos=None, n: int = 5, sub: str = "face") -> list[str]:
    """The original check5points: every blurry frame has `sub/NNNNN.txt` with exactly n x 2
    finite points inside the image (frames listed in noface.txt have none by design). Returns
    one message per problem (empty = all good)."""
    problems = []
    for v in list_videos(dataset, "blurry"):
        if videos and v.name not in videos:
            continue
        skip = no_face_frames(v)
        for f in list_frames(v / "blurry", "blurry frames"):
            if f.name in skip:
                continue
            txt = v / sub / f"{f.stem}.txt"
            try:
                p = read_points(txt, n)
            except InputError as e:
                problems.append(str(e))
                continue
            w, h = image_size(f)
            if (p[:, 0] < 0).any() or (p[:, 0] > w - 1).any() or (p[:, 1] < 0).any() or (p[:, 1] > h - 1).any():
                problems.append(f"{txt}: point outside the {w}x{h} image {f.name}")
    return problems
