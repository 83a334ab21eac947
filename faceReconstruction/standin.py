"""A stand-in morphable model in the `BFM_model_front.mat` format (issue 4, item 7).

The Basel Face Model is licensed and not redistributable, so tests, benchmarks and the
pipeline without a BFM use this generated model instead. It has the same keys, shapes,
units and index conventions as the file the original `load_data.py transferBFM09()` writes
(meanshape (1, 3N), meantex (1, 3N), idBase (3N, 80), exBase (3N, 64), texBase (3N, 80),
tri (T, 3), point_buf (N, 8) and keypoints (1, 68), all 1-based), plus `standin = 1`, so
every loader warns that it is NOT the BFM.

Geometry (model units as the BFM after its division by 1e5, about decimetres; x to image
right, y up, z towards the camera; the mean shape is centred on its centroid):
- a face-front height field over an ellipse (x in [-0.76, 0.76], y in [-0.87, 0.93]):
  an ellipsoid cap (cheeks/jaw at z about -0.55, face centre about +0.35) with a nose ridge and
  tip, brow ridges, eye sockets, lips and chin bumps, so the default camera (focal 1015 at
  distance 10) shows a face filling the 224 crop like the real model (zero coefficients: 41%
  of the crop; the original R-Net renders of ../shared/data/vd001 cover 39-42%);
- 68 keypoints at a generic face layout in the iBUG 68-point convention (jaw 1-17, brows
  18-27, nose 28-36, eyes 37-48, mouth 49-68; 1-based), at about the positions of the BFM mean
  face, so the five alignment points (nose 31, eye centres 37/40 and 43/46, mouth corners
  49/55) are meaningful;
- bases: smooth random displacement / colour fields (Gaussian radial functions over the
  face), amplitudes decaying with the component index; expression fields concentrate on the
  mouth, eyes and brows;
- mean texture: skin tone with darker brows, eyes, nostrils and lips.

Topology: by default a Delaunay mesh of about `n_vertices` points that contains the 68
keypoints as vertices; or the real BFM front topology (`topology` = facemodel_info.mat from
the Deep3DFaceRecon BFM/ folder: 35,709 vertices, 70,789 triangles), laid out by a Tutte
(uniform harmonic) embedding with its boundary on the face ellipse, then warped so its 68
keypoints sit at the generic layout.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse
import scipy.sparse.linalg
from scipy.interpolate import RBFInterpolator
from scipy.spatial import Delaunay

from common.fileio import InputError, atomic_path, read_mat

# Face domain: ellipse (x / AX)^2 + ((y - CY) / AY)^2 <= 1.
AX, AY, CY = 0.76, 0.90, 0.03
_WARP_STEPS = 5
# Bumped whenever the generated model changes, so cached stand-ins are regenerated.
STANDIN_VERSION = 3


def reference_landmarks_xy() -> np.ndarray:
    """Generic 68-point face layout (68, 2) in model units (x right, y up), iBUG order."""
    pts = []
    # Jaw 1-17: an ellipse arc from the right temple of the image's left side around the chin.
    ang = np.deg2rad(np.linspace(172.5, 367.5, 17))
    pts += list(zip(0.74 * np.cos(ang), 0.10 + 0.925 * np.sin(ang)))
    # Brows 18-22 (image left, outer to inner) and 23-27 (mirrored, inner to outer).
    bx = np.linspace(-0.57, -0.19, 5)
    by = 0.43 + 0.09 * np.sin(np.pi * (bx + 0.57) / 0.50)
    pts += list(zip(bx, by))
    pts += list(zip(-bx[::-1], by[::-1]))
    # Nose bridge 28-31 down to the tip, nostrils 32-36.
    pts += [(0.0, 0.30), (0.0, 0.18), (0.0, 0.06), (0.0, -0.05)]
    pts += [(-0.12, -0.14), (-0.07, -0.15), (0.0, -0.16), (0.07, -0.15), (0.12, -0.14)]
    # Eyes 37-42 (image left: outer corner, two upper lid, inner corner, two lower lid).
    eye = np.array([(-0.12, 0.0), (-0.05, 0.037), (0.04, 0.037), (0.12, 0.0), (0.04, -0.028), (-0.05, -0.028)])
    pts += list(eye + (-0.31, 0.29))
    # 43-48: mirrored, starting at the inner corner.
    mirrored = eye[[3, 2, 1, 0, 5, 4]] * (-1.0, 1.0)
    pts += list(mirrored + (0.31, 0.29))
    # Outer lips 49-60 (left corner, upper lip to right corner, lower lip back).
    pts += [(-0.25, -0.38), (-0.16, -0.32), (-0.06, -0.28), (0.0, -0.295), (0.06, -0.28), (0.16, -0.32),
            (0.25, -0.38), (0.16, -0.42), (0.08, -0.445), (0.0, -0.45), (-0.08, -0.445), (-0.16, -0.42)]
    # Inner lips 61-68 (mouth closed: upper and lower inner lines 0.015 apart).
    pts += [(-0.225, -0.375), (-0.07, -0.35), (0.0, -0.35), (0.07, -0.35),
            (0.225, -0.375), (0.07, -0.365), (0.0, -0.367), (-0.07, -0.365)]
    out = np.asarray(pts, dtype=np.float64)
    assert out.shape == (68, 2)
    return out


def _gauss(x, y, cx, cy, sx, sy):
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def face_height(x, y) -> np.ndarray:
    """Depth z (towards the camera) of the stand-in mean face at (x, y), before centring."""
    cap = 1.0 - (x / 0.86) ** 2 - ((y - 0.05) / 1.2) ** 2
    z = -1.45 + 1.8 * np.sqrt(np.maximum(cap, 0.02))
    z += 0.20 * _gauss(x, y, 0.0, -0.05, 0.07, 0.07)           # nose tip
    z += 0.12 * _gauss(x, y, 0.0, 0.13, 0.05, 0.16)            # nose ridge
    z += 0.05 * _gauss(np.abs(x), y, 0.08, -0.12, 0.05, 0.05)  # alae
    z -= 0.06 * _gauss(np.abs(x), y, 0.31, 0.29, 0.09, 0.06)   # eye sockets
    z += 0.04 * _gauss(np.abs(x), y, 0.36, 0.46, 0.16, 0.05)   # brow ridges
    z += 0.05 * _gauss(x, y, 0.0, -0.37, 0.16, 0.07)           # lips
    z += 0.18 * _gauss(x, y, 0.0, -0.72, 0.20, 0.12)           # chin
    return z


def _polygon_inside(px, py, poly) -> np.ndarray:
    """Even-odd point-in-polygon test for arrays of points."""
    inside = np.zeros(px.shape, dtype=bool)
    n = len(poly)
    for i in range(n):
        x0, y0 = poly[i]
        x1, y1 = poly[(i + 1) % n]
        crosses = (y0 > py) != (y1 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = x0 + (py - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (px < xc)
    return inside


def _seg_distance(px, py, polyline) -> np.ndarray:
    d = np.full(px.shape, np.inf)
    for (x0, y0), (x1, y1) in zip(polyline[:-1], polyline[1:]):
        vx, vy = x1 - x0, y1 - y0
        t = np.clip(((px - x0) * vx + (py - y0) * vy) / (vx * vx + vy * vy), 0.0, 1.0)
        d = np.minimum(d, np.hypot(px - x0 - t * vx, py - y0 - t * vy))
    return d


def _mean_texture(xy, lm) -> np.ndarray:
    x, y = xy[:, 0], xy[:, 1]
    tex = np.empty((len(x), 3))
    tex[:] = (205.0, 150.0, 125.0)
    tex *= (1.0 - 0.15 * np.clip(((x / AX) ** 2 + ((y - CY) / AY) ** 2), 0, 1))[:, None]  # darker at the rim
    lips = _polygon_inside(x, y, lm[48:60])
    tex[lips] = (175.0, 95.0, 95.0)
    for eye in (lm[36:42], lm[42:48]):
        tex[_polygon_inside(x, y, eye)] = (70.0, 55.0, 50.0)
    for brow in (lm[17:22], lm[22:27]):
        tex[_seg_distance(x, y, brow) < 0.03] = (95.0, 70.0, 55.0)
    tex[_polygon_inside(x, y, lm[[31, 32, 33, 34, 35]]) | (_gauss(np.abs(x), y, 0.07, -0.135, 0.025, 0.015) > 0.5)] = (
        120.0, 80.0, 70.0)
    return tex


def _smooth_fields(xy, rng, n_comp, n_chan, amps, weight=None) -> np.ndarray:
    """Random smooth fields (3N-style interleaved, (N * n_chan, n_comp)) with given RMS amps."""
    centres = np.stack(np.meshgrid(np.linspace(-0.8, 0.8, 6), np.linspace(-0.9, 1.0, 7)), -1).reshape(-1, 2)
    phi = np.exp(-0.5 * ((xy[:, None, :] - centres[None]) ** 2).sum(-1) / 0.22 ** 2)  # (N, C)
    phi = np.concatenate([phi, np.ones((len(xy), 1)), xy], axis=1)
    out = np.empty((len(xy), n_chan, n_comp))
    for k in range(n_comp):
        f = phi @ rng.standard_normal((phi.shape[1], n_chan))
        if weight is not None:
            f *= weight[:, None]
        f -= f.mean(axis=0)
        f *= amps[k] / np.sqrt((f ** 2).mean())
        out[:, :, k] = f
    return out.reshape(len(xy) * n_chan, n_comp)


def _small_topology(n_vertices: int, lm: np.ndarray, rng):
    """Delaunay mesh over the face ellipse with the 68 landmarks as vertices."""
    n_inner = max(int(n_vertices) - 68, 100)
    area = np.pi * AX * AY
    h = np.sqrt(2 * area / (np.sqrt(3) * n_inner))  # hexagonal grid spacing for n_inner points
    n_bound = int(np.ceil(np.pi * (AX + AY) / h))
    # Hexagonal grid a little inside the boundary.
    ys = np.arange(CY - AY, CY + AY + h, h * np.sqrt(3) / 2)
    pts = []
    for i, yy in enumerate(ys):
        xs = np.arange(-AX, AX + h, h) + (h / 2 if i % 2 else 0)
        pts.append(np.stack([xs, np.full_like(xs, yy)], 1))
    grid = np.concatenate(pts)
    r = (grid[:, 0] / AX) ** 2 + ((grid[:, 1] - CY) / AY) ** 2
    grid = grid[r < (1 - 0.5 * h / max(AX, AY)) ** 2]
    grid += rng.uniform(-0.05 * h, 0.05 * h, grid.shape)  # break exact co-circularity
    d_lm = np.min(np.linalg.norm(grid[:, None] - lm[None], axis=2), axis=1)
    grid = grid[d_lm > 0.5 * h]
    t = np.linspace(0, 2 * np.pi, n_bound, endpoint=False)
    bound = np.stack([AX * np.cos(t), CY + AY * np.sin(t)], 1)
    xy = np.concatenate([lm, grid, bound])
    tri = Delaunay(xy).simplices.astype(np.int64)
    # Orient every triangle the same way (counter-clockwise in x-right, y-up).
    a = xy[tri[:, 1]] - xy[tri[:, 0]]
    b = xy[tri[:, 2]] - xy[tri[:, 0]]
    flip = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0] < 0
    tri[flip] = tri[flip][:, [0, 2, 1]]
    return xy, tri, np.arange(68)


def _point_buf(tri: np.ndarray, n: int, width: int = 8) -> np.ndarray:
    """0-based triangles around each vertex (N, width), padded with T (the zero face)."""
    t = len(tri)
    buf = np.full((n, width), t, dtype=np.int64)
    fill = np.zeros(n, dtype=np.int64)
    for f, (a, b, c) in enumerate(tri):
        for v in (a, b, c):
            if fill[v] < width:  # the few vertices with more than 8 triangles keep the first 8
                buf[v, fill[v]] = f
                fill[v] += 1
    return buf


def _boundary_loops(tri: np.ndarray) -> list:
    """Boundary loops of a triangle mesh (vertex lists in order), longest first."""
    e = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    key = np.sort(e, axis=1)
    _, inv, cnt = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    bedges = e[cnt[inv.reshape(-1)] == 1]
    nxt = {}
    for a, b in bedges:
        nxt.setdefault(int(a), int(b))
    loops, seen = [], set()
    for start in list(nxt):
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen and v in nxt:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        loops.append(np.asarray(loop))
    return sorted(loops, key=len, reverse=True)


def _real_topology_layout(tri: np.ndarray, keypoints: np.ndarray, n: int, lm: np.ndarray) -> np.ndarray:
    """2-D positions for the real BFM front topology: Tutte embedding + keypoint warp.

    The outer boundary goes on the face ellipse; inner holes (the BFM front mesh has an open
    mouth) are closed by a virtual centre vertex each, so the embedding does not open them
    (Tutte: no fold-overs). Five smoothed thin-plate-spline steps then move the 68 keypoints
    towards the generic layout while keeping the boundary; measured on facemodel_info.mat:
    4 of 70,789 triangles flip, keypoints within 0.06 units of the layout.
    """
    loops = _boundary_loops(tri)
    outer = loops[0]
    e = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    e = np.unique(np.sort(e, axis=1), axis=0)
    fans = [np.stack([hole, np.full(len(hole), n + i)], 1) for i, hole in enumerate(loops[1:])]
    e = np.concatenate([e] + fans)
    n_all = n + len(loops) - 1
    adj = scipy.sparse.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n_all, n_all)).tocsr()
    adj = adj + adj.T
    deg = np.asarray(adj.sum(axis=1)).ravel()
    lap = (scipy.sparse.diags(deg) - adj).tocsr()
    is_b = np.zeros(n_all, dtype=bool)
    is_b[outer] = True
    free = np.flatnonzero(~is_b)
    t = 2 * np.pi * np.arange(len(outer)) / len(outer)
    xb = np.stack([np.cos(t), np.sin(t)], 1)
    rhs = -lap[free][:, outer] @ xb
    xy = np.zeros((n_all, 2))
    xy[outer] = xb
    solve = scipy.sparse.linalg.factorized(lap[free][:, free].tocsc())
    xy[free, 0], xy[free, 1] = solve(rhs[:, 0]), solve(rhs[:, 1])
    xy = xy[:n]
    # Orthogonal Procrustes (rotation or reflection) of the disk onto the layout in disk units.
    target = (lm - (0.0, CY)) / (AX, AY)
    u, _, vt = np.linalg.svd(xy[keypoints].T @ target)
    xy = (xy @ (u @ vt)) * (AX, AY) + (0.0, CY)
    # Smoothed warps: one exact thin-plate spline through the keypoints folds ~10% of the
    # triangles; a few smoothed steps fold almost none.
    anchors = outer[:: max(1, len(outer) // 200)]
    for _ in range(_WARP_STEPS):
        ctrl = np.concatenate([xy[keypoints], xy[anchors]])
        disp = np.concatenate([lm - xy[keypoints], np.zeros((len(anchors), 2))])
        xy = xy + RBFInterpolator(ctrl, disp, kernel="thin_plate_spline", smoothing=3e-2)(xy)
    return xy


def _load_topology(topology):
    if isinstance(topology, dict):
        m = topology
        src = "topology dict"
    else:
        src = Path(topology)
        m = read_mat(src, (), "topology file (facemodel_info.mat)")
    for k in ("tri", "keypoints"):
        if k not in m:
            raise InputError(f"{src}: missing key {k!r} (expected facemodel_info.mat keys tri, point_buf, keypoints)")
    # facemodel_info.mat indices are 1-based; converted here for the layout, written back 1-based.
    tri = np.asarray(m["tri"]).astype(np.int64) - 1
    kp = np.asarray(m["keypoints"]).reshape(-1).astype(np.int64) - 1
    n = int(tri.max()) + 1
    pb = np.asarray(m["point_buf"]).astype(np.int64) - 1 if "point_buf" in m else _point_buf(tri, n)
    return tri, pb, kp, n


def write_standin_bfm(path, n_vertices: int = 4000, seed: int = 0, topology=None) -> Path:
    """Write a stand-in BFM_model_front.mat to `path` (atomically) and return the path.

    n_vertices: approximate vertex count of the generated Delaunay mesh (ignored when
    `topology` is given). seed: random bases (same seed, same file). topology: None, or a
    facemodel_info.mat path (or dict with 1-based tri, point_buf, keypoints) whose mesh is
    used instead (e.g. the real 35,709-vertex BFM front topology for speed tests).
    """
    rng = np.random.default_rng(seed)
    lm = reference_landmarks_xy()
    if topology is None:
        xy, tri, kp = _small_topology(n_vertices, lm, rng)
        pb = _point_buf(tri, len(xy))
    else:
        tri, pb, kp, n = _load_topology(topology)
        xy = _real_topology_layout(tri, kp, n, lm)
    n = len(xy)
    verts = np.concatenate([xy, face_height(xy[:, 0], xy[:, 1])[:, None]], axis=1)
    verts -= verts.mean(axis=0)  # the BFM front mean shape is (nearly) centred too

    k = np.arange(1, 81)
    id_base = _smooth_fields(xy, rng, 80, 3, 0.025 * k ** -0.6)
    mouth_eyes = (_gauss(xy[:, 0], xy[:, 1], 0.0, -0.38, 0.25, 0.15)
                  + 0.6 * _gauss(np.abs(xy[:, 0]), xy[:, 1], 0.32, 0.35, 0.15, 0.12)
                  + 0.2 * _gauss(xy[:, 0], xy[:, 1], 0.0, -0.65, 0.3, 0.2))
    ex_base = _smooth_fields(xy, rng, 64, 3, 0.012 * np.arange(1, 65) ** -0.6, weight=mouth_eyes)
    tex_base = _smooth_fields(xy, rng, 80, 3, 12.0 * k ** -0.5)
    meantex = _mean_texture(xy, xy[kp])  # features drawn where the keypoints actually are

    n_tri = len(tri)
    pb = np.where((pb < 0) | (pb >= n_tri), n_tri, pb)  # padding = the appended zero face (T+1 1-based)
    data = {
        "meanshape": verts.reshape(1, -1).astype(np.float32),
        "meantex": meantex.reshape(1, -1).astype(np.float32),
        "idBase": id_base.astype(np.float32),
        "exBase": ex_base.astype(np.float32),
        "texBase": tex_base.astype(np.float32),
        # MATLAB convention, 1-based, as in the real file.
        "tri": (tri + 1).astype(np.float32),
        "point_buf": (pb + 1).astype(np.float32),
        "keypoints": (np.asarray(kp) + 1).reshape(1, 68).astype(np.float32),
        "standin": np.array([[1]], dtype=np.uint8),
        "standin_version": np.array([[STANDIN_VERSION]], dtype=np.int32),
        "standin_note": "STAND-IN morphable model generated by faceReconstruction.standin, not the Basel Face Model",
    }
    path = Path(path)
    with atomic_path(path, suffix=".mat") as tmp:
        scipy.io.savemat(str(tmp), data, do_compression=False)
    return path
