"""common/tracks.py: gap filling, runs and smoothing of per-frame tracks (the one
implementation the landmark stage, the frame crop and the video command's face window use)."""
import numpy as np
import pytest

from common.tracks import fill_gaps, gap_fill_mask, runs, smooth


def test_fill_gaps_interpolates_inside_and_holds_the_ends():
    v = np.array([[np.nan], [0.0], [np.nan], [np.nan], [3.0], [np.nan]])
    assert fill_gaps(v)[:, 0].tolist() == [0, 0, 1, 2, 3, 3]
    tr = np.array([[np.nan] * 3, [10, 20, 30], [np.nan] * 3, [14, 20, 30], [np.nan] * 3], float)
    assert fill_gaps(tr)[:, 0].tolist() == [10, 10, 12, 14, 14]
    pts = np.full((4, 5, 2), np.nan)  # (T, 5, 2) landmark tracks: a row is missing if any entry is
    pts[0], pts[3] = 0.0, 3.0
    pts[1, 0, 0] = 7.0
    assert fill_gaps(pts)[:, 2, 1].tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        fill_gaps(np.full((3, 2), np.nan))


def test_smooth_keeps_mass_and_removes_jitter():
    s = smooth(np.array([0.0, 0, 10, 0, 0]), 1.0)
    assert s[2] < 10 and np.isclose(s.sum(), 10, atol=0.5)
    jitter = np.c_[100 + 4 * (-1) ** np.arange(40), np.full(40, 50.0), np.full(40, 80.0)]
    assert np.ptp(smooth(jitter, 5)[15:-15, 0]) < 0.5
    assert smooth(jitter, 0).tolist() == jitter.tolist()


def test_runs_and_gap_fill_mask_bridge_only_short_runs():
    d = np.array([0, 1, 0, 0, 1, 0, 0, 0, 1, 1, 0], bool)
    assert runs(d) == [(1, 2), (4, 5), (8, 10)] and runs([]) == [] and runs([True]) == [(0, 1)]
    assert gap_fill_mask(d, 2).astype(int).tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1]
    assert gap_fill_mask(d, 0).tolist() == d.tolist()
    assert gap_fill_mask(d, -1).all()
