"""Video -> frames (the original `extractFrames.m`), with an optional face-centred crop.

`extract_frames` decodes any file OpenCV or ffmpeg (imageio-ffmpeg) can read, or a folder of
image files, and writes `dataset/<name>/<subdir>/00001.png ...` (1-based, 5 digits, RGB PNG).

Face-centred crop (how 300VW-style face clips are made): dlib's HOG frontal-face detector
finds a face box on every selected frame (on a copy whose longer side is at most 480 px), one
face is tracked (the largest at the start, then the nearest to the previous box), the box
centre is refined with dlib's 5-point landmarks (HOG boxes move in steps of pixels), frames
without a detection are filled by linear interpolation, and the box centre and side are
smoothed over time with a Gaussian of `crop_smooth` frames (a jittering crop would add motion
that is not in the video). The square crop has side `crop_scale` x the detector box side,
centred `CROP_SHIFT_UP` x the detector box side above the detector box centre (the HOG box spans eyebrows to
chin; the shift brings the forehead in), and is resampled to `face_crop` x `face_crop` pixels
with sub-pixel precision (affine warp; replicated border where the box leaves the frame).
The boxes are written to `dataset/<name>/crop_boxes.txt` (`NNNNN.png source_index cx cy
side`, source pixels, 0-based source frame index) so a crop can be traced back to the video.
"""
from __future__ import annotations

import os

# Silence FFmpeg's own console messages from OpenCV's backend; failures are reported as
# one InputError instead. Must be set before the backend is first used.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from common import tracks
from common.frames import frame_folder_files
from common.names import name_problem, safe_name
from common.paths import dlib_model_path

from common.fileio import InputError, frame_name, read_image, write_image, write_text

CROP_SHIFT_UP = 0.12
DETECT_MAX_SIDE = 480


def video_name(path) -> str:
    """Default clip name: the file stem (or folder name) of the source."""
    p = Path(path)
    return p.name if p.is_dir() else p.stem


def displayed_size(path) -> tuple[int, int] | None:
    """(width, height) of an image as shown (EXIF rotation applied), from its header only;
    None when the header cannot be read (the full decode reports the problem)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90 degrees
                w, h = h, w
            return w, h
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None


def check_frame_sizes(files) -> tuple[int, int] | None:
    """All frames of a clip must have one size (neighbour alignment and the network stack them).

    Reads only the headers. Raises InputError naming the first file whose size differs, with
    both sizes. Returns the common (width, height) (None when no header was readable).
    """
    ref = None
    for f in files:
        size = displayed_size(f)
        if size is None:
            continue
        if ref is None:
            ref = (f, size)
        elif size != ref[1]:
            raise InputError(f"{f}: frame size {size[0]}x{size[1]} differs from {ref[1][0]}x{ref[1][1]} of "
                             f"{Path(ref[0]).name}, the first frame (all frames of a clip must have one size; "
                             "resize them first, or split the folder)")
    return ref[1] if ref else None


def iter_video(path, max_frames: int | None = None, step: int = 1, on_error: str = "stop",
               skipped: list | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (source_index 0-based, RGB uint8 HxWx3) for frames 0, step, 2*step, ...

    Stops after `max_frames` yielded frames. Raises InputError naming `path` when it does not
    exist, cannot be decoded, or yields no frame; for a folder of frames also when a frame
    cannot be read (`on_error="stop"`, checked frame by frame) or when the frames differ in size
    (checked from the headers before the first frame is yielded). `on_error="skip"` leaves out
    unreadable frames of a folder and appends their messages to `skipped`.
    """
    path = Path(path)
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    if not path.exists():
        raise InputError(f"{path}: video file or frame folder not found")
    limit = np.inf if max_frames is None else max_frames
    count = 0
    if path.is_dir():
        files = frame_folder_files(path)
        check_frame_sizes(files[::step][: None if max_frames is None else max_frames])
        for i in range(0, len(files), step):
            if count >= limit:
                return
            try:
                frame = read_image(files[i])
            except InputError as e:
                if on_error != "skip":
                    raise
                if skipped is not None:
                    skipped.append(str(e))
                continue
            yield i, frame
            count += 1
        if count == 0:
            raise InputError(f"{path}: none of the {len(files)} image files could be read")
        return
    for i, frame in _decode(path, step):
        if count >= limit:
            return
        yield i, frame
        count += 1
    if count == 0:
        _explain_undecodable(path)
        raise InputError(f"{path}: no frame could be decoded (not a video, or an empty one)")


