"""Data preparation of "Face Video Deblurring using 3D Facial Priors" (Ren et al., ICCV 2019).

Python replacement of the original MATLAB scripts: `video.py` (extractFrames.m, plus a
face-centred crop), `blur.py` (blur synthesis by frame averaging), `flow.py` + `align.py`
(generateAlignments.m: TV-L1 / DIS flow or SIFT homography, datalists), `fileio.py` (atomic
file helpers shared by every stage). Command line: `python -m preprocess --help`.
"""
