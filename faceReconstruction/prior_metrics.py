"""How close a 3D-prior render is to a reference render of the same crop (issue 9's figures).

Both renders are 224x224 RGBA of the same aligned crop (binary alpha, as demo_render.py and the
original write them). Figures:
- alpha IoU: |A and B| / |A or B| of the two alpha masks (alpha > 0);
- SSIM (grey): scikit-image `structural_similarity` map (7x7 uniform window, data range 255)
  of the two grey images (ITU-R 601 luma of the RGB), averaged over the common mask;
- PSNR: 10 log10(255^2 / MSE), MSE over the RGB values of the common mask's pixels, dB;
- landmark NME: mean Euclidean distance of 68 points to reference points, divided by the
  reference's inter-ocular distance (outer eye corners, points 37 and 46 of the iBUG layout,
  0-based 36 and 45; the 300-W convention).
"""
from __future__ import annotations

import numpy as np

_LUMA = np.array([0.299, 0.587, 0.114])


def grey(rgb) -> np.ndarray:
    """(H, W, 3) RGB -> (H, W) float64 luma 0-255."""
    return np.asarray(rgb, np.float64)[..., :3] @ _LUMA


def compare_renders(ours, reference) -> dict:
    """{'iou', 'ssim', 'psnr', 'common'} of two (224, 224, 4) RGBA renders (see module doc).

    ssim and psnr are nan when the masks do not overlap; common is the common mask's pixel count.
    """
    from skimage.metrics import structural_similarity

    a, b = np.asarray(ours), np.asarray(reference)
    if a.shape != b.shape or a.ndim != 3 or a.shape[2] != 4:
        raise ValueError(f"compare_renders: expected two equal RGBA arrays, got {a.shape} and {b.shape}")
    ma, mb = a[..., 3] > 0, b[..., 3] > 0
    union = np.count_nonzero(ma | mb)
    common = ma & mb
    n = int(np.count_nonzero(common))
    iou = n / union if union else float("nan")
    if n == 0:
        return {"iou": iou, "ssim": float("nan"), "psnr": float("nan"), "common": 0}
    _, smap = structural_similarity(grey(a), grey(b), data_range=255.0, full=True)
    mse = np.mean((a[common, :3].astype(np.float64) - b[common, :3].astype(np.float64)) ** 2)
    psnr = float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
    return {"iou": iou, "ssim": float(smap[common].mean()), "psnr": float(psnr), "common": n}


def landmark_nme(points, reference) -> float:
    """Mean distance of (68, 2) points to (68, 2) reference points / reference inter-ocular distance."""
    p, r = np.asarray(points, np.float64), np.asarray(reference, np.float64)
    if p.shape != (68, 2) or r.shape != (68, 2):
        raise ValueError(f"landmark_nme: expected two (68, 2) arrays, got {p.shape} and {r.shape}")
    iod = np.linalg.norm(r[45] - r[36])
    return float(np.linalg.norm(p - r, axis=1).mean() / iod)
