"""Per-clip, per-vertex albedo for a morphable model without a texture model (the ICT Face Model).

The BFM explains colour by 80 texture coefficients per frame (`fit.fit_color`). The ICT Face
Model has shape only, so its render would be one flat skin colour. Instead, the colour of each
vertex is estimated once per clip from the clip's own frames, with the lighting divided out:

1. Geometry is known (fitted to the landmarks); for each frame the visible vertices (z-buffer,
   facing the camera) are projected into the aligned 224x224 crop and their colours sampled
   (bilinear).
2. Starting from the model's mean skin albedo, alternate: per frame, the 9 mono (or 27 RGB)
   spherical-harmonics lighting coefficients by linear least squares given the albedo
   (`fit._fit_sh`, the original's SH basis and +0.8 ambient); per vertex, the albedo by
   weighted least squares over the SHARPEST frames given each frame's shading:
       a_v = (sum_t w_tv s_tv c_tv + lam * p_v) / (sum_t w_tv s_tv^2 + lam)
   with c the sampled colour, s the shading, w = cos(angle between normal and view ray)
   (grazing samples are smeared over many pixels), p the prior (mean skin albedo rescaled to
   the clip's brightness) that vertices seen in no sharp frame fall back to. Samples further
   than 2.5 median residuals from the prediction (hair, glasses, hands, specular spots) are
   dropped in the later rounds.
3. Clean-up on the mesh (`clean=True`, the default): an occluder present in every sharp frame
   (a microphone, a hand, hair over the forehead or cheek, background at the silhouette, a cast
   shadow) is not an outlier of any single sample: the least squares just make the albedo
   dark there. A morphable model's albedo is skin, so outside the features (`feature_vertices`:
   the hulls of the brow, eye, nose and lip landmarks, grown by 0.06 inter-ocular distances)
   a vertex whose albedo departs from the model's mean skin albedo (log ratio, luminance or
   chromaticity) by more than 3 robust standard deviations of the clip's skin is occluded
   (`occluded_vertices`, grown by one ring). Its ratio to the mean skin albedo is filled from
   the skin around it (`fill_on_mesh`, a membrane fill), the albedo is smoothed by two
   umbrella steps (`smooth_on_mesh`: the per-vertex estimate carries sampling noise a texture
   model does not have), and the lights are re-fitted without the occluded vertices.
4. The scale ambiguity (brighter albedo, dimmer light) is fixed by giving the clip's mean
   ambient SH term the original's default (stored DC coefficient 0, i.e. +0.8 only).

Measured on vd001 (25 frames, `python -m bench.bench_prior --models ict`, against the authors'
BFM renders): the clean-up moves grey SSIM 0.687 -> 0.702 and PSNR 22.4 -> 23.9 dB (IoU and
landmark NME unchanged: geometry is untouched); the microphone below the mouth and the hair at
the cheek's edge are gone from the render. Lighting variants measured on the same frames
changed nothing (SH ridge 0.3-3: no change; the data determine the 9 terms) or were within
+-0.1 dB (dropping samples under 0.2-0.4 cosine, other sharp fractions), so they were not added.

Sharpness: variance of the Laplacian of the grey crop inside the projected face, the usual
focus measure; the sharpest third of the frames (at least `MIN_SHARP`) is used, so motion-
blurred frames do not smear the albedo. What it means for the prior: the render's geometry
and shading are sharp (a mesh), but its colour detail is at most that of the clip's sharpest
frames, averaged over them after registration by the fitted geometry; it adds no detail the
clip lacks. A single image (a one-frame clip) gets the mean skin albedo instead: an albedo
taken from the very frame being deblurred would copy its blur into its own prior.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse
from scipy.ndimage import laplace

from faceReconstruction import bfm as bfm_mod
from faceReconstruction.fit import _fit_sh, sample_bilinear, visible_vertices

MIN_SHARP = 3
SHARP_FRACTION = 1.0 / 3.0
PRIOR_WEIGHT = 0.05
ROUNDS = 3
SH_RIDGE = 1.0
# Step 4 (clean-up on the mesh), measured on vd001 (README, bench/bench_prior.py):
FEATURE_GROUPS = (range(17, 27), range(27, 36), range(36, 42), range(42, 48), range(48, 60))
FEATURE_MARGIN = 0.06  # x inter-ocular distance around the feature landmarks' hulls (~5 mm)
OCCLUSION_SIGMAS = 3.0
MIN_SIGMA = 0.02  # log-ratio units: deviations under 6 % of the skin are never occlusions
SMOOTH_ITERATIONS = 2
_LUMA = np.array([0.299, 0.587, 0.114])


def frame_observations(bfm, crop, id_c, ex_c, angles, trans):
    """What one frame shows of the model: dict with
    idx (M,) visible vertex indices, colors (M, 3) sampled RGB 0-255, sh (M, 9) SH basis of the
    rotated normals, weight (M,) cosine of the view angle, and uv (N, 2) projections of all
    vertices. Pixels that are exactly black (outside the frame) are not used.
    """
    shape = bfm_mod.face_shape(bfm, id_c, ex_c)
    rot = bfm_mod.rotation_matrix(angles)
    normals = bfm_mod.vertex_normals(bfm, shape) @ rot
    verts = bfm_mod.to_camera(shape, rot, trans)
    vis = visible_vertices(verts, normals, bfm.tri, size=crop.shape[0])
    uv = bfm_mod.project(verts)
    idx = np.nonzero(vis)[0]
    colors = sample_bilinear(crop, uv[idx])
    keep = np.any(colors > 0, axis=1)
    idx, colors = idx[keep], colors[keep]
    view = np.array([0.0, 0.0, bfm_mod.CAM_DIST]) - verts[idx]
    view /= np.linalg.norm(view, axis=1, keepdims=True)
    cos = np.clip(np.einsum("nc,nc->n", normals[idx], view), 0.0, 1.0)
    return dict(idx=idx, colors=colors, sh=bfm_mod.sh_basis(normals[idx]), weight=cos, uv=uv)


def sharpness(crop, uv_face) -> float:
    """Variance of the Laplacian of the grey crop inside the bounding box of the projected
    face (uv_face (M, 2) projection coordinates); higher is sharper."""
    grey = np.asarray(crop, np.float64) @ np.array([0.299, 0.587, 0.114])
    h, w = grey.shape
    if len(uv_face) == 0:
        return 0.0
    x0, y0 = np.clip(np.floor(uv_face.min(0)).astype(int), 0, [w, h])
    x1, y1 = np.clip(np.ceil(uv_face.max(0)).astype(int), 0, [w, h])
    if x1 - x0 < 3 or y1 - y0 < 3:
        return 0.0
    return float(laplace(grey[y0:y1, x0:x1]).var())


def _shade(obs, g):
    """Shading (M, 3) of observations under irradiance coefficients g (3, 9)."""
    return obs["sh"] @ g.T


def estimate_albedo(bfm, observations, n_sh: int = 9, sharp=None, rounds: int = ROUNDS, min_frames: int = 2,
                    clean: bool = True):
    """Per-vertex albedo of a clip and each frame's lighting.

    observations: per frame the dict of `frame_observations`; sharp: per frame a sharpness
    (`sharpness`), None = all frames equal. Returns (albedo (N, 3) float32 RGB 0-255,
    gamma (T, n_sh) stored SH coefficients (without the +0.8), used (T,) bool: the frames the
    albedo was estimated from). With a single frame, or without any visible vertex, the albedo
    is the model's mean skin albedo (meantex) and only the lighting is fitted (min_frames:
    the fewest frames an albedo is estimated from; 1 estimates it from a single image too).
    clean: replace occluded skin vertices and smooth on the mesh (step 4 of the module doc);
    False keeps the raw least-squares albedo (`mean_albedo`, which makes the prior `clean` uses).
    """
    if n_sh not in (9, 27):
        raise ValueError(f"n_sh must be 9 (mono) or 27 (RGB), got {n_sh}")
    n_frames = len(observations)
    prior = np.asarray(bfm.meantex, np.float64)
    albedo = prior.copy()
    used = np.zeros(n_frames, bool)
    if n_frames >= min_frames:
        score = np.zeros(n_frames) if sharp is None else np.asarray(sharp, np.float64)
        n_use = min(n_frames, max(MIN_SHARP, int(np.ceil(n_frames * SHARP_FRACTION))))
        used[np.argsort(-score, kind="stable")[:n_use]] = True
        used &= np.array([len(o["idx"]) >= 20 for o in observations])
    gs = [_light(o, albedo, n_sh) for o in observations]
    if used.any():
        n = len(prior)
        keep = [np.ones(len(o["idx"]), bool) for o in observations]
        for rnd in range(rounds):
            num = np.zeros((n, 3))
            den = np.zeros((n, 3))
            for t in np.nonzero(used)[0]:
                o, k = observations[t], keep[t]
                s = _shade(o, gs[t])[k]
                w = o["weight"][k, None]
                np.add.at(num, o["idx"][k], w * s * o["colors"][k])
                np.add.at(den, o["idx"][k], w * s * s)
            seen = den[:, 0] > 0
            # The prior is the mean skin albedo at the brightness of what was seen, so vertices
            # no sharp frame shows blend in instead of jumping to a generic colour.
            est = num[seen] / np.maximum(den[seen], 1e-9)
            scale = np.median(est, axis=0) / np.maximum(np.median(prior[seen], axis=0), 1e-9)
            p = prior * scale
            albedo = (num + PRIOR_WEIGHT * p) / (den + PRIOR_WEIGHT)
            gs = [_light(o, albedo, n_sh, k) for o, k in zip(observations, keep)]
            if rnd < rounds - 1:
                for t in np.nonzero(used)[0]:
                    o = observations[t]
                    err = np.linalg.norm(albedo[o["idx"]] * _shade(o, gs[t]) - o["colors"], axis=1)
                    keep[t] = err <= max(2.5 * np.median(err), 1e-6)
        if clean:
            albedo, gs = _clean(bfm, observations, albedo, gs, used, keep, n_sh)
        # Fix the albedo/light scale: mean ambient term = the original's default 0.8.
        k = np.mean([g[:, 0].mean() for g in gs]) / 0.8
        if np.isfinite(k) and k > 0:
            albedo *= k
            gs = [g / k for g in gs]
    gamma = np.stack([_stored(g, n_sh) for g in gs])
    return np.clip(albedo, 0.0, 255.0).astype(np.float32), gamma, used


def vertex_adjacency(tri, n_vertices: int):
    """Sparse (N, N) 0/1 matrix of the mesh's edges (vertices sharing a triangle side)."""
    t = np.asarray(tri)
    rows = np.concatenate([t[:, 0], t[:, 1], t[:, 2], t[:, 1], t[:, 2], t[:, 0]])
    cols = np.concatenate([t[:, 1], t[:, 2], t[:, 0], t[:, 0], t[:, 1], t[:, 2]])
    adj = scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_vertices, n_vertices))
    adj.data[:] = 1.0
    return adj


