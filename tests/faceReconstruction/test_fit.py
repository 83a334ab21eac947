"""Fitting the morphable model without the R-Net (faceReconstruction/fit.py).

All on a small STAND-IN model (generated here in the BFM_model_front.mat format; the Basel
Face Model is licensed and not available to tests): known coefficients are rendered, their
68 projected keypoints (or the crop colours) are fitted, and the fit is compared with the truth.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from faceReconstruction import bfm as B
from faceReconstruction import fit as F
from faceReconstruction.align import five_from_68
from faceReconstruction.render import render_rgba


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = B.write_standin_bfm(tmp_path_factory.mktemp("bfm") / "BFM_model_front.mat", n_vertices=1500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", B.StandinWarning)
        return B.load_bfm(path)


def _clip(n_frames, seed, sd=0.5, n=239):
    """Known coefficients: identity shared by the clip, expression/pose per frame.

    Identity and expression are drawn at half the model's standard deviation, yaw up to 30
    degrees, pitch 15, roll 10, translation up to 0.3 units sideways and 1 unit in depth.
    """
    rng = np.random.default_rng(seed)
    c = np.zeros((n_frames, n))
    c[:, :80] = rng.standard_normal(80) * sd
    c[:, 80:144] = rng.standard_normal((n_frames, 64)) * sd
    c[:, 144:224] = rng.standard_normal((n_frames, 80)) * sd
    c[:, 224:227] = rng.uniform(-1, 1, (n_frames, 3)) * np.radians([15, 30, 10])
    g_end = 236 if n == 239 else 254
    c[:, 227:g_end] = rng.standard_normal((n_frames, g_end - 227)) * 0.1
    c[:, g_end:] = rng.uniform(-1, 1, (n_frames, 3)) * [0.3, 0.3, 1.0]
    return c


def _alpha(model, coeff):
    rec = B.reconstruct(model, coeff)
    return render_rgba(rec["vertices_cam"], model.tri, rec["colors"])


def _with_geometry(coeff, geom, i):
    c = coeff[i].copy()
    c[:80], c[80:144], c[224:227], c[-3:] = geom["id"][i], geom["ex"][i], geom["angles"][i], geom["trans"][i]
    return c


def test_angles_from_matrix_inverts_rotation_matrix():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.uniform(-1.2, 1.2, 3)
        np.testing.assert_allclose(F.angles_from_matrix(B.rotation_matrix(a).T), a, atol=1e-12)


def test_landmark_model_matches_reconstruct(model):
    """The fit's own keypoint model and projection agree with bfm.reconstruct."""
    coeff = _clip(1, 3)[0]
    rec = B.reconstruct(model, coeff)
    p = B.split_coeff(coeff)
    pose = np.concatenate([p["angles"], p["trans"]])
    lmk68 = F._Landmarks(model, 68)
    np.testing.assert_allclose(F._project(lmk68, p["id"], p["ex"], pose), rec["landmarks68_uv"], atol=1e-4)
    lmk5 = F._Landmarks(model, 5)
    # Five points: eye centres are means of the 3D eye corners, projected afterwards.
    expected = B.project(five_from_68(rec["vertices_cam"][model.keypoints]))
    np.testing.assert_allclose(F._project(lmk5, p["id"], p["ex"], pose), expected, atol=1e-4)


def test_jacobian_matches_finite_differences(model):
    coeff = _clip(1, 4)[0]
    p = B.split_coeff(coeff)
    lmk = F._Landmarks(model, 68)
    obs = B.reconstruct(model, _clip(1, 5)[0])["landmarks68_uv"]
    w = F._weights(68, F.FitConfig())
    x = np.concatenate([p["id"], p["ex"], p["angles"], p["trans"]])

    def res(x):
        return F._residual_jac(lmk, obs, w, x[:80], x[80:144], x[144:147], x[147:], True)[0]

    _, jac = F._residual_jac(lmk, obs, w, x[:80], x[80:144], x[144:147], x[147:], True)
    num = np.empty_like(jac)
    for k in range(len(x)):
        d = np.zeros_like(x)
        d[k] = 1e-6
        num[:, k] = (res(x + d) - res(x - d)) / 2e-6
    np.testing.assert_allclose(jac, num, atol=1e-3 * np.abs(num).max())


@pytest.mark.parametrize("shared_id", [True, False])
def test_round_trip_68_keypoints(model, shared_id):
    """Render known coefficients -> 68 projected keypoints -> fit: angles within 2 degrees,
    translation within 2% of the camera distance, re-rendered silhouette IoU >= 0.95."""
    coeff = _clip(4, seed=11)
    lms = B.reconstruct(model, coeff)["landmarks68_uv"]
    geom = F.fit_geometry(model, lms, shared_id=shared_id)
    if shared_id:
        assert np.all(geom["id"] == geom["id"][0])
    assert np.degrees(np.abs(geom["angles"] - coeff[:, 224:227])).max() < 2.0
    dist = F.bfm_mod.CAM_DIST - coeff[:, -1]
    assert (np.linalg.norm(geom["trans"] - coeff[:, -3:], axis=1) / dist).max() < 0.02
    # Sideways position is what the landmarks see directly: much tighter than depth.
    assert np.abs(geom["trans"][:, :2] - coeff[:, -3:-1]).max() < 0.01
    assert geom["rms"].max() < 1.0
    for i in range(len(coeff)):
        a = _alpha(model, coeff[i])[..., 3] > 0
        b = _alpha(model, _with_geometry(coeff, geom, i))[..., 3] > 0
        assert (a & b).sum() / (a | b).sum() >= 0.95


