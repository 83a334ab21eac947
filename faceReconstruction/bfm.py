"""Basel Face Model (front) loading and the face reconstruction maths, in one module.

Corresponds to the original `faceReconstruction/load_data.py` (class `BFM`) and
`faceReconstruction/reconstruct_mesh.py` of rwenqi/3Dfacedeblurring, which follow
microsoft/Deep3DFaceReconstruction (`load_data.py`, `reconstruct_mesh.py`). Same numbers and
conventions; here every step is a function of its own so the fitting code (demo.py) and the
renderer (demo_render.py) share them.

Conventions (all as the original):
- Model space: BFM units after the original's division by 1e5 (about decimetres), x to the
  subject's left as seen in the image (image right), y up, z towards the camera. The face is
  re-centred by the centroid of the MEAN shape (the same offset for every coefficient vector).
- Rotation: angles (x, y, z) in radians; R = Rz @ Ry @ Rx rotates column vectors. Vertices are
  stored as rows, so the original keeps `rotation = R.T` and computes `verts @ rotation`;
  `rotation_matrix` returns that transposed matrix.
- "Camera frame" (`vertices_cam`): rotated and translated vertices, still in the world frame
  of the original render graph, where the camera sits at (0, 0, cam_dist=10) looking at the
  origin with +y up. Depth in front of the camera is `cam_dist - z`.
- Image: 224 x 224, u = focal * X / (10 - Z) + 112 (columns, to the right),
  v = 224 - (focal * Y / (10 - Z) + 112) (rows, downward), focal 1015. A pixel (col, row)
  covers [col, col + 1) x [row, row + 1), so its centre is at (col + 0.5, row + 0.5).
- Coefficients: 239 = 80 id, 64 expression, 80 texture, 3 angles, 9 mono SH (shared by R, G,
  B; the deblurring paper's layout), 3 translation; 257 = same with 27 RGB SH (3 x 9, red
  first; the Deep3DFaceReconstruction layout).
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse

from common.fileio import InputError, read_mat

FOCAL = 1015.0
CENTER = 112.0
CAM_DIST = 10.0
IMAGE_SIZE = 224

N_ID, N_EX, N_TEX = 80, 64, 80
STANDIN_MESSAGE = "STAND-IN morphable model, not the Basel Face Model"
MODEL_NAME = "BFM_model_front.mat"


class StandinWarning(UserWarning):
    """Emitted whenever a stand-in morphable model (not the licensed BFM) is loaded."""


@dataclass
class BFM:
    """The front-face morphable model (35,709 vertices for the real BFM).

    Arrays (N vertices, T triangles):
      meanshape (N, 3) float32 model units; idBase (3N, 80), exBase (3N, 64) float32, rows
      ordered x0, y0, z0, x1, ... and already scaled by the standard deviations, so unit
      coefficients are one standard deviation; meantex (N, 3) float32 RGB 0-255;
      texBase (3N, 80) float32; tri (T, 3) int32 0-based; point_buf (N, K) int32 0-based
      indices of the triangles around each vertex, -1 = none (K = 8 for the BFM);
      keypoints (68,) int64 0-based vertex index of each of the 68 landmarks (iBUG order).
    """

    meanshape: np.ndarray
    idBase: np.ndarray
    exBase: np.ndarray
    meantex: np.ndarray
    texBase: np.ndarray
    tri: np.ndarray
    point_buf: np.ndarray
    keypoints: np.ndarray
    is_standin: bool = False
    path: Path | None = None
    kind: str = "bfm"
    extra: dict = field(default_factory=dict)
    _adjacency: object = field(default=None, repr=False, compare=False)

    @property
    def adjacency(self):
        """Sparse (N, T) matrix summing point_buf's triangles per vertex (built once)."""
        if self._adjacency is None:
            rows, slots = np.nonzero(self.point_buf >= 0)
            cols = self.point_buf[rows, slots]
            self._adjacency = scipy.sparse.csr_matrix(
                (np.ones(len(rows)), (rows, cols)), shape=(self.n_vertices, len(self.tri)))
        return self._adjacency

    @property
    def label(self) -> str:
        """Which model this is, for logs and metadata, e.g. 'ICT Face Model (shipped, MIT)'."""
        return MODEL_LABELS[self.kind]

    @property
    def has_texture(self) -> bool:
        """Whether the model has a texture basis (the BFM); the ICT model has none (zeros)."""
        return bool(np.any(self.texBase))

    @property
    def n_vertices(self) -> int:
        return int(self.meanshape.shape[0])

    @property
    def center(self) -> np.ndarray:
        """The point (3,) subtracted from every reconstructed shape: the centroid of the mean
        shape (the original's centring, for the BFM), or the `center` a model file stores (the
        shipped ICT model: the origin of the BFM frame it was fitted into, see convert_ict.py)."""
        c = self.extra.get("center")
        if c is not None:
            return np.asarray(c, np.float64).reshape(3)
        return self.meanshape.astype(np.float64).mean(axis=0)


