"""bench/blank_prior.py: the ablation's blank-prior control lists."""
from __future__ import annotations

import shutil

import numpy as np

from bench import blank_prior
from common.fileio import read_coeff, read_image
from deblur.data import parse_datalist
from deblur.testing import datasets as deblur_data


def test_blank_lists_keep_the_rows_and_blank_the_prior(tmp_path, capsys):
    deblur_data.build(tmp_path, video="a__s00", n=3, h=40, w=48)
    deblur_data.build(tmp_path / "b", video="b__s00", n=2, h=36, w=36)
    for sub in ("dataset", "training_set"):
        shutil.copytree(tmp_path / "b" / sub / "b__s00", tmp_path / sub / "b__s00")
    rows = (tmp_path / "datalist_train.txt").read_text() + (tmp_path / "b" / "datalist_train.txt").read_text()
    (tmp_path / "datalist_train.txt").write_text(rows)
    (tmp_path / "datalist_val.txt").write_text(rows)

    assert blank_prior.main(["--recipe", str(tmp_path)]) == 0
    assert "5 training and 5 validation rows" in capsys.readouterr().out
    src = (tmp_path / "datalist_train.txt").read_text().splitlines()
    out = (tmp_path / "datalist_train_blank_prior.txt").read_text().splitlines()
    assert [r.split()[:6] for r in out] == [r.split()[:6] for r in src]  # same frames, same order
    tset = tmp_path / "training_set"
    for row in out:
        cols = row.split()
        frame = read_image(tset / cols[3])
        render = read_image(tset / cols[7])
        assert render.shape == frame.shape and not render.any()
        assert read_coeff(tset / cols[6]).shape == (239,) and not read_coeff(tset / cols[6]).any()
    # The training data reader accepts the list as it is.
    samples = parse_datalist(tmp_path / "datalist_train_blank_prior.txt", tmp_path / "dataset", tset)
    assert len(samples) == 5


def test_a_list_without_priors_is_refused_by_name(tmp_path, capsys):
    deblur_data.build(tmp_path, video="a__s00", n=3, h=40, w=48)
    rows = [" ".join(r.split()[:6]) for r in (tmp_path / "datalist_train.txt").read_text().splitlines()]
    (tmp_path / "datalist_train.txt").write_text("\n".join(rows) + "\n")
    assert blank_prior.main(["--recipe", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "datalist_train.txt, line 1: 6 columns" in err and "--priors" in err
    assert not (tmp_path / "datalist_train_blank_prior.txt").exists()
