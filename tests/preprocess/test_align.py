"""Neighbour alignment (preprocess/flow.py, preprocess/align.py) on known sub-pixel shifts of a
real face photo (../shared/data/faces5pt), homography fallback, end clamping, datalist."""
import cv2
import numpy as np
import pytest

from common.frames import frame_offsets
from preprocess.align import align_dataset, datalist_line, neighbour_index
from common.fileio import InputError, read_image, write_image
from preprocess.flow import align_flow, align_homography, compute_flow, fill_occluded, occlusion_mask

from common.metrics import psnr
from tests.helpers import face_crop as _face_crop
from tests.helpers import shift

FACE_BOX = (slice(40, 120), slice(40, 120))  # the face of the 160x160 crop (eyes to mouth)
SHIFTS = [(1.3, -0.7), (2.6, 1.4), (-3.4, 2.2)]


@pytest.mark.parametrize("method", ["tvl1", "dis", "dis_fine"])
def test_flow_alignment_of_known_shifts(faces5pt, method):
    face = _face_crop(faces5pt)
    for dx, dy in SHIFTS:
        nb = shift(face, dx, dy)
        warped = align_flow(face, nb, method, 200)
        p_w, p_raw = psnr(warped[FACE_BOX], face[FACE_BOX]), psnr(nb[FACE_BOX], face[FACE_BOX])
        assert p_w >= 35 and p_w > p_raw + 10, (method, dx, dy, p_w, p_raw)