REQUIRED_KEYS = ("meanshape", "meantex", "idBase", "exBase", "texBase", "tri", "point_buf", "keypoints")


def _read_model_file(path: Path) -> dict:
    """The arrays of a model file: `.npz` (numpy, no pickles; the shipped ICT model) or `.mat`."""
    if path.suffix.lower() != ".npz":
        return read_mat(path, REQUIRED_KEYS, "BFM_model_front.mat morphable model")
    if not path.is_file():
        raise InputError(f"{path}: morphable model not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            m = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{path}: cannot read as a .npz morphable model ({e})") from None
    missing = [k for k in REQUIRED_KEYS if k not in m]
    if missing:
        raise InputError(f"{path}: not a valid morphable model, missing keys {missing}")
    return m


def load_bfm(path) -> BFM:
    """Load a morphable model in the `BFM_model_front.mat` format: the real BFM, the shipped ICT
    Face Model (`.npz`, same keys; `convert_ict.py`) or a stand-in written by this package.

    The file stores 1-based MATLAB indices (tri, point_buf, keypoints); they are converted to
    0-based here, once, and nowhere else. Raises InputError naming the file and the problem.
    Loading a stand-in warns (StandinWarning) with STANDIN_MESSAGE.
    """
    path = Path(path)
    required = REQUIRED_KEYS
    m = _read_model_file(path)

    meanshape = np.asarray(m["meanshape"], dtype=np.float32).reshape(-1)
    if meanshape.size % 3:
        raise InputError(f"{path}: meanshape has {meanshape.size} values, not a multiple of 3")
    n = meanshape.size // 3
    meantex = np.asarray(m["meantex"], dtype=np.float32).reshape(-1)
    bases = {}
    for key, k in (("idBase", N_ID), ("exBase", N_EX), ("texBase", N_TEX)):
        b = np.asarray(m[key], dtype=np.float32)
        if b.shape != (3 * n, k):
            raise InputError(f"{path}: {key} has shape {b.shape}, expected {(3 * n, k)} for {n} vertices")
        bases[key] = np.ascontiguousarray(b)
    if meantex.size != 3 * n:
        raise InputError(f"{path}: meantex has {meantex.size} values, expected {3 * n}")

    # The one place where MATLAB's 1-based indices become 0-based.
    tri = np.asarray(m["tri"]).astype(np.int64) - 1
    point_buf = np.asarray(m["point_buf"]).astype(np.int64) - 1
    keypoints = np.asarray(m["keypoints"]).reshape(-1).astype(np.int64) - 1
    t = tri.shape[0] if tri.ndim == 2 else 0
    if tri.ndim != 2 or tri.shape[1] != 3 or t == 0 or tri.min() < 0 or tri.max() >= n:
        raise InputError(f"{path}: tri must be (T, 3) 1-based vertex indices in 1..{n}")
    if point_buf.ndim != 2 or point_buf.shape[0] != n:
        raise InputError(f"{path}: point_buf has shape {point_buf.shape}, expected ({n}, K)")
    # "No triangle" is written as 0 (-> -1) or, in the real facemodel_info.mat, as T + 1
    # (-> T): the original appends a zero normal as face T so both padding styles add nothing.
    point_buf[point_buf == t] = -1
    if point_buf.min() < -1 or point_buf.max() >= t:
        raise InputError(f"{path}: point_buf refers to triangles outside 1..{t}")
    if keypoints.shape != (68,) or keypoints.min() < 0 or keypoints.max() >= n:
        raise InputError(f"{path}: keypoints must be 68 vertex indices in 1..{n}")

    kind = _kind(m)
    is_standin = kind == "standin"
    if is_standin:
        warnings.warn(f"{STANDIN_MESSAGE}: {path}", StandinWarning, stacklevel=2)
    extra = {k: v for k, v in m.items() if not k.startswith("__") and k not in required}
    if "expressions" in extra:  # names; a .mat pads them to one length
        extra["expressions"] = np.array([str(e).strip() for e in np.asarray(extra["expressions"]).reshape(-1)])
    return BFM(
        meanshape=meanshape.reshape(n, 3),
        idBase=bases["idBase"],
        exBase=bases["exBase"],
        meantex=meantex.reshape(n, 3),
        texBase=bases["texBase"],
        tri=tri.astype(np.int32),
        point_buf=point_buf.astype(np.int32),
        keypoints=keypoints,
        is_standin=is_standin,
        path=path,
        kind=kind,
        extra=extra,
    )


