"""3D face coefficients for every frame (the original demo.py of rwenqi/3Dfacedeblurring).

    python demo.py --input_path ./dataset --output_path ./training_set [--rnet R-Net.pb] [--bfm ...]

Logic: faceReconstruction/pipeline.py (`run_coefficients`); `python demo.py --help` lists flags.
"""
import os
import sys

# The fitting and rendering do many small matrix products: a multi-threaded BLAS only adds
# thread hand-offs there (hundreds of times slower on a loaded machine). Parallelism comes from
# --jobs worker processes instead. Set before numpy is imported; a user's setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from faceReconstruction.pipeline import demo_main

if __name__ == "__main__":
    sys.exit(demo_main())
