"""Build BFM_model_front.mat from the raw Basel Face Model 2009 and the Deep3DFaceRecon index files.

Corresponds to `load_data.py transferBFM09()` / `LoadExpBasis()` of
microsoft/Deep3DFaceReconstruction (the file rwenqi/3Dfacedeblurring's `faceReconstruction`
loads). Same result:
- identity basis = shapePC * shapeEV (each component scaled by its standard deviation),
  / 1e5, first 80 components; texture basis = texPC * texEV, first 80;
- expression basis (Exp_Pca.bin, from Guo et al.'s 3DDFA) = expPC * std_exp (std_exp.txt),
  / 1e5, first 64; the file's mean expression is ignored, as in the original;
- mean shape / 1e5, mean texture as is;
- 35,709 front vertices: BFM_front_idx.mat (`idx`, 1-based into the 53,215 expression-model
  vertices), BFM_exp_idx.mat (`trimIndex`, 1-based into BFM09's 53,490 vertices);
- tri, point_buf, keypoints, tri_mask2, frontmask2_idx, skinmask copied from
  facemodel_info.mat (kept 1-based: the .mat stays in the original's MATLAB convention).

Input formats: 01_MorphableModel.mat holds shapeMU (3*53490, 1), shapePC (3*53490, 199),
shapeEV (199, 1), texMU, texPC, texEV alike, vertex-major (x0, y0, z0, x1, ...).
Exp_Pca.bin: int32 K (number of components, 79), then float32 mean (3 * V) and float32
components (K * 3 * V), component-major, V = 53,215 (the length of trimIndex).

CLI: `python -m faceReconstruction.convert_bfm --bfm_dir DIR [--model F] [--exp F]
[--index_dir DIR] [--out F]`; prints the output path; bad input -> one message, exit 2.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import scipy.io

from common.cli import ArgumentParser
from common.fileio import InputError, atomic_path, read_mat

N_ID, N_EX, N_TEX = 80, 64, 80
INFO_KEYS = ("tri", "point_buf", "keypoints", "tri_mask2", "frontmask2_idx", "skinmask")


def _loadmat(path: Path, keys) -> dict:
    return read_mat(path, keys, "file")


def load_exp_basis(path, n_vertices: int) -> np.ndarray:
    """Read Exp_Pca.bin -> expression components (3 * n_vertices, K) float32 (unscaled)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    raw = path.read_bytes()
    if len(raw) < 4:
        raise InputError(f"{path}: too short for an Exp_Pca.bin header")
    k = int(np.frombuffer(raw, dtype="<i4", count=1)[0])
    need = 4 + 4 * 3 * n_vertices * (1 + k)
    if k <= 0 or len(raw) < need:
        raise InputError(f"{path}: expected {need} bytes for {k} components of {n_vertices} vertices, "
                         f"file has {len(raw)}")
    pcs = np.frombuffer(raw, dtype="<f4", count=3 * n_vertices * k, offset=4 + 4 * 3 * n_vertices)
    return pcs.reshape(k, 3 * n_vertices).T


