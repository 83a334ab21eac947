"""The shipped ICT Face Model: conversion (faceReconstruction/convert_ict.py) on a tiny synthetic
folder in ICT-FaceKit's layout, the committed file's shape and landmarks, the per-clip albedo
(albedo.py) and its use by demo_render.py, the bounded blendshape fit, and the vd001 figures
against the original BFM renders (bench/bench_prior.py)."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from faceReconstruction import albedo as A
from faceReconstruction import bfm as B
from faceReconstruction import convert_ict as C
from faceReconstruction import fit, pipeline
from faceReconstruction.render import render_rgba

from tests.helpers import ROOT

# The 68 Multi-PIE landmark vertices as listed in ICT-FaceKit's README ("Facial Landmarks").
ICT_README_LANDMARKS = [
    1225, 1888, 1052, 367, 1719, 1722, 2199, 1447, 966, 3661, 4390, 3927, 3924, 2608, 3272, 4088, 3443, 268, 493,
    1914, 2044, 1401, 3615, 4240, 4114, 2734, 2509, 978, 4527, 4942, 4857, 1140, 2075, 1147, 4269, 3360, 1507, 1542,
    1537, 1528, 1518, 1511, 3742, 3751, 3756, 3721, 3725, 3732, 5708, 5695, 2081, 0, 4275, 6200, 6213, 6346, 6461,
    5518, 5957, 5841, 5702, 5711, 5533, 6216, 6207, 6470, 5517, 5966]


# ------------------------------------------------------------------------------ synthetic ICT folder

NX, NY = 16, 14
N_AREA = NX * NY
EXPRESSIONS = ["jawOpen", "eyeBlink_L", "mouthSmile_R"]
HOLE_QUADS = [(4, 8), (5, 8), (10, 8), (11, 8), (7, 3), (8, 3)]  # two "eyes", one "mouth" (2 quads each)


def _rotation_y(deg):
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def write_synthetic_ict(root: Path, rng, n_identity=81):
    """ICT-FaceKit layout: FaceXModel/{generic_neutral_mesh,identityNNN,<expression>}.obj +
    vertex_indices.json; a quad grid on a cap facing +z (the face area, N_AREA vertices, with
    three holes) followed by a 'head' quad outside the area. Returns the ground truth."""
    d = root / "FaceXModel"
    d.mkdir(parents=True)
    i, j = np.meshgrid(np.arange(NX), np.arange(NY))
    x = (i.ravel() - (NX - 1) / 2) * 0.8
    y = (j.ravel() - (NY - 1) / 2) * 0.9
    z = 10.0 - (x ** 2 + y ** 2) / 25.0
    area = np.stack([x, y, z], 1)
    head = np.array([[0, 0, -5.0], [1, 0, -5], [1, 1, -5], [0, 1, -5]])
    neutral = np.vstack([area, head])
    quads = [[jj * NX + ii, jj * NX + ii + 1, (jj + 1) * NX + ii + 1, (jj + 1) * NX + ii]
             for jj in range(NY - 1) for ii in range(NX - 1) if (ii, jj) not in HOLE_QUADS]
    quads.append([N_AREA, N_AREA + 1, N_AREA + 2, N_AREA + 3])

    def write(name, verts, faces=True):
        lines = ["# synthetic ICT-style OBJ", "mtllib ICTFaceModelMaterial.mtl"]
        lines += [f"v {a:.6f} {b:.6f} {c:.6f}" for a, b, c in verts]
        if faces:
            lines += ["f " + " ".join(f"{v + 1}/{v + 1}" for v in q) for q in quads]
        (d / f"{name}.obj").write_text("\n".join(lines) + "\n")

    write("generic_neutral_mesh", neutral)
    id_delta = rng.normal(0, 1, (n_identity, len(neutral), 3)) * (0.3 / (1 + np.arange(n_identity)))[:, None, None]
    for k in range(n_identity):
        write(f"identity{k:03d}", neutral + id_delta[k], faces=k == 0)
    ex_delta = rng.normal(0, 0.5, (len(EXPRESSIONS) + 1, len(neutral), 3))
    for k, name in enumerate(EXPRESSIONS + ["cheekRaiser_L"]):  # the last is not in the json: ignored
        write(name, neutral + ex_delta[k], faces=False)
    interior = [v for v in range(N_AREA) if 1 <= v % NX < NX - 1 and 1 <= v // NX < NY - 1]
    lmk = np.asarray(interior)[np.linspace(0, len(interior) - 1, 68).astype(int)]
    (d / "vertex_indices.json").write_text(json.dumps({
        "expressions": EXPRESSIONS, "fitting_expressions": EXPRESSIONS,
        "idx_to_landmark_verts": lmk.tolist()}))
    s, r, t = 0.1, _rotation_y(8.0), np.array([0.01, -0.02, 0.03])
    lm = neutral[lmk] @ (s * r).T + t
    scipy.io.savemat(str(root / "similarity_Lm3D_all.mat"), {"lm": lm})
    return dict(neutral=neutral, id_delta=id_delta, ex_delta=ex_delta, lmk=lmk, s=s, r=r, t=t, lm=lm)


@pytest.fixture
def ict_dir(tmp_path, monkeypatch):
    monkeypatch.setitem(C.AREAS, "narrow", N_AREA)
    truth = write_synthetic_ict(tmp_path / "ICT-FaceKit", np.random.default_rng(0))
    return tmp_path / "ICT-FaceKit", truth


def _boundary_count(tri):
    return len(C.boundary_loops(tri))


@pytest.mark.parametrize("ext", [".npz", ".mat"])
def test_convert_synthetic_folder(ict_dir, tmp_path, ext):
    root, g = ict_dir
    out = tmp_path / f"model{ext}"
    assert C.main([str(root), "--out", str(out), "--lm3d", str(root / "similarity_Lm3D_all.mat"),
                   "--source", "synthetic"]) == 0
    m = B.load_bfm(out)
    n_fill = 3 * (3 * 6 + 1)  # three 6-vertex holes: three rings and a centre each
    assert m.kind == "ict" and not m.is_standin and m.n_vertices == N_AREA + n_fill == N_AREA + 3 * 19
    assert m.idBase.shape == (3 * m.n_vertices, 80) and m.exBase.shape == (3 * m.n_vertices, 64)
    assert m.texBase.shape == (3 * m.n_vertices, 80) and not m.has_texture
    tol = dict(rtol=0, atol=2e-3 if ext == ".npz" else 1e-6)
    sr = g["s"] * g["r"]
    # The frame: the exact similarity is recovered, the area kept, the head quad dropped.
    np.testing.assert_allclose(m.meanshape[:N_AREA], g["neutral"][:N_AREA] @ sr.T + g["t"], atol=1e-5)
    np.testing.assert_allclose(m.extra["similarity"][:3, :3], sr, atol=1e-9)
    np.testing.assert_array_equal(m.keypoints, g["lmk"])
    np.testing.assert_allclose(m.extra["lm3d"], g["lm"])
    np.testing.assert_array_equal(m.center, 0)  # used in lm's frame, not re-centred
    np.testing.assert_allclose(B.keypoints3d(m), g["lm"], atol=1e-5)
    assert m.tri.max() < m.n_vertices
    # Identity: the first 80 modes, rotated and scaled (1 = one ICT mode = one s.d.), in order.
    ids = m.idBase.reshape(m.n_vertices, 3, 80)[:N_AREA]
    for k in (0, 1, 79):
        np.testing.assert_allclose(ids[:, :, k], g["id_delta"][k, :N_AREA] @ sr.T, **tol)
    # Expression: the json's order, then zero columns; bounds [0, 1] for the used ones.
    exs = m.exBase.reshape(m.n_vertices, 3, 64)[:N_AREA]
    for k in range(len(EXPRESSIONS)):
        np.testing.assert_allclose(exs[:, :, k], g["ex_delta"][k, :N_AREA] @ sr.T, **tol)
    assert not np.any(m.exBase[:, len(EXPRESSIONS):])
    np.testing.assert_array_equal(m.extra["exBounds"][:3], [[0, 1]] * 3)
    np.testing.assert_array_equal(m.extra["exBounds"][3:], 0)
    assert list(m.extra["expressions"][:3]) == EXPRESSIONS and m.extra["expressions"][3] == ""
    # Holes closed: only the outer border remains; fill vertices are fixed combinations of the
    # border (the centre of a hole is its border's mean in the mean shape and in every mode).
    assert _boundary_count(m.tri) == 1
    centres = np.arange(N_AREA + 18, m.n_vertices, 19)
    loops = [lp for lp in C.boundary_loops(C.triangulate(
        [q for q in _quads(root) if max(q) < N_AREA]))]
    loops = sorted(loops, key=len)[:3]
    for c in centres:
        loop = min(loops, key=lambda lp: np.linalg.norm(m.meanshape[lp].mean(0) - m.meanshape[c]))
        np.testing.assert_allclose(m.meanshape[c], m.meanshape[loop].mean(0), atol=1e-5)
        np.testing.assert_allclose(m.idBase.reshape(-1, 3, 80)[c], m.idBase.reshape(-1, 3, 80)[loop].mean(0),
                                   atol=2e-3)
    # Orientation kept: normals of the cap (facing +z, rotated 8 degrees) point to the camera.
    normals = B.vertex_normals(m, B.face_shape(m, np.zeros(80), np.zeros(64)))
    assert np.all(normals[:, 2] > 0.5)
    # point_buf lists every triangle at each of its vertices.
    for t in (0, len(m.tri) // 2, len(m.tri) - 1):
        for v in m.tri[t]:
            assert t in m.point_buf[v]


def _quads(root):
    return C.read_obj(root / "FaceXModel" / "generic_neutral_mesh.obj", polygons=True)[1]


def test_convert_errors_name_the_file(ict_dir, tmp_path, capsys):
    root, _ = ict_dir
    lm3d = str(root / "similarity_Lm3D_all.mat")
    assert C.main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "o.npz"), "--lm3d", lm3d]) == 2
    assert "FaceXModel" in capsys.readouterr().err
    bad = root / "FaceXModel" / "identity005.obj"
    bad.write_text("v 1 2 3\nv 4 5 6\n")
    assert C.main([str(root), "--out", str(tmp_path / "o.npz"), "--lm3d", lm3d]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "2 vertices" in err
    bad.write_text("v 1 2\n")
    assert C.main([str(root), "--out", str(tmp_path / "o.npz"), "--lm3d", lm3d]) == 2
    assert str(bad) in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()
    r = subprocess.run([sys.executable, "-m", "faceReconstruction.convert_ict", "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "ICT_DIR" in r.stdout.upper()


def test_similarity_and_hole_fill_helpers():
    rng = np.random.default_rng(1)
    p = rng.normal(size=(20, 3))
    r = _rotation_y(30) @ np.array([[1, 0, 0], [0, np.cos(0.2), -np.sin(0.2)], [0, np.sin(0.2), np.cos(0.2)]])
    s, r2, t = C.similarity(p, 2.5 * p @ r.T + [1, 2, 3])
    assert s == pytest.approx(2.5) and np.allclose(r2, r) and np.allclose(t, [1, 2, 3])
    tri, w = C.fill_holes([np.array([0, 1, 2, 3])], 4, rings=1)
    assert w.shape == (5, 4) and np.allclose(w.sum(1), 1)  # convex combinations
    np.testing.assert_allclose(w.toarray()[-1], 0.25)  # centre = mean of the border
    # Every border edge a -> b appears reversed (b -> a) in the fill: consistent orientation.
    edges = {(a, b) for t in tri for a, b in ((t[0], t[1]), (t[1], t[2]), (t[2], t[0]))}
    assert all((b, a) in edges for a, b in ((0, 1), (1, 2), (2, 3), (3, 0)))


# ------------------------------------------------------------------------------ the shipped file


@pytest.fixture(scope="module")
def ict():
    return B.load_bfm(B.SHIPPED_MODEL)


def test_shipped_model_shape_landmarks_and_notice(ict):
    path = B.SHIPPED_MODEL
    assert path.stat().st_size < 15e6
    assert ict.kind == "ict" and ict.label == "ICT Face Model (shipped, MIT)" and not ict.has_texture
    n = ict.n_vertices
    assert n == 7183 and ict.idBase.shape == (3 * n, 80) and ict.exBase.shape == (3 * n, 64)
    assert ict.tri.shape == (14226, 3) and ict.point_buf.shape[0] == n
    np.testing.assert_array_equal(ict.keypoints, ICT_README_LANDMARKS)
    assert not np.any(ict.exBase[:, 53:]) and np.all(np.any(ict.exBase[:, :53], axis=0))
    assert list(ict.extra["expressions"][:3]) == ["browDown_L", "browDown_R", "browInnerUp_L"]
    assert _boundary_count(ict.tri) == 1  # eye and mouth holes closed
    # Identity modes in standard deviations: ICT's mode displacements (RMS 3.0 mm for mode 0 over
    # this area, falling to ~0.1 mm) times the similarity's scale (~0.095 units per cm).
    rms = np.sqrt((ict.idBase.reshape(n, 3, 80) ** 2).sum(1).mean(0))
    assert 0.02 < rms[0] < 0.04 and rms.argmax() == 0 and rms[70:].mean() < 0.1 * rms[0]
    readme = (path.parent / "README.md").read_text()
    licence = (path.parent / "LICENSE").read_text()
    assert "da5f95a607f5e6b37755b38d3385d7f2853732e5" in readme and "convert_ict" in readme
    assert "MIT License" in licence and "USC Institute for Creative Technologies" in licence
    ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT, capture_output=True).returncode
    assert ignored != 0  # 1: not ignored by .gitignore (128: not a git checkout)


def test_shipped_model_is_in_the_bfm_frame(ict, bfm_index):
    """Landmarks 18-68 of the centred mean shape on similarity_Lm3D_all.mat's `lm` (the frame of
    the original camera and POS alignment); the zero-coefficient face is framed like the BFM's."""
    lm = scipy.io.loadmat(str(bfm_index / "similarity_Lm3D_all.mat"))["lm"]
    np.testing.assert_allclose(ict.extra["lm3d"], lm)
    kp = B.keypoints3d(ict)
    inner = np.sqrt(((kp[17:] - lm[17:]) ** 2).sum(1).mean())
    assert inner < 0.05  # units (~5 mm); measured 0.033
    rec = B.reconstruct(ict, np.zeros(239))
    uv_lm = B.project(lm[None])[0]
    assert np.abs(rec["landmarks68_uv"][17:] - uv_lm[17:]).mean() < 4.0  # pixels of the 224 crop
    rgba = render_rgba(rec["vertices_cam"], ict.tri, rec["colors"])
    coverage = (rgba[..., 3] > 0).mean()
    assert 0.3 < coverage < 0.5  # the original BFM renders of vd001 cover 39-42 %
    uv = rec["landmarks68_uv"]
    assert uv[36:48, 1].mean() < uv[30, 1] < uv[48:68, 1].mean() < uv[8, 1]  # eyes, nose, mouth, chin
    assert rec["normals"][ict.keypoints[30], 2] > 0.8  # the nose tip faces the camera


