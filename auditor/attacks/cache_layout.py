"""The one owner of the cache folder's layout (issue 27 item 5): every path under ``--cache-dir`` is named here.

::

    <cache>/<key>/request.json                 what the set's key was computed from
    <cache>/<key>/<attack>_eps<e>/<name>.png   one 8-bit PNG per image, named after its source
    <cache>/<key>/batches/00000.json           done-marker of batch 0 (written after its PNGs)
    <cache>/<key>/index.json                   written last: the set is complete
    <cache>/<key>/perturbation.json            the set's statistics, bound to its pixels (:mod:`auditor.attacks.stats_record`)
    <cache>/digests/<source>.json              the clean images' digest, by source content (:mod:`auditor.attacks.clean_digest`)
    <cache>/precision/<decision>.json          ``--precision auto``'s decision (:mod:`auditor.attacks.auto_precision`)

:mod:`auditor.attacks.sets` (building and loading sets), :mod:`auditor.distributed` (which batches are
missing) and the records above ask this module for paths instead of joining names themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: the file that marks a finished set
INDEX_FILE = "index.json"
#: the file recording what a set's key was computed from
REQUEST_FILE = "request.json"
#: the file of a set's perturbation statistics
PERTURBATION_FILE = "perturbation.json"
#: the folder of a set's per-batch done-markers
BATCHES_DIR = "batches"
#: the folder of the stored clean-image digests
DIGESTS_DIR = "digests"
#: the folder of ``--precision auto``'s decisions
PRECISION_DIR = "precision"


@dataclass(frozen=True)
class SetLayout:
    """The paths of one cached set, ``<cache>/<key>/``."""

    dir: Path

    @property
    def request(self) -> Path:
        """``request.json``: what the key was computed from."""
        return self.dir / REQUEST_FILE

    @property
    def index(self) -> Path:
        """``index.json``: written last, when the set is complete."""
        return self.dir / INDEX_FILE

    @property
    def perturbation(self) -> Path:
        """``perturbation.json``: the set's statistics bound to its pixels (:mod:`auditor.attacks.stats_record`)."""
        return self.dir / PERTURBATION_FILE

    def marker(self, batch: int) -> Path:
        """The done-marker of batch ``batch`` (written after its PNGs)."""
        return self.dir / BATCHES_DIR / f"{batch:05d}.json"

    def image(self, rel: str) -> Path:
        """A PNG of the set by its path relative to the set folder (``<attack>_eps<e>/<name>.png``)."""
        return self.dir / rel


def set_layout(cache_dir: str | Path, key: str) -> SetLayout:
    """The layout of the set with key ``key`` in the cache ``cache_dir``."""
    return SetLayout(Path(cache_dir) / key)


def digest_record(cache_dir: str | Path, source: str) -> Path:
    """Where the clean-image digest of the image source ``source`` is stored."""
    return Path(cache_dir) / DIGESTS_DIR / f"{source}.json"


def precision_record(cache_dir: str | Path, decision: str) -> Path:
    """Where ``--precision auto`` stores its decision ``decision`` (host, surrogate, input size)."""
    return Path(cache_dir) / PRECISION_DIR / f"{decision}.json"
