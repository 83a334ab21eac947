"""demo.py / demo_render.py (faceReconstruction/pipeline.py, rnet.py) on real frames.

Uses ../shared/data/vd001 (blurry frames + the original five points), the shipped ICT Face
Model (what a new user gets) and, where a tiny model is enough, a STAND-IN model passed
explicitly (the licensed BFM is not available to tests). The R-Net path runs on a tiny frozen graph
built here with the authors' tensor names (`input_imgs:0` -> `coeff:0`): a fixed linear map of
the per-channel means of its input, so the expected output is known exactly.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceReconstruction import align, pipeline
from faceReconstruction.bfm import StandinWarning, write_standin_bfm
from common.fileio import InputError, read_coeff, read_image, read_points

from tests.helpers import ROOT


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    return write_standin_bfm(tmp_path_factory.mktemp("bfm") / "BFM_model_front.mat", n_vertices=1500)


def _dataset(root, vd001, n=None, sharp=False):
    """<root>/dataset/vd001/{blurry,face}/ (first n frames) copied from ../shared."""
    dst = root / "dataset" / "vd001"
    subs = ["blurry", "face"] + (["sharp"] if sharp else [])
    for sub in subs:
        (dst / sub).mkdir(parents=True)
        files = sorted((vd001 / sub).iterdir())[:n]
        for f in files:
            shutil.copy(f, dst / sub / f.name)
    return root / "dataset"


def _frozen_graph(path, n_out, seed=0, input_name="input_imgs", output_name="coeff"):
    """A frozen TF1 graph: coeff = mean over pixels of the (BGR) input @ W + b."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((3, n_out)).astype(np.float32) / 100
    b = rng.standard_normal(n_out).astype(np.float32)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 224, 224, 3], name=input_name)
        m = tf.reduce_mean(x, axis=[1, 2])
        tf.identity(tf.matmul(m, tf.constant(w)) + tf.constant(b), name=output_name)
    Path(path).write_bytes(g.as_graph_def().SerializeToString())
    return w, b


def test_rnet_runs_a_frozen_graph_in_batches_with_bgr_input(tmp_path):
    from faceReconstruction.rnet import RNet

    pb = tmp_path / "rnet.pb"
    w, b = _frozen_graph(pb, 257)
    rng = np.random.default_rng(1)
    crops = np.empty((5, 224, 224, 3), np.uint8)
    for i in range(5):  # distinct colour per channel so RGB vs BGR differ
        crops[i] = rng.integers(0, 256, 3)
    net = RNet(pb, batch_size=2)
    out = net(crops)
    net.close()
    means = crops.reshape(5, -1, 3).mean(1)
    np.testing.assert_allclose(out, means[:, ::-1] @ w + b, rtol=1e-4, atol=1e-3)
    assert np.abs(out - (means @ w + b)).max() > 0.1  # RGB order would give something else


def test_rnet_errors(tmp_path):
    from faceReconstruction.rnet import RNet

    with pytest.raises(InputError, match="not found"):
        RNet(tmp_path / "missing.pb")
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"\x00not a graph\xff" * 10)
    with pytest.raises(InputError, match="frozen graph"):
        RNet(bad)
    pb = tmp_path / "rnet.pb"
    _frozen_graph(pb, 10, input_name="images", output_name="out")
    with pytest.raises(InputError, match="--rnet_input"):
        RNet(pb)
    net = RNet(pb, "images:0", "out:0")
    with pytest.raises(InputError, match="expected 239 or 257"):
        net(np.zeros((1, 224, 224, 3), np.uint8))


def test_demo_rnet_path_writes_the_graph_output(tmp_path, vd001, bfm_index, standin):
    data = _dataset(tmp_path, vd001, n=3)
    pb = tmp_path / "rnet.pb"
    w, b = _frozen_graph(pb, 239, input_name="x", output_name="y")
    lm3d_path = bfm_index / "similarity_Lm3D_all.mat"
    done = pipeline.run_coefficients(
        data, tmp_path / "training_set",
        pipeline.CoefficientConfig(bfm=standin, lm3d=lm3d_path, rnet=pb, rnet_input="x:0", rnet_output="y:0",
                                   batch_size=2),
        log=lambda m: None, progress=False)
    assert done == {"vd001": 3}
    lm3d = align.load_lm3d(lm3d_path)
    for name in ("00001", "00002", "00003"):
        crop, _, _ = align.align_crop(read_image(data / "vd001/blurry" / f"{name}.png"),
                                      read_points(data / "vd001/face" / f"{name}.txt"), lm3d)
        expected = crop[..., ::-1].reshape(-1, 3).mean(0) @ w + b
        np.testing.assert_allclose(read_coeff(tmp_path / "training_set/vd001/face" / f"{name}.txt"), expected,
                                   rtol=1e-4, atol=1e-3)