# ------------------------------------------------------------------------------ colour


def _scene(model, n_frames, rng, blur=()):
    """Frames rendered from a known albedo and lighting at known poses -> observations."""
    from scipy.ndimage import gaussian_filter

    n = model.n_vertices
    base = np.array([190.0, 140.0, 120.0])
    truth = base * (1 + 0.25 * np.sin(model.meanshape[:, :1] * 6) * np.cos(model.meanshape[:, 1:2] * 5))
    obs, crops, gammas = [], [], []
    for t in range(n_frames):
        c = np.zeros(239)
        c[224:227] = [0.05 * t, 0.25 * np.sin(t), 0.02]
        gamma = np.zeros(9)
        gamma[0], gamma[1:4] = 0.1 * rng.normal(), 0.15 * rng.normal(size=3)
        c[227:236] = gamma
        rec = B.reconstruct(model, c, albedo=truth)
        crop = render_rgba(rec["vertices_cam"], model.tri, rec["colors"])[..., :3]
        if t in blur:
            crop = gaussian_filter(crop.astype(float), (2.5, 2.5, 0)).astype(np.uint8)
        obs.append(A.frame_observations(model, crop, np.zeros(80), np.zeros(64), c[224:227], c[236:239]))
        crops.append(crop)
        gammas.append(gamma)
    return truth, obs, crops, np.array(gammas), n


