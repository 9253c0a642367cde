"""DICOM radiographs as hospitals export them: decode, pick the frame, make grey.

Pixel data are decoded by pydicom with its decoder plugins; no codec is written
here. The transfer syntaxes a chest radiograph realistically arrives in are listed
in :data:`SUPPORTED_TRANSFER_SYNTAXES` and tested on the DICOM files shipped inside
the pydicom package. Compressed syntaxes are decoded by pylibjpeg (libjpeg for
JPEG baseline/extended/lossless and JPEG-LS, OpenJPEG for JPEG 2000, its RLE
back-end for RLE); when pylibjpeg fails, pydicom's other installed plugins are
tried in turn and the one that decoded the image is recorded. A file in another
transfer syntax is still tried with whatever pydicom has installed and is skipped
with the reason (which syntax, which plugins failed and why) when nothing decodes.

Grey conversion:

* ``MONOCHROME1``/``MONOCHROME2``: modality LUT / rescale, then the VOI LUT or
  the first VOI window, min-max scaling to ``[0, 1]``, and ``MONOCHROME1``
  inverted so that bone is bright (DICOM PS3.3 C.11.1 and C.11.2);
* colour (``RGB``, ``YBR_FULL``, ``YBR_FULL_422``, and ``YBR_RCT``/``YBR_ICT``
  from JPEG 2000): YBR is first converted to RGB by pydicom, then grey is the
  luma of ITU-R BT.601 (``0.299 R + 0.587 G + 0.114 B``, the weights Pillow
  uses for ``convert("L")``), scaled by the largest storable value;
* ``PALETTE COLOR``: the palette is applied by pydicom, then the same luma.

Every conversion that is not a plain grey read is returned as a note and ends up
in ``results.json`` (``data.conversions``).

Multi-frame objects: the frame named by Representative Frame Number (0028,6010)
is used when present, the first frame otherwise; the note says which frame of
how many was used.

The checks made before decoding (header, limits, codestream, frame choice) are in
:mod:`auditor.data.dicom_header`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from auditor.data.dicom_header import (
    _check_codestream,
    _check_shape,
    _frame_index,
    _one_line,
    _read_dataset,
    _sentence,
    _transfer_syntax,
    _ts_name,
)
from auditor.data.limits import ImageReadError

#: ITU-R BT.601 luma weights for R, G, B
BT601 = (0.299, 0.587, 0.114)

#: decoder plugins, most preferred first; pylibjpeg is a declared dependency
PLUGIN_ORDER = ("pylibjpeg", "pydicom", "pillow", "gdcm", "pyjpegls")

#: transfer syntaxes decoded and tested on real files (UID -> short description)
SUPPORTED_TRANSFER_SYNTAXES: dict[str, str] = {
    "1.2.840.10008.1.2": "Implicit VR Little Endian (uncompressed)",
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian (uncompressed)",
    "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian (uncompressed, retired)",
    "1.2.840.10008.1.2.5": "RLE Lossless",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline (process 1, 8 bit, lossy)",
    "1.2.840.10008.1.2.4.51": "JPEG Extended (process 2 and 4, 8/12 bit, lossy)",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless (process 14)",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless (process 14, selection value 1)",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS Near-Lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 (lossless only)",
    "1.2.840.10008.1.2.4.91": "JPEG 2000 (lossless or lossy)",
}

_COLOUR = {"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT"}
#: transfer syntaxes that are always lossy (JPEG 2000 .91 may be either; see Lossy Image Compression)
_LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81"}


@dataclass(frozen=True)
class DicomImage:
    """A decoded DICOM frame as grey float32 ``(H, W)`` in ``[0, 1]`` and how it was obtained."""

    image: np.ndarray
    transfer_syntax: str  #: name of the transfer syntax
    notes: tuple[str, ...] = ()  #: conversions applied beyond a plain grey read


_ALL_FAILED = "Unable to decode as exceptions were raised by all available plugins:"


def _plugin_error(plugin: str, exc: Exception) -> str:
    """``plugin: message`` on one line, without pydicom's wrapper around a single plugin's error."""
    msg = _one_line(exc) or type(exc).__name__
    if msg.startswith(_ALL_FAILED):
        msg = msg[len(_ALL_FAILED) :].strip()
    name = plugin or "pydicom"
    if msg.startswith(f"{name}:"):
        msg = msg[len(name) + 1 :].strip()
    return f"{name}: {msg}"


def _decode(ds, ts, index: int) -> tuple[np.ndarray, dict, str | None, list[str], list[str]]:
    """Decode one frame; returns (array, meta, plugin, pydicom warnings, failures of preferred plugins)."""
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise ImageReadError(
            f"Transfer syntax {_ts_name(ts)} cannot be decoded: pydicom has no decoder for it."
        ) from None
    if decoder.is_native:
        plugins: list[str] = [""]
    else:
        available = list(decoder.available_plugins)
        if not available:
            missing = "; ".join(decoder.missing_dependencies) or "none known"
            raise ImageReadError(
                f"Transfer syntax {_ts_name(ts)} cannot be decoded: no decoder plugin is "
                f"installed (missing: {missing})."
            )
        plugins = sorted(available, key=lambda p: PLUGIN_ORDER.index(p) if p in PLUGIN_ORDER else len(PLUGIN_ORDER))
    failures = []
    for plugin in plugins:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                # pydicom annotates **kwargs as DecodeOptions where it means Unpack[DecodeOptions]
                arr, meta = decoder.as_array(ds, index=index, decoding_plugin=plugin, as_rgb=True)  # type: ignore[arg-type]
            except Exception as exc:  # noqa: BLE001 - a plugin's failure is reported, the next one tried
                failures.append(_plugin_error(plugin, exc))
                continue
        notes = sorted({_one_line(w.message) for w in caught})
        return arr, meta, plugin or None, notes, failures
    raise ImageReadError(
        _sentence(
            f"Pixel data in {_ts_name(ts)} could not be decoded, the file is probably "
            f"corrupt or truncated ({'; '.join(failures)})"
        )
    )


def _luma(rgb: np.ndarray, max_value: float) -> np.ndarray:
    """ITU-R BT.601 luma of an ``(H, W, 3)`` RGB array, scaled to ``[0, 1]``."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = BT601[0] * r + BT601[1] * g + BT601[2] * b
    return np.clip(y / max_value, 0.0, 1.0)


