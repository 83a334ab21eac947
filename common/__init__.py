"""Shared layer under the four stage packages (and the video command on top of them).

errors (`errors`), command-line exit statuses (`cli`) and shared flags (`flags`), atomic file
I/O and the text formats (`fileio`), video I/O with ffmpeg (`videoio`), frame and clip listing
(`frames`), landmark tracks in time (`tracks`), path safety and shipped model files (`paths`),
clip-name rules (`names`), the one PSNR/SSIM implementation (`metrics`), the `--jobs` worker
pool (`parallel`).

Imports flow one way, from the stages down to `common`; nothing here imports a stage.
"""
