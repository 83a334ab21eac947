"""Convert the ICT Face Model (ICT-FaceKit, MIT licence) into this project's morphable-model format.

    python -m faceReconstruction.convert_ict ICT_FACEKIT_DIR --out faceReconstruction/ICT/ict_face_model.npz

ICT_FACEKIT_DIR is the repository folder as users clone it (github.com/ICT-VGL/ICT-FaceKit):
`FaceXModel/generic_neutral_mesh.obj`, `FaceXModel/identity000.obj ... identity099.obj`, one OBJ
per expression named in `FaceXModel/vertex_indices.json` ("expressions", 53 ARKit-style names),
all on one topology (26,719 vertices, quads). The output has the fields of
`BFM_model_front.mat` (see `bfm.load_bfm`): meanshape, idBase, exBase, meantex, texBase, tri,
point_buf, keypoints (1-based indices as the BFM file), plus `model_name` and `source`.

Choices (docs/ict.md, "3D face prior without the BFM: the ICT Face Model", says why):
- Face area: ICT's "narrow face area" (vertices 0-6,705; README of ICT-FaceKit, "Face Area
  Details") by default, `--area full` for vertices 0-9,408 (with forehead-to-neck skin). Only
  the polygons whose vertices all lie in the area are kept; quads are split along the diagonal
  from their first vertex. The three holes of the face mesh (two eye openings, the mouth
  opening, which ICT closes with separate eyeball and mouth-socket meshes) are closed with
  `FILL_RINGS` concentric rings and a centre vertex per hole, each new vertex a fixed convex
  combination of the hole's boundary vertices (so the model stays linear: the same
  combination is applied to the mean and to every mode), like the BFM, whose surface runs
  over the eyes and lips.
- Frame: a similarity transform (scale, rotation, translation; Umeyama's least squares) maps
  the Multi-PIE landmark vertices 18-68 of the neutral mesh (`idx_to_landmark_verts`, the list
  in ICT's README; the jaw line is left out, see ALIGN_LANDMARKS) onto `lm` of
  `similarity_Lm3D_all.mat` (BFM mean-face landmarks in the BFM's centred frame, units of about
  decimetres, x to image right, y up, z to the camera). The loader centres every shape
  (`bfm.face_shape`) on the mean shape's centroid for the BFM; the ICT face area's centroid
  lies 1.7 cm further forward than the BFM's (other coverage), so the file stores
  `center` = (0, 0, 0): the shape is used in the frame `lm` is in, unshifted. The original
  camera (focal 1015, centre 112, z = 10) and POS alignment then frame an ICT face as they
  frame a BFM face, and the translation coefficients mean the same as a BFM fit's.
- Identity: the first 80 modes, `identityNNN.obj - neutral`, times the similarity's scale and
  rotation. ICT's own sampler (Scripts/ict_face_model.py, `randomize_identity`) draws the mode
  weights from N(0, 1): the OBJ modes are already scaled to one standard deviation (their RMS
  displacement falls from 3.9 mm for mode 0 to 0.1 mm for mode 90), so a coefficient of 1 is
  one standard deviation, as for the BFM.
- Expression: the 53 blendshapes `name.obj - neutral` in the order of
  `vertex_indices.json["expressions"]` (ICT's loader order), coefficient = blendshape weight
  (0 = neutral, 1 = the full shape), slots 53-63 of the 64 zero. `exBounds` (64, 2) stores
  the valid weight range [0, 1] the fitting keeps them in.
- Texture: ICT has no albedo model; texBase is zeros and per-clip albedos are estimated by
  demo.py (`albedo.py`). meantex, the mean skin albedo a single image falls back to, is the
  per-vertex median albedo of the face photos given with `--albedo_photos` (the shipped file:
  ../shared/data/faces5pt), else `MEAN_SKIN_ALBEDO` for every vertex.
- Storage: `.npz` (compressed; bases float16, which keeps 1e-3 relative precision, i.e. about
  10 micrometres on a 1 cm mode) or `.mat` (float32, as the BFM file).

Bad input (missing folder/file, malformed OBJ, vertex counts that differ between files) ->
one message naming the file, exit status 2.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import scipy.io
import scipy.sparse

from common.cli import ArgumentParser
from common.fileio import InputError, atomic_path

from faceReconstruction.bfm import N_EX, N_ID, N_TEX

AREAS = {"narrow": 6706, "full": 9409}
# Landmarks 18-68 (0-based 17..67: brows, nose, eyes, mouth) fix the similarity. The 17 jaw-line
# points are left out: the BFM's sit on its front surface, ICT's on the jaw's silhouette, 1.3 to
# 2.2 cm further back; with them the fit's scale grows by 7 % and the inner points move 1 cm.
ALIGN_LANDMARKS = np.arange(17, 68)
FILL_RINGS = 3
# One mean skin albedo (RGB 0-255) for every vertex when no photos are given (--albedo_photos):
# the median over the 24 ../shared/data/faces5pt photos of each photo's median albedo, as
# `albedo.mean_albedo` estimates it (measured once, rounded).
MEAN_SKIN_ALBEDO = (200.0, 140.0, 117.0)
MODEL_NAME = "ICT Face Model (ICT-FaceKit, MIT)"


# ------------------------------------------------------------------------------ OBJ reading


def read_obj(path, polygons: bool = False):
    """Vertices (V, 3) float64 of an OBJ file, and with polygons=True also its faces.

    Faces are returned as a list of 0-based vertex index lists (texture / normal indices after
    '/' are dropped). Raises InputError naming the file when it is missing or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: OBJ file not found")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read OBJ file ({e})") from None
    lines = text.splitlines()
    rows = [ln[2:] for ln in lines if ln.startswith("v ")]
    try:
        verts = np.array(" ".join(rows).split(), dtype=np.float64)
    except ValueError:
        raise InputError(f"{path}: malformed vertex line ('v x y z' expected)") from None
    if not rows or verts.size != 3 * len(rows) or not np.all(np.isfinite(verts)):
        raise InputError(f"{path}: malformed OBJ, expected 'v x y z' lines with three finite numbers")
    verts = verts.reshape(-1, 3)
    if not polygons:
        return verts
    faces = []
    try:
        for ln in lines:
            if ln.startswith("f "):
                faces.append([int(t.split("/")[0]) - 1 for t in ln.split()[1:]])
    except ValueError:
        raise InputError(f"{path}: malformed face line ('f i j k ...' expected)") from None
    if not faces or any(len(f) < 3 or min(f) < 0 or max(f) >= len(verts) for f in faces):
        raise InputError(f"{path}: faces missing or referring to vertices outside 1..{len(verts)}")
    return verts, faces


