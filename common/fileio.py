"""Shared file helpers for every stage: atomic writes, image/landmark/coefficient reading.

Every stage of the pipeline writes files that the next stage reads, and every stage can be
interrupted and re-run. Outputs are therefore written under a temporary name in the same
folder and renamed into place, so a reader never sees a truncated file; inputs that cannot be
read raise `InputError`, one message that names the file and the problem.

Every stage package imports from here; this module imports nothing from them (data and
imports flow one way).
"""
from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from common.errors import InputError  # noqa: F401 - re-exported: the stages import it from here


@contextlib.contextmanager
def atomic_path(path, suffix=None, durable: bool = False):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The temporary name keeps the extension (or `suffix`) so libraries that pick a format from
    the name (PIL, OpenCV, imageio) still work. The result gets the permissions a plain
    `open(path, "w")` would give: mode 0o666 filtered by the umask and the folder's default
    ACL for a new file (tempfile.mkstemp would give 0o600, unreadable in a shared group
    folder), the existing file's mode when `path` is replaced. `durable=True` also flushes the
    file and the rename to disk (fsync), so a crash or power loss right after leaves either the
    old or the complete new file (used for checkpoints).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = suffix if suffix is not None else path.suffix
    tmp = _create_temp(path.parent, f".{path.stem}.", f".tmp{ext}")
    try:
        yield tmp
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))  # replacing: keep its mode
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
        if durable:
            _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _create_temp(folder: Path, prefix: str, suffix: str) -> Path:
    """Create an empty, new, uniquely named file as open() would (0o666 & ~umask)."""
    for _ in range(100):
        tmp = folder / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{folder}: could not create a temporary file {prefix}*{suffix}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # platforms without directory handles (Windows)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on folders; the file itself is flushed
    finally:
        os.close(fd)


def write_image(path, array, fast: bool = False) -> None:
    """Write an HxW, HxWx3 or HxWx4 uint8 array atomically (format from the extension).

    fast: PNG zlib level 1 instead of PIL's 6 (a 720p frame in about a fifth of the time,
    files about a third larger; still lossless), for working files read once.
    """
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise TypeError(f"write_image({path}): expected uint8, got {array.dtype}")
    fmt = _pil_format(path)
    opts = {"compress_level": 1} if fast and fmt == "PNG" else {}
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format=fmt, **opts)


def write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def _pil_format(path) -> str:
    ext = Path(path).suffix.lower()
    return {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}.get(ext, "PNG")


