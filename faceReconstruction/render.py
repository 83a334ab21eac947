"""CPU triangle rasterizer (numba) replacing the original's tf_mesh_renderer custom op.

The original (`faceReconstruction/mesh_render/render_op.pb` + `rasterize_triangles_kernel.so`
in rwenqi/3Dfacedeblurring, i.e. google/tf_mesh_renderer as used by
Deep3DFaceReconstruction's `face_decoder.py Render_block`) renders the SH-lit vertex colours
with light intensities 0 and ambient 1, so a pixel is the perspective-correct barycentric
interpolation of its triangle's vertex colours. Camera: eye (0, 0, cam_dist=10), looking at
the origin, up +y, vertical fov 2*atan(center/focal) = 2*atan(112/1015), near 0.01, far 50,
224 x 224 pixels.

This implementation:
- Pixel (col, row) covers [col, col+1) x [row, row+1) in the image coordinates of
  `bfm.project` (u right, v down); it is shaded by sampling at its centre (col+0.5, row+0.5).
  So a vertex projecting to (u, v) lies inside pixel (floor(u), floor(v)).
- A sample is inside a triangle when all three edge functions are >= 0 (either winding: the
  original does not cull back faces, neither do we); shared edges therefore leave no gaps.
- Depth test on the view depth w = cam_dist - Z, interpolated perspective-correctly
  (1/w is linear in screen space); the nearest triangle wins, ties keep the first drawn.
- Triangles with any vertex nearer than `near` (including behind the camera) are CULLED, not
  clipped (tf_mesh_renderer does no clipping either and draws such triangles wrongly);
  fragments farther than `far` are discarded.
- Output RGBA uint8: RGB = clip(interpolated colour, 0, 255) rounded; alpha 255 where a
  triangle covers the pixel centre, 0 elsewhere (binary, as the original's files); black
  background.
"""
from __future__ import annotations

import numba
import numpy as np

from faceReconstruction.bfm import CAM_DIST, CENTER, FOCAL, IMAGE_SIZE

NEAR = 0.01
FAR = 50.0


def _njit(fn):
    """numba.njit with an on-disk cache; without a writable cache location, compile per process."""
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(cache=False, nogil=True)(fn)


@_njit
def _rasterize(sx, sy, w, tri, height, width, near, far, zbuf, tri_id, bary):
    """Fill zbuf (view depth), tri_id (-1 = empty) and perspective-correct barycentrics."""
    for t in range(tri.shape[0]):
        i0, i1, i2 = tri[t, 0], tri[t, 1], tri[t, 2]
        w0, w1, w2 = w[i0], w[i1], w[i2]
        if w0 < near or w1 < near or w2 < near:
            continue
        x0, y0, x1, y1, x2, y2 = sx[i0], sy[i0], sx[i1], sy[i1], sx[i2], sy[i2]
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if area == 0.0 or not np.isfinite(area):
            continue
        inv_area = 1.0 / area
        # Pixels whose centre (c + 0.5) can lie in [min, max].
        # Clamped as floats first: far off-screen coordinates must not overflow int().
        c_lo = int(max(np.ceil(min(x0, x1, x2) - 0.5), 0.0))
        c_hi = int(min(np.floor(max(x0, x1, x2) - 0.5), width - 1.0))
        r_lo = int(max(np.ceil(min(y0, y1, y2) - 0.5), 0.0))
        r_hi = int(min(np.floor(max(y0, y1, y2) - 0.5), height - 1.0))
        if c_lo > c_hi or r_lo > r_hi:
            continue
        iw0, iw1, iw2 = 1.0 / w0, 1.0 / w1, 1.0 / w2
        for r in range(r_lo, r_hi + 1):
            py = r + 0.5
            for c in range(c_lo, c_hi + 1):
                px = c + 0.5
                # Screen-space barycentrics (signed sub-areas over the signed area).
                b0 = ((x1 - px) * (y2 - py) - (x2 - px) * (y1 - py)) * inv_area
                b1 = ((x2 - px) * (y0 - py) - (x0 - px) * (y2 - py)) * inv_area
                b2 = 1.0 - b0 - b1
                if b0 < 0.0 or b1 < 0.0 or b2 < 0.0:
                    continue
                p0, p1, p2 = b0 * iw0, b1 * iw1, b2 * iw2
                s = p0 + p1 + p2
                depth = 1.0 / s
                if depth > far or depth >= zbuf[r, c]:
                    continue
                zbuf[r, c] = depth
                tri_id[r, c] = t
                bary[r, c, 0] = p0 / s
                bary[r, c, 1] = p1 / s
                bary[r, c, 2] = p2 / s