def _take_vertices(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Rows of a vertex-major (3V, K) array for the vertices `idx` (0-based) -> (3 len(idx), K)."""
    return a.reshape(-1, 3, a.shape[1])[idx].reshape(-1, a.shape[1])


def convert(model_path, exp_path, index_dir, out_path) -> Path:
    """Write BFM_model_front.mat (atomically) from the raw files; returns out_path."""
    model_path, exp_path, index_dir, out_path = map(Path, (model_path, exp_path, index_dir, out_path))
    bfm = _loadmat(model_path, ("shapeMU", "shapePC", "shapeEV", "texMU", "texPC", "texEV"))
    front = _loadmat(index_dir / "BFM_front_idx.mat", ("idx",))
    trim = _loadmat(index_dir / "BFM_exp_idx.mat", ("trimIndex",))
    info = _loadmat(index_dir / "facemodel_info.mat", ("tri", "point_buf", "keypoints"))
    std_path = index_dir / "std_exp.txt"
    if not std_path.is_file():
        raise InputError(f"{std_path}: file not found")
    try:
        std_exp = np.loadtxt(std_path).reshape(-1)
    except ValueError as e:
        raise InputError(f"{std_path}: not numeric ({e})") from None

    shape_pc = np.asarray(bfm["shapePC"], dtype=np.float64)
    n_raw = shape_pc.shape[0] // 3
    if shape_pc.shape[0] % 3 or shape_pc.shape[1] < N_ID:
        raise InputError(f"{model_path}: shapePC has shape {shape_pc.shape}, expected (3 * vertices, >= {N_ID})")
    for key, ncols in (("texPC", N_TEX), ("shapeMU", 1), ("texMU", 1)):
        if bfm[key].shape[0] != 3 * n_raw or bfm[key].shape[1] < ncols:
            raise InputError(f"{model_path}: {key} has shape {bfm[key].shape}, expected ({3 * n_raw}, >= {ncols})")

    # MATLAB's 1-based indices -> 0-based, for the selection only.
    trim_idx = np.asarray(trim["trimIndex"]).reshape(-1).astype(np.int64) - 1
    front_idx = np.asarray(front["idx"]).reshape(-1).astype(np.int64) - 1
    if trim_idx.min() < 0 or trim_idx.max() >= n_raw:
        raise InputError(f"{index_dir / 'BFM_exp_idx.mat'}: trimIndex outside 1..{n_raw} "
                         f"(the model has {n_raw} vertices)")
    if front_idx.min() < 0 or front_idx.max() >= len(trim_idx):
        raise InputError(f"{index_dir / 'BFM_front_idx.mat'}: idx outside 1..{len(trim_idx)}")
    shape_idx = trim_idx[front_idx]  # front vertices in BFM09 numbering

    exp_pc = load_exp_basis(exp_path, len(trim_idx))
    if std_exp.size < N_EX or exp_pc.shape[1] < N_EX:
        raise InputError(f"{exp_path}: {exp_pc.shape[1]} expression components and {std_exp.size} std values "
                         f"in {std_path}; need at least {N_EX}")
    k = min(exp_pc.shape[1], std_exp.size)

    shape_ev = np.asarray(bfm["shapeEV"], dtype=np.float64).reshape(-1)
    tex_ev = np.asarray(bfm["texEV"], dtype=np.float64).reshape(-1)
    id_base = shape_pc[:, :N_ID] * shape_ev[:N_ID] / 1e5  # scale as the original: to about decimetres
    tex_base = np.asarray(bfm["texPC"], dtype=np.float64)[:, :N_TEX] * tex_ev[:N_TEX]
    ex_base = exp_pc[:, :k].astype(np.float64) * std_exp[:k] / 1e5
    mean_shape = np.asarray(bfm["shapeMU"], dtype=np.float64).reshape(-1, 3)[shape_idx] / 1e5
    mean_tex = np.asarray(bfm["texMU"], dtype=np.float64).reshape(-1, 3)[shape_idx]

    n_front = len(front_idx)
    tri = np.asarray(info["tri"])
    if tri.max() > n_front:
        raise InputError(f"{index_dir / 'facemodel_info.mat'}: tri refers to vertex {int(tri.max())}, "
                         f"but BFM_front_idx selects {n_front}")
    data = {
        "meanshape": mean_shape.reshape(1, -1).astype(np.float32),
        "meantex": mean_tex.reshape(1, -1).astype(np.float32),
        "idBase": _take_vertices(id_base, shape_idx).astype(np.float32),
        "exBase": _take_vertices(ex_base[:, :N_EX], front_idx).astype(np.float32),
        "texBase": _take_vertices(tex_base, shape_idx).astype(np.float32),
    }
    data.update({key: info[key] for key in INFO_KEYS if key in info})
    with atomic_path(out_path, suffix=".mat") as tmp:
        scipy.io.savemat(str(tmp), data, do_compression=False)
    return out_path


def main(argv=None) -> int:
    """Exit statuses as every command (common/cli.py): 0 done, 2 bad input, 1 internal failure."""
    from common.cli import run_cli

    return run_cli(_main, argv, prog="python -m faceReconstruction.convert_bfm")


def _main(argv=None) -> int:
    p = ArgumentParser(
        prog="python -m faceReconstruction.convert_bfm",
        description="Build BFM_model_front.mat (35,709-vertex front face, 80 id / 64 expression / 80 texture "
                    "components) from the Basel Face Model 2009 01_MorphableModel.mat, the expression basis "
                    "Exp_Pca.bin and the Deep3DFaceReconstruction BFM/ index files.")
    p.add_argument("--bfm_dir", default="./faceReconstruction/BFM",
                   help="folder holding all inputs; the defaults of the other options are inside it "
                        "(default: %(default)s)")
    p.add_argument("--model", help="BFM 2009 model (default: BFM_DIR/01_MorphableModel.mat)")
    p.add_argument("--exp", help="expression basis (default: BFM_DIR/Exp_Pca.bin)")
    p.add_argument("--index_dir", help="folder with BFM_front_idx.mat, BFM_exp_idx.mat, facemodel_info.mat, "
                                       "std_exp.txt (default: BFM_DIR)")
    p.add_argument("--out", help="output file (default: BFM_DIR/BFM_model_front.mat)")
    a = p.parse_args(argv)
    d = Path(a.bfm_dir)
    out = convert(a.model or d / "01_MorphableModel.mat", a.exp or d / "Exp_Pca.bin",
                  a.index_dir or d, a.out or d / "BFM_model_front.mat")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