def smooth_on_mesh(values, adj, iterations: int = SMOOTH_ITERATIONS, step: float = 0.5) -> np.ndarray:
    """Umbrella (graph-Laplacian) smoothing: `iterations` times v += step * (mean of the
    neighbours - v). values (N, C); adj from `vertex_adjacency`. Isolated vertices keep theirs."""
    v = np.asarray(values, np.float64).copy()
    deg = np.asarray(adj.sum(axis=1)).ravel()[:, None]
    has = deg[:, 0] > 0
    for _ in range(iterations):
        mean = (adj @ v)[has] / deg[has]
        v[has] += step * (mean - v[has])
    return v


def fill_on_mesh(values, known, adj, iterations: int = 300) -> np.ndarray:
    """Membrane (harmonic) fill: unknown vertices get values that blend smoothly into the known
    ones around them (each the mean of its neighbours; known vertices fixed). values (N, C),
    known (N,) bool. Unknown regions are first reached by growth (mean of known neighbours),
    then relaxed by `iterations` Jacobi sweeps; a region no known vertex reaches keeps 0."""
    v = np.where(known[:, None], np.asarray(values, np.float64), 0.0)
    if known.all() or not known.any():
        return v
    deg = np.maximum(np.asarray(adj.sum(axis=1)).ravel(), 1.0)[:, None]
    reached = known.astype(np.float64)
    while reached.min() == 0:
        s_val, s_w = adj @ (v * reached[:, None]), adj @ reached
        grow = (reached == 0) & (s_w > 0)
        if not grow.any():
            break
        v[grow] = s_val[grow] / s_w[grow, None]
        reached[grow] = 1.0
    free = ~known
    for _ in range(iterations):
        v[free] = (adj @ v)[free] / deg[free]
    return v