def _grey_from_monochrome(arr: np.ndarray, ds, photometric: str) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    img = apply_modality_lut(arr, ds).astype(np.float64)
    if "WindowCenter" in ds and "VOILUTSequence" not in ds:
        widths = ds.get("WindowWidth")
        widths = list(widths) if isinstance(widths, (list, tuple)) or hasattr(widths, "__iter__") else [widths]
        try:
            first = float(widths[0]) if widths else float("nan")
        except (TypeError, ValueError):
            first = float("nan")
        if not first >= 1:  # PS3.3 C.11.2.1.2: Window Width >= 1 (NaN and a missing width fail too)
            raise ImageReadError(f"DICOM Window Width {widths[0] if widths else 'missing'} is invalid (must be >= 1).")
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        img = apply_voi_lut(img, ds).astype(np.float64)
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
    if photometric == "MONOCHROME1":
        img = 1.0 - img
    return img


def _check_palette(ds) -> None:
    """The three palette lookup tables (PS3.3 C.7.6.3.1.5): a descriptor of 3 values with 8 or 16 bits per
    entry, and at least as many entries in the data as the descriptor declares (0 means 65536)."""
    if "SegmentedRedPaletteColorLookupTableData" in ds or "PaletteColorLookupTableUID" in ds:
        return  # segmented and well-known palettes: pydicom checks them
    for colour in ("Red", "Green", "Blue"):
        desc = ds.get(f"{colour}PaletteColorLookupTableDescriptor")
        data = ds.get(f"{colour}PaletteColorLookupTableData")
        try:
            entries, _, bits = (int(v) for v in desc)
        except (TypeError, ValueError):
            raise ImageReadError(f"PALETTE COLOR image has no valid {colour} lookup table descriptor.") from None
        if bits not in (8, 16):
            raise ImageReadError(f"PALETTE COLOR {colour} lookup table declares {bits} bits per entry (8 or 16).")
        if data is None:
            raise ImageReadError(f"PALETTE COLOR image has no {colour} lookup table data.")
        entries = entries or 65536
        have = len(data) // (1 if bits == 8 and len(data) < 2 * entries else 2)
        if have < entries:
            raise ImageReadError(f"PALETTE COLOR {colour} lookup table holds {have} entries, its descriptor {entries}.")


def _grey_from_palette(arr: np.ndarray, ds) -> tuple[np.ndarray, str]:
    from pydicom.pixels import apply_color_lut

    _check_palette(ds)
    rgb = apply_color_lut(arr, ds)
    bits = 8 if rgb.dtype == np.uint8 else 16
    return _luma(rgb, 2.0**bits - 1), (
        "PALETTE COLOR mapped to RGB through its lookup tables (pydicom), then "
        "grey = ITU-R BT.601 luma 0.299 R + 0.587 G + 0.114 B"
    )


