"""Data sets: folder, CSV, NIH table, DICOM, corrupt files, symlink loops, label mapping, sampling."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from auditor.data import (
    MAX_PIXELS,
    ImageReadError,
    fingerprint,
    load_image,
    load_images,
    map_labels,
    open_dataset,
    parse_label_map,
    stratified_subset,
)
from auditor.errors import DataError, UsageError
from onnx_factory import write_image_folder


def test_folder_dataset_with_patient_manifest(tmp_path):
    root = write_image_folder(tmp_path / "d", n_per_class=3, patient_manifest=True)
    ds = open_dataset(root)
    assert ds.format == "folder"
    assert ds.per_class() == {"normal": 3, "pneumonia": 3, "pneumothorax": 3}
    assert all(s.patient_id and s.patient_id.startswith("P") for s in ds.samples)
    x, kept, skipped = load_images(ds.samples, (32, 32))
    assert x.shape == (9, 1, 32, 32) and x.dtype == np.float32 and not skipped
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_csv_manifest(tmp_path):
    root = write_image_folder(tmp_path / "d", n_per_class=2)
    rows = ["path,label,patient_id"] + [
        f"{p.relative_to(root).as_posix()},{p.parent.name},X{i}" for i, p in enumerate(sorted(root.rglob("*.png")))
    ]
    rows.append("missing/file.png,normal,X99")
    (root / "list.csv").write_text("\n".join(rows) + "\n")
    ds = open_dataset(root / "list.csv")
    assert ds.format == "csv" and len(ds.samples) == 6
    assert [s.reason for s in ds.skipped] == ["file listed in the manifest does not exist"]


def test_csv_manifest_without_label_column(tmp_path):
    (tmp_path / "m.csv").write_text("path,kind\na.png,x\n")
    with pytest.raises(DataError, match="'label'"):
        open_dataset(tmp_path / "m.csv")


def test_nih_table_mapping(tmp_path):
    img = (np.full((40, 40), 128)).astype(np.uint8)
    images = tmp_path / "images"
    images.mkdir()
    for name in ["a.png", "b.png", "c.png", "d.png"]:
        cv2.imwrite(str(images / name), img)
    (tmp_path / "Data_Entry_2017.csv").write_text(
        "Image Index,Finding Labels,Follow-up #,Patient ID\n"
        "a.png,No Finding,0,1\nb.png,Pneumonia|Infiltration,0,2\nc.png,Pneumonia|Pneumothorax,0,3\n"
        "d.png,Effusion,0,4\n"
    )
    ds = open_dataset(tmp_path / "Data_Entry_2017.csv")
    assert ds.format == "nih"
    assert [(s.rel_path, s.label, s.patient_id) for s in ds.samples] == [
        ("a.png", "normal", "1"),
        ("b.png", "pneumonia", "2"),
    ]
    assert ds.skipped[0].name == "c.png" and "several classes" in ds.skipped[0].reason


def _write_dicom(path, arr, photometric="MONOCHROME2", slope=1.0, intercept=0.0, window=None):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = arr.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def test_dicom_16bit_monochrome1_and_window(tmp_path):
    ramp = np.tile(np.linspace(0, 4000, 64), (64, 1)).astype(np.uint16)
    _write_dicom(tmp_path / "m2.dcm", ramp)
    _write_dicom(tmp_path / "m1.dcm", ramp, photometric="MONOCHROME1")
    a = load_image(tmp_path / "m2.dcm")
    b = load_image(tmp_path / "m1.dcm")
    assert a.shape == (64, 64) and a[0, 0] == 0.0 and a[0, -1] == 1.0
    np.testing.assert_allclose(a, 1.0 - b, atol=1e-6)
    # a narrow VOI window saturates both ends
    _write_dicom(tmp_path / "w.dcm", ramp, window=(2000, 400))
    w = load_image(tmp_path / "w.dcm")
    assert (w[:, :10] == 0).all() and (w[:, -10:] == 1).all()


def test_dicom_rescale_is_applied_before_the_window(tmp_path):
    # stored 0..4000 with slope 2, intercept -1000 gives -1000..7000; a window centred at 3000 (rescaled
    # units) of width 400 saturates below stored 1900 and above stored 2100
    ramp = np.tile(np.linspace(0, 4000, 81), (8, 1)).astype(np.uint16)
    _write_dicom(tmp_path / "r.dcm", ramp, slope=2.0, intercept=-1000.0, window=(3000, 400))
    img = load_image(tmp_path / "r.dcm")
    stored = ramp[0].astype(float)
    assert (img[0, stored <= 1850] == 0).all() and (img[0, stored >= 2150] == 1).all()
    assert 0 < img[0, list(stored).index(2000)] < 1
    # a negative slope turns the picture over
    _write_dicom(tmp_path / "n.dcm", ramp, slope=-1.0, intercept=4000.0)
    np.testing.assert_allclose(load_image(tmp_path / "n.dcm")[0], 1.0 - stored / 4000.0, atol=1e-6)


def test_dicom_without_extension_in_folder(tmp_path):
    (tmp_path / "d" / "normal").mkdir(parents=True)
    _write_dicom(tmp_path / "d" / "normal" / "IM0001", np.full((32, 32), 1000, np.uint16))
    ds = open_dataset(tmp_path / "d")
    assert len(ds.samples) == 1
    x, kept, skipped = load_images(ds.samples, (16, 16))
    assert x.shape == (1, 1, 16, 16) and not skipped


def test_corrupt_and_truncated_images_are_skipped_with_reason(tmp_path):
    root = write_image_folder(tmp_path / "d", n_per_class=2)
    good = sorted(root.rglob("*.png"))[0]
    data = good.read_bytes()
    (root / "normal" / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "normal" / "garbage.png").write_bytes(b"not an image")
    ds = open_dataset(root)
    x, kept, skipped = load_images(ds.samples, (32, 32))
    reasons = {s.name: s.reason for s in skipped}
    assert set(reasons) == {"normal/truncated.png", "normal/garbage.png"}
    assert "truncated" in reasons["normal/truncated.png"] or "corrupt" in reasons["normal/truncated.png"]
    assert len(kept) == 6


def test_gigantic_image_refused(tmp_path, monkeypatch):
    import auditor.data.limits as limits

    monkeypatch.setattr(limits, "MAX_PIXELS", 100)
    cv2.imwrite(str(tmp_path / "big.png"), np.zeros((20, 20), np.uint8))
    with pytest.raises(ImageReadError, match="above the limit"):
        load_image(tmp_path / "big.png")
    cv2.imwrite(str(tmp_path / "at_limit.png"), np.zeros((10, 10), np.uint8))
    assert load_image(tmp_path / "at_limit.png").shape == (10, 10)  # the limit itself is allowed ("> 64 MP")
    assert MAX_PIXELS == 64_000_000  # README: oversized means > 64 megapixels


def test_16bit_png_and_rgb_and_odd_aspect(tmp_path):
    cv2.imwrite(str(tmp_path / "16.png"), np.full((30, 30), 65535, np.uint16))
    assert load_image(tmp_path / "16.png").max() == pytest.approx(1.0)
    rgb = np.zeros((20, 60, 3), np.uint8)
    rgb[..., 1] = 255
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb)
    out = load_image(tmp_path / "rgb.png", (16, 16))
    assert out.shape == (16, 16) and 0.5 < out.mean() < 0.7  # green -> luminance ~0.59


def test_symlink_loop_is_reported_not_followed_forever(tmp_path):
    root = write_image_folder(tmp_path / "d", n_per_class=1)
    os.symlink(root / "normal", root / "normal" / "loop")
    ds = open_dataset(root)
    assert len(ds.samples) == 3
    assert any("loop" in s.reason for s in ds.skipped)


def test_empty_and_missing(tmp_path):
    with pytest.raises(DataError, match="not found"):
        open_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        open_dataset(tmp_path / "empty")
    (tmp_path / "e2" / "normal").mkdir(parents=True)
    with pytest.raises(DataError, match="no images"):
        open_dataset(tmp_path / "e2")


def test_label_mapping():
    classes = ("Normal", "Pneumonia", "Pneumothorax")
    np.testing.assert_array_equal(map_labels(["normal", "PNEUMONIA", "pneumothorax"], classes), [0, 1, 2])
    np.testing.assert_array_equal(map_labels(["ptx"], classes, parse_label_map("PTX=pneumothorax")), [2])
    with pytest.raises(DataError, match=r"\['effusion'\] match no model class"):
        map_labels(["normal", "effusion"], classes)
    with pytest.raises(DataError, match="no data label matches"):
        map_labels(["cat", "dog"], classes)
    with pytest.raises(UsageError, match="not DATA_LABEL=MODEL_CLASS"):  # a bad flag: exit 2 (issue 10)
        parse_label_map("oops")


def test_fingerprint_is_location_independent(tmp_path):
    a = write_image_folder(tmp_path / "a", n_per_class=2)
    b = write_image_folder(tmp_path / "b", n_per_class=2)
    _, ha = fingerprint(open_dataset(a).samples)
    samples_b, hb = fingerprint(open_dataset(b).samples)
    assert ha == hb and all(len(s.sha256) == 64 for s in samples_b)
    (b / "normal" / "img_000.png").write_bytes((b / "normal" / "img_001.png").read_bytes())
    assert fingerprint(open_dataset(b).samples)[1] != ha


def test_stratified_subset_is_seeded_and_stratified():
    labels = ["a"] * 50 + ["b"] * 30 + ["c"] * 20
    s1 = stratified_subset(labels, 10, seed=3)
    assert s1 == stratified_subset(labels, 10, seed=3)
    assert s1 != stratified_subset(labels, 10, seed=4)
    counts = {k: sum(labels[i] == k for i in s1) for k in "abc"}
    assert counts == {"a": 5, "b": 3, "c": 2}
    assert stratified_subset(labels, 500, seed=0) == list(range(100))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_float_tiff_with_non_finite_pixel_is_skipped_not_black(tmp_path, bad):
    from PIL import Image

    root = write_image_folder(tmp_path / "d", n_per_class=1)
    arr = np.random.default_rng(0).uniform(0.2, 0.8, (32, 32)).astype(np.float32)
    Image.fromarray(arr, mode="F").save(root / "normal" / "ok.tif")
    arr[5, 7] = bad
    Image.fromarray(arr, mode="F").save(root / "normal" / "bad.tif")
    x, kept, skipped = load_images(open_dataset(root).samples, (32, 32))
    assert [(s.name, s.reason) for s in skipped] == [("normal/bad.tif", "image holds 1 NaN or infinite pixel value(s)")]
    assert len(kept) == 4 and np.isfinite(x).all()


def test_symlink_out_of_the_data_root_is_skipped(tmp_path):
    root = write_image_folder(tmp_path / "d", n_per_class=1)
    outside = write_image_folder(tmp_path / "elsewhere", n_per_class=2)
    os.symlink(outside, root / "normal" / "root")  # a folder link leaving the root
    os.symlink(next((outside / "pneumonia").glob("*.png")), root / "normal" / "stray.png")  # a file link
    ds = open_dataset(root)
    assert ds.per_class() == {"normal": 1, "pneumonia": 1, "pneumothorax": 1}
    reasons = {os.path.basename(s.name): s.reason for s in ds.skipped}
    assert reasons == {"root": "outside the data root", "stray.png": "outside the data root"}


def test_class_folder_linked_from_outside_is_skipped(tmp_path):
    root = write_image_folder(tmp_path / "d", n_per_class=1)
    outside = write_image_folder(tmp_path / "elsewhere", classes=("cardiomegaly",), n_per_class=2)
    os.symlink(outside / "cardiomegaly", root / "cardiomegaly")
    ds = open_dataset(root)
    assert "cardiomegaly" not in ds.per_class()
    assert [(os.path.basename(s.name), s.reason) for s in ds.skipped] == [("cardiomegaly", "outside the data root")]


def test_loop_to_the_root_does_not_relabel_other_classes(tmp_path):
    root = write_image_folder(tmp_path / "d", n_per_class=2)
    os.symlink("..", root / "normal" / "loop")
    os.symlink("../pneumonia", root / "normal" / "other")
    ds = open_dataset(root)
    assert ds.per_class() == {"normal": 2, "pneumonia": 2, "pneumothorax": 2}
    assert all(s.rel_path.split("/")[0] == s.label for s in ds.samples)
    reasons = {os.path.basename(s.name): s.reason for s in ds.skipped}
    assert set(reasons) == {"loop", "other"}
    assert "loop" in reasons["loop"] and "class folder 'pneumonia'" in reasons["other"]


def test_csv_paths_outside_the_root_need_the_flag(tmp_path):
    root = write_image_folder(tmp_path / "d", n_per_class=1)
    outside = write_image_folder(tmp_path / "elsewhere", n_per_class=1)
    img = next((outside / "normal").glob("*.png"))
    man = root / "list.csv"
    man.write_text(
        "path,label\n" + f"normal/{next((root / 'normal').glob('*.png')).name},normal\n"
        f"../elsewhere/normal/{img.name},normal\n{img},normal\n"
    )
    ds = open_dataset(man)
    assert len(ds.samples) == 1
    assert [s.reason.split(" (")[0] for s in ds.skipped] == ["outside the data root"] * 2
    assert "--allow-outside-root" in ds.skipped[0].reason
    assert len(open_dataset(man, allow_outside_root=True).samples) == 3


def test_duplicates_counted_once_and_conflicting_labels_refused(tmp_path):
    import shutil

    from auditor.data import drop_duplicates

    root = write_image_folder(tmp_path / "d", n_per_class=2)
    first = sorted((root / "normal").glob("*.png"))[0]
    shutil.copy(first, root / "normal" / "copy.png")
    samples, _ = fingerprint(open_dataset(root).samples)
    keep, dups = drop_duplicates(samples)
    assert len(samples) == 7 and len(keep) == 6
    assert [(d.name, d.reason) for d in dups] == [
        (f"normal/{first.name}", "exact duplicate of normal/copy.png (same SHA-256): counted once")
    ]
    shutil.copy(first, root / "pneumonia" / "relabelled.png")
    samples, _ = fingerprint(open_dataset(root).samples)
    with pytest.raises(
        DataError, match="labelled 'normal' as normal/copy.png and 'pneumonia' as pneumonia/relabelled.png"
    ) as err:
        drop_duplicates(samples)
    assert err.value.exit_code == 3
