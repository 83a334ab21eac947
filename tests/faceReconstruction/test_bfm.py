"""faceReconstruction.bfm: model loading (1-based -> 0-based), coefficient split, shape, normals,
rotation, projection (the done-when formula), SH lighting, stand-in model, find_bfm (model choice),
model kinds and fingerprints."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.io

from faceReconstruction import bfm as B
from common.fileio import InputError


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    path = tmp_path_factory.mktemp("bfm") / "BFM_model_front.mat"
    B.write_standin_bfm(path, n_vertices=1500, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", B.StandinWarning)
        return B.load_bfm(path)


def _coeff(rng, size=239, pose=True):
    c = np.zeros(size)
    c[:80] = rng.normal(0, 1, 80)
    c[80:144] = rng.normal(0, 1, 64)
    c[144:224] = rng.normal(0, 1, 80)
    g0 = 227
    ng = 9 if size == 239 else 27
    c[g0:g0 + ng] = rng.normal(0, 0.1, ng)
    if pose:
        c[224:227] = rng.uniform(-0.3, 0.3, 3)
        c[g0 + ng:] = rng.uniform(-0.2, 0.2, 3)
    return c


def test_split_coeff_layouts():
    c = np.arange(239.0)
    p = B.split_coeff(c)
    shapes = [p[k].shape for k in ("id", "ex", "tex", "angles", "gamma", "trans")]
    assert shapes == [(80,), (64,), (80,), (3,), (9,), (3,)]
    starts = [p[k][0] for k in ("id", "ex", "tex", "angles", "gamma", "trans")]
    assert starts == [0, 80, 144, 224, 227, 236]
    q = B.split_coeff(np.arange(2 * 257.0).reshape(2, 257))
    assert q["gamma"].shape == (2, 27) and q["gamma"][0, 0] == 227 and q["trans"][1, 0] == 257 + 254
    with pytest.raises(ValueError, match="239 or 257"):
        B.split_coeff(np.zeros(240))


def test_rotation_matrix_is_transposed_rz_ry_rx():
    ax, ay, az = 0.3, -0.5, 0.2
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    r = B.rotation_matrix([ax, ay, az])
    np.testing.assert_allclose(r, (rz @ ry @ rx).T, atol=1e-12)
    rb = B.rotation_matrix(np.array([[ax, ay, az], [0, 0, 0]]))
    np.testing.assert_allclose(rb[0], r, atol=1e-12)
    np.testing.assert_allclose(rb[1], np.eye(3), atol=1e-12)
    # A positive y angle turns the nose (+z) towards +x, i.e. towards image right.
    nose = np.array([[0.0, 0.0, 1.0]]) @ B.rotation_matrix([0, 0.3, 0])
    assert nose[0, 0] == pytest.approx(np.sin(0.3))


def test_projection_equals_done_when_formula():
    rng = np.random.default_rng(0)
    v = rng.uniform(-1, 1, (500, 3))
    uv = B.project(v)
    X, Y, Z = v.T
    u_ref = 1015 * X / (10 - Z) + 112
    v_ref = 224 - (1015 * Y / (10 - Z) + 112)
    assert np.max(np.abs(uv[:, 0] - u_ref)) < 1e-3
    assert np.max(np.abs(uv[:, 1] - v_ref)) < 1e-3


def test_reconstruct_matches_independent_formulas(standin):
    """Shape, pose, projection and lighting recomputed here from the original's formulas."""
    m = standin
    rng = np.random.default_rng(1)
    c = _coeff(rng)
    out = B.reconstruct(m, c)
    ms = m.meanshape.astype(np.float64).reshape(-1)
    shape = (ms + m.idBase.astype(np.float64) @ c[:80] + m.exBase.astype(np.float64) @ c[80:144]).reshape(-1, 3)
    shape -= ms.reshape(-1, 3).mean(0)
    np.testing.assert_allclose(out["shape"], shape, atol=1e-5)
    ax, ay, az = c[224:227]
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    cam = (rz @ ry @ rx @ shape.T).T + c[236:239]
    np.testing.assert_allclose(out["vertices_cam"], cam, atol=1e-5)
    X, Y, Z = cam.T
    uv = np.stack([1015 * X / (10 - Z) + 112, 224 - (1015 * Y / (10 - Z) + 112)], 1)
    assert np.max(np.abs(out["uv"] - uv)) < 1e-3
    np.testing.assert_allclose(out["landmarks68_uv"], uv[m.keypoints], atol=1e-3)
    tex = m.meantex.astype(np.float64) + (m.texBase.astype(np.float64) @ c[144:224]).reshape(-1, 3)
    np.testing.assert_allclose(out["texture"], tex, atol=1e-3)
    # Lighting: one vertex by hand, with its rotated normal from reconstruct.
    n = out["normals"][10]
    g = c[227:236].copy()
    g[0] += 0.8
    a0, a1, a2 = np.pi, 2 * np.pi / np.sqrt(3), 2 * np.pi / np.sqrt(8)
    c0, c1, c2 = 1 / np.sqrt(4 * np.pi), np.sqrt(3) / np.sqrt(4 * np.pi), 3 * np.sqrt(5) / np.sqrt(12 * np.pi)
    x, y, z = n
    Y9 = [a0 * c0, -a1 * c1 * y, a1 * c1 * z, -a1 * c1 * x, a2 * c2 * x * y, -a2 * c2 * y * z,
          a2 * c2 * 0.5 / np.sqrt(3) * (3 * z * z - 1), -a2 * c2 * x * z, a2 * c2 * 0.5 * (x * x - y * y)]
    np.testing.assert_allclose(out["colors"][10], tex[10] * (np.dot(Y9, g)), rtol=1e-6)


