"""Decode one image file to grey float32 ``(H, W)`` in ``[0, 1]``: rasters by Pillow (or, for the JPEG and PNG
forms proven to decode identically, by OpenCV: :mod:`auditor.data.fast_decode`), DICOM by
:mod:`auditor.data.dicom`; centre-crop and resize to the model's input size.

Odd files are refused with the reason (:class:`~auditor.data.limits.ImageReadError`): unknown
formats, truncated or corrupt files, images above :data:`~auditor.data.limits.MAX_PIXELS` or
below 8x8, NaN or infinite pixels. 16-bit and float rasters are scaled to ``[0, 1]``; colour is
made grey (Pillow's ``convert("L")``); an EXIF Orientation is applied as viewers apply it
(``ImageOps.exif_transpose``) and noted.
"""

from __future__ import annotations

from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from auditor.data import limits
from auditor.data.limits import ImageReadError, require_finite
from auditor.types import Sample, Skipped

if TYPE_CHECKING:
    from PIL import Image

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"}


def is_dicom(path: Path) -> bool:
    """True for a ``.dcm``/``.dicom`` file, or a file without extension whose bytes 128-131 are ``DICM``."""
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    if path.suffix:
        return False
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _read_dicom(path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """Grey frame and conversion notes of a DICOM file (see :mod:`auditor.data.dicom`)."""
    from auditor.data.dicom import read_dicom

    dcm = read_dicom(path)
    require_finite(dcm.image)
    return dcm.image, dcm.notes


#: EXIF Orientation (tag 0x0112) -> what a viewer does to show the image upright (EXIF 2.32, 4.6.4 A)
ORIENTATIONS = {
    2: "mirrored left-right",
    3: "rotated 180°",
    4: "mirrored top-bottom",
    5: "transposed (mirrored along the main diagonal)",
    6: "rotated 90° clockwise",
    7: "transversed (mirrored along the anti-diagonal)",
    8: "rotated 90° counter-clockwise",
}


def _orient(im: Image.Image) -> tuple[Image.Image, tuple[str, ...]]:
    """``im`` turned upright by its EXIF Orientation as viewers show it (Pillow's ``ImageOps.exif_transpose``),
    and the note saying so (none for a missing or normal orientation; an invalid value is noted and ignored)."""
    from PIL import ImageOps

    try:
        value = im.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 - an unreadable EXIF block is no orientation
        return im, ("EXIF block unreadable; orientation not applied",)
    if value in (None, 1):
        return im, ()
    if value not in ORIENTATIONS:
        return im, (f"EXIF orientation {value!r} is not a valid value (1-8); image used as stored",)
    return ImageOps.exif_transpose(im), (
        f"EXIF orientation {value} applied: {ORIENTATIONS[value]}, as viewers show it",
    )


#: the list a raster read appends its notes to (set per call by :func:`load_image_noted`, per thread)
_RASTER_NOTES: ContextVar[list[str] | None] = ContextVar("raster_notes", default=None)


def _read_raster(path: Path) -> np.ndarray:
    """Grey image of a raster file; its conversion notes (EXIF orientation) go to :data:`_RASTER_NOTES`."""
    img, notes = _read_raster_noted(path)
    sink = _RASTER_NOTES.get()
    if sink is not None:
        sink.extend(notes)
    return img


def _read_raster_noted(path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """Grey image and notes of a raster: by :func:`auditor.data.fast_decode.read_fast` when the file is one of the
    forms it decodes exactly as Pillow does, else by :func:`_read_pillow` (the reference path)."""
    data = _fast_candidate(path)
    if data is not None:
        from auditor.data.fast_decode import read_fast

        img = read_fast(data)
        if img is not None:
            return img, ()
    return _read_pillow(path)


#: the file signatures :mod:`auditor.data.fast_decode` may read (JPEG, PNG); other files are not read twice
_FAST_SIGNATURES = (b"\xff\xd8", b"\x89PNG")


def _fast_candidate(path: Path) -> bytes | None:
    """The bytes of a JPEG or PNG file (for the fast path), or None (Pillow reads it and reports any error)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if not head.startswith(_FAST_SIGNATURES):
                return None
            return head + fh.read()
    except OSError:
        return None


def _read_pillow(path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """The reference raster reader: Pillow, EXIF orientation, 16-bit and float scaling, ``convert("L")``."""
    from PIL import Image, ImageFile, UnidentifiedImageError

    # WeasyPrint switches Pillow's global LOAD_TRUNCATED_IMAGES on when it is imported;
    # a truncated radiograph must be reported, not silently padded with grey.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    im: Image.Image  # the file as opened, then turned upright and converted
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > limits.MAX_PIXELS:
                raise ImageReadError(f"image is {w}x{h}, above the limit of {limits.MAX_PIXELS} pixels")
            if w < 8 or h < 8:
                raise ImageReadError(f"image is {w}x{h}, too small")
            im.load()
            im, notes = _orient(im)
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                maxv = 65535.0 if arr.max() > 255 or mode.startswith("I;16") else 255.0
                return np.clip(arr / maxv, 0, 1).astype(np.float32), notes
            if mode == "F":
                arr = np.asarray(im, dtype=np.float32)
                require_finite(arr)
                lo, hi = float(arr.min()), float(arr.max())
                return ((arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)), notes
            if mode != "L":
                im = im.convert("L")
            return np.asarray(im, dtype=np.float32) / 255.0, notes
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError("not a recognised image format") from None
    except Image.DecompressionBombError:
        raise ImageReadError(f"image above the limit of {limits.MAX_PIXELS} pixels") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"corrupt or truncated image ({' '.join(str(exc).split())})") from None


def _fit(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre-crop to the target aspect ratio, then resize (area filter when shrinking)."""
    import cv2

    th, tw = size
    h, w = img.shape
    target = tw / th
    if abs(w / h - target) > 1e-3:
        if w / h > target:
            nw = max(1, round(h * target))
            x0 = (w - nw) // 2
            img = img[:, x0 : x0 + nw]
        else:
            nh = max(1, round(w / target))
            y0 = (h - nh) // 2
            img = img[y0 : y0 + nh, :]
    if img.shape != (th, tw):
        interp = cv2.INTER_AREA if img.shape[0] > th else cv2.INTER_LINEAR
        img = cv2.resize(img, (tw, th), interpolation=interp)
    if img.dtype == np.float32 and img.flags.c_contiguous and img.flags.writeable:
        return np.clip(img, 0.0, 1.0, out=img)  # the reader's own array (or the resize's): no copy needed
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def from_levels(levels: np.ndarray) -> np.ndarray:
    """``levels / 255`` in float32: how 8-bit levels become pixels, the one expression of the cached sets' PNGs, the
    spills, the set walk and the ε check (the fast decoder's ``np.divide`` gives the same bits)."""
    return levels.astype(np.float32) / np.float32(255.0)


def exact_levels(img: np.ndarray) -> np.ndarray | None:
    """The ``uint8`` levels whose :func:`from_levels` is ``img`` bit for bit (float32 ``(H, W)``), or None when
    ``img`` is off the 8-bit grid (resized, or from a source of more than 8 bits; a ``-0.0`` too)."""
    x = np.ascontiguousarray(img, dtype=np.float32)
    y = x * np.float32(255.0)
    np.rint(y, out=y)
    np.clip(y, 0, 255, out=y)
    levels = y.astype(np.uint8)
    return levels if np.array_equal(from_levels(levels).view(np.uint32), x.view(np.uint32)) else None


def on_8bit_grid(img: np.ndarray, levels: np.ndarray | None = None) -> bool:
    """Whether every value of ``img`` lies within 1e-3 grey levels of an 8-bit level (the scan's grid caveat).

    ``levels`` (:func:`exact_levels` of ``img``, when known) settles it at once: a float32 ``k / 255`` lies within
    255 half-ulps (< 1e-5 levels) of level ``k``. Otherwise the test runs in float64, as it always has.
    """
    if levels is not None or img.size == 0:
        return True
    c = img.astype(np.float64) * 255.0
    return bool(np.abs(c - np.rint(c)).max() <= 1e-3)


def load_image(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """One image as float32 grey ``(H, W)`` in ``[0, 1]``; raises :class:`ImageReadError`."""
    return load_image_noted(path, size)[0]


def load_image_noted(path: str | Path, size: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Like :func:`load_image`, plus the conversions applied (colour to grey, frame choice, ...)."""
    p = Path(path)
    try:
        if not p.is_file():
            raise ImageReadError("file not found")
    except OSError as exc:
        raise ImageReadError(f"cannot stat ({exc.strerror or exc})") from None
    if is_dicom(p):
        img, notes = _read_dicom(p)
    else:
        sink: list[str] = []
        token = _RASTER_NOTES.set(sink)
        try:
            img = _read_raster(p)
        finally:
            _RASTER_NOTES.reset(token)
        notes = tuple(sink)
    if not np.isfinite(img).all():
        raise ImageReadError("image holds NaN or infinite values")
    return (_fit(img, size) if size else img), notes


def load_images(
    samples, size: tuple[int, int], progress=None, notes: dict[str, list[str]] | None = None
) -> tuple[np.ndarray, list[int], list[Skipped]]:
    """Decode samples into an ``(N, 1, H, W)`` float32 batch.

    Returns the batch of the readable images, their indices into ``samples`` and
    the :class:`Skipped` entries of the others. ``progress(1)`` is called per image.
    If ``notes`` is a dict, the conversions applied to each image that needed one
    (colour to grey, frame of a multi-frame DICOM, ...) are stored in it by name.
    """
    arrs, kept, skipped = [], [], []
    for i, s in enumerate(samples):
        path = s.path if isinstance(s, Sample) else str(s)
        name = getattr(s, "rel_path", "") or path
        try:
            img, img_notes = load_image_noted(path, size)
            arrs.append(img)
            kept.append(i)
            if img_notes and notes is not None:
                notes[name] = list(img_notes)
        except ImageReadError as exc:
            skipped.append(Skipped(name, str(exc), "image"))
        if progress:
            progress(1)
    h, w = size
    batch = np.stack(arrs)[:, None] if arrs else np.zeros((0, 1, h, w), np.float32)
    return batch.astype(np.float32), kept, skipped
