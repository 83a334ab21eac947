"""Shared layer under the four stage packages: errors (`errors`), command-line exit statuses
(`cli`), video I/O with ffmpeg (`videoio`), path safety for user-given names (`paths`), the
clip-name rules of the text formats (`names`) and the one PSNR/SSIM implementation (`metrics`).

Imports flow one way, from the stages down to `common`; the one exception is the atomic file
writer, still in preprocess/fileio.py until that module moves here.
"""