def test_albedo_recovers_a_known_albedo_from_the_sharpest_frames(ict):
    rng = np.random.default_rng(2)
    truth, obs, crops, gammas, n = _scene(ict, 6, rng, blur=(1, 4))
    sharp = [A.sharpness(c, o["uv"][o["idx"]]) for c, o in zip(crops, obs)]
    assert sharp[1] < min(sharp[k] for k in (0, 2, 3, 5)) and sharp[4] < min(sharp[k] for k in (0, 2, 3, 5))
    # The least-squares estimate itself (clean=False); the mesh clean-up is tested below and
    # must not move a smooth albedo's fit much (last lines).
    alb, gamma, used = A.estimate_albedo(ict, obs, sharp=sharp, clean=False)
    assert used.sum() == 3 and not used[1] and not used[4]  # the sharpest third (>= 3), never the blurred
    frontal = np.zeros(n, bool)  # seen at less than ~50 degrees from the view ray
    for t in np.nonzero(used)[0]:
        frontal[obs[t]["idx"][obs[t]["weight"] > 0.65]] = True
    # Up to the albedo/light scale the model cannot tell apart: one global factor. (Lighting
    # nearly constant over the visible normals trades off against the albedo too, so grazing
    # vertices are less certain; the frames themselves are reproduced either way.)
    k = np.median(alb[frontal] / truth[frontal])
    err = np.abs(alb[frontal] / k - truth[frontal]) / truth[frontal]
    assert np.median(err) < 0.03 and np.percentile(err, 75) < 0.06
    for t in np.nonzero(used)[0]:
        o = obs[t]
        g = np.repeat(gamma[t][None], 3, 0)
        g[:, 0] += 0.8
        pred = alb[o["idx"]] * (o["sh"] @ g.T)
        assert np.median(np.abs(pred - o["colors"]) / o["colors"]) < 0.02
    assert abs(gamma[:, 0].mean()) < 1e-6  # mean ambient term: the original's default
    cleaned, gamma_c, _ = A.estimate_albedo(ict, obs, sharp=sharp)
    # This synthetic albedo's pattern is unlike the mean skin's, so a few of its extremes count
    # as outliers; they are filled from their neighbours and the albedo hardly changes.
    assert A.occluded_vertices(ict, alb, frontal, A.vertex_adjacency(ict.tri, n)).mean() < 0.15
    ratio = cleaned[frontal] / alb[frontal]  # up to the albedo/light scale (lights re-fitted)
    assert np.median(np.abs(ratio / np.median(ratio) - 1)) < 0.01
    assert abs(gamma_c[:, 0].mean()) < 1e-6