def _run(script, *args, cwd, env_extra=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), **(env_extra or {}))
    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_end_to_end_on_vd001(tmp_path, vd001):
    """demo.py then demo_render.py with their defaults (./dataset -> ./training_set), fitting
    path, the model a new user gets (the shipped ICT model): every file the datalist names
    exists, the renders go where the original puts them, and each run says which model."""
    if pipeline.bfm_mod.find_bfm(None)[1] != "ict":
        pytest.skip("a BFM_model_front.mat is installed: the defaults would use it")
    _dataset(tmp_path, vd001)
    env = {}
    r = _run("demo.py", cwd=tmp_path, env_extra=env)
    assert r.returncode == 0, r.stderr
    assert "STAND-IN" not in r.stderr
    assert "3D face model: ICT Face Model" in r.stderr
    assert "25 frames with 68 points" in r.stderr  # dlib points on the blurry frames agree
    names = sorted(p.stem for p in (vd001 / "face").glob("*.txt"))
    assert len(names) == 25
    ts = tmp_path / "training_set" / "vd001"
    coeffs = np.stack([read_coeff(ts / "face" / f"{n}.txt") for n in names])
    assert coeffs.shape == (25, 239) and np.all(np.isfinite(coeffs))
    assert np.all(coeffs[:, :80] == coeffs[0, :80])  # one identity for the clip
    assert np.degrees(np.abs(coeffs[:, 224:227])).max() < 45  # a talking head, no flips
    assert np.all(coeffs[:, 144:224] == 0)  # no texture model: the colour is the clip's albedo
    ex = coeffs[:, 80:144]
    assert ex.min() >= 0 and ex.max() <= 1 and np.all(ex[:, 53:] == 0)  # blendshape weights, 53 used
    meta = json.loads((ts / "face_model.json").read_text())
    assert meta["model"]["kind"] == "ict" and meta["albedo"] == "face_albedo.npy" and meta["frames"] == 25
    assert "dlib 68 points" in meta["method"] and len(meta["albedo_frames"]) == 9  # the sharpest third
    assert np.load(ts / "face_albedo.npy").shape == (pipeline._load_bfm_quiet(meta["model"]["file"]).n_vertices, 3)

    r = _run("demo_render.py", "--jobs", "2", cwd=tmp_path, env_extra=env)
    assert r.returncode == 0, r.stderr
    assert "3D face model: ICT Face Model" in r.stderr and "STAND-IN" not in r.stderr
    assert not (ts / "face_render").exists()  # the 224 renders go to dataset/<video>/face_render/
    assert json.loads((ts / "face_model.json").read_text())["render"]["albedo"] == "face_albedo.npy"
    w0, h0 = Image.open(vd001 / "blurry" / "00001.png").size
    for n in names:
        fr = read_image(tmp_path / "dataset" / "vd001" / "face_render" / f"{n}.png", "RGBA")
        assert fr.shape == (224, 224, 4)
        assert set(np.unique(fr[..., 3])) == {0, 255}
        assert np.all(fr[fr[..., 3] == 0, :3] == 0)
        with Image.open(ts / "render" / f"{n}.png") as im:
            assert im.mode == "RGB" and im.size == (w0, h0)
        rend = read_image(ts / "render" / f"{n}.png")
        lm = read_points(vd001 / "face" / f"{n}.txt")
        face = rend.sum(2) > 0
        x0, y0 = np.floor(lm.min(0)).astype(int)
        x1, y1 = np.ceil(lm.max(0)).astype(int)
        assert face[y0:y1 + 1, x0:x1 + 1].mean() > 0.9, n  # the render covers the face
        assert face.mean() < 0.6  # and not the whole frame

    # Re-runs skip finished outputs; a missing render is restored from the existing face_render.
    target = ts / "render" / "00003.png"
    before = target.read_bytes()
    target.unlink()
    fr_path = tmp_path / "dataset" / "vd001" / "face_render" / "00003.png"
    stamp = fr_path.stat().st_mtime_ns
    r = _run("demo_render.py", cwd=tmp_path, env_extra=env)
    assert r.returncode == 0, r.stderr
    assert "1 frames" in r.stderr
    assert target.read_bytes() == before
    assert fr_path.stat().st_mtime_ns == stamp
    r = _run("demo.py", cwd=tmp_path, env_extra=env)
    assert r.returncode == 0 and "skipped" in r.stderr


