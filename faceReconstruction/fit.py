"""Face coefficients without the R-Net: model fitting to landmarks and colours.

The original (rwenqi/3Dfacedeblurring `demo.py`) regresses the 239 coefficients with the
authors' R-Net (Deep3DFaceReconstruction), whose weights are not always available. This module
estimates the same coefficients by optimisation, in the same camera and crop, so the
deblurring network sees priors of the same kind:

1. Geometry (`fit_geometry`): 68 (or 5) landmarks in the aligned 224x224 crop -> identity (80,
   optionally one vector shared by the clip), expression (64), angles (3) and translation (3),
   by regularised Gauss-Newton / Levenberg-Marquardt on the landmark reprojection error of the
   model keypoints under the original perspective camera (focal 1015, centre 112, camera at
   z = 10); a clip-shared identity is solved jointly with every frame (Schur complement). Priors: the bases are scaled by their standard deviations, so a Gaussian prior is
   `lambda * |coeff|^2` with lambda the landmark noise variance in px^2 (MAP estimate).
2. Colour (`fit_color`): texture (80) and SH lighting (9 mono, or 27 RGB) from the crop colours
   at the visible vertices: alternating linear least squares (albedo is linear given the
   light, the light is linear given the albedo) to start, then joint Levenberg-Marquardt on
   the bilinear model, with a robust second pass dropping outliers.
3. Temporal smoothing (`smooth_coeffs`): a Gaussian over frames, per coefficient.

Coordinates: landmarks are given in the projection coordinates of `bfm.project`, i.e.
continuous crop coordinates (u right, v down, image edges at 0 and 224; a crop pixel index
plus 0.5; see `align.frame_to_crop`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d

from faceReconstruction import bfm as bfm_mod
from faceReconstruction.align import five_from_68
from faceReconstruction.render import rasterize


@dataclass
class FitConfig:
    """Weights of the fit. Landmark residuals are in crop pixels; priors in px^2 per unit^2.

    lambda_id / lambda_ex: Gaussian prior weights on identity / expression coefficients (the
    landmark noise variance in px^2 under a unit-variance prior). contour_weight: weight of the
    17 jaw-line landmarks, whose image position slides along the silhouette with the pose
    while the model's keypoints are fixed vertices. lambda_tex: prior weight on texture
    coefficients in (0-255 colour units)^2; lambda_sh: ridge on the non-ambient SH terms.
    iters: Levenberg-Marquardt iterations per solve (twice that for the joint clip solve).
    """

    lambda_id: float = 4.0
    lambda_ex: float = 4.0
    contour_weight: float = 0.5
    lambda_tex: float = 100.0
    lambda_sh: float = 1.0
    iters: int = 15


def _selection(n_points: int) -> np.ndarray:
    """(K, 68) matrix mapping the 68 keypoints onto the K observed landmarks (68 or 5)."""
    if n_points == 68:
        return np.eye(68)
    if n_points == 5:
        return five_from_68(np.eye(68))
    raise ValueError(f"fitting needs 68 or 5 landmarks per frame, got {n_points}")


class _Landmarks:
    """The observed landmarks as linear functions of the coefficients: P = m + A id + E ex."""

    def __init__(self, bfm, n_points):
        sel = _selection(n_points)
        kp = np.asarray(bfm.keypoints).reshape(-1)
        rows = (3 * kp[:, None] + np.arange(3)[None]).reshape(-1)
        id_kp = np.asarray(bfm.idBase[rows], np.float64).reshape(68, 3, -1)
        ex_kp = np.asarray(bfm.exBase[rows], np.float64).reshape(68, 3, -1)
        self.mean = sel @ bfm_mod.keypoints3d(bfm)
        self.id_base = np.einsum("kj,jcn->kcn", sel, id_kp)
        self.ex_base = np.einsum("kj,jcn->kcn", sel, ex_kp)
        self.n = n_points

    def points(self, id_c, ex_c):
        return self.mean + self.id_base @ id_c + self.ex_base @ ex_c


def _weights(n_points, cfg):
    w = np.ones(n_points)
    if n_points == 68:
        w[:17] = cfg.contour_weight
    return w


def angles_from_matrix(r_col) -> np.ndarray:
    """Euler angles (x, y, z) of R = Rz Ry Rx (column-vector rotation) -> (3,) radians.

    Inverse of `bfm.rotation_matrix(a).T` for |y| < pi/2.
    """
    r = np.asarray(r_col, np.float64)
    ay = -np.arcsin(np.clip(r[2, 0], -1.0, 1.0))
    ax = np.arctan2(r[2, 1], r[2, 2])
    az = np.arctan2(r[1, 0], r[0, 0])
    return np.array([ax, ay, az])


def init_pose(pts3d, uv, weights=None):
    """Weak-perspective pose from 3D points (K, 3) and their projections (K, 2) -> (angles, trans).

    A 2x3 affine camera is fitted by least squares, its rows are made orthonormal (SVD) and the
    scale gives the depth (focal / scale); the translation puts the centroid where it is seen.
    """
    w = np.ones(len(uv)) if weights is None else np.asarray(weights, np.float64)
    xc = (w[:, None] * pts3d).sum(0) / w.sum()
    obs = np.stack([uv[:, 0] - bfm_mod.CENTER, bfm_mod.CENTER - uv[:, 1]], 1)
    oc = (w[:, None] * obs).sum(0) / w.sum()
    sw = np.sqrt(w)[:, None]
    m = np.linalg.lstsq(sw * (pts3d - xc), sw * (obs - oc), rcond=None)[0].T  # (2, 3)
    scale = (np.linalg.norm(m[0]) + np.linalg.norm(m[1])) / 2
    u, _, vt = np.linalg.svd(m, full_matrices=False)
    r12 = u @ vt
    r = np.vstack([r12, np.cross(r12[0], r12[1])])
    angles = angles_from_matrix(r)
    r = bfm_mod.rotation_matrix(angles).T
    depth = bfm_mod.FOCAL / max(scale, 1e-6)
    rc = r @ xc
    trans = np.array([oc[0] * depth / bfm_mod.FOCAL - rc[0], oc[1] * depth / bfm_mod.FOCAL - rc[1],
                      bfm_mod.CAM_DIST - depth - rc[2]])
    return angles, trans


def _rotation_and_derivs(angles):
    """R = Rz Ry Rx (the column-vector rotation, `rotation_matrix(a).T`) (3, 3) and its
    analytic derivatives dR/da_i (3, 3, 3). Written out on scalars: this runs once per frame
    and iteration, where numpy's per-call overhead on 3x3 arrays dominated the fit."""
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    drx = np.array([[0, 0, 0], [0, -sx, -cx], [0, cx, -sx]])
    dry = np.array([[-sy, 0, cy], [0, 0, 0], [-cy, 0, -sy]])
    drz = np.array([[-sz, -cz, 0], [cz, -sz, 0], [0, 0, 0]])
    rzy = rz @ ry
    return rzy @ rx, np.stack([rzy @ drx, rz @ dry @ rx, drz @ ry @ rx])


