"""Model cards state a data set's caveats only for data from it, and a plain recipe's card no adversarial
settings (issue 29, item 5)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from auditor.training.common import TrainData
from tests.training.conftest import tiny_config

KERMANY = (
    "# Pediatric chest X-ray set (Kermany et al. 2018)\n\nChildren aged 1-5 from Guangzhou; not comparable with "
    "the adult NIH images in `../cxr`.\n"
)
NIH = "# Chest X-ray developer set\n\n`normal/` and `pneumonia/` come from the NIH ChestX-ray14 collection.\n"


def _data(root) -> TrainData:
    labels = np.array([0] * 10 + [1] * 10)
    return TrainData(
        images=np.zeros((20, 1, 8, 8), np.float32),
        labels=labels,
        class_names=("normal", "pneumonia"),
        patient_ids=[f"p{i}" for i in range(20)],
        rel_paths=[f"{i}.png" for i in range(20)],
        root=str(root),
        manifest_sha256="0" * 64,
    )


@pytest.mark.parametrize(
    ("readme", "nih", "kermany"), [(KERMANY, False, True), (NIH, True, False), (None, False, False)]
)
def test_collection_caveats_follow_the_data_readme(tmp_path, readme, nih, kermany):
    from auditor.training.recipe_publish import _limitations

    root = tmp_path / "data"
    root.mkdir()
    if readme:
        (root / "README.md").write_text(readme)
    lims = " ".join(_limitations(_data(root), tiny_config(root, tmp_path / "out"), False, None))
    assert ("NLP-mined" in lims) is nih
    assert ("children aged 1-5" in lims) is kermany


def test_a_zoo_fold_reads_the_source_data_readme(tmp_path):
    from auditor.training.recipe_publish import _limitations

    root = tmp_path / "kermany"
    root.mkdir()
    (root / "README.md").write_text(KERMANY)
    fold = tmp_path / "zoo" / "folds" / "fold_0_resnet18.csv"  # no README beside a fold manifest
    cfg = tiny_config(fold, tmp_path / "out", source_data=str(root))
    lims = " ".join(_limitations(_data(root), cfg, False, None))
    assert "children aged 1-5" in lims and "NIH" not in lims


def test_plain_recipe_card_has_no_adversarial_settings(reference_run):
    card = json.loads(open(reference_run["card_json"], encoding="utf-8").read())
    hyper = card["recipe"]["hyperparameters"]
    assert not {"attack", "adv_eps", "adv_fraction"} & set(hyper)
    assert "source_data" not in hyper and "progress_interval" not in hyper
    md = open(reference_run["card_md"], encoding="utf-8").read()
    assert "fgsm-rs" not in md and "adv_eps" not in md


def test_card_recipe_description_is_the_recipes_first_docstring_line():
    """The card's recipe description (a constant since the split) still says what recipes.py's docstring says."""
    from auditor.training import recipes
    from auditor.training.recipe_config import RECIPES_DESCRIPTION

    assert RECIPES_DESCRIPTION == recipes.__doc__.strip().splitlines()[0]
