"""Blur synthesis from sharp frames (how the paper's training pairs are made).

Blurry frame t is the average of `n_avg` consecutive sharp frames centred on t (frame indices
clamped to the sequence, i.e. the end frames are repeated), the sharp target being the centre
frame t itself. Options:

- `linear=True`: average in linear light, x_lin = (x/255)^2.2, then re-encode with 1/2.2 (a
  camera integrates photons, not gamma-encoded values; bright highlights smear realistically).
- `upsample=K`: insert K-1 flow-interpolated sub-frames between consecutive frames before
  averaging, so the window [t - h, t + h] (h = (n_avg-1)/2, in source frames) is sampled every
  1/K frame: 2hK+1 samples instead of 2h+1. At 25-30 fps, fast motion otherwise gives ghosted
  copies instead of a smooth streak. The sub-frame at time i + a (0 < a < 1) is
        I_a = (1-a) * warp(I_i, F_a->i) + a * warp(I_i+1, F_a->i+1)
  with F_a->i = -(1-a) a F_i->i+1 + a^2 F_i+1->i and F_a->i+1 = (1-a)^2 F_i->i+1 - a(1-a) F_i+1->i
  (linear-motion approximation of the intermediate flows, as in Super SloMo, Jiang et al. 2018),
  F computed with DIS on full-size frames.

Frames are float32 RGB in [0, 255] (sRGB) inside this module; outputs are uint8 PNG.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from common.fileio import InputError, read_image, write_image
from common.frames import list_frames, list_videos  # noqa: F401 - used below
from .flow import compute_flow, warp
from common.parallel import chunks, run_tasks

GAMMA = 2.2


def check_n_avg(n_avg: int) -> int:
    if n_avg < 1 or n_avg % 2 == 0:
        raise ValueError(f"--n_avg must be a positive odd number, got {n_avg}")
    return n_avg


def to_linear(x: np.ndarray) -> np.ndarray:
    return np.power(np.asarray(x, np.float32) / 255.0, GAMMA)


def from_linear(x: np.ndarray) -> np.ndarray:
    return np.power(np.clip(x, 0.0, 1.0), 1.0 / GAMMA) * 255.0


class _SubFrames:
    """Frames at times i + m/K (i 0-based frame index, 0 <= m < K), computed lazily and cached.

    `load(i)` returns sharp frame i as float32 HxWx3 in the working space (sRGB or linear);
    `gray(i)` the uint8 sRGB frame used for flow.
    """

    def __init__(self, load, gray, n_frames: int, upsample: int):
        self.load, self.gray, self.n, self.K = load, gray, n_frames, upsample
        self._flows: dict = {}
        self._frames: dict = {}

    def frame(self, i: int) -> np.ndarray:
        if i not in self._frames:
            self._frames[i] = self.load(i)
        return self._frames[i]

    def at(self, q: int) -> np.ndarray:
        """Sample number q on the 1/K grid (time q/K), clamped to [0, n-1]."""
        q = min(max(q, 0), (self.n - 1) * self.K)
        i, m = divmod(q, self.K)
        if m == 0:
            return self.frame(i)
        if i not in self._flows:
            g0, g1 = self.gray(i), self.gray(i + 1)
            self._flows[i] = (compute_flow(g0, g1, "dis", None), compute_flow(g1, g0, "dis", None))
        f01, f10 = self._flows[i]
        a = m / self.K
        ft0 = -(1 - a) * a * f01 + a * a * f10
        ft1 = (1 - a) ** 2 * f01 - a * (1 - a) * f10
        return (1 - a) * warp(self.frame(i), ft0) + a * warp(self.frame(i + 1), ft1)


def blur_frames(frames: list, n_avg: int = 7, linear: bool = False, upsample: int = 1,
                targets=None) -> list:
    """Blur a whole in-memory sequence: list of uint8 HxWx3 -> list of uint8 (for `targets`).

    targets: 0-based indices to produce (default all). See the module docstring.
    """
    n_avg = check_n_avg(n_avg)
    frames = [np.asarray(f) for f in frames]
    conv = to_linear if linear else (lambda x: np.asarray(x, np.float32))
    sub = _SubFrames(lambda i: conv(frames[i]), lambda i: frames[i], len(frames), upsample)
    targets = range(len(frames)) if targets is None else targets
    return [_blur_one(sub, t, n_avg, linear) for t in targets]


def _blur_one(sub: _SubFrames, t: int, n_avg: int, linear: bool) -> np.ndarray:
    h, K = (n_avg - 1) // 2, sub.K
    acc = None
    qs = range((t - h) * K, (t + h) * K + 1)
    for q in qs:
        x = sub.at(q)
        acc = x.astype(np.float64) if acc is None else acc + x
    mean = acc / len(qs)
    out = from_linear(mean) if linear else mean
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class FrameReader:
    """A clip's frames by index, decoded once while they are in use; all must share one size.

    Steps walk a clip in order and touch a window of neighbouring frames, so a small
    least-recently-used cache keeps each frame decoded once without holding a whole (possibly
    720p, thousands of frames) clip in memory.
    """

    def __init__(self, files: list[Path], capacity: int = 64):
        self.files = files
        self.capacity = capacity
        self._cache: OrderedDict = OrderedDict()
        self._ref: tuple | None = None  # (shape, name) of the first frame read

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> np.ndarray:
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        img = read_image(self.files[i])
        if self._ref is None:
            self._ref = (img.shape, self.files[i].name)
        elif img.shape != self._ref[0]:
            shape, name = self._ref
            raise InputError(f"{self.files[i]}: frame size {img.shape[1]}x{img.shape[0]} differs "
                             f"from {name} ({shape[1]}x{shape[0]}) of the same clip")
        self._cache[i] = img
        if len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return img


def _blur_task(task) -> dict:
    video, names, n_avg, linear, upsample, out_sub, on_error = task
    files = list_frames(Path(video) / "sharp", "sharp frames")
    index = {p.name: i for i, p in enumerate(files)}
    srgb = FrameReader(files).__getitem__

    conv = to_linear if linear else (lambda x: np.asarray(x, np.float32))
    sub = _SubFrames(lambda i: conv(srgb(i)), srgb, len(files), upsample)
    errors = []
    for name in names:
        try:
            frame = _blur_one(sub, index[name], n_avg, linear)
        except InputError as e:  # a sharp frame this one needs cannot be read
            if on_error != "skip":
                raise
            errors.append(f"{Path(video) / out_sub / name} not written: {e}")
            continue
        write_image(Path(video) / out_sub / name, frame)
    return dict(written=len(names) - len(errors), errors=errors)


def blur_dataset(dataset, n_avg: int = 7, linear: bool = False, upsample: int = 1, jobs: int = 1,
                 chunk: int = 16, videos=None, out_sub: str = "blurry", on_error: str = "stop") -> dict:
    """For every `dataset/<video>/sharp/`, write `dataset/<video>/blurry/` (missing frames only).

    on_error: "stop" raises the first InputError (an unreadable or odd-sized sharp frame);
    "skip" leaves out every blurry frame that needs such a frame and counts them in
    `errors_skipped` (the first messages in `errors`).
    """
    check_n_avg(n_avg)
    if upsample < 1:
        raise ValueError(f"--upsample must be >= 1, got {upsample}")
    tasks, total, skipped = [], 0, 0
    for v in list_videos(dataset, "sharp"):
        if videos and v.name not in videos:
            continue
        files = list_frames(v / "sharp", "sharp frames")
        todo = [p.name for p in files if not (v / out_sub / p.name).exists()]
        total += len(files)
        skipped += len(files) - len(todo)
        tasks += [(str(v), c, n_avg, linear, upsample, out_sub, on_error) for c in chunks(todo, chunk)]
    res = run_tasks(_blur_task, tasks, jobs, desc="blur", unit="frame", weights=lambda t: len(t[1]))
    errors = [e for r in res for e in r["errors"]]
    out = dict(frames=total, written=total - skipped - len(errors), skipped=skipped)
    if errors:
        out.update(errors_skipped=len(errors), errors=errors[:10])
    return out


__all__ = ["blur_frames", "blur_dataset", "list_frames", "list_videos"]