def test_reconstruct_batched_equals_single(standin):
    rng = np.random.default_rng(2)
    cs = np.stack([_coeff(rng, 257), _coeff(rng, 257)])
    both = B.reconstruct(standin, cs)
    for i in range(2):
        one = B.reconstruct(standin, cs[i])
        for k in ("vertices_cam", "colors", "uv", "landmarks68_uv"):
            np.testing.assert_allclose(both[k][i], one[k], rtol=1e-5, atol=1e-4)  # float32 bases


def test_sh_color_mono_and_rgb_layouts():
    rng = np.random.default_rng(4)
    n = rng.normal(size=(20, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    tex = rng.uniform(50, 250, (20, 3))
    # gamma = 0: ambient 0.8 * a0 * c0 on every channel.
    np.testing.assert_allclose(B.sh_color(tex, n, np.zeros(9)), tex * 0.8 * np.pi / np.sqrt(4 * np.pi))
    g9 = rng.normal(0, 0.2, 9)
    np.testing.assert_allclose(B.sh_color(tex, n, g9), B.sh_color(tex, n, np.tile(g9, 3)))
    g27 = np.zeros(27)
    g27[0] = 0.5  # red DC only
    out = B.sh_color(tex, n, g27)
    base = B.sh_color(tex, n, np.zeros(27))
    assert np.all(out[:, 0] > base[:, 0]) and np.allclose(out[:, 1:], base[:, 1:])


def test_vertex_normals_flat_and_padding():
    # Two counter-clockwise triangles (x right, y up) in the z = 0 plane: normal +z, the
    # original's cross(v0 - v1, v1 - v2).
    verts = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0.0]])
    m = B.BFM(meanshape=verts.astype(np.float32), idBase=np.zeros((12, 80), np.float32),
              exBase=np.zeros((12, 64), np.float32), meantex=np.zeros((4, 3), np.float32),
              texBase=np.zeros((12, 80), np.float32), tri=np.array([[0, 1, 2], [0, 2, 3]], np.int32),
              point_buf=np.array([[0, 1, -1], [0, -1, -1], [0, 1, -1], [1, -1, -1]], np.int32),
              keypoints=np.zeros(68, np.int64))
    np.testing.assert_allclose(B.vertex_normals(m, verts), np.tile([0, 0, 1.0], (4, 1)))


def _write_tiny_model(path, point_pad):
    """A 4-vertex model written in the original's MATLAB (1-based) convention."""
    n = 4
    scipy.io.savemat(str(path), {
        "meanshape": np.arange(3 * n, dtype=np.float32).reshape(1, -1),
        "meantex": np.full((1, 3 * n), 128, np.float32),
        "idBase": np.zeros((3 * n, 80), np.float32),
        "exBase": np.zeros((3 * n, 64), np.float32),
        "texBase": np.zeros((3 * n, 80), np.float32),
        "tri": np.array([[1, 2, 3], [1, 3, 4]], np.float32),
        "point_buf": np.array([[1, 2], [1, point_pad], [1, 2], [2, point_pad]], np.float32),
        "keypoints": np.tile(np.array([1, 2, 3, 4], np.float32), 17).reshape(1, 68),
    })