def test_albedo_single_image_is_the_mean_skin_albedo(ict):
    _, obs, _, _, _ = _scene(ict, 1, np.random.default_rng(3))
    alb, gamma, used = A.estimate_albedo(ict, obs)
    assert not used.any()
    np.testing.assert_allclose(alb, np.clip(ict.meantex, 0, 255))
    assert gamma.shape == (1, 9) and np.all(np.isfinite(gamma))


def test_albedo_drops_an_occluder(ict):
    """A dark patch in one sharp frame (a hand, a microphone in a single frame) does not get
    into the albedo: its samples are rejected as outliers."""
    rng = np.random.default_rng(4)
    truth, obs, crops, _, n = _scene(ict, 5, rng)
    occluded = [dict(o) for o in obs]
    o = occluded[2]
    patch = (o["uv"][o["idx"], 0] > 100) & (o["uv"][o["idx"], 0] < 130) & (o["uv"][o["idx"], 1] > 140)
    o["colors"] = o["colors"].copy()
    o["colors"][patch] = 20.0
    clean, _, _ = A.estimate_albedo(ict, obs)
    dirty, _, _ = A.estimate_albedo(ict, occluded)
    idx = o["idx"][patch]
    assert len(idx) > 30
    assert np.median(np.abs(dirty[idx] - clean[idx]) / clean[idx]) < 0.05


