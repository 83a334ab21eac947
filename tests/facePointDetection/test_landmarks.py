"""Five-point landmarks (facePointDetection/): MTCNN on the original vd001 blurry frames against
the original detector's face/*.txt, 68 points, tracking, gap filling, check5points, errors."""
import shutil

import numpy as np
import pytest

from facePointDetection.detect import POINT_NAMES, select_track
from facePointDetection.pipeline import check_points, detect_dataset
from common.fileio import InputError, read_points, write_image, write_points

from tests.helpers import run_cli


@pytest.fixture(scope="module")
def vd001_detected(tmp_path_factory):
    """MTCNN (+ dlib 68) on a copy of ../shared/data/vd001/blurry, run once for the module."""
    from tests.helpers import shared_path

    src = shared_path("vd001")
    ds = tmp_path_factory.mktemp("lm") / "dataset"
    shutil.copytree(src / "blurry", ds / "vd001" / "blurry")
    summary = detect_dataset(ds, points=68, jobs=1)
    return src, ds, summary


def _errors(src, ds):
    errs = []
    for f in sorted((src / "face").glob("*.txt")):
        gt, p = read_points(f), read_points(ds / "vd001" / "face" / f.name)
        errs.append(np.linalg.norm(p - gt, axis=1).mean() / np.linalg.norm(gt[1] - gt[0]))
    return np.array(errs)


def test_vd001_matches_original_detector(vd001_detected):
    src, ds, summary = vd001_detected
    assert summary["vd001"]["frames"] == 25 and summary["vd001"]["interpolated"] == []  # 25/25
    errs = _errors(src, ds)
    assert len(errs) == 25
    assert errs.mean() <= 0.06, errs.mean()
    assert errs.max() < 0.15


def test_vd001_point_order_and_bbox(vd001_detected):
    src, ds, _ = vd001_detected
    for f in sorted((ds / "vd001" / "face").glob("*.txt")):
        p = read_points(f)
        assert p[0, 0] < p[1, 0] and p[3, 0] < p[4, 0]  # image-left eye / mouth corner first
        assert p[0, 1] < p[2, 1] < p[3, 1]  # eyes above nose above mouth
    lines = (ds / "vd001" / "bbox.txt").read_text().splitlines()
    assert len(lines) == 25 and lines[0].startswith("image/00001.png ")
    for line, gt_line in zip(lines, (src / "bbox.txt").read_text().splitlines()):
        l, r, t, b = map(int, line.split()[1:])
        gl, gr, gt_, gb = map(int, gt_line.split()[1:])
        assert l < r and t < b
        # MTCNN and the original box overlap substantially (different box conventions).
        inter = max(0, min(r, gr) - max(l, gl)) * max(0, min(b, gb) - max(t, gt_))
        assert inter / ((gr - gl) * (gb - gt_)) > 0.8
    assert check_points(ds) == []


def test_vd001_68_points_agree_with_five(vd001_detected):
    src, ds, _ = vd001_detected
    d = []
    for f in sorted((src / "face").glob("*.txt")):
        gt, p68 = read_points(f), read_points(ds / "vd001" / "face68" / f.name, 68)
        iod = np.linalg.norm(gt[1] - gt[0])
        d.append([np.linalg.norm(p68[36:42].mean(0) - gt[0]) / iod,
                  np.linalg.norm(p68[42:48].mean(0) - gt[1]) / iod])
    assert np.mean(d) < 0.1, np.mean(d)


def test_rerun_skips_and_check_cli(vd001_detected):
    src, ds, _ = vd001_detected
    f = ds / "vd001" / "face" / "00003.txt"
    before = f.read_text()
    assert detect_dataset(ds, points=68)["vd001"]["skipped"] is True
    assert f.read_text() == before
    write_points(f, [[1e6, 5], [1e6 + 20, 5], [1e6 + 10, 15], [1e6, 25], [1e6 + 20, 25]])
    r = run_cli("facePointDetection", "--dataset", ds, "--check", cwd=ds)
    assert r.returncode == 2 and "00003.txt: point outside" in r.stderr
    f.write_text(before)


def det(box, pts_offset=0.0):
    box = np.array(box, float)
    c = (box[:2] + box[2:]) / 2
    return dict(box=box, confidence=1.0, points=np.tile(c, (5, 1)) + pts_offset)


def test_track_starts_on_largest_then_follows_it():
    frames = [
        [det([0, 0, 10, 10]), det([50, 50, 90, 90])],  # largest: the second one
        [det([52, 50, 92, 90]), det([0, 0, 60, 60])],  # a bigger face appears elsewhere
        [],                                            # no detection
        [det([0, 0, 70, 70]), det([56, 52, 96, 92])],
        [det([300, 300, 340, 340])],                   # far away: not the same face
    ]
    assert select_track(frames) == [1, 0, None, 1, None]