def test_dis_fine_halves_the_error_of_dis_on_a_rotation_and_zoom(faces5pt):
    """dis_fine refines DIS down to full resolution (the MEDIUM preset stops at half): on a
    smooth non-uniform motion with a known flow its end-point error is well below dis's
    (measured 0.085/0.161/0.140 px against 0.163/0.322/0.276)."""
    face = _face_crop(faces5pt, 256)
    h, w = face.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    box = (slice(60, 200), slice(60, 200))
    for angle, zoom in ((2, 1.03), (4, 0.97), (-3, 1.05)):
        m = cv2.getRotationMatrix2D((w * 0.4, h * 0.6), angle, zoom)
        nb = cv2.warpAffine(face, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        # nb(M x) = face(x), so face(x) = nb(x + f) with f = M x - x
        true = np.stack([m[0, 0] * gx + m[0, 1] * gy + m[0, 2] - gx,
                         m[1, 0] * gx + m[1, 1] * gy + m[1, 2] - gy], -1)
        epe = {k: np.linalg.norm(compute_flow(face, nb, k, 200)[box] - true[box], axis=-1).mean()
               for k in ("dis", "dis_fine")}
        assert epe["dis_fine"] < 0.7 * epe["dis"] and epe["dis_fine"] < 0.2, (angle, zoom, epe)


def test_flow_sign_and_downscaled_computation(faces5pt):
    """Flow is computed at a smaller side of 80 px here and rescaled: still the true shift."""
    face = _face_crop(faces5pt)
    nb = shift(face, 2.0, -1.0)  # content moves right/up: ref(x) = nb(x + (2, -1))
    f = compute_flow(face, nb, "dis", small_side=80)
    assert f.shape == (160, 160, 2)
    med = np.median(f[FACE_BOX].reshape(-1, 2), axis=0)
    assert np.allclose(med, [2.0, -1.0], atol=0.3), med


def test_homography_alignment_and_fallback(faces5pt):
    face = _face_crop(faces5pt, size=200)
    nb = shift(face, 4.5, -3.0)
    warped, ok = align_homography(face, nb)
    assert ok and psnr(warped[50:150, 50:150], face[50:150, 50:150]) > 35
    flat = np.full((120, 120, 3), 128, np.uint8)  # no keypoints: estimation must fail
    out, ok = align_homography(flat, flat.copy())
    assert not ok and np.array_equal(out, flat)


def test_offsets_and_end_clamping():
    assert frame_offsets(5) == [-2, -1, 0, 1, 2]
    assert frame_offsets(9) == list(range(-4, 5))
    with pytest.raises(ValueError):
        frame_offsets(4)
    assert [neighbour_index(0, o, 10) for o in frame_offsets(5)] == [0, 0, 0, 1, 2]
    assert [neighbour_index(9, o, 10) for o in frame_offsets(5)] == [7, 8, 9, 9, 9]


def test_datalist_line_format():
    assert datalist_line("vd001", "00001.png", frame_offsets(5)) == (
        "vd001/sharp/00001.png vd001/blur_-2/00001.png vd001/blur_-1/00001.png "
        "vd001/blur_0/00001.png vd001/blur_1/00001.png vd001/blur_2/00001.png "
        "vd001/face/00001.txt vd001/render/00001.png")
    assert len(datalist_line("v", "00003.png", frame_offsets(9)).split()) == 12


def _numbered_frames(n=5, size=(12, 16)):
    # Frame k is filled with the value 10*k, so every output tells which frame it came from.
    return [np.full((*size, 3), 10 * k, np.uint8) for k in range(1, n + 1)]


def test_align_none_writes_clamped_neighbours_and_datalist(tmp_path):
    ds, out = tmp_path / "dataset", tmp_path / "training_set"
    for k, f in enumerate(_numbered_frames(), 1):
        write_image(ds / "clip" / "blurry" / f"{k:05d}.png", f)
        write_image(ds / "clip" / "sharp" / f"{k:05d}.png", f)
    write_image(ds / "nosharp" / "blurry" / "00001.png", _numbered_frames(1)[0])
    dl = tmp_path / "datalist.txt"
    res = align_dataset(ds, out, dl, align="none", n_frames=5)
    assert res["frames"] == 6 and res["datalist_lines"] == 5
    for t in range(1, 6):
        for o in range(-2, 3):
            src = min(max(t + o, 1), 5)
            assert read_image(out / "clip" / f"blur_{o}" / f"{t:05d}.png")[0, 0, 0] == 10 * src
    lines = dl.read_text().splitlines()
    assert lines[0].split()[0] == "clip/sharp/00001.png" and len(lines) == 5
    for line in lines:  # every image path of the datalist exists (face/render: later stages)
        cols = line.split()
        assert (ds / cols[0]).is_file()
        assert all((out / c).is_file() for c in cols[1:6])
        assert cols[6].startswith("clip/face/") and cols[7].startswith("clip/render/")


def test_align_rejects_frames_of_different_sizes(tmp_path):
    ds = tmp_path / "dataset"
    write_image(ds / "clip" / "blurry" / "00001.png", np.zeros((8, 8, 3), np.uint8))
    write_image(ds / "clip" / "blurry" / "00002.png", np.zeros((9, 8, 3), np.uint8))
    with pytest.raises(InputError, match="00002.png.*differs"):
        align_dataset(ds, tmp_path / "out", None, align="none", n_frames=3)


@pytest.mark.parametrize("flow", ["dis", "tvl1"])
def test_align_dataset_on_a_shifted_face_sequence(faces5pt, tmp_path, flow):
    """Five frames = one face photo at known sub-pixel offsets; every neighbour warped onto the
    centre frame through the dataset-level step matches it inside the face box."""
    face = _face_crop(faces5pt)
    offsets = [(-2.2, 1.0), (-1.1, 0.4), (0.0, 0.0), (1.3, -0.7), (2.5, -1.6)]
    ds, out = tmp_path / "dataset", tmp_path / "training_set"
    frames = [face if (dx, dy) == (0, 0) else shift(face, dx, dy) for dx, dy in offsets]
    for k, f in enumerate(frames, 1):
        write_image(ds / "seq" / "blurry" / f"{k:05d}.png", f)
    align_dataset(ds, out, None, align="flow", flow=flow, n_frames=5)
    centre = frames[2]
    for o in (-2, -1, 1, 2):
        warped = read_image(out / "seq" / f"blur_{o}" / "00003.png")
        p_w = psnr(warped[FACE_BOX], centre[FACE_BOX])
        p_raw = psnr(frames[2 + o][FACE_BOX], centre[FACE_BOX])
        assert p_w >= 35 and p_w > p_raw, (flow, o, p_w, p_raw)
    assert np.array_equal(read_image(out / "seq" / "blur_0" / "00003.png"), centre)


def test_align_dataset_counts_homography_fallbacks(tmp_path):
    ds = tmp_path / "dataset"
    for k in range(1, 4):
        write_image(ds / "flat" / "blurry" / f"{k:05d}.png", np.full((64, 64, 3), 100 + k, np.uint8))
    dl = tmp_path / "datalist.txt"
    res = align_dataset(ds, tmp_path / "out", dl, align="homography", n_frames=3)
    assert res["datalist_lines"] == 0 and not dl.exists()  # no sharp/: a test clip, no datalist
    # 3 frames x 2 neighbours, minus the 2 clamped ones that are the frame itself
    assert res["fallbacks"] == 4
    assert read_image(tmp_path / "out" / "flat" / "blur_1" / "00001.png")[0, 0, 0] == 102


# ----------------------------------------------------------------------------- occlusion
def test_occlusion_mask_flags_inconsistent_and_outside_pixels():
    """A constant 2 px flow whose backward flow agrees except in one block: exactly the pixels
    that land in that block, plus those whose forward flow leaves the frame, are flagged."""
    h, w = 20, 30
    fwd = np.zeros((h, w, 2), np.float32)
    fwd[..., 0] = 2.0
    bwd = np.zeros_like(fwd)
    bwd[..., 0] = -2.0
    bwd[5:10, 12:18] = 0.0  # the block seen in `other` has no match in `ref`: an occlusion
    occ = occlusion_mask(fwd, bwd)
    expected = np.zeros((h, w), bool)
    expected[5:10, 10:16] = True   # x + 2 inside the block
    expected[:, w - 2:] = True     # x + 2 beyond the last column
    assert np.array_equal(occ, expected)
    # The tolerance grows with the motion: a 1 px disagreement is an occlusion for a 1 px flow
    # but not for an 8 px one (flow error grows with displacement).
    for speed, flagged in ((1.0, True), (8.0, False)):
        f = np.zeros((h, w, 2), np.float32)
        f[..., 1] = speed
        b = -f
        b[..., 1] += 1.0
        occ = occlusion_mask(f, b)
        assert occ[: h - int(speed) - 1].all() if flagged else not occ[: h - int(speed) - 1].any()
        assert occ[h - int(speed):].all()  # these rows look below the last one


def test_fill_occluded_keeps_warped_pixels_and_blends_the_occluded_ones():
    warped = np.full((16, 16, 3), 200, np.uint8)
    ref = np.full((16, 16, 3), 40, np.uint8)
    none = np.zeros((16, 16), bool)
    assert np.array_equal(fill_occluded(warped, ref, none), warped)
    assert np.array_equal(fill_occluded(warped, ref, ~none), ref)
    occ = none.copy()
    occ[6:10, 6:10] = True
    out = fill_occluded(warped, ref, occ)
    assert np.array_equal(out[7:9, 7:9], ref[7:9, 7:9])         # inside: frame t's pixel
    assert np.array_equal(out[:1], warped[:1])                  # far away: untouched
    edge = out[3:6, 8, 0].astype(int)                           # the softened edge of the grown mask
    assert 40 < edge[-1] < 200 and edge[0] >= edge[-1], edge


def _occluded_pair(face, dx=5.0):
    """`face` behind a static dark disc (a microphone) and the same scene with the face moved by
    dx px: the disc hides a different part of the face in each frame."""
    def with_disc(img):
        out = img.copy()
        cv2.circle(out, (80, 118), 22, (25, 25, 25), -1)
        return out
    return with_disc(face), with_disc(shift(face, dx, 0.0))


def test_align_flow_gives_occluded_pixels_frame_t(faces5pt):
    """Around a static occluder the warped neighbour shows the wrong thing; occlusion="centre"
    replaces it by frame t there, and leaves the face box (no occlusion) as aligned as before."""
    ref, nb = _occluded_pair(_face_crop(faces5pt))
    warped = align_flow(ref, nb, "dis", 200, occlusion="warp")
    filled = align_flow(ref, nb, "dis", 200, occlusion="centre")
    ring = (slice(88, 150), slice(50, 110))  # the disc and the face around it
    assert psnr(filled[ring], ref[ring]) > psnr(warped[ring], ref[ring]) + 3
    top = (slice(40, 85), slice(40, 120))   # eyes and nose, far from the disc
    assert psnr(filled[top], ref[top]) > 35
    assert abs(psnr(filled[top], ref[top]) - psnr(warped[top], ref[top])) < 1.0
    with pytest.raises(ValueError, match="occlusion"):
        align_flow(ref, nb, "dis", 200, occlusion="median")


def test_align_dataset_passes_the_occlusion_mode(faces5pt, tmp_path):
    ref, nb = _occluded_pair(_face_crop(faces5pt))
    ds = tmp_path / "dataset"
    for k, f in enumerate([nb, ref, nb], 1):
        write_image(ds / "seq" / "blurry" / f"{k:05d}.png", f)
    outs = {}
    for mode in ("warp", "centre"):
        align_dataset(ds, tmp_path / mode, None, align="flow", flow="dis", n_frames=3, occlusion=mode)
        outs[mode] = read_image(tmp_path / mode / "seq" / "blur_1" / "00002.png")
    assert np.array_equal(outs["warp"], align_flow(ref, nb, "dis", 200, occlusion="warp"))
    assert np.array_equal(outs["centre"], align_flow(ref, nb, "dis", 200, occlusion="centre"))
    assert not np.array_equal(outs["warp"], outs["centre"])
    with pytest.raises(ValueError, match="occlusion"):
        align_dataset(ds, tmp_path / "x", None, occlusion="median")