def _explain_undecodable(path: Path) -> None:
    """Raise ffmpeg's precise reason (no video stream, no frame, not a video) as InputError."""
    from common.videoio import probe_video

    probe_video(path)


def _decode(path: Path, step: int) -> Iterator[tuple[int, np.ndarray]]:
    cap = cv2.VideoCapture(str(path))
    if cap.isOpened():
        try:
            i = 0
            yielded = False
            while True:
                if i % step:
                    ok = cap.grab()  # skip decoding frames that are not kept
                    frame = None
                else:
                    ok, frame = cap.read()
                if not ok:
                    break
                if frame is not None:
                    yielded = True
                    yield i, np.ascontiguousarray(frame[:, :, ::-1])
                i += 1
            if yielded:
                return
        finally:
            cap.release()
    # OpenCV could not open or decode it: try ffmpeg directly (more codecs / containers).
    try:
        import imageio_ffmpeg

        # passthrough: one output frame per decoded frame (the default would duplicate or drop
        # frames of a variable-frame-rate video to fit a constant rate)
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24",
                                            output_params=["-fps_mode", "passthrough"])
        meta = next(reader)
        w, h = meta["size"]
        for i, buf in enumerate(reader):
            if i % step == 0:
                yield i, np.frombuffer(buf, np.uint8).reshape(h, w, 3).copy()
    except (RuntimeError, OSError, StopIteration, KeyError) as e:
        _explain_undecodable(path)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"{path}: cannot decode video (not a video file, or a codec ffmpeg "
                         f"does not know: {first[:160]})") from None