def feature_vertices(bfm, margin: float = FEATURE_MARGIN) -> np.ndarray:
    """(N,) bool: vertices of the brows, eyes, nose and mouth, where a clip's albedo legitimately
    departs from skin. Each region is the convex hull of its landmarks (iBUG 18-27 brows,
    28-36 nose, 37-42 and 43-48 eyes, 49-60 outer lips) on the mean shape seen from the front
    (x, y), its sides moved outward by margin x the inter-ocular distance (outer eye corners)."""
    from scipy.spatial import ConvexHull

    xy = np.asarray(bfm.meanshape, np.float64).reshape(-1, 3)[:, :2]
    kp = xy[np.asarray(bfm.keypoints)]
    grow = margin * np.linalg.norm(kp[45] - kp[36])
    out = np.zeros(len(xy), bool)
    for group in FEATURE_GROUPS:
        eq = ConvexHull(kp[list(group)]).equations  # unit outward normal . x + offset <= 0 inside
        out |= np.all(xy @ eq[:, :2].T + eq[:, 2] <= grow, axis=1)
    return out


def occluded_vertices(bfm, albedo, seen, adj, k: float = OCCLUSION_SIGMAS) -> np.ndarray:
    """(N,) bool: skin vertices whose estimated albedo is not skin (an occluder present in the
    sharp frames: microphone, hand, hair over the forehead or cheek, background at the
    silhouette, a cast shadow).

    The albedo is compared with the model's mean skin albedo (meantex) as a log ratio, split
    into luminance and chromaticity; over the seen skin vertices (outside `feature_vertices`)
    a vertex is an outlier when either departs from the median by more than k robust standard
    deviations (1.4826 MAD, at least MIN_SIGMA so a uniform albedo has none). The outliers
    are grown by one ring of skin vertices (their colour is mixed at the occluder's edge).
    """
    skin = ~feature_vertices(bfm)
    ref = skin & seen
    if ref.sum() < 20:
        return np.zeros(len(skin), bool)
    lr = np.log(np.maximum(albedo, 1.0) / np.maximum(np.asarray(bfm.meantex, np.float64), 1.0))
    lum = lr @ _LUMA
    chroma = lr - lum[:, None]
    d_lum = np.abs(lum - np.median(lum[ref]))
    d_chroma = np.linalg.norm(chroma - np.median(chroma[ref], axis=0), axis=1)
    s_lum = max(1.4826 * np.median(d_lum[ref]), MIN_SIGMA)
    s_chroma = max(1.4826 * np.median(d_chroma[ref]), MIN_SIGMA)
    out = ref & ((d_lum > k * s_lum) | (d_chroma > k * s_chroma))
    return out | (skin & ((adj @ out.astype(np.float64)) > 0))


