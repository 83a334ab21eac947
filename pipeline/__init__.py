"""The end-to-end video command on top of the four stages: `deblur_video.py` (`video.py`) and
the face window it deblurs (`face_region.py`).

It imports the stage packages and the shared layer; nothing below imports it (only the
top-level scripts and demo/ do).
"""