# ------------------------------------------------------------------------------ mesh helpers


def triangulate(polygons) -> np.ndarray:
    """Polygons (lists of >= 3 vertex indices) -> (T, 3) triangles, fans from the first vertex.

    Keeps the polygons' winding (counter-clockwise seen from outside in ICT's meshes).
    """
    tri = [(p[0], p[k], p[k + 1]) for p in polygons for k in range(1, len(p) - 1)]
    return np.asarray(tri, dtype=np.int64).reshape(-1, 3)


def boundary_loops(tri) -> list[np.ndarray]:
    """Closed boundary loops of a triangle mesh, each (L,) vertex indices in the direction
    of the directed boundary edges of its triangles (a -> b means some triangle has edge a -> b
    and none has b -> a). Raises ValueError on a non-manifold boundary."""
    tri = np.asarray(tri)
    edges = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    present = {(int(a), int(b)) for a, b in edges}
    succ = {}
    for a, b in edges:
        a, b = int(a), int(b)
        if (b, a) not in present:
            if a in succ:
                raise ValueError(f"non-manifold boundary at vertex {a}")
            succ[a] = b
    loops, seen = [], set()
    for start in sorted(succ):
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen:
            seen.add(v)
            loop.append(v)
            v = succ[v]
        loops.append(np.asarray(loop, dtype=np.int64))
    return loops


