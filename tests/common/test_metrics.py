"""common/metrics.py: the face box metrics are scored in. (PSNR/SSIM against scikit-image:
tests/deblur/test_evaluate.py.)"""
import numpy as np

from common.metrics import inner_face_box

FIVE = np.array([[40., 50.], [60., 50.], [50., 60.], [42., 70.], [58., 70.]])  # extent 20 x 20


def test_inner_face_box():
    x0, y0, x1, y1 = inner_face_box(FIVE)
    assert (x1 - x0) == 32 and (y1 - y0) == 32 and x0 < 40 and x1 > 60 and y0 < 50 and y1 > 70
    assert inner_face_box(FIVE, scale=1.0) == (40, 50, 60, 70)
