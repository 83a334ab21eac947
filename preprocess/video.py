"""Video -> frames (the original `extractFrames.m`), with an optional face-centred crop.

`extract_frames` decodes any file OpenCV or ffmpeg (imageio-ffmpeg) can read, or a folder of
image files, and writes `dataset/<name>/<subdir>/00001.png ...` (1-based, 5 digits, RGB PNG).

Face-centred crop (how 300VW-style face clips are made): dlib's HOG frontal-face detector
finds a face box on every selected frame (on a copy whose longer side is at most 480 px), one
face is tracked (the largest at the start, then the nearest to the previous box), frames
without a detection are filled by linear interpolation, and the box centre and side are
smoothed over time with a Gaussian of `crop_smooth` frames (a jittering crop would add motion
that is not in the video). The square crop has side `crop_scale` x the detector box side,
centred `CROP_SHIFT_UP` x side above the detector box centre (the HOG box spans eyebrows to
chin; the shift brings the forehead in), and is resampled to `face_crop` x `face_crop` pixels
with sub-pixel precision (affine warp; replicated border where the box leaves the frame).
The boxes are written to `dataset/<name>/crop_boxes.txt` (`NNNNN.png source_index cx cy
side`, source pixels, 0-based source frame index) so a crop can be traced back to the video.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from .fileio import InputError, frame_name, read_image, write_image, write_text

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
CROP_SHIFT_UP = 0.12
DETECT_MAX_SIDE = 480


def video_name(path) -> str:
    """Default clip name: the file stem (or folder name) of the source."""
    p = Path(path)
    return p.name if p.is_dir() else p.stem


def _image_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTS and not f.name.startswith("."))


def iter_video(path, max_frames: int | None = None, step: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (source_index 0-based, RGB uint8 HxWx3) for frames 0, step, 2*step, ...

    Stops after `max_frames` yielded frames. Raises InputError naming `path` when it does not
    exist, cannot be decoded, or yields no frame.
    """
    path = Path(path)
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    if not path.exists():
        raise InputError(f"{path}: video file or frame folder not found")
    limit = np.inf if max_frames is None else max_frames
    count = 0
    if path.is_dir():
        files = _image_files(path)
        if not files:
            raise InputError(f"{path}: folder contains no image files ({', '.join(IMAGE_EXTS)})")
        for i in range(0, len(files), step):
            if count >= limit:
                return
            yield i, read_image(files[i])
            count += 1
        return
    for i, frame in _decode(path, step):
        if count >= limit:
            return
        yield i, frame
        count += 1
    if count == 0:
        raise InputError(f"{path}: no frame could be decoded (not a video, or an empty one)")


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

        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(reader)
        w, h = meta["size"]
        for i, buf in enumerate(reader):
            if i % step == 0:
                yield i, np.frombuffer(buf, np.uint8).reshape(h, w, 3).copy()
    except (RuntimeError, OSError, StopIteration, KeyError) as e:
        raise InputError(f"{path}: cannot decode video ({type(e).__name__}: {str(e).strip()[:200]})") from None


def detect_face_track(frames: list[np.ndarray]) -> np.ndarray:
    """Face box per frame with dlib HOG: (T, 3) [cx, cy, side] in frame pixels, NaN = none.

    One face is followed: the largest in the first frame with a detection, then in each
    frame the detection whose centre is nearest to the previous one (within one box side).
    """
    import dlib

    det = dlib.get_frontal_face_detector()
    out = np.full((len(frames), 3), np.nan)
    prev = None
    for t, img in enumerate(frames):
        s = min(1.0, DETECT_MAX_SIDE / max(img.shape[:2]))
        small = img if s == 1.0 else cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        rects = det(small, 0)
        if len(rects) == 0 and min(small.shape[:2]) < 320:
            rects = det(small, 1)  # small frames: upsample once to find faces under 80 px
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
        out[t] = prev = boxes[k]
    return out


