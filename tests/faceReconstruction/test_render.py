"""faceReconstruction.render: golden tests on tiny scenes (coverage, pixel-centre convention,
perspective-correct colour, depth order, near-plane culling) and consistency with bfm.project."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from faceReconstruction import bfm as B
from faceReconstruction.render import rasterize, render_rgba

F, C, D = 1015.0, 112.0, 10.0


def unproject(u, v, depth):
    """Render-frame point whose projection is pixel coordinate (u, v), at view depth D - Z."""
    u, v, depth = np.broadcast_arrays(np.asarray(u, float), np.asarray(v, float), np.asarray(depth, float))
    return np.stack([(u - C) * depth / F, (C - v) * depth / F, D - depth], axis=-1)


def test_rectangle_coverage_is_exact_and_gap_free():
    # Two triangles sharing a diagonal, covering u in [50, 60], v in [70, 90] at depth 10.
    corners = unproject([50, 60, 60, 50], [70, 70, 90, 90], 10.0)
    img = render_rgba(corners, [[0, 1, 2], [0, 2, 3]], np.full((4, 3), 200.0))
    expected = np.zeros((224, 224), bool)
    expected[70:90, 50:60] = True  # pixel centres 50.5 .. 59.5, 70.5 .. 89.5
    np.testing.assert_array_equal(img[..., 3] == 255, expected)
    assert set(np.unique(img[..., 3])) == {0, 255}
    assert np.all(img[expected][:, :3] == 200) and np.all(img[~expected] == 0)  # black, transparent background


def test_pixel_centre_convention_matches_project():
    # A 0.8 px triangle around (100.5, 50.5): covers exactly pixel column 100, row 50.
    verts = unproject([100.2, 101.0, 100.2], [50.2, 50.2, 51.0], 9.7)
    np.testing.assert_allclose(B.project(verts), [[100.2, 50.2], [101.0, 50.2], [100.2, 51.0]], atol=1e-9)
    img = render_rgba(verts, [[0, 1, 2]], np.full((3, 3), 255.0))
    assert list(zip(*np.nonzero(img[..., 3]))) == [(50, 100)]
    # The same triangle shifted left by 0.4 px no longer contains a pixel centre.
    verts2 = unproject([99.8, 100.6, 99.8], [50.2, 50.2, 51.0], 9.7)
    assert render_rgba(verts2, [[0, 1, 2]], np.full((3, 3), 255.0))[..., 3].max() == 0


def test_perspective_correct_colour_interpolation():
    # A triangle strongly tilted in depth; the expected colour is the barycentric mix at the
    # 3-D point where the pixel's ray meets the triangle (not the screen-space mix).
    verts = np.stack([unproject(40, 40, 6.0), unproject(190, 60, 30.0), unproject(60, 190, 12.0)])
    colors = np.array([[255.0, 0, 0], [0, 255.0, 0], [0, 0, 255.0]])
    img = render_rgba(verts, [[0, 1, 2]], colors)
    checked = 0
    for row, col in [(60, 60), (80, 100), (120, 70), (70, 140)]:
        ray = unproject(col + 0.5, row + 0.5, 1.0) - np.array([0, 0, D])  # direction from the eye
        eye = np.array([0, 0, D])
        # Solve eye + t * ray = v0 + b1 (v1 - v0) + b2 (v2 - v0).
        a = np.stack([ray, verts[0] - verts[1], verts[0] - verts[2]], 1)
        t, b1, b2 = np.linalg.solve(a, verts[0] - eye)
        bary = np.array([1 - b1 - b2, b1, b2])
        assert np.all(bary > 0.02), "test pixel must be inside the triangle"
        expected = bary @ colors
        np.testing.assert_allclose(img[row, col, :3], expected, atol=0.51)
        assert img[row, col, 3] == 255
        checked += 1
        # Screen-space (uncorrected) interpolation would differ visibly here.
        uv = B.project(verts)
        m = np.stack([uv[1] - uv[0], uv[2] - uv[0]], 1)
        s1, s2 = np.linalg.solve(m, np.array([col + 0.5, row + 0.5]) - uv[0])
        affine = np.array([1 - s1 - s2, s1, s2]) @ colors
        assert np.max(np.abs(affine - expected)) > 5
    assert checked == 4


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_depth_order_nearest_wins(order):
    near = unproject([30, 150, 30], [30, 30, 150], 9.0)
    far = unproject([40, 160, 40], [40, 40, 160], 11.0)
    verts = np.concatenate([near, far])
    tris = np.array([[0, 1, 2], [3, 4, 5]])[list(order)]
    colors = np.array([[255.0, 0, 0]] * 3 + [[0, 255.0, 0]] * 3)
    img = render_rgba(verts, tris, colors)
    assert tuple(img[60, 60]) == (255, 0, 0, 255)      # both cover it: the nearer (red) wins
    assert tuple(img[150, 45]) == (0, 255, 0, 255)     # only the far one
    depth, tri_id, _ = rasterize(verts, tris)
    assert depth[60, 60] == pytest.approx(9.0) and depth[150, 45] == pytest.approx(11.0)
    assert np.isinf(depth[5, 5]) and tri_id[5, 5] == -1


def test_triangles_behind_camera_or_near_plane_are_culled():
    tri = [[0, 1, 2]]
    colors = np.full((3, 3), 255.0)
    front = unproject([60, 160, 60], [60, 60, 160], 5.0)
    assert render_rgba(front, tri, colors)[..., 3].sum() > 0
    behind = front.copy()
    behind[:, 2] = D + 5.0  # all behind the eye: would project mirrored without the test
    assert render_rgba(behind, tri, colors)[..., 3].max() == 0
    straddling = front.copy()
    straddling[0, 2] = D + 1.0  # one vertex behind the camera
    assert render_rgba(straddling, tri, colors)[..., 3].max() == 0
    too_near = front.copy()
    too_near[1, 2] = D - 0.005  # nearer than the 0.01 near plane
    assert render_rgba(too_near, tri, colors)[..., 3].max() == 0
    too_far = unproject([60, 160, 60], [60, 60, 160], 60.0)  # beyond the far plane (50)
    assert render_rgba(too_far, tri, colors)[..., 3].max() == 0


def test_colours_clipped_and_rounded():
    verts = unproject([20, 200, 20], [20, 20, 200], 10.0)
    img = render_rgba(verts, [[0, 1, 2]], np.array([[300.0, -20.0, 127.6]] * 3))
    assert tuple(img[30, 30]) == (255, 0, 128, 255)


def test_bad_inputs():
    with pytest.raises(ValueError, match="tri"):
        render_rgba(np.zeros((3, 3)), [[0, 1, 3]], np.zeros((3, 3)))
    with pytest.raises(ValueError, match="colors"):
        render_rgba(np.zeros((3, 3)), [[0, 1, 2]], np.zeros((2, 3)))


def test_standin_face_render_keypoints_land_on_face(tmp_path):
    p = tmp_path / "m.mat"
    B.write_standin_bfm(p, n_vertices=1500)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", B.StandinWarning)
        m = B.load_bfm(p)
    c = np.zeros(239)
    c[224:227] = [0.05, 0.3, 0.0]
    c[227] = 0.4
    out = B.reconstruct(m, c)
    img = render_rgba(out["vertices_cam"], m.tri, out["colors"])
    alpha = img[..., 3] > 0
    cols, rows = np.floor(out["landmarks68_uv"]).astype(int).T
    # Keypoints inside the face outline (not the jaw line, which may be the silhouette).
    assert alpha[rows[17:], cols[17:]].all()
    # Coverage equals the projected silhouette area within a pixel band.
    assert 0.15 * 224 * 224 < alpha.sum() < 0.6 * 224 * 224
    assert img[alpha][:, :3].mean() > 60


def test_numba_without_writable_cache_falls_back(monkeypatch):
    import numba

    import faceReconstruction.render as R

    real, calls = numba.njit, []

    def njit(**kw):
        calls.append(kw["cache"])
        if kw["cache"]:
            raise RuntimeError("cannot cache function 'f': no locator available for file")
        return real(**kw)

    monkeypatch.setattr(R.numba, "njit", njit)

    def f(x):
        return x + 1

    assert R._njit(f)(1) == 2 and calls == [True, False]