def _project_jac(q):
    """Projection of camera points q (K, 3) -> uv (K, 2) and d(uv)/dq (K, 2, 3)."""
    f = bfm_mod.FOCAL
    w = bfm_mod.CAM_DIST - q[:, 2]
    uv = np.stack([f * q[:, 0] / w + bfm_mod.CENTER, bfm_mod.CENTER - f * q[:, 1] / w], 1)
    j = np.zeros((len(q), 2, 3))
    j[:, 0, 0] = f / w
    j[:, 0, 2] = f * q[:, 0] / w**2
    j[:, 1, 1] = -f / w
    j[:, 1, 2] = -f * q[:, 1] / w**2
    return uv, j


def _residual_jac(lmk, uv_obs, w, id_c, ex_c, angles, trans, with_id, with_rest=True):
    """Weighted reprojection residuals (2K,) and the Jacobian w.r.t. [id?, ex, angles, trans]."""
    p = lmk.points(id_c, ex_c)
    r_col, dr = _rotation_and_derivs(np.asarray(angles, np.float64))
    q = p @ r_col.T + trans
    uv, jq = _project_jac(q)
    sw = np.sqrt(w)[:, None]
    res = (sw * (uv - uv_obs)).reshape(-1)
    blocks = []
    if with_id:
        blocks.append(np.einsum("kab,bc,kcn->kan", jq, r_col, lmk.id_base))
    if with_rest:
        blocks.append(np.einsum("kab,bc,kcn->kan", jq, r_col, lmk.ex_base))
        blocks.append(np.einsum("kab,ibc,kc->kai", jq, dr, p))
        blocks.append(jq)
    jac = np.concatenate(blocks, axis=2) * sw[:, :, None]
    return res, jac.reshape(len(p) * 2, -1)