def _original_restore(render, size, pts5, lm3d):
    """A restatement of the original `Restore` (preprocess_img.py of rwenqi/3Dfacedeblurring)
    for scaled frames larger than 224: POS scale, zero padding to the scaled size, bilinear
    resize to the frame, inverse shift (PIL nearest affine)."""
    w0, h0 = size
    t, s = align.pos(pts5, lm3d, h0)
    w, h = (np.array([w0, h0]) / s * 102).astype(np.int32)
    pw, ph = (w - 224) // 2, (h - 224) // 2
    pad = ((int(ph), int(h - 224 - ph)), (int(pw), int(w - 224 - pw)), (0, 0))
    im = Image.fromarray(np.pad(np.asarray(render)[..., :3], pad)).resize((w0, h0), Image.BILINEAR)
    return np.asarray(im.transform((w0, h0), Image.AFFINE, (1, 0, w0 / 2 - t[0], 0, 1, t[1] - h0 / 2)))


def test_original_face_render_restores_bit_exactly(tmp_path, vd001, bfm_index):
    """The authors' 224 renders copied into dataset/<video>/face_render/ (where the original
    writes them): demo_render.py only restores them, equal to the original's Restore."""
    data = _dataset(tmp_path, vd001, n=3)
    ts = tmp_path / "training_set" / "vd001"
    (ts / "face").mkdir(parents=True)
    shutil.copytree(vd001 / "face_render", data / "vd001" / "face_render")
    for n in ("00001", "00002", "00003"):
        (ts / "face" / f"{n}.txt").write_text(" ".join(["0"] * 239) + "\n")
    stamps = {p.name: p.stat().st_mtime_ns for p in (data / "vd001" / "face_render").iterdir()}
    lm3d = bfm_index / "similarity_Lm3D_all.mat"
    r = _run("demo_render.py", "--coeff_path", tmp_path / "training_set", "--data_path", data, "--lm3d", lm3d,
             cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for n in ("00001", "00002", "00003"):
        fr = data / "vd001" / "face_render" / f"{n}.png"
        assert fr.read_bytes() == (vd001 / "face_render" / f"{n}.png").read_bytes()
        assert fr.stat().st_mtime_ns == stamps[fr.name]
        expected = _original_restore(read_image(vd001 / "face_render" / f"{n}.png"),
                                     Image.open(vd001 / "blurry" / f"{n}.png").size,
                                     read_points(vd001 / "face" / f"{n}.txt"), align.load_lm3d(lm3d))
        np.testing.assert_array_equal(read_image(ts / "render" / f"{n}.png"), expected)


def test_render_refuses_coefficients_of_another_model(tmp_path, vd001, standin, capsys):
    """Coefficients fitted with one model are not rendered with another (exit 2, one message
    naming the metadata file and both models); nothing is written."""
    data = _dataset(tmp_path, vd001, n=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandinWarning)
        pipeline.run_coefficients(data, tmp_path / "ts", pipeline.CoefficientConfig(bfm=standin, landmarks="5"),
                                  log=lambda m: None, progress=False)
    meta = json.loads((tmp_path / "ts/vd001/face_model.json").read_text())
    assert meta["model"]["kind"] == "standin" and meta["albedo"] is None
    rc = pipeline.render_main(["--coeff_path", str(tmp_path / "ts"), "--data_path", str(data),
                               "--bfm", str(pipeline.bfm_mod.SHIPPED_MODEL)])
    err = capsys.readouterr().err
    assert rc == 2 and "face_model.json" in err and "STAND-IN" in err and "ICT Face Model" in err
    assert not (data / "vd001/face_render").exists() and not (tmp_path / "ts/vd001/render").exists()
    # Another stand-in (other geometry, same kind) is refused too: the fingerprint differs.
    other = write_standin_bfm(tmp_path / "other.mat", n_vertices=300, seed=7)
    assert pipeline.render_main(["--coeff_path", str(tmp_path / "ts"), "--data_path", str(data),
                                 "--bfm", str(other)]) == 2
    # The model that made them renders them.
    assert pipeline.render_main(["--coeff_path", str(tmp_path / "ts"), "--data_path", str(data),
                                 "--bfm", str(standin)]) == 0
    assert len(list((data / "vd001/face_render").glob("*.png"))) == 2


def test_type_gt_and_257_coefficients(tmp_path, vd001, standin):
    """--type gt reads the sharp frames and writes faceGT/; --n_coeff 257 writes RGB SH and
    demo_render renders those files."""
    data = _dataset(tmp_path, vd001, n=3, sharp=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StandinWarning)
        pipeline.run_coefficients(data, tmp_path / "ts",
                                  pipeline.CoefficientConfig(bfm=standin, kind="gt", landmarks="5"),
                                  log=lambda m: None, progress=False)
        pipeline.run_coefficients(data, tmp_path / "ts",
                                  pipeline.CoefficientConfig(bfm=standin, n_coeff=257, landmarks="5"),
                                  log=lambda m: None, progress=False)
    assert read_coeff(tmp_path / "ts/vd001/faceGT/00002.txt").size == 239
    c257 = read_coeff(tmp_path / "ts/vd001/face/00002.txt")
    assert c257.size == 257
    gt = read_coeff(tmp_path / "ts/vd001/faceGT/00002.txt")
    assert not np.allclose(gt[144:224], c257[144:224])  # sharp frames: different colours
    pipeline.run_render(tmp_path / "ts", data, bfm=standin, log=lambda m: None, progress=False)
    assert read_image(tmp_path / "ts/vd001/render/00003.png").shape == (311, 271, 3)
    assert read_image(data / "vd001/face_render/00003.png", "RGBA").shape == (224, 224, 4)


def test_convert_coeff_between_layouts():
    rng = np.random.default_rng(0)
    c = rng.standard_normal((2, 257))
    c239 = pipeline.convert_coeff(c, 239)
    assert c239.shape == (2, 239)
    np.testing.assert_allclose(c239[:, 227:236], c[:, 227:254].reshape(2, 3, 9).mean(1))
    np.testing.assert_array_equal(c239[:, 236:], c[:, 254:])
    back = pipeline.convert_coeff(c239, 257)
    np.testing.assert_allclose(back[:, 227:254].reshape(2, 3, 9), np.repeat(c239[:, None, 227:236], 3, 1))


@pytest.mark.parametrize("content, message", [
    (" ".join(["0"] * 238), "expected 239 or 257 coefficients, found 238"),
    (" ".join(["nan"] * 239), "NaN"),
])
def test_render_cli_bad_coefficients(tmp_path, vd001, standin, capsys, content, message):
    data = _dataset(tmp_path, vd001, n=1)
    bad = tmp_path / "ts/vd001/face/00001.txt"
    bad.parent.mkdir(parents=True)
    bad.write_text(content + "\n")
    rc = pipeline.render_main(["--coeff_path", str(tmp_path / "ts"), "--data_path", str(data), "--bfm", str(standin)])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and str(bad) in err
    assert not (tmp_path / "ts/vd001/render/00001.png").exists()
    assert not (data / "vd001/face_render/00001.png").exists()


def test_demo_cli_bad_landmarks_and_missing_frames(tmp_path, vd001, standin, capsys):
    data = _dataset(tmp_path, vd001, n=2)
    bad = data / "vd001/face/00002.txt"
    bad.write_text("1 2\n3 4\n5 6\n7 8\n")
    args = ["--input_path", str(data), "--output_path", str(tmp_path / "ts"), "--bfm", str(standin)]
    assert pipeline.demo_main(args) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "expected 5 rows" in err
    assert not (tmp_path / "ts/vd001/face").exists() or not any((tmp_path / "ts/vd001/face").iterdir())
    shutil.copy(vd001 / "face/00002.txt", bad)
    (data / "vd001/blurry/00002.png").unlink()
    assert pipeline.demo_main(args) == 2
    assert "00002.png: frame image not found" in capsys.readouterr().err


def test_68_points_are_used_only_when_they_agree_with_the_five(tmp_path, vd001):
    """face68/ files (from `python -m facePointDetection --points 68`) are checked against the
    five points: a detection on another face or a bad fit falls back to the five points."""
    pts5 = read_points(vd001 / "face/00001.txt")
    rng = np.random.default_rng(0)
    lm68 = np.repeat(pts5[[0, 1, 2, 3, 4]], 14, axis=0)[:68] + rng.normal(0, 0.5, (68, 2))
    # Put the rows the five points come from where the five points are.
    lm68[[36, 39]], lm68[[42, 45]], lm68[30], lm68[48], lm68[54] = pts5[0], pts5[1], pts5[2], pts5[3], pts5[4]
    good = tmp_path / "good.txt"
    good.write_text("".join(f"{x} {y}\n" for x, y in lm68))
    img = read_image(vd001 / "blurry/00001.png")
    np.testing.assert_allclose(pipeline._landmarks68(img, pts5, good, "auto"), lm68)
    moved = tmp_path / "moved.txt"
    moved.write_text("".join(f"{x + 40} {y}\n" for x, y in lm68))
    assert pipeline._landmarks68(img, pts5, moved, "auto") is None
    assert pipeline._landmarks68(img, pts5, good, "5") is None


def test_rnet_without_lm3d_uses_the_stored_points_and_needs_the_bfm_to_render(tmp_path, vd001, bfm_index,
                                                                             monkeypatch):
    """Without a BFM, the R-Net crops use the similarity_Lm3D_all.mat points the shipped ICT
    model stores (the same crops as --lm3d); its coefficients are BFM ones, so demo_render.py
    with the ICT model refuses them."""
    monkeypatch.chdir(tmp_path)
    if pipeline.bfm_mod.find_bfm(None)[1] != "ict":
        pytest.skip("a BFM_model_front.mat is installed: it would be used")
    data = _dataset(tmp_path, vd001, n=2)
    pb = tmp_path / "rnet.pb"
    _frozen_graph(pb, 239)
    pipeline.run_coefficients(data, tmp_path / "a", pipeline.CoefficientConfig(rnet=pb), log=lambda m: None,
                              progress=False)
    pipeline.run_coefficients(data, tmp_path / "b",
                              pipeline.CoefficientConfig(rnet=pb, lm3d=bfm_index / "similarity_Lm3D_all.mat"),
                              log=lambda m: None, progress=False)
    for n in ("00001", "00002"):
        np.testing.assert_array_equal(read_coeff(tmp_path / "a/vd001/face" / f"{n}.txt"),
                                      read_coeff(tmp_path / "b/vd001/face" / f"{n}.txt"))
    meta = json.loads((tmp_path / "a/vd001/face_model.json").read_text())
    assert meta["model"]["kind"] == "bfm" and meta["method"].startswith("R-Net")
    with pytest.raises(InputError, match="R-Net.*--bfm"):
        pipeline.run_render(tmp_path / "a", data, log=lambda m: None, progress=False)


def test_coefficient_config_is_demo_py_flags():
    # demo.py's defaults are the config's defaults, and its flags reach the config.
    a = pipeline.demo_parser().parse_args([])
    assert pipeline.CoefficientConfig.from_args(a) == pipeline.CoefficientConfig()
    a = pipeline.demo_parser().parse_args(["--type", "gt", "--n_coeff", "257", "--landmarks", "5",
                                           "--per_frame_id", "--smooth", "2", "--rnet", "r.pb"])
    cfg = pipeline.CoefficientConfig.from_args(a)
    assert (cfg.kind, cfg.sub, cfg.n_coeff, cfg.landmarks, cfg.shared_id, cfg.smooth, cfg.rnet) == \
        ("gt", "faceGT", 257, "5", False, 2.0, "r.pb")
    for bad in ({"kind": "sharp"}, {"n_coeff": 240}, {"landmarks": "7"}):
        with pytest.raises(ValueError):
            pipeline.CoefficientConfig(**bad)