def _cheek(model):
    """Skin vertices of the left cheek (image right), well away from the features."""
    xy = model.meanshape[:, :2]
    kp = xy[model.keypoints]
    iod = np.linalg.norm(kp[45] - kp[36])
    centre = np.array([kp[45, 0], 0.5 * (kp[33, 1] + kp[51, 1])])  # below the outer eye corner
    return (np.linalg.norm(xy - centre, axis=1) < 0.25 * iod) & ~A.feature_vertices(model)


def test_albedo_fills_an_occluder_present_in_every_frame(ict):
    """A dark occluder (microphone, shadow) on the cheek in every frame: outlier rejection per
    sample does not see it (the albedo just turns dark), the mesh clean-up does: the patch takes the skin
    of the clip around it. Without the clean-up it stays dark (the test would notice)."""
    rng = np.random.default_rng(5)
    truth, obs, crops, _, n = _scene(ict, 5, rng)
    patch = _cheek(ict)
    assert patch.sum() > 50
    occluded = []
    for o in obs:
        o = dict(o)
        o["colors"] = np.where(patch[o["idx"], None], 0.45 * o["colors"], o["colors"])
        occluded.append(o)
    clean, _, _ = A.estimate_albedo(ict, obs)
    filled, _, _ = A.estimate_albedo(ict, occluded)
    raw, _, _ = A.estimate_albedo(ict, occluded, clean=False)
    seen = np.zeros(n, bool)
    for o in obs:
        seen[o["idx"]] = True
    idx = np.nonzero(patch & seen)[0]
    assert len(idx) > 20
    assert np.median(np.abs(filled[idx] - clean[idx]) / clean[idx]) < 0.08
    assert np.median(raw[idx] / clean[idx]) < 0.75
    # Elsewhere the occluder changes little.
    rest = seen & ~patch & ~A.occluded_vertices(ict, raw, seen, A.vertex_adjacency(ict.tri, n))
    ratio = filled[rest] / clean[rest]  # up to the albedo/light scale
    assert np.median(np.abs(ratio / np.median(ratio) - 1)) < 0.02


