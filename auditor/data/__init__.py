"""Data sets of chest X-rays: discovery (:mod:`.discover`), decoding (:mod:`.decode`, :mod:`.dicom`, with the
refusals of :mod:`.limits`), fingerprints (:mod:`.fingerprint`), labels and subsets (:mod:`.labels`), streaming
(:mod:`.stream`)."""

from auditor.data.decode import load_image, load_images
from auditor.data.discover import Dataset, open_dataset
from auditor.data.fingerprint import drop_duplicates, fingerprint
from auditor.data.labels import (
    DROP,
    check_label_targets,
    drop_labels,
    map_labels,
    parse_label_map,
    stratified_subset,
)
from auditor.data.limits import MAX_PIXELS, ImageReadError

__all__ = [
    "DROP",
    "MAX_PIXELS",
    "Dataset",
    "ImageReadError",
    "check_label_targets",
    "drop_duplicates",
    "drop_labels",
    "fingerprint",
    "load_image",
    "load_images",
    "map_labels",
    "open_dataset",
    "parse_label_map",
    "stratified_subset",
]