def fill_holes(loops, n_vertices: int, rings: int = FILL_RINGS):
    """Close holes with concentric rings: (triangles (T', 3), sparse weights (n_new, n_vertices)).

    For a hole with boundary b_0..b_{L-1} and centroid c (mean of the b_i), ring k (1..rings)
    has vertices (1 - k / (rings + 1)) b_i + k / (rings + 1) c, then one centre vertex c. The
    new vertices are numbered from n_vertices on; row j of `weights` expresses new vertex j as
    a combination of the old ones, so it applies to the mean shape and to every mode alike.
    The new triangles take each boundary edge a -> b as b -> a, i.e. the same orientation as
    the triangles around the hole.
    """
    tris, r_idx, c_idx, vals = [], [], [], []
    nxt = n_vertices
    for loop in loops:
        n = len(loop)
        ring_ids = [np.asarray(loop)]
        for k in range(1, rings + 1):
            f = k / (rings + 1)
            ids = np.arange(nxt, nxt + n)
            nxt += n
            for i in range(n):  # (1 - f) b_i + f * mean(b)
                r_idx += [ids[i] - n_vertices] * (n + 1)
                c_idx += list(loop) + [loop[i]]
                vals += [f / n] * n + [1 - f]
            ring_ids.append(ids)
        c_id = nxt
        nxt += 1
        r_idx += [c_id - n_vertices] * n
        c_idx += list(loop)
        vals += [1.0 / n] * n
        for outer, inner in zip(ring_ids[:-1], ring_ids[1:]):
            for i in range(n):
                a, b = outer[i], outer[(i + 1) % n]
                ia, ib = inner[i], inner[(i + 1) % n]
                tris += [(b, a, ia), (b, ia, ib)]
        inner = ring_ids[-1]
        for i in range(n):
            tris.append((inner[(i + 1) % n], inner[i], c_id))
    weights = scipy.sparse.csr_matrix((vals, (r_idx, c_idx)), shape=(nxt - n_vertices, n_vertices))
    return np.asarray(tris, dtype=np.int64).reshape(-1, 3), weights


def point_buffer(tri, n_vertices: int) -> np.ndarray:
    """(N, K) 0-based indices of the triangles around each vertex, -1 padded (K = max valence)."""
    tri = np.asarray(tri)
    count = np.bincount(tri.reshape(-1), minlength=n_vertices)
    buf = np.full((n_vertices, max(int(count.max()), 1)), -1, dtype=np.int64)
    fill = np.zeros(n_vertices, dtype=np.int64)
    for t, face in enumerate(tri):
        for v in face:
            buf[v, fill[v]] = t
            fill[v] += 1
    return buf


def similarity(src, dst):
    """Least-squares similarity (Umeyama 1991): s, R (3, 3), t with s R src_i + t ~ dst_i.

    src, dst: (K, 3) corresponding points. R is a proper rotation (det +1).
    """
    p0, q0 = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    pm, qm = p0.mean(0), q0.mean(0)
    p, q = p0 - pm, q0 - qm
    u, sig, vt = np.linalg.svd(q.T @ p)
    d = np.ones(3)
    d[2] = np.sign(np.linalg.det(u @ vt))
    r = u @ np.diag(d) @ vt
    s = float((sig * d).sum() / (p * p).sum())
    return s, r, qm - s * r @ pm


# ------------------------------------------------------------------------------ conversion


def _read_config(folder: Path) -> dict:
    path = folder / "vertex_indices.json"
    if not path.is_file():
        raise InputError(f"{path}: not found (is {folder.parent} an ICT-FaceKit folder?)")
    try:
        cfg = json.loads(path.read_text())
        names = [str(x) for x in cfg["expressions"]]
        lmk = np.asarray(cfg["idx_to_landmark_verts"], dtype=np.int64)
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: cannot read 'expressions' and 'idx_to_landmark_verts' ({e})") from None
    if lmk.shape != (68,):
        raise InputError(f"{path}: idx_to_landmark_verts has {lmk.size} entries, expected 68")
    if not names or len(names) > N_EX:
        raise InputError(f"{path}: {len(names)} expressions, expected 1..{N_EX}")
    return {"expressions": names, "landmarks": lmk}


