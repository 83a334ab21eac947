"""Five-point alignment (faceReconstruction/align.py): POS, crop, restore, the small-frame fix.

Real data: ../shared/data/faces5pt (photos + five points), ../shared/data/vd001 (blurry
frames, the original five points and the original 224x224 R-Net renders), and
../shared/data/bfm_index/similarity_Lm3D_all.mat (the 3D reference points).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceReconstruction import align
from common.fileio import InputError, read_image, read_points


@pytest.fixture
def lm3d(bfm_index):
    return align.load_lm3d(bfm_index / "similarity_Lm3D_all.mat")


def _photos(folder):
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".png"))
    assert files, f"no photos in {folder}"
    return files


def _face_box(lm, margin=0.25):
    """Box around the five points, widened by margin x inter-ocular distance (int pixels)."""
    iod = np.linalg.norm(lm[1] - lm[0])
    (x0, y0), (x1, y1) = lm.min(0) - margin * iod, lm.max(0) + margin * iod
    return int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1))


def _psnr(a, b):
    mse = np.mean((np.asarray(a, float) - np.asarray(b, float)) ** 2)
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))


def test_load_lm3d_picks_the_original_rows(bfm_index):
    from scipy.io import loadmat

    lm = loadmat(str(bfm_index / "similarity_Lm3D_all.mat"))["lm"]
    five = align.load_lm3d(bfm_index / "similarity_Lm3D_all.mat")
    # 1-based rows 31 (nose), 37/40 and 43/46 (eyes), 49/55 (mouth), reordered eyes-nose-mouth.
    expected = np.stack([(lm[36] + lm[39]) / 2, (lm[42] + lm[45]) / 2, lm[30], lm[48], lm[54]])
    np.testing.assert_allclose(five, expected)
    assert five[0, 0] < five[1, 0] and five[3, 0] < five[4, 0]  # left before right (x right)
    assert five[2, 2] == five[:, 2].max()  # the nose tip is nearest the camera


def test_load_lm3d_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        align.load_lm3d(tmp_path / "missing.mat")
    bad = tmp_path / "bad.mat"
    from scipy.io import savemat

    savemat(str(bad), {"lm": np.zeros((10, 3))})
    with pytest.raises(InputError, match=r"\(68, 3\)"):
        align.load_lm3d(bad)


def test_find_lm3d_prefers_the_file_beside_the_model(tmp_path, bfm_index):
    import shutil

    from faceReconstruction.bfm import keypoints3d, load_bfm, write_standin_bfm

    model_path = write_standin_bfm(tmp_path / "BFM_model_front.mat", n_vertices=600)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_bfm(model_path)
    with pytest.warns(UserWarning, match="similarity_Lm3D_all.mat not found"):
        derived = align.find_lm3d(None, model_path, model)
    np.testing.assert_allclose(derived, align.five_from_68(keypoints3d(model)))
    shutil.copy(bfm_index / "similarity_Lm3D_all.mat", tmp_path / "similarity_Lm3D_all.mat")
    beside = align.find_lm3d(None, model_path, model)
    np.testing.assert_allclose(beside, align.load_lm3d(bfm_index / "similarity_Lm3D_all.mat"))


def test_pos_recovers_a_scaled_orthographic_camera(lm3d):
    rng = np.random.default_rng(0)
    h0 = 300
    for _ in range(5):
        a = rng.uniform(-0.3, 0.3, 3)
        from faceReconstruction.bfm import rotation_matrix

        r = rotation_matrix(a).T
        s_true, t_true = rng.uniform(50, 200), rng.uniform(80, 220, 2)
        xy = s_true * (lm3d @ r.T)[:, :2] + t_true  # y up
        lm2d = np.stack([xy[:, 0], h0 - 1 - xy[:, 1]], 1)  # image rows, y down
        t, s = align.pos(lm2d, lm3d, h0)
        np.testing.assert_allclose(t, t_true, atol=1e-6)
        assert s == pytest.approx(s_true, rel=1e-6)


def test_frame_to_crop_follows_the_image(lm3d):
    """A bright dot in the frame appears in the crop where frame_to_crop puts it."""
    rng = np.random.default_rng(1)
    checked = 0
    yy, xx = np.mgrid[:224, :224]
    for _ in range(40):
        h0, w0 = rng.integers(150, 400, 2)
        lm = (np.array([[0.35, 0.4], [0.65, 0.4], [0.5, 0.55], [0.38, 0.7], [0.62, 0.7]]) * [w0, h0]
              * rng.uniform(0.5, 1.2) + rng.uniform(-30, 30, 2))
        px, py = rng.integers(lm.min(0) - 5, lm.max(0) + 5)
        if not (3 <= px < w0 - 3 and 3 <= py < h0 - 3):
            continue
        img = np.zeros((h0, w0, 3), np.uint8)
        img[py - 3:py + 4, px - 3:px + 4] = 255
        crop, t, s = align.align_crop(img, lm, lm3d)
        m = crop[..., 0].astype(float)
        if m.sum() == 0:
            continue
        seen = np.array([(m * xx).sum(), (m * yy).sum()]) / m.sum()
        pred = align.frame_to_crop([[px, py]], (w0, h0), t, s)[0]
        assert np.abs(seen - pred).max() < 0.2
        back = align.crop_to_frame(pred[None], (w0, h0), t, s)[0]
        np.testing.assert_allclose(back, [px, py], atol=1e-9)
        checked += 1
    assert checked >= 20


def test_crop_centres_the_face_at_the_reference_scale(faces5pt, lm3d):
    """The crop puts the five points around the reference's projection (102 px per unit)."""
    for path in _photos(faces5pt):
        img = read_image(path)
        lm = read_points(path.with_suffix(".txt"))
        crop, t, s = align.align_crop(img, lm, lm3d)
        assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
        in_crop = align.frame_to_crop(lm, (img.shape[1], img.shape[0]), t, s)
        expected = np.stack([112 + 102 * lm3d[:, 0], 112 - 102 * lm3d[:, 1]], 1)
        # POS keeps scale and shift only (no rotation), so turned heads move the points by up
        # to ~30 px; the centroid stays within ~15 px (yaw shifts it sideways) and the
        # eye-to-mouth height keeps the reference scale.
        assert np.abs(in_crop.mean(0) - expected.mean(0)).max() < 15, path.name
        height = in_crop[3:].mean(0)[1] - in_crop[:2].mean(0)[1]
        assert height == pytest.approx(expected[3:].mean(0)[1] - expected[:2].mean(0)[1], rel=0.25)
        # RGB as the frame (the R-Net flips to BGR itself): same colour at the nose tip.
        cx, cy = np.round(in_crop[2]).astype(int)
        fx, fy = np.round(lm[2]).astype(int)
        patch = img[fy - 2:fy + 3, fx - 2:fx + 3].reshape(-1, 3).mean(0)
        assert np.abs(crop[cy, cx].astype(float) - patch).max() < 40, path.name