def _clean(bfm, observations, albedo, gs, used, keep, n_sh):
    """Step 4: occluded skin vertices filled from the skin around them, light smoothing, the
    lights re-fitted without the occluded samples. Returns (albedo, gs)."""
    adj = vertex_adjacency(bfm.tri, bfm.n_vertices)
    seen = np.zeros(bfm.n_vertices, bool)
    for t in np.nonzero(used)[0]:
        seen[observations[t]["idx"]] = True
    occ = occluded_vertices(bfm, albedo, seen, adj)
    # Fill the ratio to the mean skin albedo, so the filled skin keeps the prior's pattern
    # (darker under the brows, redder cheeks) at the clip's own skin tone.
    prior = np.maximum(np.asarray(bfm.meantex, np.float64), 1.0)
    albedo = smooth_on_mesh(fill_on_mesh(albedo / prior, ~occ, adj) * prior, adj)
    gs = [_light(o, albedo, n_sh, k & ~occ[o["idx"]]) for o, k in zip(observations, keep)]
    return albedo, gs


def _light(obs, albedo, n_sh, keep=None):
    """Irradiance coefficients (3, 9) (with the +0.8) of one frame given the albedo."""
    if len(obs["idx"]) < 20:
        g = np.zeros((3, 9))
        g[:, 0] = 0.8
        return g
    k = slice(None) if keep is None or keep.sum() < 20 else keep
    return _fit_sh(obs["sh"][k], albedo[obs["idx"]][k], obs["colors"][k], n_sh, SH_RIDGE)