def _deltas(folder: Path, names, neutral, n_area):
    out = np.empty((len(names), n_area, 3))
    for k, name in enumerate(names):
        path = folder / f"{name}.obj"
        v = read_obj(path)
        if v.shape != neutral.shape:
            raise InputError(f"{path}: {len(v)} vertices, but generic_neutral_mesh.obj has {len(neutral)}")
        out[k] = v[:n_area] - neutral[:n_area]
    return out


def convert(ict_dir, lm3d_path, area: str = "narrow", rings: int = FILL_RINGS, log=None) -> dict:
    """Read an ICT-FaceKit folder -> dict of arrays in the model format (0-based indices).

    Keys: meanshape (N, 3), idBase (3N, 80), exBase (3N, 64), exBounds (64, 2), meantex (N, 3),
    texBase (3N, 80), tri (T, 3), point_buf (N, K) (-1 = none), keypoints (68,), similarity
    (4, 4) homogeneous ICT -> model-frame transform, expressions (64,) names ('' = unused),
    n_source_vertices (number of ICT vertices before the hole fill), landmark_rms (model units).
    """
    log = log or (lambda msg: None)
    folder = Path(ict_dir) / "FaceXModel"
    if not folder.is_dir():
        raise InputError(f"{ict_dir}: no FaceXModel/ folder inside (give the ICT-FaceKit repository folder)")
    if area not in AREAS:
        raise ValueError(f"area must be one of {sorted(AREAS)}")
    n_area = AREAS[area]
    cfg = _read_config(folder)
    neutral, polys = read_obj(folder / "generic_neutral_mesh.obj", polygons=True)
    if len(neutral) < n_area:
        raise InputError(f"{folder / 'generic_neutral_mesh.obj'}: {len(neutral)} vertices, the {area} face area "
                         f"needs {n_area}")
    lmk = cfg["landmarks"]
    if lmk.min() < 0 or lmk.max() >= n_area:
        raise InputError(f"{folder / 'vertex_indices.json'}: landmark vertices outside the {area} face area "
                         f"(0..{n_area - 1})")
    id_names = []
    while (folder / f"identity{len(id_names):03d}.obj").is_file():
        id_names.append(f"identity{len(id_names):03d}")
    if len(id_names) < N_ID:
        raise InputError(f"{folder}: {len(id_names)} identity modes identity000.obj ..., need {N_ID}")

    tri = triangulate([p for p in polys if max(p) < n_area])
    holes = boundary_loops(tri)
    # The outer border is the longest loop (by length in space); the others are the holes.
    lengths = [np.linalg.norm(neutral[lp] - neutral[np.roll(lp, -1)], axis=1).sum() for lp in holes]
    outer = int(np.argmax(lengths))
    holes = [lp for i, lp in enumerate(holes) if i != outer]
    fill_tri, fill_w = fill_holes(holes, n_area, rings)
    # (N, n_area) sparse: every model vertex as a combination of ICT's face-area vertices.
    expand = scipy.sparse.vstack([scipy.sparse.identity(n_area, format="csr"), fill_w]).tocsr()
    tri = np.concatenate([tri, fill_tri])
    log(f"face area '{area}': {n_area} ICT vertices, {len(holes)} holes closed "
        f"(+{fill_w.shape[0]} vertices), {len(tri)} triangles")

    lm = np.asarray(scipy.io.loadmat(str(lm3d_path))["lm"], np.float64) if lm3d_path else None
    if lm is None or lm.shape != (68, 3):
        raise InputError(f"{lm3d_path}: expected key 'lm' of shape (68, 3) (similarity_Lm3D_all.mat)")
    mean_ict = expand @ neutral[:n_area]
    s, r, t = similarity(neutral[lmk[ALIGN_LANDMARKS]], lm[ALIGN_LANDMARKS])
    mean = mean_ict @ (s * r).T + t
    err = mean[lmk] - lm
    rms = float(np.sqrt((err[ALIGN_LANDMARKS] ** 2).sum(1).mean()))
    log(f"similarity: scale {s:.5f} model units per ICT unit, rms {rms:.4f} units over landmarks 18-68, "
        f"jaw line {np.sqrt((err[:17] ** 2).sum(1).mean()):.4f}; mesh centroid at {np.round(mean.mean(0), 4)} "
        "(not subtracted: center = 0)")

    def to_basis(deltas, k_out):
        # (K, n_area, 3) -> expanded, rotated, scaled -> (3N, k_out) with zero columns after K.
        d = np.stack([expand @ x for x in deltas]) @ (s * r).T
        out = np.zeros((d.shape[1] * 3, k_out))
        out[:, :len(d)] = d.reshape(len(d), -1).T
        return out

    log(f"reading {N_ID} identity modes and {len(cfg['expressions'])} expressions")
    id_base = to_basis(_deltas(folder, id_names[:N_ID], neutral, n_area), N_ID)
    ex_base = to_basis(_deltas(folder, cfg["expressions"], neutral, n_area), N_EX)
    n = len(mean)
    bounds = np.zeros((N_EX, 2))
    bounds[:len(cfg["expressions"]), 1] = 1.0
    sim = np.eye(4)
    sim[:3, :3], sim[:3, 3] = s * r, t
    return {
        "meanshape": mean,
        "idBase": id_base,
        "exBase": ex_base,
        "exBounds": bounds,
        "meantex": np.tile(np.asarray(MEAN_SKIN_ALBEDO), (n, 1)),
        "texBase": np.zeros((3 * n, N_TEX)),
        "tri": tri,
        "point_buf": point_buffer(tri, n),
        "keypoints": lmk.copy(),
        "similarity": sim,
        "expressions": np.asarray(cfg["expressions"] + [""] * (N_EX - len(cfg["expressions"]))),
        "n_source_vertices": np.int64(n_area),
        "landmark_rms": np.float64(rms),
        "lm3d": lm,
        "center": np.zeros(3),
    }