def test_clip_without_any_face_is_an_error(tmp_path, vd001):
    ds = tmp_path / "dataset"
    for k in range(1, 3):
        write_image(ds / "empty" / "blurry" / f"{k:05d}.png", np.full((48, 48, 3), 90, np.uint8))
    (ds / "good" / "blurry").mkdir(parents=True)
    shutil.copy(vd001 / "blurry" / "00001.png", ds / "good" / "blurry")
    with pytest.raises(InputError, match=r"empty/blurry: no face detected in any of the 2 frames"):
        detect_dataset(ds)
    assert not (ds / "empty" / "face").exists()
    assert (ds / "good" / "face" / "00001.txt").is_file()  # the other clip was still processed
    r = run_cli("facePointDetection", "--dataset", ds, "--videos", "empty", cwd=tmp_path)
    assert r.returncode == 2 and "empty/blurry: no face detected" in r.stderr
    assert "Traceback" not in r.stderr


def test_check_points_reports_each_problem(tmp_path):
    ds = tmp_path / "dataset"
    for k in range(1, 4):
        write_image(ds / "v" / "blurry" / f"{k:05d}.png", np.zeros((20, 30, 3), np.uint8))
    write_points(ds / "v" / "face" / "00001.txt", [[1, 2], [9, 2], [5, 6], [2, 9], [8, 9]])
    (ds / "v" / "face" / "00002.txt").write_text("1 2\n3 4\n")
    problems = check_points(ds)
    assert len(problems) == 2
    assert "00002.txt: expected 5 rows" in problems[0] and "00003.txt: landmark file not found" in problems[1]
    assert POINT_NAMES[0] == "left_eye"


def test_frame_without_face_is_interpolated_and_reported(vd001_detected, tmp_path):
    src = vd001_detected[0]
    ds = tmp_path / "dataset"
    (ds / "v" / "blurry").mkdir(parents=True)
    for k in (1, 3):
        shutil.copy(src / "blurry" / f"{k:05d}.png", ds / "v" / "blurry")
    write_image(ds / "v" / "blurry" / "00002.png", np.full((271, 311, 3), 128, np.uint8))
    logged = []
    res = detect_dataset(ds, log=logged.append)
    assert res["v"]["interpolated"] == ["00002.png"]
    assert "v: no face in 1/3 frames, interpolated: 00002.png" in logged
    p1, p2, p3 = (read_points(ds / "v" / "face" / f"{k:05d}.txt") for k in (1, 2, 3))
    assert np.allclose(p2, (p1 + p3) / 2, atol=1e-3)
    assert len((ds / "v" / "bbox.txt").read_text().splitlines()) == 3
    assert not (ds / "v" / ".facepoints_raw").exists()  # cache removed once the clip is done


def test_face_leaving_the_picture_gets_no_landmarks(vd001_detected, tmp_path):
    """Three grey frames in the middle (longer than --max_gap 2): no invented points there."""
    src = vd001_detected[0]
    ds = tmp_path / "dataset"
    (ds / "v" / "blurry").mkdir(parents=True)
    for k in range(1, 6):
        name = f"{k:05d}.png"
        if k in (2, 3, 4):
            write_image(ds / "v" / "blurry" / name, np.full((311, 271, 3), 128, np.uint8))
        else:
            shutil.copy(src / "blurry" / name, ds / "v" / "blurry" / name)
    logged = []
    res = detect_dataset(ds, log=logged.append)
    assert res["v"]["no_face"] == ["00002.png", "00003.png", "00004.png"] and res["v"]["interpolated"] == []
    assert sorted(p.name for p in (ds / "v" / "face").iterdir()) == ["00001.txt", "00005.txt"]
    assert (ds / "v" / "noface.txt").read_text().split() == ["00002.png", "00003.png", "00004.png"]
    assert len((ds / "v" / "bbox.txt").read_text().splitlines()) == 2
    assert any("left without landmarks: 00002.png, 00003.png, 00004.png" in m for m in logged)
    assert check_points(ds) == []  # frames without a face need no landmark file
    assert detect_dataset(ds)["v"]["skipped"] is True  # and a re-run sees the clip as done
    # --max_gap 3 takes the same run for a detector miss: interpolated, as before
    shutil.rmtree(ds / "v" / "face")
    res = detect_dataset(ds, max_gap=3)
    assert res["v"]["interpolated"] == ["00002.png", "00003.png", "00004.png"] and res["v"]["no_face"] == []
    assert not (ds / "v" / "noface.txt").exists()