@pytest.mark.parametrize("pad", [0, 3])  # 0 or T + 1 (the real facemodel_info.mat) = no triangle
def test_load_bfm_converts_indices_once(tmp_path, pad):
    p = tmp_path / "m.mat"
    _write_tiny_model(p, pad)
    m = B.load_bfm(p)
    assert m.n_vertices == 4 and not m.is_standin
    np.testing.assert_array_equal(m.tri, [[0, 1, 2], [0, 2, 3]])
    np.testing.assert_array_equal(m.point_buf, [[0, 1], [0, -1], [0, 1], [1, -1]])
    np.testing.assert_array_equal(m.keypoints[:4], [0, 1, 2, 3])
    np.testing.assert_array_equal(m.meanshape[1], [3, 4, 5])


def test_load_bfm_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        B.load_bfm(tmp_path / "missing.mat")
    bad = tmp_path / "bad.mat"
    scipy.io.savemat(str(bad), {"meanshape": np.zeros((1, 9))})
    with pytest.raises(InputError, match=r"bad\.mat.*missing keys"):
        B.load_bfm(bad)
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"not a mat file at all")
    with pytest.raises(InputError, match="junk.mat"):
        B.load_bfm(junk)


def test_standin_warns_and_is_face_like(tmp_path, standin):
    p = tmp_path / "s.mat"
    B.write_standin_bfm(p, n_vertices=800, seed=0)
    with pytest.warns(B.StandinWarning, match="STAND-IN morphable model, not the Basel Face Model"):
        m = B.load_bfm(p)
    assert m.is_standin and m.idBase.shape == (3 * m.n_vertices, 80) and m.exBase.shape[1] == 64
    # Same seed, same model.
    p2 = tmp_path / "s2.mat"
    B.write_standin_bfm(p2, n_vertices=800, seed=0)
    with pytest.warns(B.StandinWarning):
        np.testing.assert_array_equal(B.load_bfm(p2).idBase, m.idBase)
    # Default camera, zero coefficients: the face fills the 224 crop like the BFM mean face.
    lm = B.reconstruct(standin, np.zeros(239))["landmarks68_uv"]
    uv = B.reconstruct(standin, np.zeros(239))["uv"]
    assert uv.min() > 0 and uv.max() < 224 and np.ptp(uv[:, 0]) > 140 and np.ptp(uv[:, 1]) > 170
    leye, reye = lm[36:42].mean(0), lm[42:48].mean(0)
    nose, lmouth, rmouth, chin = lm[30], lm[48], lm[54], lm[8]
    assert leye[0] < nose[0] < reye[0] and lmouth[0] < nose[0] < rmouth[0]
    assert leye[1] < nose[1] < lmouth[1] < chin[1]  # image rows grow downwards
    assert abs(leye[1] - reye[1]) < 2 and 50 < reye[0] - leye[0] < 80
    # The nose tip is the vertex nearest to the camera among the keypoints.
    assert np.argmax(B.keypoints3d(standin)[:, 2]) == 30


def test_standin_five_points_match_bfm_mean_face(standin, bfm_index):
    """The alignment points from the stand-in keypoints are near those of similarity_Lm3D_all.mat."""
    lm = scipy.io.loadmat(str(bfm_index / "similarity_Lm3D_all.mat"))["lm"]
    kp = B.keypoints3d(standin)

    def five(p):
        return np.stack([p[36:42:3].mean(0), p[42:48:3].mean(0), p[30], p[48], p[54]])

    assert np.max(np.abs(five(kp)[:, :2] - five(lm)[:, :2])) < 0.04
    assert np.max(np.abs(five(kp)[:, 2] - five(lm)[:, 2])) < 0.15


def _no_user_bfm(base):
    return not any((b / rel / B.MODEL_NAME).is_file() for b in (base, B.Path(B.__file__).resolve().parents[1])
                   for rel in (B.Path("faceReconstruction") / "BFM", B.Path("BFM")))