def test_round_trip_five_points_gives_the_pose(model):
    """Five points only: the pose is still recovered (shape stays near the mean)."""
    coeff = _clip(3, seed=12, sd=0.3)
    lms = [five_from_68(x) for x in B.reconstruct(model, coeff)["landmarks68_uv"]]
    geom = F.fit_geometry(model, lms)
    assert np.degrees(np.abs(geom["angles"] - coeff[:, 224:227])).max() < 5.0
    assert np.abs(geom["trans"][:, :2] - coeff[:, -3:-1]).max() < 0.03


def test_mixed_landmark_counts_in_one_clip(model):
    coeff = _clip(3, seed=13)
    lms68 = B.reconstruct(model, coeff)["landmarks68_uv"]
    lms = [lms68[0], five_from_68(lms68[1]), lms68[2]]
    geom = F.fit_geometry(model, lms)
    assert geom["id"].shape == (3, 80) and np.all(np.isfinite(geom["ex"]))
    assert np.degrees(np.abs(geom["angles"] - coeff[:, 224:227])).max() < 5.0


def test_init_pose_from_far_turned_heads(model):
    """The weak-perspective start handles 40-degree yaw without any prior pose."""
    coeff = _clip(1, seed=14, sd=0.0)
    coeff[0, 224:227] = np.radians([10.0, 40.0, -5.0])
    coeff[0, -3:] = [0.2, -0.1, 0.5]
    lms = B.reconstruct(model, coeff)["landmarks68_uv"]
    angles, trans = F.init_pose(B.keypoints3d(model), lms[0])
    assert np.degrees(np.abs(angles - coeff[0, 224:227])).max() < 8
    geom = F.fit_geometry(model, lms)
    assert np.degrees(np.abs(geom["angles"][0] - coeff[0, 224:227])).max() < 1.0


@pytest.mark.parametrize("n", [239, 257])
def test_color_fit_reproduces_the_render(model, n):
    """Texture and SH from the colours of a render with known geometry: the re-render matches."""
    coeff = _clip(1, seed=21, n=n)[0]
    coeff[224:227] = np.radians([5.0, 20.0, -3.0])
    img = _alpha(model, coeff)
    p = B.split_coeff(coeff)
    tex, gamma, rms = F.fit_color(model, img[..., :3], p["id"], p["ex"], p["angles"], p["trans"],
                                  n_sh=9 if n == 239 else 27)
    assert gamma.shape == (9 if n == 239 else 27,) and tex.shape == (80,)
    fitted = coeff.copy()
    fitted[144:224] = tex
    fitted[227:227 + len(gamma)] = gamma
    img2 = _alpha(model, fitted)
    m = img[..., 3] > 0
    mse = np.mean((img[m, :3].astype(float) - img2[m, :3]) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) > 33
    assert rms < 6
    # A different light must not fit as well: the lighting is actually estimated.
    wrong = fitted.copy()
    wrong[228:236] = 0.0
    img3 = _alpha(model, wrong)
    assert np.mean((img[m, :3].astype(float) - img3[m, :3]) ** 2) > 4 * mse


def test_visible_vertices_hides_the_far_side(model):
    coeff = _clip(1, seed=22, sd=0.0)[0]
    coeff[224:227] = [0.0, np.radians(60), 0.0]
    coeff[-3:] = 0.0
    rec = B.reconstruct(model, coeff)
    vis = F.visible_vertices(rec["vertices_cam"], rec["normals"], model.tri)
    x = rec["shape"][:, 0]  # model x before rotation: the two cheeks
    # Turned by +60 degrees about y, one cheek faces the camera and the other is hidden.
    side = np.sign(np.mean(rec["vertices_cam"][x > 0.4, 2]) - np.mean(rec["vertices_cam"][x < -0.4, 2]))
    near, far = (x > 0.4, x < -0.4) if side > 0 else (x < -0.4, x > 0.4)
    assert vis[near].mean() > 0.8
    assert vis[far].mean() < 0.2


def test_smooth_coeffs():
    rng = np.random.default_rng(0)
    clean = np.linspace(0, 1, 50)[:, None] * np.ones((1, 3))
    noisy = clean + rng.normal(0, 0.05, clean.shape)
    sm = F.smooth_coeffs(noisy, 2.0)
    assert np.abs(sm - clean)[5:-5].std() < 0.5 * np.abs(noisy - clean).std()
    np.testing.assert_array_equal(F.smooth_coeffs(noisy, 0), noisy)


def test_fit_rejects_bad_landmarks(model):
    with pytest.raises(ValueError, match="68 or 5"):
        F.fit_geometry(model, [np.zeros((7, 2))])
