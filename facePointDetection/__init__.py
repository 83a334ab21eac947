"""Facial landmarks of "Face Video Deblurring using 3D Facial Priors" (Ren et al., ICCV 2019).

Replaces the original Windows-only five-point detector (facePointDetection/ executables) and
its check5points validator: MTCNN five points + boxes (`detect.py`), per-dataset files with
tracking, gap filling and resumable caching (`pipeline.py`), optional dlib 68 points
(`landmarks68.py`). Command line: `python -m facePointDetection --help`.
"""