@_njit
def _shade(tri, colors, tri_id, bary, out):
    h, w = tri_id.shape
    for r in range(h):
        for c in range(w):
            t = tri_id[r, c]
            if t < 0:
                continue
            i0, i1, i2 = tri[t, 0], tri[t, 1], tri[t, 2]
            for k in range(3):
                v = bary[r, c, 0] * colors[i0, k] + bary[r, c, 1] * colors[i1, k] + bary[r, c, 2] * colors[i2, k]
                v = min(max(v, 0.0), 255.0)
                out[r, c, k] = np.uint8(np.floor(v + 0.5))
            out[r, c, 3] = 255


def rasterize(vertices_cam, tri, size: int = IMAGE_SIZE, focal: float = FOCAL, center: float = CENTER,
              cam_dist: float = CAM_DIST, near: float = NEAR, far: float = FAR):
    """Visibility only: (depth (size, size) float64 with inf where empty, triangle id
    (size, size) int32 with -1 where empty, perspective-correct barycentrics (size, size, 3)).
    """
    v = np.asarray(vertices_cam, dtype=np.float64)
    t = np.ascontiguousarray(tri, dtype=np.int32)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices_cam must be (N, 3), got {v.shape}")
    if t.ndim != 2 or t.shape[1] != 3 or (t.size and (t.min() < 0 or t.max() >= v.shape[0])):
        raise ValueError(f"tri must be (T, 3) 0-based indices into {v.shape[0]} vertices")
    w = cam_dist - v[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        sx = focal * v[:, 0] / w + center
        sy = center - focal * v[:, 1] / w
    zbuf = np.full((size, size), np.inf)
    tri_id = np.full((size, size), -1, dtype=np.int32)
    bary = np.zeros((size, size, 3))
    _rasterize(np.ascontiguousarray(sx), np.ascontiguousarray(sy), np.ascontiguousarray(w), t,
               size, size, float(near), float(far), zbuf, tri_id, bary)
    return zbuf, tri_id, bary


def render_rgba(vertices_cam, tri, colors, size: int = IMAGE_SIZE, focal: float = FOCAL, center: float = CENTER,
                cam_dist: float = CAM_DIST, near: float = NEAR, far: float = FAR) -> np.ndarray:
    """Render vertex-coloured triangles -> uint8 (size, size, 4) RGBA, binary alpha.

    vertices_cam (N, 3) in the render frame (`bfm.reconstruct(...)["vertices_cam"]`), tri (T, 3)
    0-based, colors (N, 3) RGB 0-255 (clipped here). The default camera is the original's.
    """
    c = np.ascontiguousarray(colors, dtype=np.float64)
    if c.shape != (np.shape(vertices_cam)[0], 3):
        raise ValueError(f"colors must be (N, 3) matching vertices_cam, got {c.shape}")
    t = np.ascontiguousarray(tri, dtype=np.int32)
    _, tri_id, bary = rasterize(vertices_cam, t, size, focal, center, cam_dist, near, far)
    out = np.zeros((size, size, 4), dtype=np.uint8)
    _shade(t, c, tri_id, bary, out)
    return out