def test_crop_then_restore_returns_the_face(faces5pt, lm3d):
    """POS crop, then Restore of that crop: >= 30 dB inside the face box on every photo."""
    for path in _photos(faces5pt):
        img = read_image(path)
        lm = read_points(path.with_suffix(".txt"))
        h0, w0 = img.shape[:2]
        crop, t, s = align.align_crop(img, lm, lm3d)
        back = align.restore_render(crop, (w0, h0), t, s)
        assert back.shape == img.shape
        x0, y0, x1, y1 = _face_box(lm)
        assert _psnr(img[y0:y1, x0:x1], back[y0:y1, x0:x1]) >= 30, path.name


def _original_restore(render, frame_size, t, s):
    """The original restore_img, restated from its description (pad, resize, inverse shift)."""
    w0, h0 = frame_size
    w, h = int(w0 / s * 102), int(h0 / s * 102)
    pw = ((w - 224) // 2, w - 224 - (w - 224) // 2) if w > 224 else (0, 0)
    ph = ((h - 224) // 2, h - 224 - (h - 224) // 2) if h > 224 else (0, 0)
    im = Image.fromarray(np.pad(render, (ph, pw, (0, 0)))).resize((w0, h0), Image.BILINEAR)
    return np.asarray(im.transform((w0, h0), Image.AFFINE, (1, 0, w0 / 2 - t[0], 0, 1, t[1] - h0 / 2)))


def test_fixed_restore_equals_the_original_for_large_frames(vd001, faces5pt, lm3d):
    renders = sorted((vd001 / "face_render").glob("*.png"))
    cases = [(vd001 / "blurry" / r.name, vd001 / "face" / r.with_suffix(".txt").name, r) for r in renders[:5]]
    cases += [(p, p.with_suffix(".txt"), renders[0]) for p in _photos(faces5pt)[:5]]
    for img_path, lm_path, render_path in cases:
        w0, h0 = Image.open(img_path).size
        render = read_image(render_path)
        t, s = align.pos(read_points(lm_path), lm3d, h0)
        w, h = align.scaled_size((w0, h0), s)
        assert w > 224 and h > 224
        fixed = align.restore_render(render, (w0, h0), t, s, fix_small=True)
        original = align.restore_render(render, (w0, h0), t, s, fix_small=False)
        np.testing.assert_array_equal(fixed, original)
        np.testing.assert_array_equal(original, _original_restore(render, (w0, h0), t, s))


def _alpha_in_frame(rgba, size, lm, lm3d, fix_small):
    mask = np.repeat(rgba[..., 3:4], 3, axis=2)
    return align.restore(mask, size, lm, lm3d, fix_small=fix_small)[..., 0] > 127


def test_original_renders_land_on_the_face(vd001, lm3d):
    """The authors' 224 renders of vd001, restored: they cover the face of every frame."""
    for render_path in sorted((vd001 / "face_render").glob("*.png")):
        lm = read_points(vd001 / "face" / render_path.with_suffix(".txt").name)
        w0, h0 = Image.open(vd001 / "blurry" / render_path.name).size
        mask = _alpha_in_frame(read_image(render_path, "RGBA"), (w0, h0), lm, lm3d, True)
        x0, y0, x1, y1 = _face_box(lm, margin=0.0)
        assert mask[y0:y1 + 1, x0:x1 + 1].mean() > 0.97, render_path.name
        ys, xs = np.nonzero(mask)
        iod = np.linalg.norm(lm[1] - lm[0])
        # Centred on the face (not on the frame) and of a face's size (not the frame's).
        assert abs((xs.min() + xs.max()) / 2 - (x0 + x1) / 2) < 0.5 * iod, render_path.name
        assert 1.8 * iod < xs.max() - xs.min() < 3.5 * iod
        assert 2.2 * iod < ys.max() - ys.min() < 4.0 * iod


def _tight(img, lm, margin=0.9):
    x0, y0, x1, y1 = _face_box(lm, margin)
    x0, y0 = max(x0, 0), max(y0, 0)
    return np.ascontiguousarray(img[y0:y1, x0:x1]), lm - [x0, y0]


def test_small_frames_fixed_and_original(faces5pt, lm3d):
    """Frames that are at most 224 px after scaling (tight face crops): the original stretches
    the render over the whole frame; the fix puts it back on the face."""
    for path in _photos(faces5pt)[:8]:
        img, lm = _tight(read_image(path), read_points(path.with_suffix(".txt")))
        h0, w0 = img.shape[:2]
        crop, t, s = align.align_crop(img, lm, lm3d)
        assert max(align.scaled_size((w0, h0), s)) <= 224
        x0, y0, x1, y1 = _face_box(lm)
        fixed = align.restore_render(crop, (w0, h0), t, s, fix_small=True)
        original = align.restore_render(crop, (w0, h0), t, s, fix_small=False)
        assert _psnr(img[y0:y1, x0:x1], fixed[y0:y1, x0:x1]) >= 30, path.name
        assert _psnr(img[y0:y1, x0:x1], original[y0:y1, x0:x1]) < 25, path.name


def test_small_frame_original_render_lands_on_the_face(vd001, lm3d):
    img = read_image(vd001 / "blurry" / "00001.png")
    lm = read_points(vd001 / "face" / "00001.txt")
    rgba = read_image(vd001 / "face_render" / "00001.png", "RGBA")
    sub, lms = _tight(img, lm, margin=0.7)
    size = (sub.shape[1], sub.shape[0])
    t, s = align.pos(lms, lm3d, size[1])
    assert max(align.scaled_size(size, s)) <= 224
    x0, y0, x1, y1 = _face_box(lms, margin=0.0)
    fixed = _alpha_in_frame(rgba, size, lms, lm3d, True)
    original = _alpha_in_frame(rgba, size, lms, lm3d, False)
    assert fixed[y0:y1 + 1, x0:x1 + 1].mean() > 0.97
    # Same face region in the frame as restoring into the full frame and cutting out.
    full = _alpha_in_frame(rgba, (img.shape[1], img.shape[0]), lm, lm3d, True)
    ox, oy = np.round(lm[0] - lms[0]).astype(int)
    ref = full[oy:oy + size[1], ox:ox + size[0]]
    assert (fixed & ref).sum() / (fixed | ref).sum() > 0.9
    assert (original & ref).sum() / (original | ref).sum() < 0.8


def test_restore_rejects_wrong_render_sizes():
    with pytest.raises(ValueError, match="224x224"):
        align.restore_render(np.zeros((100, 100, 3), np.uint8), (300, 300), np.array([150.0, 150.0]), 100.0)