def _grey(arr: np.ndarray, meta: dict, ds) -> tuple[np.ndarray, str | None]:
    """Grey ``[0, 1]`` image of a decoded frame and the note on its colour conversion (None for grey)."""
    stored_pi = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    pi = str(meta.get("photometric_interpretation", stored_pi)).strip().upper()
    spp = int(meta.get("samples_per_pixel", ds.get("SamplesPerPixel", 1)) or 1)
    if spp == 1 and pi in ("MONOCHROME1", "MONOCHROME2"):
        if arr.ndim != 2:
            raise ImageReadError(f"DICOM frame has shape {arr.shape}, expected a 2-D grey image.")
        return _grey_from_monochrome(arr, ds, pi), None
    if spp == 1 and pi == "PALETTE COLOR":
        return _grey_from_palette(arr, ds)
    if spp == 3 and pi in _COLOUR and arr.ndim == 3:
        if pi != "RGB":
            from pydicom.pixels import convert_color_space

            arr = convert_color_space(arr, pi, "RGB")
        bits = int(meta.get("bits_stored") or ds.get("BitsStored") or 8)
        via = f"stored as {stored_pi}, converted to RGB by pydicom, then " if stored_pi != "RGB" else ""
        return _luma(arr, 2.0**bits - 1), (
            f"colour image ({via}grey = ITU-R BT.601 luma 0.299 R + 0.587 G + 0.114 B of {bits}-bit samples)"
        )
    raise ImageReadError(
        f"DICOM photometric interpretation {stored_pi!r} with {spp} sample(s) per pixel is not "
        f"supported; only MONOCHROME1, MONOCHROME2, PALETTE COLOR, RGB and YBR colour images can "
        f"be audited."
    )


def read_dicom(path: str | Path) -> DicomImage:
    """Decode a DICOM file into one grey frame; raises :class:`ImageReadError` with a full-sentence reason."""
    ds = _read_dataset(Path(path))
    ts = _transfer_syntax(ds)
    frames = _check_shape(ds)
    index, frame_note = _frame_index(ds, frames)
    _check_codestream(ds, ts, index, frames)
    arr, meta, plugin, decode_warnings, failures = _decode(ds, ts, index)
    notes = [frame_note] if frame_note else []
    if str(ts) not in SUPPORTED_TRANSFER_SYNTAXES:
        notes.append(
            f"transfer syntax {_ts_name(ts)} is outside the tested set; decoded by pydicom ({plugin or 'native'})"
        )
    elif plugin and plugin != "pylibjpeg":
        why = f"after {'; '.join(failures)}" if failures else "(pylibjpeg is not installed)"
        notes.append(f"decoded by pydicom's {plugin!r} plugin {why}")
    if str(ts) in _LOSSY:
        notes.append(f"lossy-compressed pixel data: {SUPPORTED_TRANSFER_SYNTAXES[str(ts)]}")
    elif str(ds.get("LossyImageCompression", "")).strip() == "01":
        notes.append("pixel data were lossy-compressed at some point (Lossy Image Compression = 01)")
    notes += [f"pydicom warned while decoding: {w}" for w in decode_warnings]
    try:
        img, colour_note = _grey(arr, meta, ds)
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom's LUT/window code on a broken header: skip the file
        raise ImageReadError(
            _sentence(f"DICOM pixel data cannot be made grey ({type(exc).__name__}: {_one_line(exc)})")
        ) from None
    if colour_note:
        notes.append(colour_note)
    notes += _check_plausible(arr, img, bool(getattr(ts, "is_encapsulated", False)))
    return DicomImage(img.astype(np.float32), _ts_name(ts), tuple(notes))


def _check_plausible(arr: np.ndarray, img: np.ndarray, compressed: bool) -> list[str]:
    """A frame with one value everywhere is not a radiograph. Decoded from compressed data it is refused
    (a corrupt fragment often decodes to black); stored uncompressed, or made constant by its lookup
    tables and window, it is kept and flagged with a note (results.json ``data.conversions``)."""
    if arr.size and np.all(arr == arr.flat[0]):
        value = arr.flat[0].item()
        if compressed:
            raise ImageReadError(
                f"Decoded DICOM frame is constant (every value is {value!r}): the compressed pixel data "
                "are probably corrupt."
            )
        return [f"IMPLAUSIBLE: every stored pixel value is {value!r} (a constant frame, no image content)"]
    if img.size and float(np.nanmax(img)) == float(np.nanmin(img)):
        return ["IMPLAUSIBLE: the frame is constant after its lookup tables and window (no image content left)"]
    return []
