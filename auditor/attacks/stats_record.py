"""A cached set's perturbation statistics, computed while the set is walked, with SSIM kept in the set's folder.

SSIM (Wang et al. 2004, "Image quality assessment: from error visibility to structural similarity", IEEE TIP
13(4); scikit-image's implementation) costs ~3 ms per 224 px image and pair, more than decoding and
inference together, and a cached set's SSIM is the same at every scan. So after a whole walk the summary is
stored in ``<key>/perturbation.json`` (:attr:`~auditor.attacks.cache_layout.SetLayout.perturbation`), bound to
the exact pixels: the clean images' digest of the key and the SHA-256 of every PNG, in order.

A later walk skips SSIM only when all of these hold, and otherwise computes it as before:

* the record parses, has this format, and its binding equals the digest of the clean images and of the PNGs
  this walk has just verified (each PNG against its done-marker, each clean batch against the digest the marker
  recorded, every pixel within the ε budget);
* no batch was recomputed in this walk;
* the four statistics recomputed from the pixels in this walk (L-inf mean and max, L2 and PSNR means, cheap)
  equal the record's exactly.

The stored SSIM is therefore as trusted as the done-markers next to it (the tool wrote both, bound to the same
bytes); a record that disagrees with the pixels in any checked number is ignored and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import numpy as np

from auditor.atomic import write_atomic
from auditor.attacks.cache_layout import SetLayout
from auditor.attacks.perturbation import CHEAP_KEYS, PerturbationStats, perturbation_stats

RECORD_FORMAT = 1


def binding(images_sha256: str, png_sha256: list) -> str:
    """SHA-256 of the clean images' digest and the PNGs' SHA-256s in image order."""
    h = hashlib.sha256(f"{images_sha256}\n".encode("ascii"))
    h.update("\n".join(str(d) for d in png_sha256).encode("ascii"))
    return h.hexdigest()


def _read(layout: SetLayout) -> dict[str, Any] | None:
    try:
        rec = json.loads(layout.perturbation.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: a depth bomb
        return None
    if not isinstance(rec, dict) or rec.get("format") != RECORD_FORMAT or not isinstance(rec.get("stats"), dict):
        return None
    ssim = rec["stats"].get("ssim_mean")
    if not isinstance(ssim, float) or not math.isfinite(ssim) or not -1.0 <= ssim <= 1.0:
        return None
    return rec


class SetStats:
    """The statistics of one set walk (``whole``: every batch, in order; a shard has none)."""

    def __init__(self, layout: SetLayout, whole: bool) -> None:
        self.layout = layout
        self.record = _read(layout) if whole else None
        self.acc = PerturbationStats(ssim=self.record is None) if whole else None

    def add(self, clean: np.ndarray, adv: np.ndarray, norms=None) -> None:
        """Add a verified (or computed) batch (``norms``: its per-image norms, when known)."""
        if self.acc is not None:
            self.acc.add(clean, adv, norms)

    def finish(self, images_sha256: str, png_sha256: list, recomputed: bool, clean, adv) -> dict[str, float] | None:
        """The set's statistics (None for a shard). ``clean`` and ``adv`` are the whole sets, read again only when
        the record could not be used after all (SSIM was skipped in this walk)."""
        if self.acc is None:
            return None
        bound = binding(images_sha256, png_sha256)
        rec = self.record
        if rec is not None:
            summary = self.acc.result(ssim_mean=rec["stats"]["ssim_mean"])
            if (
                not recomputed
                and rec.get("binding") == bound
                and all(rec["stats"].get(k) == summary[k] for k in CHEAP_KEYS)
            ):
                return summary
            summary = perturbation_stats(clean, adv)  # the record does not hold for these pixels
        else:
            summary = self.acc.result()
        doc = {"format": RECORD_FORMAT, "binding": bound, "stats": summary}
        try:
            write_atomic(self.layout.perturbation, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode("utf-8"))
        except OSError:
            pass  # an unwritable cache only costs the SSIM next time
        return summary