def write_model(model: dict, out, source: str = "") -> Path:
    """Write `convert`'s dict in the BFM_model_front format: 1-based tri/point_buf/keypoints
    (point_buf padded with T + 1, as facemodel_info.mat), row-vector meanshape / meantex.

    `.npz`: compressed, bases float16, the rest float32 / int32; `.mat`: float32 throughout.
    """
    out = Path(out)
    if out.suffix not in (".npz", ".mat"):
        raise InputError(f"{out}: output must end in .npz or .mat")
    n_tri = len(model["tri"])
    buf = np.where(model["point_buf"] >= 0, model["point_buf"] + 1, n_tri + 1)
    base_dtype = np.float16 if out.suffix == ".npz" else np.float32
    data = {
        "meanshape": model["meanshape"].reshape(1, -1).astype(np.float32),
        "meantex": model["meantex"].reshape(1, -1).astype(np.float32),
        "idBase": model["idBase"].astype(base_dtype),
        "exBase": model["exBase"].astype(base_dtype),
        "texBase": model["texBase"].astype(base_dtype),
        "exBounds": model["exBounds"].astype(np.float32),
        "tri": (model["tri"] + 1).astype(np.int32),
        "point_buf": buf.astype(np.int32),
        "keypoints": (model["keypoints"] + 1).reshape(1, 68).astype(np.int32),
        "similarity": model["similarity"].astype(np.float64),
        "expressions": model["expressions"],
        "n_source_vertices": np.int32(model["n_source_vertices"]),
        # The BFM mean-face landmarks that fixed the frame: the alignment reference points
        # (`align.find_lm3d`), so crops are the original's without a separate file.
        "lm3d": model["lm3d"].astype(np.float64),
        # Shapes are centred on this point, not on the mean shape's centroid (`bfm.BFM.center`).
        "center": model["center"].astype(np.float64),
        "model_name": np.asarray(MODEL_NAME),
        "source": np.asarray(source),
        "standin": np.int32(0),
    }
    with atomic_path(out) as tmp:
        if out.suffix == ".npz":
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **data)
        else:
            scipy.io.savemat(str(tmp), data, do_compression=True)
    return out