def _active(x, g, bounds):
    """Variables held at a bound this step: at the bound with the descent direction outward."""
    if bounds is None:
        return None
    lo, hi = bounds
    act = ((x <= lo + 1e-12) & (g > 0)) | ((x >= hi - 1e-12) & (g < 0))
    return act if act.any() else None


def _hold(h, g, act):
    """Normal equations with the active variables frozen (unit rows, zero gradient)."""
    if act is None:
        return h, g
    h, g = h.copy(), g.copy()
    h[act, :] = 0.0
    h[:, act] = 0.0
    h[act, act] = 1.0
    g[act] = 0.0
    return h, g


def _project_bounds(x, bounds):
    return x if bounds is None else np.clip(x, bounds[0], bounds[1])


def _lm_solve(cost_fn, x0, prior, iters, rel_tol=1e-7, bounds=None):
    """Levenberg-Marquardt on |r(x)|^2 + sum(prior * x^2); cost_fn(x) -> (r, J).

    bounds: None or (lo, hi) arrays like x (-inf / inf where free): a projected LM, variables
    at a bound whose descent direction points outward are held for the step (active set).
    Stops after `iters` accepted steps, when no damping gives a lower cost, or when a step
    lowers the cost by less than rel_tol (relative).
    """
    x = _project_bounds(x0.copy(), bounds)
    r, j = cost_fn(x)
    cost = r @ r + prior @ (x * x)
    mu = 1e-3
    for _ in range(iters):
        h = j.T @ j + np.diag(prior)
        g = j.T @ r + prior * x
        h, g = _hold(h, g, _active(x, g, bounds))
        gain = 0.0
        for _ in range(8):
            step = np.linalg.solve(h + mu * np.diag(np.diag(h) + 1e-9), -g)
            xn = _project_bounds(x + step, bounds)
            rn, jn = cost_fn(xn)
            cn = rn @ rn + prior @ (xn * xn)
            if np.isfinite(cn) and cn < cost:
                gain = (cost - cn) / max(cost, 1e-300)
                x, r, j, cost = xn, rn, jn, cn
                mu = max(mu / 3, 1e-7)
                break
            mu *= 4
        if gain < rel_tol:
            break
    return x


