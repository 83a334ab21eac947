"""faceReconstruction.convert_bfm on a reduced synthetic file with the raw BFM 2009 structure
(30 raw vertices, 25 in the expression model, 12 front vertices) and consistent index files."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.io

from faceReconstruction import bfm as B
from faceReconstruction.convert_bfm import main

ROOT = B.Path(B.__file__).resolve().parents[1]
N_RAW, N_EXP, N_FRONT, K_EXP = 30, 25, 12, 79


@pytest.fixture
def raw(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "BFM"
    d.mkdir()
    r = {
        "shapeMU": rng.normal(0, 5e4, (3 * N_RAW, 1)).astype(np.float32),
        "shapePC": rng.normal(0, 1, (3 * N_RAW, 199)).astype(np.float32),
        "shapeEV": rng.uniform(100, 900, (199, 1)).astype(np.float32),
        "texMU": rng.uniform(50, 200, (3 * N_RAW, 1)).astype(np.float32),
        "texPC": rng.normal(0, 1, (3 * N_RAW, 199)).astype(np.float32),
        "texEV": rng.uniform(1, 50, (199, 1)).astype(np.float32),
    }
    scipy.io.savemat(str(d / "01_MorphableModel.mat"), r)
    trim = rng.choice(N_RAW, N_EXP, replace=False) + 1          # 1-based into the raw model
    front = rng.choice(N_EXP, N_FRONT, replace=False) + 1        # 1-based into the expression model
    scipy.io.savemat(str(d / "BFM_exp_idx.mat"), {"trimIndex": trim.reshape(-1, 1).astype(np.uint16)})
    scipy.io.savemat(str(d / "BFM_front_idx.mat"), {"idx": front.reshape(-1, 1).astype(np.float32)})
    exp_mu = rng.normal(0, 1, 3 * N_EXP).astype(np.float32)
    exp_pc = rng.normal(0, 1, (K_EXP, 3 * N_EXP)).astype(np.float32)
    with open(d / "Exp_Pca.bin", "wb") as f:
        f.write(np.array([K_EXP], "<i4").tobytes() + exp_mu.astype("<f4").tobytes() + exp_pc.astype("<f4").tobytes())
    std = rng.uniform(100, 5000, K_EXP)
    np.savetxt(d / "std_exp.txt", std[None], fmt="%.4f")
    tri = np.array([[1, 2, 3], [2, 4, 3], [3, 4, 5], [5, 6, 7], [7, 8, 9], [9, 10, 11], [10, 12, 11]])
    pb = np.full((N_FRONT, 8), len(tri) + 1)
    for f, t in enumerate(tri):
        for v in t:
            k = np.argmax(pb[v - 1] == len(tri) + 1)
            pb[v - 1, k] = f + 1
    info = {"tri": tri.astype(np.float32), "point_buf": pb.astype(np.float32),
            "keypoints": (np.arange(68) % N_FRONT + 1).reshape(1, 68).astype(np.float32),
            "skinmask": np.ones((1, N_FRONT), np.float32)}
    scipy.io.savemat(str(d / "facemodel_info.mat"), info)
    return d, r, trim, front, exp_pc, std, info


def test_conversion_matches_the_original_recipe(raw, capsys):
    d, r, trim, front, exp_pc, std, info = raw
    assert main(["--bfm_dir", str(d)]) == 0
    out = d / "BFM_model_front.mat"
    assert capsys.readouterr().out.strip() == str(out)
    m = scipy.io.loadmat(str(out))
    assert m["meanshape"].shape == (1, 3 * N_FRONT) and m["idBase"].shape == (3 * N_FRONT, 80)
    assert m["exBase"].shape == (3 * N_FRONT, 64) and m["texBase"].shape == (3 * N_FRONT, 80)
    np.testing.assert_array_equal(m["tri"], info["tri"])  # kept 1-based
    np.testing.assert_array_equal(m["skinmask"], info["skinmask"])
    for j in range(N_FRONT):
        e = front[j] - 1          # vertex in the expression model
        v = trim[e] - 1           # vertex in BFM09
        for a in range(3):
            np.testing.assert_allclose(m["meanshape"][0, 3 * j + a], r["shapeMU"][3 * v + a, 0] / 1e5, rtol=1e-6)
            np.testing.assert_allclose(m["meantex"][0, 3 * j + a], r["texMU"][3 * v + a, 0], rtol=1e-6)
            id_ref = r["shapePC"][3 * v + a, :80] * r["shapeEV"][:80, 0] / 1e5
            np.testing.assert_allclose(m["idBase"][3 * j + a], id_ref, rtol=1e-5)
            np.testing.assert_allclose(m["texBase"][3 * j + a], r["texPC"][3 * v + a, :80] * r["texEV"][:80, 0],
                                       rtol=1e-5)
            np.testing.assert_allclose(m["exBase"][3 * j + a], exp_pc[:64, 3 * e + a] * std[:64] / 1e5, rtol=1e-4)
    model = B.load_bfm(out)
    assert model.n_vertices == N_FRONT and not model.is_standin
    np.testing.assert_array_equal(model.tri, info["tri"].astype(int) - 1)
    assert np.all(model.point_buf < len(info["tri"]))  # T + 1 padding became -1
    out_rec = B.reconstruct(model, np.zeros(239))
    assert np.all(np.isfinite(out_rec["uv"]))


def test_conversion_errors_name_the_file(raw, capsys):
    d = raw[0]
    (d / "Exp_Pca.bin").write_bytes((d / "Exp_Pca.bin").read_bytes()[:1000])
    assert main(["--bfm_dir", str(d), "--out", str(d / "x.mat")]) == 2
    err = capsys.readouterr().err
    assert "Exp_Pca.bin" in err and "bytes" in err and not (d / "x.mat").exists()
    (d / "Exp_Pca.bin").unlink()
    assert main(["--bfm_dir", str(d), "--out", str(d / "x.mat")]) == 2
    assert "Exp_Pca.bin: file not found" in capsys.readouterr().err
    assert main(["--bfm_dir", str(d / "nowhere")]) == 2
    assert "01_MorphableModel.mat: file not found" in capsys.readouterr().err


def test_cli_help():
    p = subprocess.run([sys.executable, "-m", "faceReconstruction.convert_bfm", "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0
    for flag in ("--bfm_dir", "--model", "--exp", "--index_dir", "--out"):
        assert flag in p.stdout