def test_albedo_keeps_dark_eyes(ict):
    """Features depart from skin legitimately: eyes four times darker than the skin stay in the
    albedo (the same darkening on the cheek is filled, test above)."""
    rng = np.random.default_rng(6)
    truth, obs, crops, _, n = _scene(ict, 4, rng)
    xy = ict.meanshape[:, :2]
    kp = xy[ict.keypoints]
    eyes = np.zeros(n, bool)
    for g in (range(36, 42), range(42, 48)):
        eyes |= np.linalg.norm(xy - kp[list(g)].mean(0), axis=1) < 0.05
    assert eyes.sum() > 10 and A.feature_vertices(ict)[eyes].all()
    for o in obs:
        o["colors"] = o["colors"] * np.where(eyes[o["idx"], None], 0.25, 1.0)
    alb, _, _ = A.estimate_albedo(ict, obs)
    raw, _, _ = A.estimate_albedo(ict, obs, clean=False)
    inner_eyes = eyes & ((A.vertex_adjacency(ict.tri, n) @ (~eyes).astype(float)) == 0)
    assert np.median(raw[inner_eyes].mean(1) / raw[~eyes].mean(1).mean()) < 0.4
    assert np.median(alb[inner_eyes].mean(1) / raw[inner_eyes].mean(1)) > 0.85


def test_mesh_fill_and_smoothing():
    """On a planar grid the membrane fill of a linear function is the function itself; the
    umbrella smoothing keeps constants and damps vertex noise."""
    k = 12
    gx, gy = np.meshgrid(np.arange(k), np.arange(k))
    vid = (gy * k + gx)
    a, b, c, d = vid[:-1, :-1].ravel(), vid[:-1, 1:].ravel(), vid[1:, :-1].ravel(), vid[1:, 1:].ravel()
    tri = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    adj = A.vertex_adjacency(tri, k * k)
    assert adj.nnz == 2 * (2 * k * (k - 1) + (k - 1) ** 2)  # grid edges + one diagonal per square, both ways
    f = np.stack([2.0 * gx.ravel() + 3.0 * gy.ravel() + 1.0, 5.0 - gx.ravel()], 1)
    known = np.ones(k * k, bool)
    known[(gx.ravel() > 2) & (gx.ravel() < 9) & (gy.ravel() > 3) & (gy.ravel() < 8)] = False
    filled = A.fill_on_mesh(f, known, adj, iterations=2000)
    np.testing.assert_allclose(filled, f, atol=1e-6)
    np.testing.assert_allclose(A.smooth_on_mesh(np.full((k * k, 3), 7.0), adj, 5), 7.0)
    noise = np.random.default_rng(0).normal(size=(k * k, 1))
    assert A.smooth_on_mesh(noise, adj, 2).std() < 0.6 * noise.std()


