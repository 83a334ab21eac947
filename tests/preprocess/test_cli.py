"""The documented command chain on one real clip of ../shared/data/face_videos, trimmed to 24
frames at 160x160 inside a tmp folder: frames (face crop) -> blur -> align -> datalist, plus
facePointDetection on the synthesized blurry frames."""
from pathlib import Path

import numpy as np

from common.fileio import read_image, read_points

from tests.helpers import CLIP, run_cli
from tests.helpers import trimmed_clip as _trimmed_clip


def test_chained_cli_on_a_real_clip(face_videos, tmp_path):
    src = face_videos / CLIP
    if not src.exists():
        src = sorted(face_videos.glob("*.mp4"))[0]
    video = _trimmed_clip(src, tmp_path / "myclip.mp4")
    r = run_cli("preprocess", "all", "--video", video, "--max_frames", 24, "--face_crop", 128,
                "--crop_scale", 1.6, "--n_avg", 5, "--upsample", 2, "--align", "flow",
                "--flow", "dis", "--jobs", 2, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    r = run_cli("facePointDetection", "--dataset", "./dataset", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "check: OK" in r.stdout

    ds, ts = tmp_path / "dataset" / "myclip", tmp_path / "training_set" / "myclip"
    for sub in ("sharp", "blurry"):
        names = sorted(p.name for p in (ds / sub).glob("*.png"))
        assert names == [f"{k:05d}.png" for k in range(1, 25)]
        assert read_image(ds / sub / "00001.png").shape == (128, 128, 3)
    assert len(list((ds / "face").glob("*.txt"))) == 24
    assert len((ds / "bbox.txt").read_text().splitlines()) == 24
    # The face-centred crop puts the eyes near the middle of the frame.
    eyes = np.array([read_points(p)[:2].mean(0) for p in sorted((ds / "face").glob("*.txt"))])
    assert np.all(np.abs(eyes[:, 0] - 64) < 20) and np.all((eyes[:, 1] > 25) & (eyes[:, 1] < 80))

    lines = (tmp_path / "datalist_train.txt").read_text().splitlines()
    assert len(lines) == 24
    for line in lines:
        cols = line.split()
        assert len(cols) == 8
        assert (tmp_path / "dataset" / cols[0]).is_file()
        assert all((tmp_path / "training_set" / c).is_file() for c in cols[1:6])
        # demo.py writes training_set/<video>/face/N.txt, demo_render.py training_set/<video>/render/N.png
        stem = Path(cols[0]).stem
        assert cols[6] == f"myclip/face/{stem}.txt" and cols[7] == f"myclip/render/{stem}.png"
    assert sorted(p.name for p in ts.iterdir()) == ["blur_-1", "blur_-2", "blur_0", "blur_1", "blur_2"]

    # Re-running the whole chain finds everything done.
    r = run_cli("preprocess", "all", "--video", video, "--max_frames", 24, "--face_crop", 128,
                "--crop_scale", 1.6, "--n_avg", 5, "--upsample", 2, "--flow", "dis", cwd=tmp_path)
    assert r.returncode == 0 and '"written": 0' in r.stdout and '"skipped": 24' in r.stdout
