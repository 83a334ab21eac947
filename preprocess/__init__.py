"""Data preparation of "Face Video Deblurring using 3D Facial Priors" (Ren et al., ICCV 2019).

Python replacement of the original MATLAB scripts: `video.py` (extractFrames.m, plus a
face-centred crop), `blur.py` (blur synthesis by frame averaging), `flow.py` + `align.py`
(generateAlignments.m: TV-L1 / DIS flow or SIFT homography, datalists), `parallel.py`
(`--jobs` worker pool + progress bar), `fileio.py` (atomic file helpers shared by every
stage), `sample.py` (the demo's synthetic blurred clip). Command line: `python -m preprocess --help`.
"""
