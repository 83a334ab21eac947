"""A 3D prior that carries no information, for the ablation's controls (checkpoints/MODEL_CARD.md).

A `--face both` network is wider than a `--face none` one (3 render channels at full resolution,
1 coefficient channel at the bottleneck), so `both` beating `none` could be the width, not the
face. The control trains and scores the same `both` network on a blank prior: zero coefficients
and black renders of each frame's size, everything else identical (rows, order, seed).

    python -m bench.blank_prior --recipe data/recipe

writes `datalist_train_blank_prior.txt` and `datalist_val_blank_prior.txt` next to the recipe's
lists (which must have been written with `--priors`), pointing their last two columns to
`training_set/_blank_prior/` (`zero.txt`, `<W>x<H>.png`). `bench.validate_models --blank_prior
NAME` scores a model on the validation frames with the same blank prior (`blank_testing_input`).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from common.cli import ArgumentParser, run_cli
from common.fileio import InputError, read_image, write_coeff, write_image, write_text

FOLDER = "_blank_prior"  # under training_set/, beside the segments (no segment has this name)


def _black_like(frame: Path, folder: Path) -> str:
    """Name (relative to `folder`'s parent) of a black PNG the size of `frame`, made once."""
    h, w = read_image(frame).shape[:2]
    path = folder / f"{w}x{h}.png"
    if not path.exists():
        write_image(path, np.zeros((h, w, 3), np.uint8))
    return f"{FOLDER}/{path.name}"


def blank_datalists(recipe: Path) -> dict:
    """The recipe's datalists with the prior columns blanked; returns {part: rows}."""
    tset = recipe / "training_set"
    folder = tset / FOLDER
    folder.mkdir(exist_ok=True)
    write_coeff(folder / "zero.txt", np.zeros(239))
    counts, sizes = {}, {}
    for part in ("train", "val"):
        src = recipe / f"datalist_{part}.txt"
        if not src.is_file():
            raise InputError(f"{src}: no such datalist (run `python -m preprocess recipe` first)")
        rows = []
        for n, line in enumerate(src.read_text().splitlines(), 1):
            cols = line.split()
            if not cols:
                continue
            if len(cols) != 8:
                raise InputError(f"{src}, line {n}: {len(cols)} columns, expected the 8 of a list "
                                 f"with priors (made with `preprocess recipe --priors`)")
            segment = cols[0].split("/")[0]
            if segment not in sizes:  # every frame of a segment has one size
                sizes[segment] = _black_like(tset / cols[3], folder)
            rows.append(" ".join(cols[:6] + [f"{FOLDER}/zero.txt", sizes[segment]]))
        write_text(recipe / f"datalist_{part}_blank_prior.txt", "".join(r + "\n" for r in rows))
        counts[part] = len(rows)
    return counts


def blank_testing_input(segment_dir: Path, dst: Path) -> None:
    """`dst` = the testing-set folder `segment_dir` with a blank prior: its blur_* folders
    linked, zero coefficients in face/ and black frame-sized renders in render/."""
    src = segment_dir.resolve()
    (dst / "face").mkdir(parents=True, exist_ok=True)
    (dst / "render").mkdir(exist_ok=True)
    for d in src.glob("blur_*"):
        if not (dst / d.name).exists():
            (dst / d.name).symlink_to(d)
    for f in sorted((src / "blur_0").glob("*.png")):
        write_coeff(dst / "face" / (f.stem + ".txt"), np.zeros(239))
        write_image(dst / "render" / f.name, np.zeros_like(read_image(f)))


def _main(argv=None) -> int:
    ap = ArgumentParser(prog="bench.blank_prior", description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", required=True, type=Path, help="output folder of `preprocess recipe --priors`")
    a = ap.parse_args(argv)
    counts = blank_datalists(a.recipe)
    print(f"blank-prior datalists: {counts['train']} training and {counts['val']} validation rows "
          f"in {a.recipe}/datalist_{{train,val}}_blank_prior.txt")
    return 0


def main(argv=None) -> int:
    return run_cli(_main, argv, prog="bench.blank_prior")


if __name__ == "__main__":
    sys.exit(main())
