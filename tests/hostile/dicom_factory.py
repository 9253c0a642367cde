"""DICOM files built with pydicom for the hostile suite: good and broken photometric interpretations,
palette lookup tables, VOI windows, bit depths and transfer syntaxes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
RLE = "1.2.840.10008.1.2.5"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


def dataset(arr: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int | None = None):
    """An uncompressed Secondary Capture dataset holding ``arr`` ((H, W) or (H, W, 3), uint8/uint16)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = EXPLICIT_LE
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = arr.shape[:2]
    ds.SamplesPerPixel = 3 if arr.ndim == 3 else 1
    if arr.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = arr.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(arr).tobytes()
    return ds


def palette(ds, entries: int = 256, bits: int = 16, drop: str | None = None, short: str | None = None):
    """Give ``ds`` Red/Green/Blue palette lookup tables; ``drop`` leaves one colour's data out, ``short``
    stores only 10 entries of one colour."""
    ramp = (np.linspace(0, 1, entries) * (2**bits - 1 if bits in (8, 16) else 65535)).astype(np.uint16)
    for colour in ("Red", "Green", "Blue"):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [entries % 65536, 0, bits])
        if colour != drop:
            data = ramp[:10] if colour == short else ramp
            setattr(ds, f"{colour}PaletteColorLookupTableData", data.tobytes())
    return ds


def jpeg(arr8: np.ndarray, *, sof_size: tuple[int, int] | None = None, cut: bool = False):
    """A JPEG Baseline dataset of the 8-bit grey ``arr8``; ``sof_size`` rewrites the frame header's
    width x height, ``cut`` drops the codestream's second half (and its end-of-image marker)."""
    from PIL import Image
    from pydicom.encaps import encapsulate

    buf = io.BytesIO()
    Image.fromarray(arr8).save(buf, format="JPEG", quality=90)
    code = bytearray(buf.getvalue())
    if sof_size is not None:
        at = code.index(b"\xff\xc0")
        code[at + 5 : at + 7] = sof_size[1].to_bytes(2, "big")
        code[at + 7 : at + 9] = sof_size[0].to_bytes(2, "big")
    if cut:
        code = code[: len(code) // 2]
    ds = dataset(arr8)
    ds.file_meta.TransferSyntaxUID = JPEG_BASELINE
    ds.PixelData = encapsulate([bytes(code)])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01"
    return ds


def with_syntax(ds, syntax: str):
    """``ds`` re-encoded in ``syntax`` (uncompressed ones and RLE, by pydicom)."""
    if syntax == RLE:
        ds.compress(RLE, encoding_plugin="pydicom")
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    return ds


def write(ds, path: Path) -> Path:
    """Save ``ds`` as a DICOM file (with its preamble and file meta)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    little = ds.file_meta.TransferSyntaxUID != EXPLICIT_BE
    implicit = ds.file_meta.TransferSyntaxUID == IMPLICIT_LE
    if not little and ds.BitsAllocated == 16 and ds.SamplesPerPixel == 1 and "PixelData" in ds:
        arr = np.frombuffer(ds.PixelData, "<u2").astype(">u2")
        ds.PixelData = arr.tobytes()
    ds.save_as(path, enforce_file_format=True, little_endian=little, implicit_vr=implicit)
    return path