def fit_geometry(bfm, landmarks, shared_id=True, cfg: FitConfig | None = None):
    """Fit identity, expression and pose to the landmarks of a clip.

    landmarks: per frame a (K, 2) array with K = 68 (iBUG / dlib order) or 5 (left eye, right
    eye, nose, left and right mouth corner), in projection coordinates of the aligned crop (see
    module doc); a (T, K, 2) array or a list (frames may differ in K).
    Returns dict id (T, 80), ex (T, 64), angles (T, 3) radians, trans (T, 3) model units and
    rms (T,) landmark reprojection error in px. With shared_id, every row of id is equal.
    """
    cfg = cfg or FitConfig()
    lms = [np.asarray(x, np.float64) for x in landmarks]
    if not lms or any(x.ndim != 2 or x.shape[1] != 2 for x in lms):
        raise ValueError("fit_geometry: expected (K, 2) landmarks for every frame of a non-empty clip")
    models = {k: _Landmarks(bfm, k) for k in {len(x) for x in lms}}
    frames = [(models[len(x)], x, _weights(len(x), cfg)) for x in lms]
    n_frames = len(frames)
    n_id, n_ex = bfm.idBase.shape[1], bfm.exBase.shape[1]
    ex_bounds = expression_bounds(bfm)
    ids = np.zeros((n_frames, n_id))
    exs = np.zeros((n_frames, n_ex))
    poses = np.zeros((n_frames, 6))
    for i, (lmk, obs, w) in enumerate(frames):
        poses[i] = np.concatenate(init_pose(lmk.mean, obs, w))
        # Pose alone first: a good start for the shape terms and no shape drift from a bad pose.
        poses[i] = _lm_solve(lambda x, lmk=lmk, obs=obs, w=w: _pose_only(lmk, obs, w, ids[0], exs[0], x),
                             poses[i], np.zeros(6), cfg.iters)

    if shared_id:
        ids[:], exs[:], poses[:] = _fit_clip(frames, ids[0], exs, poses, cfg, ex_bounds)
    else:
        prior_all = np.concatenate([np.full(n_id, cfg.lambda_id), np.full(n_ex, cfg.lambda_ex), np.zeros(6)])
        for i, (lmk, obs, w) in enumerate(frames):
            x0 = np.concatenate([ids[i], exs[i], poses[i]])
            x = _lm_solve(lambda x, lmk=lmk, obs=obs, w=w: _residual_jac(
                lmk, obs, w, x[:n_id], x[n_id:n_id + n_ex], x[n_id + n_ex:n_id + n_ex + 3], x[n_id + n_ex + 3:], True),
                x0, prior_all, cfg.iters, bounds=None if ex_bounds is None else (
                    np.concatenate([np.full(n_id, -np.inf), ex_bounds[0], np.full(6, -np.inf)]),
                    np.concatenate([np.full(n_id, np.inf), ex_bounds[1], np.full(6, np.inf)])))
            ids[i], exs[i], poses[i] = x[:n_id], x[n_id:n_id + n_ex], x[n_id + n_ex:]
    rms = np.array([np.sqrt(np.mean(((_project(lmk, ids[i], exs[i], poses[i]) - obs) ** 2).sum(1)))
                    for i, (lmk, obs, _) in enumerate(frames)])
    return dict(id=ids, ex=exs, angles=poses[:, :3].copy(), trans=poses[:, 3:].copy(), rms=rms)


def _pose_only(lmk, uv_obs, w, id_c, ex_c, x):
    res, jac = _residual_jac(lmk, uv_obs, w, id_c, ex_c, x[:3], x[3:], False)
    return res, jac[:, -6:]


def _project(lmk, id_c, ex_c, pose):
    p = lmk.points(id_c, ex_c)
    q = p @ bfm_mod.rotation_matrix(pose[:3]) + pose[3:]
    return _project_jac(q)[0]


def expression_bounds(bfm):
    """(lo (64,), hi (64,)) valid expression coefficients, or None when unbounded (the BFM's
    PCA coefficients). Blendshape models store `exBounds` (64, 2), e.g. [0, 1] for ICT's."""
    b = bfm.extra.get("exBounds")
    if b is None:
        return None
    b = np.asarray(b, np.float64).reshape(-1, 2)
    return b[:, 0].copy(), b[:, 1].copy()


