"""Data sets of chest X-rays: indexing, decoding, fingerprinting, label mapping."""

from auditor.data.loading import (
    DROP,
    MAX_PIXELS,
    Dataset,
    ImageReadError,
    drop_duplicates,
    drop_labels,
    fingerprint,
    load_image,
    load_images,
    map_labels,
    open_dataset,
    parse_label_map,
    stratified_subset,
)

__all__ = [
    "DROP", "MAX_PIXELS", "Dataset", "ImageReadError", "drop_duplicates", "drop_labels", "fingerprint", "load_image",
    "load_images", "map_labels", "open_dataset", "parse_label_map", "stratified_subset",
]
