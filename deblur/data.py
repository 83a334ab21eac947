"""Training data: the original 8-column datalist read with tf.data.

Corresponds to `DEBLUR.input_producer` in the original `models/model.py`. Each datalist line is

    sharp blur_-2 blur_-1 blur_0 blur_1 blur_2 face_coeff.txt render.png

(with 9 frames: sharp, blur_-4..blur_4, coeff, render). `sharp` is relative to `data_root`
(./dataset), every other column to `train_root` (./training_set). As in the original, all
coefficient files are read once up front and turned into 9x9 identity patches; the images are
decoded in parallel, stacked, and cropped with ONE random window shared by inputs, render and
target.

Batches are a pure function of (seed, step): sample order comes from a per-epoch permutation
seeded by (seed, epoch) and each crop from a stateless RNG seeded by (seed, step, slot). A run
resumed at step s therefore sees exactly the batches an uninterrupted run sees from step s on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from deblur.network import coeff_patch, uses_coeff, uses_render
from common.fileio import InputError, read_coeff


@dataclass
class Sample:
    sharp: str
    blur: list
    coeff: str | None
    render: str | None


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def column_names(n_frames: int, face: bool = True) -> list[str]:
    """Names of a datalist's columns: sharp, blur_-2 ... blur_2[, coefficients, render]."""
    r = n_frames // 2
    return (["sharp"] + [f"blur_{o}" for o in range(-r, r + 1)]
            + (["coefficients (.txt)", "render"] if face else []))


