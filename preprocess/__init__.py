"""Data preparation of "Face Video Deblurring using 3D Facial Priors" (Ren et al., ICCV 2019).

Python replacement of the original MATLAB scripts: `video.py` (extractFrames.m, plus a
face-centred crop), `blur.py` (blur synthesis by frame averaging), `flow.py` + `align.py`
(generateAlignments.m: TV-L1 / DIS flow or SIFT homography, datalists), `recipe.py` (the
training-data recipe), `sample.py` (the demo's synthetic blurred clip). File I/O, the `--jobs`
worker pool and frame listing are shared with the other stages in `common/`. Command line:
`python -m preprocess --help`.
"""