def split_coeff(coeff) -> dict:
    """Split 239 or 257 coefficients (shape (239,), (257,), (B, 239) or (B, 257)).

    Returns views: id (.., 80), ex (.., 64), tex (.., 80), angles (.., 3) radians,
    gamma (.., 9) mono or (.., 27) RGB, trans (.., 3) model units.
    """
    c = np.asarray(coeff, dtype=np.float64)
    size = c.shape[-1] if c.ndim else 0
    if c.ndim not in (1, 2) or size not in (239, 257):
        raise ValueError(f"expected 239 or 257 coefficients (optionally batched), got shape {c.shape}")
    g_end = 236 if size == 239 else 254
    return {
        "id": c[..., 0:80],
        "ex": c[..., 80:144],
        "tex": c[..., 144:224],
        "angles": c[..., 224:227],
        "gamma": c[..., 227:g_end],
        "trans": c[..., g_end:size],
    }


def _basis_times(base: np.ndarray, coeff) -> np.ndarray:
    """(3N, K) basis times (..., K) coefficients -> (..., N, 3) float64.

    The product runs in the basis' float32 (a float64 copy of a 35,709-vertex basis would cost
    more than the product); the result is returned as float64.
    """
    c = np.asarray(coeff, dtype=base.dtype)
    out = c @ base.T
    return out.astype(np.float64).reshape(*c.shape[:-1], -1, 3)


def face_shape(bfm: BFM, id_coeff, ex_coeff) -> np.ndarray:
    """Shape (N, 3) (or (B, N, 3)) = mean + idBase @ id + exBase @ ex - centroid(mean shape)."""
    s = _basis_times(bfm.idBase, id_coeff) + _basis_times(bfm.exBase, ex_coeff)
    return s + (bfm.meanshape.astype(np.float64) - bfm.center)


def face_texture(bfm: BFM, tex_coeff) -> np.ndarray:
    """Albedo (N, 3) (or (B, N, 3)) = meantex + texBase @ tex, RGB, about 0-255 (not clipped)."""
    return _basis_times(bfm.texBase, tex_coeff) + bfm.meantex.astype(np.float64)


