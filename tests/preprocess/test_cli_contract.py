"""The command-line flags other stages call (the contracts between parts) parse as documented."""
import pytest

from facePointDetection.cli import build_parser as fpd_parser
from preprocess.cli import build_parser


def test_preprocess_flags():
    ap = build_parser()
    a = ap.parse_args(["frames", "--video", "v.mp4", "--dataset", "./dataset", "--name", "x",
                       "--max_frames", "10", "--step", "2", "--face_crop", "256", "--jobs", "3"])
    assert (a.video, a.name, a.max_frames, a.step, a.face_crop, a.jobs) == (["v.mp4"], "x", 10, 2, 256, 3)
    a = ap.parse_args(["blur", "--dataset", "d", "--n_avg", "9", "--linear", "--upsample", "4", "--jobs", "2"])
    assert (a.n_avg, a.linear, a.upsample) == (9, True, 4)
    a = ap.parse_args(["align", "--dataset", "d", "--out", "./training_set", "--datalist", "./dl.txt",
                       "--align", "homography", "--flow", "dis", "--n_frames", "9", "--jobs", "2"])
    assert (a.out, a.datalist, a.align, a.flow, a.n_frames) == ("./training_set", "./dl.txt", "homography", "dis", 9)
    a = ap.parse_args(["all", "--video", "v.mp4"])
    assert (a.dataset, a.out, a.datalist, a.n_avg, a.align, a.flow, a.n_frames) == (
        "./dataset", "./training_set", "./datalist_train.txt", 7, "flow", "dis", 5)
    with pytest.raises(SystemExit):
        ap.parse_args(["align", "--align", "affine"])


def test_face_point_detection_flags():
    a = fpd_parser().parse_args(["--dataset", "d", "--points", "68", "--jobs", "2"])
    assert (a.dataset, a.points, a.jobs) == ("d", 68, 2)
    assert fpd_parser().parse_args([]).points == 5
    with pytest.raises(SystemExit):
        fpd_parser().parse_args(["--points", "7"])