def test_find_bfm_order_user_bfm_then_shipped_ict_never_standin(tmp_path, monkeypatch):
    """--bfm, then the user's BFM_model_front.mat, then the shipped ICT model; no stand-in."""
    with pytest.raises(InputError, match="not found"):
        B.find_bfm(tmp_path / "nope.mat")
    monkeypatch.chdir(tmp_path)
    if not _no_user_bfm(tmp_path):
        pytest.skip("a BFM_model_front.mat is installed in the project; find_bfm would return it")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no StandinWarning, nothing generated
        path, kind = B.find_bfm(None)
    assert path == B.SHIPPED_MODEL and kind == "ict"
    # A user's BFM in ./BFM wins over the shipped model.
    (tmp_path / "BFM").mkdir()
    _write_tiny_model(tmp_path / "BFM" / B.MODEL_NAME, 0)
    path, kind = B.find_bfm(None)
    assert path.resolve() == (tmp_path / "BFM" / B.MODEL_NAME).resolve() and kind == "bfm"
    # An explicit --bfm wins over both; its kind is read from the file.
    standin = B.write_standin_bfm(tmp_path / "s.mat", n_vertices=200)
    assert B.find_bfm(standin) == (standin, "standin")
    assert B.find_bfm(B.SHIPPED_MODEL) == (B.SHIPPED_MODEL, "ict")


def test_find_bfm_without_any_model_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if not _no_user_bfm(tmp_path):
        pytest.skip("a BFM_model_front.mat is installed in the project")
    monkeypatch.setattr(B, "SHIPPED_MODEL", tmp_path / "gone" / "ict_face_model.npz")
    with pytest.raises(InputError, match="ict_face_model.npz is missing.*--bfm"):
        B.find_bfm(None)


def test_model_kind_label_and_fingerprint(tmp_path):
    tiny = tmp_path / "m.mat"
    _write_tiny_model(tiny, 0)
    m = B.load_bfm(tiny)
    assert m.kind == "bfm" and m.label.startswith("Basel Face Model") and m.has_texture is False
    fp = B.model_fingerprint(m)
    assert len(fp) == 12 and fp == B.model_fingerprint(B.load_bfm(tiny))
    moved = B.load_bfm(tiny)
    moved.meanshape = moved.meanshape + 1e-3
    assert B.model_fingerprint(moved) != fp


def test_vertex_normals_equal_the_original_gather(standin):
    """Sum over point_buf of the original's per-face normals with an appended zero face."""
    rng = np.random.default_rng(5)
    p = B.split_coeff(_coeff(rng))
    s = B.face_shape(standin, p["id"], p["ex"])
    t = standin.tri
    fn = np.cross(s[t[:, 0]] - s[t[:, 1]], s[t[:, 1]] - s[t[:, 2]])
    fn = np.concatenate([fn, np.zeros((1, 3))])
    vn = fn[np.where(standin.point_buf < 0, len(t), standin.point_buf)].sum(1)
    vn /= np.linalg.norm(vn, axis=1, keepdims=True)
    np.testing.assert_allclose(B.vertex_normals(standin, s), vn, atol=1e-12)
    # Counter-clockwise (front-facing) triangles: normals point towards the camera (+z).
    assert np.mean(B.vertex_normals(standin, B.face_shape(standin, np.zeros(80), np.zeros(64)))[:, 2] > 0) > 0.95


@pytest.mark.slow
def test_standin_on_real_bfm_topology(tmp_path, bfm_index):
    p = tmp_path / "topo.mat"
    B.write_standin_bfm(p, topology=bfm_index / "facemodel_info.mat")
    with pytest.warns(B.StandinWarning):
        m = B.load_bfm(p)
    info = scipy.io.loadmat(str(bfm_index / "facemodel_info.mat"))
    assert m.n_vertices == 35709 and m.tri.shape == (70789, 3)
    np.testing.assert_array_equal(m.tri, info["tri"].astype(int) - 1)
    np.testing.assert_array_equal(m.keypoints, info["keypoints"].ravel().astype(int) - 1)
    xy = m.meanshape[:, :2].astype(np.float64)
    a, b = xy[m.tri[:, 1]] - xy[m.tri[:, 0]], xy[m.tri[:, 2]] - xy[m.tri[:, 0]]
    flipped = np.mean(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0] < 0)
    assert flipped < 1e-3  # a proper (almost fold-free) face surface
    lm = B.reconstruct(m, np.zeros(239))["landmarks68_uv"]
    assert lm[36:42, 0].mean() < lm[30, 0] < lm[42:48, 0].mean() and lm[30, 1] < lm[51, 1] < lm[8, 1]