def vertex_normals(bfm: BFM, verts) -> np.ndarray:
    """Unit vertex normals (.., N, 3) as the original: per-triangle cross((v0-v1), (v1-v2)),
    summed (unnormalised, i.e. area-weighted) over the triangles listed in point_buf.

    Vertices touching no triangle get a zero normal (the original would divide 0 by 0).
    """
    v = np.asarray(verts, dtype=np.float64)
    tri = bfm.tri
    v0, v1, v2 = (np.take(v, tri[:, k], axis=-2) for k in range(3))
    e1, e2 = v0 - v1, v1 - v2
    # Cross product by components (np.cross is several times slower on 70k rows).
    fn = np.stack([e1[..., 1] * e2[..., 2] - e1[..., 2] * e2[..., 1],
                   e1[..., 2] * e2[..., 0] - e1[..., 0] * e2[..., 2],
                   e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]], axis=-1)
    # The original appends a zero face for point_buf's padding and sums the gathered rows; the
    # sparse (N, T) adjacency (padding left out) gives the same sum, faster.
    t = fn.shape[-2]
    flat = np.moveaxis(fn, -2, 0).reshape(t, -1)
    vn = np.moveaxis((bfm.adjacency @ flat).reshape((-1,) + fn.shape[:-2] + (3,)), 0, -2)
    norm = np.linalg.norm(vn, axis=-1, keepdims=True)
    return vn / np.where(norm > 0, norm, 1.0)


def rotation_matrix(angles) -> np.ndarray:
    """(3,) or (B, 3) Euler angles (x, y, z) radians -> (3, 3) or (B, 3, 3) = (Rz Ry Rx)^T.

    The transposed matrix rotates row vectors: `verts @ rotation_matrix(a)`.
    """
    a = np.asarray(angles, dtype=np.float64)
    cx, cy, cz = np.cos(a[..., 0]), np.cos(a[..., 1]), np.cos(a[..., 2])
    sx, sy, sz = np.sin(a[..., 0]), np.sin(a[..., 1]), np.sin(a[..., 2])
    one, zero = np.ones_like(cx), np.zeros_like(cx)
    rx = np.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).reshape(*a.shape[:-1], 3, 3)
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(*a.shape[:-1], 3, 3)
    rz = np.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).reshape(*a.shape[:-1], 3, 3)
    return np.swapaxes(rz @ ry @ rx, -1, -2)


def to_camera(verts, rotation, trans) -> np.ndarray:
    """Rigid transform of row-vector vertices: verts @ rotation + trans -> (.., N, 3).

    `rotation` is what `rotation_matrix` returns; the result is in the render frame (camera at
    (0, 0, cam_dist) looking towards -z).
    """
    t = np.asarray(trans, dtype=np.float64)
    return np.asarray(verts, dtype=np.float64) @ np.asarray(rotation, dtype=np.float64) + t[..., None, :]


def project(verts_cam, focal: float = FOCAL, center: float = CENTER, cam_dist: float = CAM_DIST) -> np.ndarray:
    """Perspective projection to image pixel coordinates (.., N, 2), v downward.

    u = focal * X / (cam_dist - Z) + center;  v = 2 * center - (focal * Y / (cam_dist - Z) + center)
    (the original's `224 - v`). Points at or behind the camera plane give inf/negative depth;
    callers that need them must check `cam_dist - Z > 0` themselves.
    """
    p = np.asarray(verts_cam, dtype=np.float64)
    depth = cam_dist - p[..., 2]
    u = focal * p[..., 0] / depth + center
    v = 2.0 * center - (focal * p[..., 1] / depth + center)
    return np.stack([u, v], axis=-1)


_A0, _A1, _A2 = np.pi, 2 * np.pi / np.sqrt(3.0), 2 * np.pi / np.sqrt(8.0)
_C0, _C1, _C2 = 1 / np.sqrt(4 * np.pi), np.sqrt(3.0) / np.sqrt(4 * np.pi), 3 * np.sqrt(5.0) / np.sqrt(12 * np.pi)


