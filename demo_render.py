"""Render the 3D faces and restore them into the frames (the original demo_render.py).

    python demo_render.py --coeff_path ./training_set --data_path ./dataset [--bfm ...]

Logic: faceReconstruction/pipeline.py (`run_render`); `python demo_render.py --help` lists flags.
"""
import os
import sys

# The fitting and rendering do many small matrix products: a multi-threaded BLAS only adds
# thread hand-offs there (hundreds of times slower on a loaded machine). Parallelism comes from
# --jobs worker processes instead. Set before numpy is imported; a user's setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from faceReconstruction.pipeline import render_main

if __name__ == "__main__":
    sys.exit(render_main())