def smooth_track(track: np.ndarray, sigma: float) -> np.ndarray:
    """Fill NaN rows by linear interpolation (nearest at the ends), then Gaussian-smooth."""
    track = np.asarray(track, float).copy()
    ok = np.isfinite(track).all(1)
    if not ok.any():
        raise ValueError("no face detected in any frame")
    t = np.arange(len(track))
    for c in range(track.shape[1]):
        track[:, c] = np.interp(t, t[ok], track[ok, c])
    if sigma > 0 and len(track) > 1:
        track = gaussian_filter1d(track, sigma, axis=0, mode="nearest")
    return track


def crop_square(img: np.ndarray, cx: float, cy: float, side: float, size: int) -> np.ndarray:
    """Resample the square [cx +- side/2] x [cy +- side/2] of `img` to size x size (RGB uint8)."""
    scale = size / side
    pre = 1.0
    if scale < 0.5:
        # Pre-shrink with area averaging so the bilinear warp below does not alias.
        pre = 2.0 * scale
        img = cv2.resize(img, None, fx=pre, fy=pre, interpolation=cv2.INTER_AREA)
    s = scale / pre
    # Map source pixel centres: x_out = s * (x_src - x0) where x0 is the box's left edge.
    # Pixel-centre convention of cv2.resize: x_pre = (x + 0.5) * pre - 0.5.
    x0 = (cx + 0.5) * pre - 0.5 - side * pre / 2
    y0 = (cy + 0.5) * pre - 0.5 - side * pre / 2
    m = np.array([[s, 0, -s * x0 + 0.5 * s - 0.5], [0, s, -s * y0 + 0.5 * s - 0.5]], np.float64)
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def extract_frames(video, dataset, name: str | None = None, max_frames: int | None = None,
                   step: int = 1, face_crop: int | None = None, subdir: str = "sharp",
                   crop_scale: float = 2.0, crop_smooth: float = 5.0) -> dict:
    """Write `dataset/<name>/<subdir>/NNNNN.png`; return a summary dict.

    Frames already written (e.g. by an interrupted run) are not rewritten. With `face_crop`,
    the smoothed boxes are saved once to `crop_boxes.txt` and re-used on re-runs so a resumed
    run crops exactly as the first one did.
    """
    video = Path(video)
    name = name or video_name(video)
    root = Path(dataset) / name
    out_dir = root / subdir
    written = skipped = 0
    if face_crop is None:
        for k, (_, frame) in enumerate(iter_video(video, max_frames, step), start=1):
            path = out_dir / frame_name(k)
            if path.exists():
                skipped += 1
                continue
            write_image(path, frame)
            written += 1
        return dict(video=str(video), name=name, frames=written + skipped, written=written, skipped=skipped)

    boxes_file = root / "crop_boxes.txt"
    boxes = _read_boxes(boxes_file) if boxes_file.exists() else None
    if boxes is None:
        frames = list(iter_video(video, max_frames, step))
        track = detect_face_track([f for _, f in frames])
        if not np.isfinite(track).any():
            raise InputError(f"{video}: no face found in any of the {len(frames)} selected frames "
                             f"(face crop needs a visible frontal face)")
        track = smooth_track(track, crop_smooth)
        track[:, 2] *= crop_scale
        track[:, 1] -= CROP_SHIFT_UP * track[:, 2] / crop_scale
        boxes = {k: (src, *track[k - 1]) for k, (src, _) in enumerate(frames, start=1)}
        write_text(boxes_file, "".join(f"{frame_name(k)} {src} {cx:.3f} {cy:.3f} {side:.3f}\n"
                                       for k, (src, cx, cy, side) in boxes.items()))
        source = ((k, f) for k, (_, f) in enumerate(frames, start=1))
    else:
        source = ((k, f) for k, (_, f) in enumerate(iter_video(video, len(boxes), step), start=1))
    for k, frame in source:
        path = out_dir / frame_name(k)
        if path.exists():
            skipped += 1
            continue
        _, cx, cy, side = boxes[k]
        write_image(path, crop_square(frame, cx, cy, side, face_crop))
        written += 1
    return dict(video=str(video), name=name, frames=written + skipped, written=written, skipped=skipped)


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