def detect_face_track(frames) -> np.ndarray:
    """Face box per frame: (T, 3) [cx, cy, side] in frame pixels, NaN rows = no face.

    `frames` is any iterable of RGB uint8 frames (consumed once; a generator keeps memory
    flat on long videos). dlib's HOG detector finds the faces; one is followed (the largest in
    the first frame with a detection, then the one whose centre is nearest to the previous
    box, within one box side). HOG boxes move in steps of several pixels (detection-window
    stride), so the centre is refined with dlib's 5-point shape predictor when available:
    centre = mean of the 5 landmarks + the clip's median offset between the HOG box centre and
    that mean (keeps the HOG framing, removes the steps). Side = HOG box side.
    """
    import dlib

    det = dlib.get_frontal_face_detector()
    sp_path = dlib_model_path("shape_predictor_5_face_landmarks.dat")
    sp = dlib.shape_predictor(str(sp_path)) if sp_path else None
    hog, lm = [], []
    prev = None
    for img in frames:
        hog.append(np.full(3, np.nan))
        lm.append(np.full(2, np.nan))
        s = min(1.0, DETECT_MAX_SIDE / max(img.shape[:2]))
        small = img if s == 1.0 else cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        rects = list(det(small, 0))
        if not rects and min(small.shape[:2]) < 320:
            rects = list(det(small, 1))  # small frames: upsample once to find faces under 80 px
        boxes = np.array([[(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2,
                           (r.width() + r.height()) / 2] for r in rects], float).reshape(-1, 3) / s
        if len(boxes) == 0:
            continue
        if prev is None:
            k = int(np.argmax(boxes[:, 2]))
        else:
            d = np.hypot(boxes[:, 0] - prev[0], boxes[:, 1] - prev[1])
            k = int(np.argmin(d))
            if d[k] > prev[2]:
                continue
        hog[-1] = prev = boxes[k]
        if sp is not None:
            shape = sp(small, rects[k])
            lm[-1] = np.mean([[shape.part(i).x, shape.part(i).y] for i in range(5)], axis=0) / s
    hog, lm = np.array(hog, float).reshape(-1, 3), np.array(lm, float).reshape(-1, 2)
    ok = np.isfinite(lm).all(1)
    if ok.any():
        hog[ok, :2] = lm[ok] + np.median(hog[ok, :2] - lm[ok], axis=0)
    return hog


def crop_square(img: np.ndarray, cx: float, cy: float, side: float, size: int) -> np.ndarray:
    """Resample the square [cx +- side/2] x [cy +- side/2] of `img` to size x size (RGB uint8)."""
    scale = size / side
    pre = 1.0
    if scale < 0.5:
        # Pre-shrink with area averaging so the bilinear warp below does not alias.
        pre = 2.0 * scale
        img = cv2.resize(img, None, fx=pre, fy=pre, interpolation=cv2.INTER_AREA)
    s = scale / pre
    # Pixel i covers [i - 0.5, i + 0.5]; the box's left edge x0 maps to the output's left
    # edge -0.5, so output pixel j samples x0 + (j + 0.5) / s - 0.5 (cv2.resize follows the
    # same convention, hence x_pre = (x + 0.5) * pre - 0.5).
    x0 = (cx + 0.5) * pre - 0.5 - side * pre / 2
    y0 = (cy + 0.5) * pre - 0.5 - side * pre / 2
    m = np.array([[s, 0, -s * x0 + 0.5 * s - 0.5], [0, s, -s * y0 + 0.5 * s - 0.5]], np.float64)
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def fitted_crop_size(shape, size: int) -> int:
    """Output side for `fit_frame` crops of frames of `shape` (H, W, ...): `size`, or the frame's
    smaller side rounded down to a multiple of 8 when that is smaller (never upsampled)."""
    return min(int(size), min(shape[0], shape[1]) // 8 * 8)


def fit_box(cx: float, cy: float, side: float, width: int, height: int, size: int) -> tuple:
    """Move and resize the square crop [cx +- side/2] so it lies inside a width x height frame and
    holds at least `size` source pixels (so a `size` output is never upsampled).

    Side clamped to [size, min(width, height)], centre clamped so the square stays inside the
    frame, in `crop_square`'s coordinates (the square covers [cx - side/2, cx + side/2] with
    pixel i covering [i, i + 1]; the whole frame is cx = width/2, side = width).
    Returns (cx, cy, side)."""
    side = float(min(max(side, size), min(width, height)))
    cx = float(min(max(cx, side / 2), width - side / 2))
    cy = float(min(max(cy, side / 2), height - side / 2))
    return cx, cy, side


def extract_frames(video, dataset, name: str | None = None, max_frames: int | None = None,
                   step: int = 1, face_crop: int | None = None, subdir: str = "sharp",
                   crop_scale: float = 2.0, crop_smooth: float = 5.0, on_error: str = "stop",
                   fit_frame: bool = False) -> dict:
    """Write `dataset/<name>/<subdir>/NNNNN.png`; return a summary dict.

    `fit_frame` (with `face_crop`): every crop lies inside the frame and is never upsampled
    (`fit_box`); the output side is `face_crop` or, for frames smaller than that, the frame's
    smaller side rounded down to a multiple of 8 (`fitted_crop_size`). Without it, a crop that
    leaves the frame repeats the border pixels, and a small face is upsampled.

    Frames already written (e.g. by an interrupted run) are not rewritten. With `face_crop`,
    the smoothed boxes are saved once to `crop_boxes.txt` and re-used on re-runs so a resumed
    run crops exactly as the first one did. `on_error="skip"`: unreadable frames of a folder are
    left out (the rest numbered consecutively) and counted in `errors_skipped`.

    The clip name must fit the whitespace-separated datalist (common/names.py): an explicit
    `name` that does not is refused (InputError); one taken from the file name is made safe
    ('my clip.mp4' -> 'my_clip') and the summary says so in `note`. Either way it is a plain
    folder name (no `..`, separators or leading dot), so outputs stay inside `dataset`.
    """
    video = Path(video)
    note = None
    if name is not None and name_problem(name):
        raise InputError(f"--name {name!r} {name_problem(name)}; choose another clip name "
                         f"(e.g. {safe_name(name)!r})")
    if name is None:
        name = video_name(video)
        if name in ("", ".", ".."):
            # a path like `clip/..`: no name to make safe; writing there would leave `dataset`
            raise InputError(f"{video}: clip name {name!r} is not a folder name (give one with --name)")
        if name_problem(name):
            note = (f"clip name {name!r} (from {video.name}) {name_problem(name)}; "
                    f"written as {safe_name(name)!r}")
            name = safe_name(name)
    root = Path(dataset) / name
    out_dir = root / subdir
    if video.is_dir() and out_dir.resolve() == video.resolve():
        raise InputError(f"{out_dir}: the output folder is the input folder {video}; its frames would be "
                         "overwritten while being read (choose another --dataset or --name)")
    written = skipped = 0
    bad: list[str] = []
    if face_crop is None:
        for k, (_, frame) in enumerate(iter_video(video, max_frames, step, on_error, bad), start=1):
            path = out_dir / frame_name(k)
            if path.exists():
                skipped += 1
                continue
            write_image(path, frame)
            written += 1
        return _summary(video, name, written, skipped, note, bad)

    boxes_file = root / "crop_boxes.txt"
    boxes = _read_boxes(boxes_file) if boxes_file.exists() else None
    if boxes is None:
        # Two decoding passes (detect, then crop) instead of holding a long video in memory.
        sources: list[int] = []

        def frames():
            for src, f in iter_video(video, max_frames, step, on_error, bad):
                sources.append(src)
                yield f

        track = detect_face_track(frames())
        if not np.isfinite(track).any():
            raise InputError(f"{video}: no face found in any of the {len(track)} selected frames "
                             f"(face crop needs a visible frontal face)")
        track = tracks.smooth(tracks.fill_gaps(track), crop_smooth)
        track[:, 2] *= crop_scale
        track[:, 1] -= CROP_SHIFT_UP * track[:, 2] / crop_scale
        boxes = {k: (src, *track[k - 1]) for k, src in enumerate(sources, start=1)}
        write_text(boxes_file, "".join(f"{frame_name(k)} {src} {cx:.3f} {cy:.3f} {side:.3f}\n"
                                       for k, (src, cx, cy, side) in boxes.items()))
    if all((out_dir / frame_name(k)).exists() for k in boxes):
        return _summary(video, name, 0, len(boxes), note, [])
    source = enumerate((f for _, f in iter_video(video, len(boxes), step, on_error, [])), start=1)
    for k, frame in source:
        path = out_dir / frame_name(k)
        if path.exists():
            skipped += 1
            continue
        _, cx, cy, side = boxes[k]
        size = face_crop
        if fit_frame:
            size = fitted_crop_size(frame.shape, face_crop)
            cx, cy, side = fit_box(cx, cy, side, frame.shape[1], frame.shape[0], size)
        write_image(path, crop_square(frame, cx, cy, side, size))
        written += 1
    return _summary(video, name, written, skipped, note, bad)


def _summary(video, name, written, skipped, note, bad) -> dict:
    out = dict(video=str(video), name=name, frames=written + skipped, written=written, skipped=skipped,
               errors_skipped=len(bad), errors=bad[:10])
    if note:
        out["note"] = note
    return out


def _read_boxes(path: Path) -> dict:
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if len(parts) != 5:
            raise InputError(f"{path}: line {n} should be 'NNNNN.png source_index cx cy side'")
        out[int(Path(parts[0]).stem)] = (int(parts[1]), *map(float, parts[2:]))
    if not out:
        raise InputError(f"{path}: empty crop box file (delete it to detect the faces again)")
    return out
