"""The data index as columns (issue 16): same samples, manifest and duplicates as before, and bounded memory."""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from auditor.data import drop_duplicates, fingerprint, open_dataset
from auditor.data.fingerprint import manifest_sha256
from auditor.data.index import SampleIndex
from auditor.errors import DataError
from auditor.types import Sample, Skipped, printable

NAMES = ["b.png", "a.png", "é/ü.png", "名前.png", "x\ty.png", "x.png", "x y.png", "Z.png", "\x01.png", "bad\udcff.png"]


def _samples(n: int = 40) -> list[Sample]:
    out = []
    for i in range(n):
        name = NAMES[i % len(NAMES)].replace(".png", f"_{i}.png")
        label = ("normal", "pneumonia", "é")[i % 3]
        sha = hashlib.sha256(str(i % 17).encode()).hexdigest() if i % 5 else ""
        out.append(Sample(f"/data/{label}/{name}", label, f"{label}/{name}", None if i % 4 == 0 else f"P{i // 4}", sha))
    return out


def _manifest_as_sorted_lines(samples) -> str:
    """The manifest hash as the data module defined it before the index: sorted ``str`` lines."""
    lines = sorted(f"{s.rel_path}\t{s.label}\t{s.sha256}\n" for s in samples)
    return hashlib.sha256("".join(lines).encode("utf-8", "surrogatepass")).hexdigest()


def _duplicates_by_dict(samples):
    """Duplicate detection as it was written before the index: a dict from SHA-256 to the first sample."""
    first, keep, dups = {}, [], []
    for i, s in enumerate(samples):
        seen = first.setdefault(s.sha256, s)
        if seen is s:
            keep.append(i)
        elif seen.label != s.label:
            raise DataError(f"{seen.rel_path} {s.rel_path}")
        else:
            dups.append(s.rel_path)
    return keep, dups


def test_the_index_gives_back_every_sample_exactly():
    samples = _samples()
    index = SampleIndex(samples)
    assert len(index) == len(samples) and list(index) == samples and index == samples
    assert index[3] == samples[3] and index[-1] == samples[-1] and list(index[5:9]) == samples[5:9]
    assert list(index.take([7, 2, 7])) == [samples[7], samples[2], samples[7]]
    assert index.labels == [s.label for s in samples]
    assert index.patient_ids == [s.patient_id for s in samples]
    assert list(index.names) == [s.rel_path for s in samples]
    no_rel = SampleIndex([Sample("/d/a.png", "x"), Sample("/d/b.png", "x", "b.png")])
    assert list(no_rel.names) == ["/d/a.png", "b.png"]
    with pytest.raises(IndexError):
        index[len(samples)]


def test_the_index_refuses_a_sha256_that_is_not_a_digest():
    with pytest.raises(ValueError, match="64 lower-case hex"):
        SampleIndex([Sample("/d/a.png", "x", "a.png", None, "ABC")])


def test_the_manifest_hash_is_the_hash_of_the_sorted_lines():
    samples = [Sample(s.path, s.label, s.rel_path, s.patient_id, s.sha256 or "0" * 64) for s in _samples(60)]
    rng = np.random.default_rng(0)
    for order in (range(60), rng.permutation(60)):
        index = SampleIndex(samples[int(i)] for i in order)
        assert manifest_sha256(index) == _manifest_as_sorted_lines(samples)


def test_duplicates_are_the_ones_a_dict_finds(tmp_path: Path):
    samples = [s for s in _samples(80) if s.sha256]
    same_label = [Sample(s.path, "normal", s.rel_path, s.patient_id, s.sha256) for s in samples]
    keep, dups = drop_duplicates(SampleIndex(same_label))
    want_keep, want_dups = _duplicates_by_dict(same_label)
    assert keep == want_keep and [d.name for d in dups] == [printable(n) for n in want_dups]  # reports' form
    assert all(isinstance(d, Skipped) and "exact duplicate of" in d.reason for d in dups)
    with pytest.raises(DataError) as got:
        drop_duplicates(SampleIndex(samples))
    with pytest.raises(DataError) as want:
        _duplicates_by_dict(samples)
    first, second = str(want.value).split(" ")
    assert f"as {first} and" in str(got.value) and str(got.value).endswith(f"as {second}")


def _folder(root: Path, n: int) -> Path:
    for i in range(n):
        d = root / ("normal", "pneumonia")[i % 2]
        d.mkdir(parents=True, exist_ok=True)
        (d / f"patient{i:06d}_view1_frontal_image.png").write_bytes(f"not decoded here {i}".encode())
    return root


def _indexing_peak(root: Path) -> tuple[int, int]:
    """(peak, kept) bytes traced while indexing, fingerprinting and de-duplicating ``root``."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        ds = open_dataset(root)
        samples, manifest = fingerprint(ds.samples)
        drop_duplicates(samples)
        del ds
        kept = tracemalloc.get_traced_memory()[0] - base
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert len(samples) and manifest
    return peak, kept


def test_indexing_memory_per_image_is_bounded(tmp_path: Path):
    """Indexing an archive holds a few hundred bytes per image, not a Python object graph per image.

    Measured on these files: with a list of ``Sample`` objects (paths and hex digests as ``str``) the
    index kept ~400 bytes per image and indexing peaked at ~560; the columns keep ~155 (two file
    names, 32 bytes of digest, codes and offsets) and peak at ~340 (the sorted folder entries and the
    manifest's fixed-width lines are the transients). Both bounds fail with the list of objects.
    """
    small, large = _folder(tmp_path / "s", 300), _folder(tmp_path / "l", 3000)
    peak_s, kept_s = _indexing_peak(small)
    peak_l, kept_l = _indexing_peak(large)
    per_image_kept = (kept_l - kept_s) / 2700
    per_image_peak = (peak_l - peak_s) / 2700
    assert per_image_kept < 250, f"{per_image_kept:.0f} bytes kept per image"
    assert per_image_peak < 420, f"{per_image_peak:.0f} bytes per image at the peak"


def _nih_table(root: Path, n: int) -> Path:
    root.mkdir()
    header = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    header += "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n"
    lines = [header]
    for i in range(n):
        finding = ("No Finding", "Pneumonia")[i % 2] if i < 4 else "Atelectasis|Effusion"
        lines.append(f"{i:08d}_000.png,{finding},0,{i},58,M,PA,2682,2749,0.143,0.143\n")
        if i < 4:
            (root / f"{i:08d}_000.png").write_bytes(b"not decoded here")
    (root / "Data_Entry_2017.csv").write_text("".join(lines))
    return root / "Data_Entry_2017.csv"


def test_an_nih_table_is_read_row_by_row(tmp_path: Path):
    """The rows of a CSV manifest or NIH table are not held as a list of dicts (~1 kB per row of the
    112,120-row ChestX-ray14 table); rows outside the finding map leave nothing behind."""
    peaks = []
    for n in (1000, 10000):
        table = _nih_table(tmp_path / str(n), n)
        tracemalloc.start()
        try:
            ds = open_dataset(table)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert len(ds.samples) == 4 and ds.format == "nih"
    assert (peaks[1] - peaks[0]) / 9000 < 50, f"{(peaks[1] - peaks[0]) / 9000:.0f} bytes per row"