def _fit_clip(frames, id0, exs0, poses0, cfg, ex_bounds=None):
    """Joint Levenberg-Marquardt over one shared identity and per-frame expression + pose.

    The normal equations have an arrow structure (identity coupled to every frame, frames not
    to each other); each step eliminates the per-frame blocks (Schur complement), so the cost
    is linear in the number of frames. ex_bounds: (lo, hi) expression bounds, kept by
    projection with the active set held per frame (see `_lm_solve`).
    """
    n_frames = len(frames)
    n_id, n_ex = len(id0), exs0.shape[1]
    prior_q = np.concatenate([np.full(n_ex, cfg.lambda_ex), np.zeros(6)])
    prior_i = np.full(n_id, cfg.lambda_id)
    idc = id0.copy()
    qs = np.concatenate([exs0, poses0], axis=1)
    q_bounds = None
    if ex_bounds is not None:
        q_bounds = (np.concatenate([ex_bounds[0], np.full(6, -np.inf)]),
                    np.concatenate([ex_bounds[1], np.full(6, np.inf)]))
        qs = _project_bounds(qs, q_bounds)

    def evaluate(idc, qs):
        out, cost = [], prior_i @ (idc * idc)
        for t, (lmk, obs, w) in enumerate(frames):
            q = qs[t]
            r, j = _residual_jac(lmk, obs, w, idc, q[:n_ex], q[n_ex:n_ex + 3], q[n_ex + 3:], True)
            out.append((r, j[:, :n_id], j[:, n_id:]))
            cost += r @ r + prior_q @ (q * q)
        return out, cost

    terms, cost = evaluate(idc, qs)
    mu = 1e-3
    for _ in range(cfg.iters * 2):
        h_ii = np.diag(prior_i).astype(np.float64)
        g_i = prior_i * idc
        blocks = []
        for t, (r, ji, jq) in enumerate(terms):
            h_ii += ji.T @ ji
            g_i += ji.T @ r
            g_q = jq.T @ r + prior_q * qs[t]
            act = _active(qs[t], g_q, q_bounds)
            if act is not None:  # held variables: no step, no coupling to the identity
                jq = jq.copy()
                jq[:, act] = 0.0
                g_q[act] = 0.0
            h_qq = jq.T @ jq + np.diag(prior_q)
            if act is not None:
                h_qq[act, act] = 1.0
            blocks.append((h_qq, ji.T @ jq, g_q))
        improved = False
        for _ in range(8):
            s_mat = h_ii + mu * np.diag(np.diag(h_ii) + 1e-9)
            rhs = -g_i.copy()
            solved = []
            for h_qq, h_iq, g_q in blocks:
                h_qq_d = h_qq + mu * np.diag(np.diag(h_qq) + 1e-9)
                inv_iq = np.linalg.solve(h_qq_d, h_iq.T)
                inv_g = np.linalg.solve(h_qq_d, g_q)
                s_mat -= h_iq @ inv_iq
                rhs += h_iq @ inv_g
                solved.append((inv_iq, inv_g))
            d_id = np.linalg.solve(s_mat, rhs)
            d_q = np.stack([-inv_g - inv_iq @ d_id for inv_iq, inv_g in solved])
            q_new = _project_bounds(qs + d_q, q_bounds)
            new_terms, new_cost = evaluate(idc + d_id, q_new)
            if np.isfinite(new_cost) and new_cost < cost:
                idc, qs, terms = idc + d_id, q_new, new_terms
                converged = cost - new_cost < 1e-9 * cost
                cost = new_cost
                mu = max(mu / 3, 1e-7)
                improved = True
                break
            mu *= 4
        if not improved or converged:
            break
    return idc[None].repeat(n_frames, 0), qs[:, :n_ex], qs[:, n_ex:]


# --------------------------------------------------------------------------------------------
# Colour: texture and spherical-harmonics lighting.

def visible_vertices(verts_cam, normals, tri, size=224, depth_tol=0.02):
    """Boolean (N,) mask of vertices seen by the camera: in the image, facing it and not hidden.

    Occlusion uses the rasterized depth buffer: a vertex is hidden when the surface at its
    pixel is nearer than its own depth by more than depth_tol (model units, ~2 mm).
    """
    zbuf, _, _ = rasterize(verts_cam, tri, size=size)
    uv = bfm_mod.project(verts_cam)
    depth = bfm_mod.CAM_DIST - verts_cam[:, 2]
    to_cam = np.array([0.0, 0.0, bfm_mod.CAM_DIST]) - verts_cam
    facing = np.einsum("nc,nc->n", normals, to_cam) > 0
    col = np.floor(uv[:, 0]).astype(np.int64)
    row = np.floor(uv[:, 1]).astype(np.int64)
    inside = (col >= 0) & (col < size) & (row >= 0) & (row < size) & (depth > 0)
    vis = np.zeros(len(verts_cam), bool)
    idx = np.nonzero(inside & facing)[0]
    vis[idx] = depth[idx] <= zbuf[row[idx], col[idx]] + depth_tol
    return vis