def parse_datalist(path, data_root="./dataset", train_root="./training_set", n_frames=5,
                   face="both") -> list[Sample]:
    """Parse a datalist (whitespace-separated columns, blank lines, CRLF and a BOM allowed).

    A line has exactly n_frames + 3 columns (with --face none, n_frames + 1 is also accepted).
    A datalist whose lines all have the column count of the other --n_frames is refused naming
    that flag; other malformed lines raise one InputError listing them with line and column
    (e.g. a path containing a space, which splits one column into two).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: datalist not found")
    full = n_frames + 3
    allowed = (full,) if face != "none" else (full, 1 + n_frames)
    lines = [(n, line.split()) for n, line in
             enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1)]
    lines = [(n, cols) for n, cols in lines if cols]
    counts = {len(cols) for _, cols in lines}
    if len(counts) == 1 and not counts & set(allowed):
        c = counts.pop()
        other = [k for k in (5, 9) if k != n_frames and c in (k + 3, k + 1)]
        if other:
            raise InputError(
                f"{path}: every line has {c} columns, the layout of a --n_frames {other[0]} "
                f"datalist ({' '.join(column_names(other[0], c == other[0] + 3))}); --n_frames "
                f"is {n_frames}, which needs {full} columns. Pass --n_frames {other[0]}")
    samples, bad = [], []
    for lineno, cols in lines:
        if len(cols) not in allowed:
            bad.append(f"line {lineno}: {len(cols)} columns, expected {full} "
                       f"({' '.join(column_names(n_frames))})" + _first_odd_column(cols, n_frames))
            continue
        blur = [str(Path(train_root) / c) for c in cols[1:1 + n_frames]]
        coeff = str(Path(train_root) / cols[1 + n_frames]) if len(cols) > 1 + n_frames else None
        render = str(Path(train_root) / cols[2 + n_frames]) if len(cols) > 2 + n_frames else None
        samples.append(Sample(str(Path(data_root) / cols[0]), blur, coeff, render))
    if bad:
        raise InputError(f"{path}: {len(bad)} malformed line(s): " + "; ".join(bad[:5]))
    if not samples:
        raise InputError(f"{path}: datalist is empty")
    return samples


def _first_odd_column(cols: list[str], n_frames: int) -> str:
    """Where a line with the wrong column count goes wrong: the first column that is not the
    kind of file its position holds (image, or .txt for the coefficients)."""
    kinds = ["image"] * (1 + n_frames) + ["txt", "image"]
    for j, (col, kind) in enumerate(zip(cols, kinds), 1):
        suffix = Path(col).suffix.lower()
        ok = suffix == ".txt" if kind == "txt" else suffix in IMAGE_SUFFIXES
        if not ok:
            hint = (" - a path containing a space? Columns are separated by whitespace, so "
                    "paths in a datalist cannot contain any" if len(cols) > len(kinds) else "")
            return (f"; column {j} ({column_names(n_frames)[j - 1]}) is {col!r}, not "
                    f"{'a .txt file' if kind == 'txt' else 'an image path'}{hint}")
    return ""


def validate(samples: list[Sample], face: str, patch_size: int, source: str) -> np.ndarray:
    """Check every file before training; return the (N, 9, 9) coefficient patches.

    Missing or unreadable images, frames smaller than the patch and bad coefficient files are
    collected and reported together (count + first paths), so a broken dataset fails at once
    instead of hours into training.
    """
    problems = []
    patches = np.zeros((len(samples), 9, 9), np.float32)
    for i, s in enumerate(samples):
        images = [s.sharp, *s.blur] + ([s.render] if uses_render(face) else [])
        for img in images:
            p = Path(img)
            if not p.is_file():
                problems.append(f"{img} (missing)")
                continue
            try:
                with Image.open(p) as im:
                    w, h = im.size
            except OSError as e:
                problems.append(f"{img} (unreadable: {e.__class__.__name__})")
                continue
            if min(w, h) < patch_size:
                problems.append(f"{img} ({w}x{h} is smaller than --patch_size {patch_size})")
        if uses_coeff(face):
            try:
                patches[i] = coeff_patch(read_coeff(s.coeff))
            except InputError as e:
                problems.append(str(e))
    if problems:
        raise InputError(f"{source}: {len(problems)} problem(s) in the training data, first ones:\n  "
                         + "\n  ".join(problems[:10]))
    return patches


def sample_indices(n_samples: int, batch_size: int, seed: int, start_step: int, end_step: int):
    """Yield (step, sample indices of that batch): epochs are seeded permutations."""
    perms = {}
    for step in range(start_step, end_step):
        idx = []
        for j in range(batch_size):
            g = step * batch_size + j
            epoch, pos = divmod(g, n_samples)
            if epoch not in perms:
                perms.clear()
                perms[epoch] = np.random.default_rng([seed, epoch]).permutation(n_samples)
            idx.append(perms[epoch][pos])
        yield step, np.asarray(idx, np.int64)


# Second seed words of the neighbour-dropout and mirror draws: far from the crop's (the slot,
# < batch size) and from each other, so the random streams of a sample never coincide.
_DROPOUT_STREAM = 1 << 20
_MIRROR_STREAM = 2 << 20


def make_dataset(samples: list[Sample], patches: np.ndarray, *, face: str, model: str,
                 batch_size: int, patch_size: int, seed: int, start_step: int, end_step: int,
                 neighbour_dropout: float = 0.0, mirror: float = 0.0):
    """tf.data pipeline yielding (inputs dict, target) batches for steps [start_step, end_step).

    neighbour_dropout: probability in [0, 1] that each neighbour frame of a sample (not the
    centre one) is replaced by the centre frame, drawn per sample from (seed, step, slot) like
    the crop, so a batch stays a function of (seed, step) and a resumed run sees the same data.
    A replaced neighbour is what the network sees at a clip's first and last frame, whose missing
    neighbours are copies of it (preprocess.align clamps the index); 0 (default) draws nothing
    and gives the paper's batches.

    mirror: probability in [0, 1] that a sample's crop (every frame, the target and the render)
    is mirrored left-right, drawn the same way; the identity coefficients stay those of the
    unmirrored face (a face is nearly symmetric; the test-time counterpart,
    deblur.inference.Deblurrer's self_ensemble, does the same). 0 (default) draws nothing.
    """
    import tensorflow as tf

    gray = model == "gray"
    n_frames = len(samples[0].blur)
    sharp = tf.constant([s.sharp for s in samples])
    blur = tf.constant([s.blur for s in samples])
    render = tf.constant([s.render or "" for s in samples])
    coeffs = tf.constant(patches)

    def decode(path):
        img = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        img = tf.cast(img, tf.float32) / 255.0
        return tf.image.rgb_to_grayscale(img) if gray else img

    def load(step, slot, index):
        frames = [decode(blur[index][k]) for k in range(n_frames)]
        if neighbour_dropout > 0:
            mid = n_frames // 2
            u = tf.random.stateless_uniform(
                [n_frames], seed=tf.stack([tf.cast(seed, tf.int64) * 1_000_003 + step,
                                           slot + _DROPOUT_STREAM]))
            frames = [f if k == mid else tf.where(u[k] < neighbour_dropout, frames[mid], f)
                      for k, f in enumerate(frames)]
        parts = frames + [decode(sharp[index])]
        if uses_render(face):
            parts.append(decode(render[index]))
        stack = tf.concat(parts, axis=-1)
        crop = tf.image.stateless_random_crop(
            stack, [patch_size, patch_size, stack.shape[-1]],
            seed=tf.stack([tf.cast(seed, tf.int64) * 1_000_003 + step, slot]))
        if mirror > 0:
            u = tf.random.stateless_uniform(
                [], seed=tf.stack([tf.cast(seed, tf.int64) * 1_000_003 + step, slot + _MIRROR_STREAM]))
            crop = tf.where(u < mirror, tf.reverse(crop, axis=[1]), crop)
        c = 1 if gray else 3
        x = {"blur": crop[..., : c * n_frames]}
        if uses_render(face):
            x["render"] = crop[..., c * (n_frames + 1):]
        if uses_coeff(face):
            x["coeff"] = tf.gather(coeffs, index)
        return x, crop[..., c * n_frames: c * (n_frames + 1)]

    def flat():
        for step, idx in sample_indices(len(samples), batch_size, seed, start_step, end_step):
            for slot, i in enumerate(idx):
                yield step, slot, i

    ds = tf.data.Dataset.from_generator(
        flat, output_signature=(tf.TensorSpec((), tf.int64),) * 3)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