def sh_basis(normals) -> np.ndarray:
    """The original's 9 SH irradiance basis values (.., N, 9) for unit normals (.., N, 3)."""
    n = np.asarray(normals, dtype=np.float64)
    x, y, z = n[..., 0], n[..., 1], n[..., 2]
    return np.stack([
        np.full_like(x, _A0 * _C0),
        -_A1 * _C1 * y,
        _A1 * _C1 * z,
        -_A1 * _C1 * x,
        _A2 * _C2 * x * y,
        -_A2 * _C2 * y * z,
        _A2 * _C2 * 0.5 / np.sqrt(3.0) * (3 * z * z - 1),
        -_A2 * _C2 * x * z,
        _A2 * _C2 * 0.5 * (x * x - y * y),
    ], axis=-1)


def sh_color(tex, normals, gamma) -> np.ndarray:
    """Vertex colours (.., N, 3) = albedo * (Y(normals) @ (gamma + 0.8 on the DC term)).

    tex: (.., N, 3) RGB 0-255; normals: (.., N, 3) unit normals, already rotated like the
    vertices; gamma: (.., 9) mono (one light for R, G and B: the 239 layout) or (.., 27) /
    (.., 3, 9) RGB (red first). Result is not clipped (the renderer clips to 0-255).
    """
    g = np.asarray(gamma, dtype=np.float64)
    if g.shape[-1] == 27:
        g = g.reshape(*g.shape[:-1], 3, 9)
    elif g.shape[-1] == 9 and (g.ndim < 2 or g.shape[-2] != 3):
        g = np.repeat(g[..., None, :], 3, axis=-2)
    if g.shape[-2:] != (3, 9):
        raise ValueError(f"gamma must have 9 or 27 (3 x 9) values, got shape {np.shape(gamma)}")
    g = g.copy()
    g[..., :, 0] += 0.8
    lit = sh_basis(normals) @ np.swapaxes(g, -1, -2)  # (.., N, 3)
    return np.asarray(tex, dtype=np.float64) * lit


def reconstruct(bfm: BFM, coeff, focal: float = FOCAL, center: float = CENTER, cam_dist: float = CAM_DIST,
                albedo=None) -> dict:
    """Coefficients (239 / 257, optionally batched (B, C)) -> everything needed to render/fit.

    albedo: optional per-vertex albedo (N, 3) RGB 0-255 used instead of the texture model
    (meantex + texBase @ tex); the per-clip albedo of a model without texture (`albedo.py`).

    Returns a dict of float64 arrays (leading B only when batched):
      vertices_cam (.., N, 3) rotated + translated vertices (render frame, see module doc);
      colors (.., N, 3) SH-lit vertex colours RGB 0-255 (unclipped); uv (.., N, 2) image pixel
      coordinates (v down); landmarks68_uv (.., 68, 2) = uv at the 68 keypoints;
      and the intermediates shape (.., N, 3) (centred, unrotated), texture (.., N, 3),
      normals (.., N, 3) (rotated), rotation (.., 3, 3), plus the split coefficients.
    """
    parts = split_coeff(coeff)
    shape = face_shape(bfm, parts["id"], parts["ex"])
    if albedo is None:
        texture = face_texture(bfm, parts["tex"])
    else:
        texture = np.asarray(albedo, np.float64)
        if texture.shape != (bfm.n_vertices, 3):
            raise ValueError(f"albedo must be ({bfm.n_vertices}, 3) for this model, got {texture.shape}")
    rot = rotation_matrix(parts["angles"])
    normals = vertex_normals(bfm, shape) @ rot
    verts = to_camera(shape, rot, parts["trans"])
    uv = project(verts, focal, center, cam_dist)
    colors = sh_color(texture, normals, parts["gamma"])
    out = dict(parts)
    out.update(
        vertices_cam=verts,
        colors=colors,
        uv=uv,
        landmarks68_uv=uv[..., bfm.keypoints, :],
        shape=shape,
        texture=texture,
        normals=normals,
        rotation=rot,
    )
    return out


def keypoints3d(bfm: BFM) -> np.ndarray:
    """The 68 keypoints of the centred mean shape (68, 3), model units (landmark order iBUG)."""
    return bfm.meanshape.astype(np.float64)[bfm.keypoints] - bfm.center