def read_image(path, mode: str = "RGB") -> np.ndarray:
    """Read an image as a viewer shows it, as a uint8 array (HxWx3 RGB, HxWx4 RGBA, HxW L).

    * EXIF orientation is applied (a phone photo tagged "rotate 90" comes out upright);
    * more than 8 bits per sample (16-bit PNG/TIFF, grey or colour) keep the high byte, as
      libpng's 16 -> 8 bit stripping does (a 16-bit grey frame is not clipped to white);
    * palette, grey, grey+alpha, CMYK images are expanded to `mode`; RGBA -> RGB drops alpha;
    * an embedded ICC colour profile other than sRGB is converted to sRGB.
    Raises InputError naming the file when it is missing, empty, truncated, not an image, or
    of a pixel type with no defined 8-bit picture (32-bit float).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(_as_displayed(im, path).convert(mode))
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError) as e:
        raise InputError(f"{path}: cannot read image ({e or type(e).__name__})") from None


def _as_displayed(im: Image.Image, path) -> Image.Image:
    """8-bit, upright, sRGB version of an opened PIL image (see read_image)."""
    from PIL import ImageOps

    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise InputError(f"{path}: {im.mode} image with values outside 0..65535; convert it to "
                             "8 or 16 bits per sample")
        im2 = Image.fromarray((a.astype(np.uint32) >> 8).astype(np.uint8), "L")
        im2.info = im.info
        im2.getexif().update(im.getexif())
        im = im2
    elif im.mode == "F":
        raise InputError(f"{path}: 32-bit floating-point image; convert it to 8 or 16 bits per sample")
    if im.getexif().get(0x0112, 1) != 1:  # EXIF Orientation
        im = ImageOps.exif_transpose(im)
    icc = im.info.get("icc_profile")
    if icc and im.mode in ("RGB", "RGBA", "L", "CMYK"):
        im = _to_srgb(im, icc)
    return im


def _to_srgb(im: Image.Image, icc: bytes) -> Image.Image:
    import io

    from PIL import ImageCms

    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(src).lower().replace(" ", ""):
            return im
        alpha = im.getchannel("A") if im.mode == "RGBA" else None
        base = im.convert("RGB") if im.mode == "RGBA" else im
        out = ImageCms.profileToProfile(base, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return im  # a damaged or unsupported profile: show the pixel values as they are
    if alpha is not None:
        out.putalpha(alpha)
    return out


def read_points(path, n: int = 5, image_size=None) -> np.ndarray:
    """Read an `x y` per line landmark file (spaces or tabs) as an (n, 2) float array.

    InputError naming the file when it is missing, not numeric, not n rows of two values, has
    NaN/inf, when all points coincide (a zero-area face), or, with `image_size` = (w, h), when a
    point lies outside the image (pixel centres at integers, so outside [-0.5, w - 0.5]).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: landmark file not found")
    try:
        pts = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise InputError(f"{path}: landmark file is not numeric ({e})") from None
    if pts.shape != (n, 2):
        raise InputError(f"{path}: expected {n} rows of 'x y', got an array of shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise InputError(f"{path}: landmark file contains NaN or infinite values")
    if np.ptp(pts, axis=0).max() < 1.0:
        raise InputError(f"{path}: all {'five' if n == 5 else n} points coincide (a zero-area face)")
    if image_size is not None:
        w, h = image_size
        out = (pts[:, 0] < -0.5) | (pts[:, 0] > w - 0.5) | (pts[:, 1] < -0.5) | (pts[:, 1] > h - 0.5)
        if out.any():
            x, y = pts[np.argmax(out)]
            raise InputError(f"{path}: point ({x:g}, {y:g}) lies outside the {w}x{h} image")
    return pts


def write_points(path, pts) -> None:
    pts = np.asarray(pts, dtype=np.float64)
    write_text(path, "".join(f"{x:.4f} {y:.4f}\n" for x, y in pts))


def read_mat(path, keys=(), what: str = "MATLAB file") -> dict:
    """Load a MATLAB .mat file (scipy.io.loadmat) and check that `keys` are present.

    `what` names the file's role in the messages (e.g. "morphable model"); every failure is an
    InputError naming the file: missing, unreadable, or missing keys.
    """
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        m = scipy.io.loadmat(str(path))
    except (ValueError, OSError, TypeError, IndexError, KeyError, NotImplementedError) as e:
        raise InputError(f"{path}: cannot read as a MATLAB .mat file ({e})") from None
    missing = [k for k in keys if k not in m]
    if missing:
        raise InputError(f"{path}: not a valid {what}, missing keys {missing}")
    return m


COEFF_SIZES = (239, 257)


def read_coeff(path) -> np.ndarray:
    """Read a face coefficient file: 239 or 257 floats, one row or one per line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: coefficient file not found")
    try:
        c = np.loadtxt(path, dtype=np.float64).reshape(-1)
    except ValueError as e:
        raise InputError(f"{path}: coefficient file is not numeric ({e})") from None
    if c.size not in COEFF_SIZES:
        raise InputError(f"{path}: expected 239 or 257 coefficients, found {c.size}")
    if not np.all(np.isfinite(c)):
        raise InputError(f"{path}: coefficient file contains NaN or infinite values")
    return c


def write_coeff(path, coeff) -> None:
    """Write coefficients as one text row (the original demo.py format)."""
    c = np.asarray(coeff, dtype=np.float64).reshape(-1)
    if c.size not in COEFF_SIZES:
        raise ValueError(f"{path}: refusing to write {c.size} coefficients (expected 239 or 257)")
    write_text(path, " ".join(f"{v:.8e}" for v in c) + "\n")


def frame_name(index: int, ext: str = ".png") -> str:
    """1-based frame index -> the original 5-digit name, e.g. 1 -> '00001.png'."""
    return f"{index:05d}{ext}"
