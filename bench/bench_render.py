"""Renderer speed (issue 4 target: <= 50 ms per 224x224 render of the 35,709-vertex /
70,789-triangle BFM front mesh on one core). Prints one JSON object.

The geometry is the stand-in model on the REAL BFM front topology (facemodel_info.mat from
../shared/data/bfm_index, the Deep3DFaceRecon BFM/ file), cached under bench/out/; or any
BFM_model_front.mat given with --bfm (e.g. the real one). Each timed render uses a different
random pose / expression / lighting; the process is pinned to one CPU and BLAS to one thread.

    python bench/bench_render.py [--n 50] [--bfm PATH] [--topology facemodel_info.mat]
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

from common.cli import ArgumentParser  # noqa: E402
from faceReconstruction import bfm as B  # noqa: E402
from faceReconstruction.render import render_rgba  # noqa: E402


def main() -> None:
    p = ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=50, help="timed renders (default: %(default)s)")
    p.add_argument("--bfm", help="BFM_model_front.mat to render (default: stand-in on the real topology)")
    p.add_argument("--topology", default=str(ROOT.parent / "shared" / "data" / "bfm_index" / "facemodel_info.mat"),
                   help="facemodel_info.mat for the stand-in (default: %(default)s)")
    a = p.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    if a.bfm:
        path, source = Path(a.bfm), "given model"
    elif Path(a.topology).is_file():
        path, source = ROOT / "bench" / "out" / "standin_bfm_topology.mat", "stand-in on the real BFM front topology"
        if not path.is_file():
            B.write_standin_bfm(path, topology=a.topology)
    else:
        path, source = ROOT / "bench" / "out" / "standin_small.mat", "small stand-in (topology file not found)"
        if not path.is_file():
            B.write_standin_bfm(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", B.StandinWarning)
        model = B.load_bfm(path)

    rng = np.random.default_rng(0)
    coeffs = np.zeros((a.n + 1, 239))
    coeffs[:, :144] = rng.normal(0, 1, (a.n + 1, 144))
    coeffs[:, 224:227] = rng.uniform(-0.35, 0.35, (a.n + 1, 3))
    coeffs[:, 227:236] = rng.normal(0, 0.1, (a.n + 1, 9))
    coeffs[:, 236:239] = rng.uniform(-0.1, 0.1, (a.n + 1, 3))

    t0 = time.perf_counter()
    rec = B.reconstruct(model, coeffs[0])
    render_rgba(rec["vertices_cam"], model.tri, rec["colors"])
    first_ms = (time.perf_counter() - t0) * 1e3  # includes numba compile or cache load

    render_ms, rec_ms, coverage = [], [], []
    for c in coeffs[1:]:
        t0 = time.perf_counter()
        rec = B.reconstruct(model, c)
        t1 = time.perf_counter()
        img = render_rgba(rec["vertices_cam"], model.tri, rec["colors"])
        t2 = time.perf_counter()
        rec_ms.append((t1 - t0) * 1e3)
        render_ms.append((t2 - t1) * 1e3)
        coverage.append(float((img[..., 3] > 0).mean()))
    r = np.asarray(render_ms)
    print(json.dumps({
        "benchmark": "render_rgba 224x224",
        "model": source,
        "model_path": str(path),
        "vertices": model.n_vertices,
        "triangles": int(len(model.tri)),
        "renders": a.n,
        "render_ms_median": round(float(np.median(r)), 2),
        "render_ms_mean": round(float(r.mean()), 2),
        "render_ms_p90": round(float(np.percentile(r, 90)), 2),
        "render_ms_max": round(float(r.max()), 2),
        "reconstruct_ms_median": round(float(np.median(rec_ms)), 2),
        "first_call_ms": round(first_ms, 1),
        "mean_coverage": round(float(np.mean(coverage)), 3),
        "target_ms": 50,
        "cores": 1,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
    }))


if __name__ == "__main__":
    main()
