"""Labels of a data set against the model's classes: the ``--label-map`` grammar, mapping,
dropping labels, and the class-stratified subset of ``--max-images``."""

from __future__ import annotations

import numpy as np

from auditor.errors import DataError, UsageError
from auditor.types import printable

#: ``--label-map LABEL=-`` drops every image of that data label from the scan
DROP = "-"


def parse_label_map(text: str | None) -> dict[str, str]:
    """``"Normal=no finding,PTX=pneumothorax,other=-"`` -> {"normal": "no finding", "ptx": "pneumothorax", "other": "-"}.

    A target of :data:`DROP` (``-``) drops that data label (see :func:`drop_labels`). A data label
    mapped twice (case-insensitively) and text that is not valid UTF-8 (bytes the shell passed that
    Python keeps as lone surrogates) are usage errors; a class folder whose name is not UTF-8 is
    named with ``\\xNN`` escapes (:func:`auditor.types.printable`), which is how it is mapped.
    """
    out: dict[str, str] = {}
    if not text:
        return out
    if printable(text) != text:
        raise UsageError(
            f"--label-map {printable(text)!r} holds control characters or text that is not valid UTF-8; "
            "name such a class with the \\xNN escapes the reports show"
        )
    for part in text.split(","):
        if not part.strip():
            continue
        a, sep, b = part.partition("=")  # the FIRST '=': a model class may contain '='
        if not sep or not a.strip() or not b.strip():
            raise UsageError(f"--label-map entry {part!r} is not DATA_LABEL=MODEL_CLASS")
        key = a.strip().lower()
        if key in out:
            raise UsageError(f"--label-map maps the data label {a.strip()!r} twice ({out[key]!r} and {b.strip()!r})")
        out[key] = b.strip()
    return out


def check_label_targets(label_map: dict[str, str] | None, class_names) -> None:
    """Every ``--label-map`` target must be one of the model's classes (case-insensitive) or :data:`DROP`;
    checked as soon as the model's contract is read, before any data (:class:`UsageError`, exit 2)."""
    known = {c.lower() for c in class_names}
    bad = sorted({v for v in (label_map or {}).values() if v.strip() != DROP and v.lower() not in known})
    if bad:
        raise UsageError(
            f"--label-map maps to {', '.join(repr(b) for b in bad)}, which the model does not have "
            f"(its classes: {', '.join(class_names)}; DATA=- drops a data class)"
        )


def map_labels(labels: list[str], class_names: tuple[str, ...], label_map: dict[str, str] | None = None) -> np.ndarray:
    """Dataset labels -> model class indices, by name, case-insensitively.

    Raises :class:`DataError` naming the labels that match no model class.
    """
    index = {c.lower(): i for i, c in enumerate(class_names)}
    lmap = {k.lower(): v for k, v in (label_map or {}).items()}
    out = np.empty(len(labels), dtype=np.int64)
    missing: set[str] = set()
    for i, lab in enumerate(labels):
        name = lmap.get(lab.lower(), lab).lower()
        if name not in index:
            missing.add(lab)
            out[i] = -1
        else:
            out[i] = index[name]
    if missing:
        if len(missing) == len(set(labels)):
            raise DataError(
                f"no data label matches a model class: data has {sorted(set(labels))}, model has {list(class_names)} "
                "(use --label-map DATA=MODEL or --labels)"
            )
        raise DataError(f"data labels {sorted(missing)} match no model class {list(class_names)} (use --label-map)")
    return out


def drop_labels(labels: list[str], label_map: dict[str, str] | None) -> tuple[list[int], dict[str, int]]:
    """Indices of the labels kept, and {data label: images dropped} for labels mapped to :data:`DROP`."""
    drop = {k.lower() for k, v in (label_map or {}).items() if v.strip() == DROP}
    kept: list[int] = []
    dropped: dict[str, int] = {}
    for i, lab in enumerate(labels):
        if lab.lower() in drop:
            dropped[lab] = dropped.get(lab, 0) + 1
        else:
            kept.append(i)
    return kept, dropped


def stratified_subset(labels: list[str], max_images: int, seed: int) -> list[int]:
    """Indices of a seeded, class-stratified subset of at most ``max_images`` (sorted)."""
    n = len(labels)
    if max_images >= n:
        return list(range(n))
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(lab, []).append(i)
    classes = sorted(by_class)
    quota = {c: max(1, int(np.floor(max_images * len(by_class[c]) / n))) for c in classes}
    # hand out what is left by the largest remainders, deterministically
    while sum(quota.values()) < max_images:
        rem = sorted(classes, key=lambda c: (-(max_images * len(by_class[c]) / n - quota[c]), c))
        for c in rem:
            if sum(quota.values()) >= max_images:
                break
            if quota[c] < len(by_class[c]):
                quota[c] += 1
    while sum(quota.values()) > max_images:
        c = max(classes, key=lambda c: (quota[c], c))
        quota[c] -= 1
    chosen: list[int] = []
    for c in classes:
        idx = np.array(by_class[c])
        k = min(quota[c], len(idx))
        chosen.extend(rng.choice(idx, size=k, replace=False).tolist())
    return sorted(chosen)