def as_model(model: dict):
    """`convert`'s dict as a loaded `bfm.BFM` (to fit with it before it is written)."""
    from faceReconstruction.bfm import BFM

    return BFM(meanshape=model["meanshape"].astype(np.float32), idBase=model["idBase"].astype(np.float32),
               exBase=model["exBase"].astype(np.float32), meantex=model["meantex"].astype(np.float32),
               texBase=model["texBase"].astype(np.float32), tri=model["tri"].astype(np.int32),
               point_buf=model["point_buf"].astype(np.int32), keypoints=model["keypoints"].astype(np.int64),
               kind="ict", extra={"exBounds": model["exBounds"], "lm3d": model["lm3d"], "center": model["center"]})


def photo_pairs(folder) -> list:
    """[(image, five-point file)] of a faces5pt-style folder (NAME.jpg|png + NAME.txt), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: photo folder not found")
    pairs = []
    for txt in sorted(folder.glob("*.txt")):
        imgs = [p for ext in (".jpg", ".jpeg", ".png") for p in [txt.with_suffix(ext)] if p.is_file()]
        if imgs:
            pairs.append((imgs[0], txt))
    if not pairs:
        raise InputError(f"{folder}: no NAME.jpg|png + NAME.txt (five points) pairs inside")
    return pairs


def main(argv=None) -> int:
    """Exit statuses as every command (common/cli.py): 0 done, 2 bad input, 1 internal failure."""
    from common.cli import run_cli

    return run_cli(_main, argv, prog="python -m faceReconstruction.convert_ict")


def _main(argv=None) -> int:
    p = ArgumentParser(
        prog="python -m faceReconstruction.convert_ict",
        description="Convert the ICT Face Model (an ICT-FaceKit folder as cloned from "
                    "github.com/ICT-VGL/ICT-FaceKit) into the project's morphable-model format: face area, "
                    "80 identity modes, 53 expression blendshapes (64 slots), in the BFM frame.")
    p.add_argument("ict_dir", help="ICT-FaceKit folder (holding FaceXModel/)")
    p.add_argument("--out", default="faceReconstruction/ICT/ict_face_model.npz",
                   help="output .npz (float16 bases) or .mat (float32) (default: %(default)s)")
    p.add_argument("--lm3d", default=None,
                   help="similarity_Lm3D_all.mat with the BFM mean-face landmarks 'lm' that fix the frame "
                        "(default: ../shared/data/bfm_index/ or faceReconstruction/BFM/)")
    p.add_argument("--area", default="narrow", choices=sorted(AREAS),
                   help="ICT face area: narrow (vertices 0-6705, default) or full (0-9408)")
    p.add_argument("--albedo_photos", default=None,
                   help="folder of face photos with five points (NAME.jpg|png + NAME.txt, e.g. "
                        "../shared/data/faces5pt): meantex becomes their per-vertex median albedo "
                        "(default: one mean skin colour for every vertex)")
    p.add_argument("--source", default="", help="provenance text stored in the file (e.g. repository and commit)")
    a = p.parse_args(argv)
    lm3d = Path(a.lm3d) if a.lm3d else _default_lm3d()
    if not lm3d.is_file():
        raise InputError(f"{lm3d}: similarity_Lm3D_all.mat not found (give --lm3d)")
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    model = convert(a.ict_dir, lm3d, area=a.area, log=log)
    if a.albedo_photos:
        from faceReconstruction.albedo import mean_albedo
        from faceReconstruction.align import load_lm3d

        pairs = photo_pairs(a.albedo_photos)
        log(f"mean albedo from {len(pairs)} photos in {a.albedo_photos}")
        model["meantex"] = mean_albedo(as_model(model), pairs, load_lm3d(lm3d), log=log)
    out = write_model(model, a.out, source=a.source)
    print(out)
    return 0


def _default_lm3d() -> Path:
    root = Path(__file__).resolve().parents[1]
    for cand in (root.parent / "shared" / "data" / "bfm_index" / "similarity_Lm3D_all.mat",
                 root / "faceReconstruction" / "BFM" / "similarity_Lm3D_all.mat"):
        if cand.is_file():
            return cand
    return Path("similarity_Lm3D_all.mat")


if __name__ == "__main__":
    sys.exit(main())