def test_render_uses_the_clip_albedo(tmp_path, vd001, ict):
    """demo.py writes face_albedo.npy; demo_render.py colours the ICT face with it (a grey-blue
    albedo gives grey-blue renders) and falls back to the mean skin albedo without it."""
    import shutil

    from common.fileio import read_image

    data = tmp_path / "dataset" / "vd001"
    for sub in ("blurry", "face"):
        (data / sub).mkdir(parents=True)
        for f in sorted((vd001 / sub).iterdir())[:4]:
            shutil.copy(f, data / sub / f.name)
    ts = tmp_path / "ts"
    logs = []
    pipeline.run_coefficients(tmp_path / "dataset", ts,
                              pipeline.CoefficientConfig(bfm=B.SHIPPED_MODEL, landmarks="68"),
                              log=logs.append, progress=False)
    assert any("3D face model: ICT Face Model" in m for m in logs)
    alb_path = ts / "vd001" / "face_albedo.npy"
    alb = np.load(alb_path)
    assert alb.shape == (ict.n_vertices, 3) and alb.dtype == np.float32
    meta = json.loads((ts / "vd001" / "face_model.json").read_text())
    assert meta["albedo_frames"] and len(meta["albedo_frames"]) == 3 and meta["model"]["kind"] == "ict"
    np.save(alb_path, np.tile(np.float32([60, 120, 180]), (ict.n_vertices, 1)))

    def ratios():
        pipeline.run_render(ts, tmp_path / "dataset", bfm=B.SHIPPED_MODEL, overwrite=True, log=logs.append,
                            progress=False)
        px = read_image(data / "face_render" / "00002.png", "RGBA")
        face = px[px[..., 3] > 0, :3].astype(float)
        return np.median(face[:, 0] / face[:, 2]), np.median(face[:, 1] / face[:, 2])

    rb, gb = ratios()
    assert rb == pytest.approx(1 / 3, abs=0.03) and gb == pytest.approx(2 / 3, abs=0.03)
    alb_path.unlink()
    rb, gb = ratios()
    mean = np.median(ict.meantex, 0)
    assert rb == pytest.approx(mean[0] / mean[2], rel=0.1) and rb > 1.3  # skin, not the grey-blue
    assert any("mean skin albedo" in m for m in logs)


# ------------------------------------------------------------------------------ fitting


def test_bounded_lm_keeps_blendshape_weights_in_range():
    # min (x0 + 1)^2 + (x1 - 2)^2 + (x2 - 0.5)^2 with x in [0, 1]^2 x R: (0, 1, 0.5).
    target = np.array([-1.0, 2.0, 0.5])
    x = fit._lm_solve(lambda x: (x - target, np.eye(3)), np.array([0.5, 0.5, 0.0]), np.zeros(3), 20,
                      bounds=(np.array([0, 0, -np.inf]), np.array([1, 1, np.inf])))
    np.testing.assert_allclose(x, [0, 1, 0.5], atol=1e-9)


def test_fit_ict_clip_round_trip(ict):
    """68 projected landmarks of known identity / blendshapes / poses -> one identity for the
    clip, blendshape weights within [0, 1], poses recovered."""
    rng = np.random.default_rng(5)
    id_true = rng.normal(0, 0.5, 80)
    lms, truth = [], []
    for t in range(4):
        ex = np.zeros(64)
        ex[rng.choice(53, 5, replace=False)] = rng.uniform(0, 0.8, 5)
        c = np.zeros(239)
        c[:80], c[80:144] = id_true, ex
        c[224:227] = [0.1 * rng.normal(), 0.4 * (t - 1.5) / 1.5, 0.05 * rng.normal()]
        c[236:239] = [0.05 * rng.normal(), 0.05 * rng.normal(), 0.3 * rng.normal()]
        lms.append(B.reconstruct(ict, c)["landmarks68_uv"])
        truth.append(c)
    g = fit.fit_geometry(ict, lms)
    truth = np.array(truth)
    assert np.all(g["id"] == g["id"][0])
    assert g["ex"].min() >= 0 and g["ex"].max() <= 1 and not np.any(g["ex"][:, 53:])
    assert np.degrees(np.abs(g["angles"] - truth[:, 224:227])).max() < 1.5
    assert g["rms"].max() < 0.5  # px