def write_standin_bfm(path, n_vertices: int = 4000, seed: int = 0, topology=None) -> Path:
    """Write a stand-in `BFM_model_front.mat`; see `faceReconstruction.standin`."""
    from faceReconstruction.standin import write_standin_bfm as _write

    return _write(path, n_vertices=n_vertices, seed=seed, topology=topology)


SHIPPED_MODEL = Path(__file__).resolve().parent / "ICT" / "ict_face_model.npz"
MODEL_LABELS = {
    "bfm": "Basel Face Model (user's BFM_model_front.mat)",
    "ict": "ICT Face Model (shipped, MIT)",
    "standin": "STAND-IN test model (not a face model)",
}


def find_bfm(path=None) -> tuple[Path, str]:
    """Locate the morphable model: (path, kind), kind 'bfm', 'ict' or 'standin' (`model_kind`).

    One order everywhere (demo.py, demo_render.py, deblur_video.py, make demo):
    1. `path` (--bfm) when given; it must exist (InputError otherwise);
    2. the user's Basel Face Model: ./faceReconstruction/BFM/BFM_model_front.mat, then
       ./BFM/BFM_model_front.mat, relative to the working directory (as the original) and then
       to the project root;
    3. the shipped ICT Face Model, faceReconstruction/ICT/ict_face_model.npz.
    The generated stand-in is never chosen here (tests pass its path explicitly). Without any
    model file (a checkout without the shipped file) -> InputError saying what to do.
    """
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"{p}: morphable model file not found (give the BFM_model_front.mat "
                             "built by `python -m faceReconstruction.convert_bfm`, or leave --bfm out "
                             "for the shipped ICT Face Model)")
        return p, model_kind_of_file(p)
    root = Path(__file__).resolve().parents[1]
    for base in (Path.cwd(), root):
        for rel in (Path("faceReconstruction") / "BFM" / MODEL_NAME, Path("BFM") / MODEL_NAME):
            if (base / rel).is_file():
                return base / rel, model_kind_of_file(base / rel)
    if SHIPPED_MODEL.is_file():
        return SHIPPED_MODEL, "ict"
    raise InputError(f"no morphable model found: no {MODEL_NAME} in ./faceReconstruction/BFM or ./BFM, and the "
                     f"shipped ICT Face Model {SHIPPED_MODEL} is missing (restore it with `git checkout -- "
                     "faceReconstruction/ICT/ict_face_model.npz`, or give --bfm)")


def model_kind_of_file(path) -> str:
    """'standin' (flag `standin` set), 'ict' (`model_name` names ICT) or 'bfm' (anything else in
    the format: the user's Basel Face Model), read from the file's small fields only."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as z:
                fields = {k: z[k] for k in ("standin", "model_name") if k in z.files}
        else:
            fields = scipy.io.loadmat(str(path), variable_names=["standin", "model_name"])
    except (ValueError, OSError, TypeError, IndexError, KeyError, NotImplementedError, EOFError):
        return "bfm"  # unreadable here: load_bfm reports the problem with the file's name
    return _kind(fields)


def _kind(fields: dict) -> str:
    if "standin" in fields and bool(np.asarray(fields["standin"]).reshape(-1)[0]):
        return "standin"
    name = str(np.asarray(fields.get("model_name", "")).reshape(-1)[0]) if "model_name" in fields else ""
    return "ict" if "ICT" in name else "bfm"


def model_fingerprint(bfm: BFM) -> str:
    """12 hex digits identifying a model's geometry (SHA-1 of the float32 mean shape, the
    centring point and the triangles): equal for the same model in .mat or .npz, different for
    any other model."""
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(bfm.meanshape, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(bfm.center, dtype=np.float32).tobytes())
    h.update(np.ascontiguousarray(bfm.tri, dtype=np.int32).tobytes())
    return h.hexdigest()[:12]