def _stored(g, n_sh):
    out = g.copy()
    out[:, 0] -= 0.8
    return out[0] if n_sh == 9 else out.reshape(-1)


def mean_albedo(bfm, photos, lm3d, log=None) -> np.ndarray:
    """Per-vertex mean skin albedo (N, 3) float64 RGB 0-255 from face photos, for a model
    without texture (the shipped ICT model's meantex; `convert_ict --albedo_photos`).

    photos: [(image path, five-point file path)] (faces5pt layout: NAME.jpg|png + NAME.txt);
    lm3d (5, 3) alignment points. Each photo is fitted like a one-frame clip (dlib's 68
    points, `fit.fit_geometry`) and its albedo estimated with `estimate_albedo(min_frames=1)`;
    each albedo is divided by its own median colour (so skin tone and exposure cancel), the
    per-vertex median over the photos taken, and the result multiplied by the median of the
    photos' colours. Vertices no photo shows take the mean of their neighbours' values
    (mesh diffusion), then 1 x the median colour where nothing reaches.
    """
    from facePointDetection.landmarks68 import Predictor68
    from faceReconstruction import align, fit
    from common.fileio import read_image, read_points

    log = log or (lambda m: None)
    predictor = Predictor68()
    rel, colours = [], []
    for img_path, pts_path in photos:
        img = read_image(img_path)
        pts5 = read_points(pts_path)
        crop, t, s = align.align_crop(img, pts5, lm3d)
        uv = align.frame_to_crop(predictor(img, pts5), (img.shape[1], img.shape[0]), t, s) + 0.5
        g = fit.fit_geometry(bfm, [uv])
        obs = frame_observations(bfm, crop, g["id"][0], g["ex"][0], g["angles"][0], g["trans"][0])
        alb, _, used = estimate_albedo(bfm, [obs], min_frames=1, clean=False)
        if not used.any():
            log(f"{img_path}: no face seen, skipped")
            continue
        a = np.full((bfm.n_vertices, 3), np.nan)
        a[obs["idx"]] = alb[obs["idx"]]
        med = np.nanmedian(a, axis=0)
        rel.append(a / med)
        colours.append(med)
        log(f"{img_path.name}: landmark rms {g['rms'][0]:.2f} px, median albedo {np.round(med, 1)}")
    if not rel:
        raise ValueError("mean_albedo: no usable photo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: vertices no photo shows
        pattern = np.nanmedian(np.stack(rel), axis=0)
    seen = np.isfinite(pattern[:, 0])
    adj = vertex_adjacency(bfm.tri, bfm.n_vertices)
    value = np.where(seen[:, None], pattern, 0.0)
    known = seen.astype(np.float64)
    for _ in range(200):  # diffuse into the unseen vertices, seen ones stay fixed
        if known.min() > 0:
            break
        s_val, s_w = adj @ (value * known[:, None]), adj @ known
        grow = (known == 0) & (s_w > 0)
        value[grow] = s_val[grow] / s_w[grow, None]
        known[grow] = 1.0
    value[known == 0] = 1.0
    return value * np.median(np.stack(colours), axis=0)