# ------------------------------------------------------------------------------ vd001 figures


@pytest.mark.slow
def test_vd001_figures_against_the_original_bfm_renders(tmp_path, vd001, bfm_index):
    """The shipped ICT model's renders of vd001 (25 frames, fit to dlib's 68 points) against the
    authors' BFM renders: the figures of docs/ict.md (printed); see bench/bench_prior.py."""
    from bench.bench_prior import evaluate_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = evaluate_model(vd001, tmp_path, 25, bfm=B.SHIPPED_MODEL, lm3d=bfm_index / "similarity_Lm3D_all.mat")
    print(f"\nICT vs original BFM renders, vd001 25 frames: IoU {r['iou']:.3f} SSIM(grey) {r['ssim']:.3f} "
          f"PSNR {r['psnr']:.2f} dB NME {r['nme']:.4f}")
    assert r["frames"] == 25
    assert r["iou"] >= 0.85 and r["min_iou"] >= 0.8
    assert r["nme"] <= 0.05
    # Issue 9 asks SSIM >= 0.75 and PSNR >= 24 dB; the sharp ground-truth crop itself scores
    # 0.713 and 21.0 dB against these renders (docs/ict.md). Guard the measured level (0.702,
    # 23.9 dB; 0.687 / 22.4 dB without the albedo clean-up), well above the stand-in's 0.570 / 20.1 dB.
    assert r["ssim"] >= 0.695 and r["psnr"] >= 23.4


# ------------------------------------------------------------------------------ runtime paths


def test_video_pipeline_and_make_demo_say_which_model():
    """deblur_video.py keeps demo.py's '3D face model: ...' line as a note; make demo labels
    the comparison strip's prior panel from it."""
    from pipeline.video import model_lines
    from pipeline.video import prior_label as render_label

    log = ("vd001 align: 100%\n3D face model: ICT Face Model (shipped, MIT), /x/ict_face_model.npz\n"
           "3D face model: ICT Face Model (shipped, MIT), /x/ict_face_model.npz\nother line\n")
    lines = model_lines(log)
    assert lines == ["3D face model: ICT Face Model (shipped, MIT), /x/ict_face_model.npz"]
    assert render_label("\n".join(lines)) == "3D prior (ICT Face Model)"
    assert render_label("3D face model: Basel Face Model (user's BFM_model_front.mat), x") == \
        "3D prior (Basel Face Model)"
    assert render_label("WARNING: STAND-IN morphable model, not the Basel Face Model") == "3D prior (STAND-IN)"


def test_deblur_video_rnet_needs_the_bfm(tmp_path, monkeypatch):
    """The R-Net gives BFM coefficients: with only the shipped ICT model, deblur_video.py stops
    before doing anything (exit 2, one message) instead of rendering them with another model."""
    if B.find_bfm(None)[1] != "ict":
        pytest.skip("a BFM_model_front.mat is installed")
    (tmp_path / "clip.mp4").write_bytes(b"x")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "r.pb").write_bytes(b"x")
    r = subprocess.run([sys.executable, "deblur_video.py", str(tmp_path / "clip.mp4"), str(tmp_path / "o.mp4"),
                        "--checkpoint", str(tmp_path / "ckpt"), "--rnet", str(tmp_path / "r.pb"),
                        "--work_dir", str(tmp_path / "work")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Basel Face Model" in r.stderr and "--bfm" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "work").exists()


def test_no_runtime_module_generates_the_standin():
    """The stand-in generator is reachable from tests only: no runtime module imports it."""
    runtime = [ROOT / "demo.py", ROOT / "demo_render.py", ROOT / "deblur_video.py", ROOT / "demo" / "run_demo.py",
               *(ROOT / "faceReconstruction").glob("*.py"), *(ROOT / "deblur").glob("*.py"),
               *(ROOT / "pipeline").glob("*.py")]
    for path in runtime:
        if path.name in ("standin.py", "bfm.py"):  # the generator itself; bfm.py re-exports it for tests
            continue
        text = path.read_text()
        assert "write_standin_bfm" not in text and "faceReconstruction.standin" not in text, path