def sample_bilinear(img, uv):
    """Colours (M, C) of image (H, W, C) at projection coordinates uv (M, 2) (centres at +0.5)."""
    img = np.asarray(img, np.float64)
    h, w = img.shape[:2]
    x = np.clip(uv[:, 0] - 0.5, 0, w - 1)
    y = np.clip(uv[:, 1] - 0.5, 0, h - 1)
    x0 = np.minimum(np.floor(x).astype(np.int64), w - 2)
    y0 = np.minimum(np.floor(y).astype(np.int64), h - 2)
    fx = (x - x0)[:, None]
    fy = (y - y0)[:, None]
    return ((1 - fy) * ((1 - fx) * img[y0, x0] + fx * img[y0, x0 + 1])
            + fy * ((1 - fx) * img[y0 + 1, x0] + fx * img[y0 + 1, x0 + 1]))


def fit_color(bfm, crop, id_c, ex_c, angles, trans, n_sh=9, cfg: FitConfig | None = None, iters=10,
              max_samples=3000):
    """Texture (80,) and SH lighting (9 mono or 27 RGB, the stored coefficients without the
    +0.8 on the DC term) from the crop colours at visible vertices.

    crop: uint8 (224, 224, 3) RGB, the aligned crop the landmarks were expressed in. Pixels
    that are exactly black (outside the frame) are ignored; at most max_samples vertices (an
    even subset of the visible ones) are used. Returns (tex, gamma, rms) with rms
    the colour residual (0-255 units) over the samples used; without visible vertices, zeros
    and rms = nan.
    """
    cfg = cfg or FitConfig()
    if n_sh not in (9, 27):
        raise ValueError(f"n_sh must be 9 (mono) or 27 (RGB), got {n_sh}")
    shape = bfm_mod.face_shape(bfm, id_c, ex_c)
    rot = bfm_mod.rotation_matrix(angles)
    normals = bfm_mod.vertex_normals(bfm, shape) @ rot
    verts = bfm_mod.to_camera(shape, rot, trans)
    vis = visible_vertices(verts, normals, bfm.tri, size=crop.shape[0])
    uv = bfm_mod.project(verts[vis])
    obs = sample_bilinear(crop, uv)
    keep = np.nonzero(np.any(obs > 0, axis=1))[0]
    if len(keep) > max_samples:
        # The texture basis and the SH shading are smooth over the face: an even subset of
        # the visible vertices determines the 80 + 9 (27) unknowns as well and is much faster
        # (the BFM shows ~20k visible vertices).
        keep = keep[np.linspace(0, len(keep) - 1, max_samples).astype(np.int64)]
    idx = np.nonzero(vis)[0][keep]
    obs = obs[keep]
    n_tex = bfm.texBase.shape[1]
    if len(idx) < 20:
        return np.zeros(n_tex), np.zeros(n_sh), float("nan")
    ybasis = bfm_mod.sh_basis(normals[idx])  # (M, 9)
    rows = (3 * idx[:, None] + np.arange(3)[None]).reshape(-1)
    tbase = np.asarray(bfm.texBase[rows], np.float64).reshape(len(idx), 3, n_tex)
    tmean = np.asarray(bfm.meantex[idx], np.float64)
    # Alternating linear least squares for a start (albedo given the light, light given the
    # albedo), then joint Gauss-Newton / LM on both (the model is bilinear; alternation alone
    # converges slowly because a brighter albedo and a brighter light trade off).
    g = np.zeros((3, 9))
    g[:, 0] = 0.8  # the irradiance the +0.8 offset gives with zero stored SH
    tex = np.zeros(n_tex)
    for _ in range(2):
        light = ybasis @ g.T
        a = (light[:, :, None] * tbase).reshape(-1, n_tex)
        b = (obs - light * tmean).reshape(-1)
        tex = np.linalg.solve(a.T @ a + cfg.lambda_tex * np.eye(n_tex), a.T @ b)
        g = _fit_sh(ybasis, tmean + tbase @ tex, obs, n_sh, cfg.lambda_sh)
    prior = np.concatenate([np.full(n_tex, cfg.lambda_tex), _sh_prior(n_sh, cfg.lambda_sh)])

    def unpack(x):
        gx = x[n_tex:]
        return x[:n_tex], (np.repeat(gx[None], 3, 0) if n_sh == 9 else gx.reshape(3, 9))

    def model(x, tm, tb, yb):
        tx, gx = unpack(x)
        return tm + tb @ tx, yb @ gx.T

    def residual_jac(x, tm, tb, yb, ob):
        albedo, shade = model(x, tm, tb, yb)
        j_tex = shade[:, :, None] * tb  # (M, 3, n_tex)
        if n_sh == 9:
            j_g = albedo[:, :, None] * yb[:, None, :]
        else:
            j_g = np.zeros((len(albedo), 3, 27))
            for c in range(3):
                j_g[:, c, 9 * c:9 * c + 9] = albedo[:, c:c + 1] * yb
        r = (albedo * shade - ob).reshape(-1)
        return r, np.concatenate([j_tex, j_g], axis=2).reshape(len(r), -1)

    def solve(x, use):
        data = (tmean[use], tbase[use], ybasis[use], obs[use])
        return _lm_solve(lambda x: residual_jac(x, *data), x, prior, iters), data

    x = np.concatenate([tex, g[0] if n_sh == 9 else g.reshape(-1)])
    x, _ = solve(x, np.ones(len(idx), bool))
    # Robust pass: hair, eyebrows, glasses, occluders and background at the silhouette are not
    # skin; drop samples far from the model's prediction and solve again.
    albedo, shade = model(x, tmean, tbase, ybasis)
    err = np.linalg.norm(albedo * shade - obs, axis=1)
    x, data = solve(x, err <= max(2.5 * np.median(err), 1e-6))
    r, _ = residual_jac(x, *data)
    rms = float(np.sqrt(np.mean(r ** 2)))
    tex, g = unpack(x)
    gamma = g.copy()
    gamma[:, 0] -= 0.8
    return tex, (gamma[0] if n_sh == 9 else gamma.reshape(-1)), rms


def _sh_prior(n_sh, ridge):
    """Ridge on the SH terms except the DC (ambient) one, which the data always determine."""
    p = np.full(9, ridge)
    p[0] = 0.0
    return p if n_sh == 9 else np.tile(p, 3)


def _fit_sh(ybasis, albedo, obs, n_sh, ridge):
    """Irradiance coefficients (3, 9) (including the 0.8 DC offset) given albedo and colours."""
    if n_sh == 9:
        a = (albedo[:, :, None] * ybasis[:, None, :]).reshape(-1, 9)
        g = np.linalg.solve(a.T @ a + np.diag(_sh_prior(9, ridge)), a.T @ obs.reshape(-1))
        return np.repeat(g[None], 3, 0)
    out = np.empty((3, 9))
    for c in range(3):
        a = albedo[:, c:c + 1] * ybasis
        out[c] = np.linalg.solve(a.T @ a + np.diag(_sh_prior(9, ridge)), a.T @ obs[:, c])
    return out


def smooth_coeffs(coeffs, sigma):
    """Gaussian smoothing (sigma in frames) of each coefficient over a clip (T, C); sigma 0 = off."""
    c = np.asarray(coeffs, np.float64)
    if sigma <= 0 or len(c) < 2:
        return c.copy()
    return gaussian_filter1d(c, sigma, axis=0, mode="nearest")


def assemble(id_c, ex_c, tex, angles, gamma, trans) -> np.ndarray:
    """Concatenate the parts in the original order -> (T, 239) or (T, 257)."""
    return np.concatenate([id_c, ex_c, tex, angles, gamma, trans], axis=-1)
