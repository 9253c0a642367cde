"""The adaptive (BPDA) check, pinned by behaviour rather than by field types.

Setting: a brightness classifier (tests/onnx_factory.py; class boundaries at mean grey 0.3 and
0.7) attacked white-box (``--surrogate target``) at eps = 16/255 on pneumonia images of grey level
0.34. The non-adaptive attack pushes them *down* across 0.3 (accuracy 0).

* ``OffsetQuantiser`` (round to 31 levels, then add 0.33) undoes that particular perturbation
  (0.278 -> 0.62, pneumonia again) but has no robustness of its own: an attacker who runs through
  it (BPDA, Athalye et al., ICML 2018) is pushed *up* instead (0.404 -> 0.75, pneumothorax). Its
  exact gradient is zero almost everywhere (a quantiser): it only masks gradients. The scan must
  flag ``benefit_vanishes = True``.
* ``bitdepth:2`` (levels 0, 1/3, 2/3, 1) maps every image within 16/255 of 0.34 to 1/3: it truly
  removes the perturbation, so the adaptive attack fails too and the flag must be False.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from auditor.defenses.base import Preprocessor
from auditor.defenses.bpda import defended_module
from auditor.defenses.transforms import BitDepthReduction
from auditor.models.onnx import OnnxClassifier
from auditor.models.spec import read_spec
from auditor.scan.options import ScanOptions
from auditor.scan.pipeline import Auditor
from onnx_factory import make_classifier

CLASSES = ["normal", "pneumonia", "pneumothorax"]
GREY = 87  # 0.341


class OffsetQuantiser(Preprocessor):
    """Round to 31 grey levels, then brighten by 0.33: not differentiable, and not robust."""

    name = "offsetquant"
    label = "quantise to 31 levels + 0.33"

    def _apply(self, x: np.ndarray) -> np.ndarray:
        return np.round(x * 31) / 31 + 0.33

    def exact_torch(self, x_t: torch.Tensor) -> torch.Tensor:
        """The same transform in torch with autograd's own gradient (zero almost everywhere)."""
        return (torch.round(x_t * 31) / 31 + 0.33).clamp(0, 1)


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    root = tmp_path_factory.mktemp("adaptive")
    data = root / "data" / "pneumonia"
    data.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(data / f"p{i}.png"), (GREY + rng.integers(-1, 2, (32, 32))).astype(np.uint8))
    target_path = make_classifier(root / "target.onnx", channels=1, class_names=CLASSES)
    target = OnnxClassifier(target_path, spec=read_spec(target_path))
    defenses = [OffsetQuantiser(), BitDepthReduction(2)]
    opts = ScanOptions(
        attacks=("mifgsm",),
        epsilons=(16 / 255,),
        surrogate="target",
        defenses="test-defenses",
        bpda=True,
        detector=False,
        n_boot=0,
        cache_dir=str(root / "cache"),
        device="cpu",
    )
    # the defense factory the orchestrator hands to the defense stage: these two instead of the registry's
    result = Auditor(target, opts, defenses=lambda feature_extractor: defenses).run(str(root / "data"))
    return result, target


def test_masking_defense_is_flagged_and_a_removing_one_is_not(scan):
    result, _ = scan
    by = {c.name: c for c in result.conditions}
    acc = {name: c.metrics["accuracy"] for name, c in by.items()}
    assert acc["clean"] == 1.0 and acc["mifgsm@16"] == 0.0
    # both defenses undo the non-adaptive perturbation ...
    assert acc["offsetquant/mifgsm@16"] == 1.0 and acc["bitdepth:2/mifgsm@16"] == 1.0
    # ... only the quantiser's benefit is gone once the attacker runs through it
    masking, removing = by["mifgsm@16+bpda:offsetquant"], by["mifgsm@16+bpda:bitdepth:2"]
    assert masking.metrics["accuracy"] == 0.0 and masking.extra.benefit_vanishes is True
    assert masking.extra.accuracy_drop_vs_non_adaptive == 1.0
    assert removing.metrics["accuracy"] == 1.0 and removing.extra.benefit_vanishes is False
    assert masking.extra.adaptive is True and masking.extra.gradient == "straight-through"


def test_adaptive_attack_runs_through_the_defense(scan):
    """The adaptive images move the other way from the non-adaptive ones: their gradient is the
    surrogate's gradient at defense(x), not at x."""
    result, _ = scan
    sets = {m["name"]: m for m in result.extras["adversarial_sets"]}
    assert sets["mifgsm@16+bpda:offsetquant"]["key"] != sets["mifgsm@16"]["key"]
    by = {c.name: c for c in result.conditions}
    preds_plain = np.array(by["mifgsm@16"].predictions)
    preds_adaptive = np.array(by["mifgsm@16+bpda:offsetquant"].predictions)
    assert (preds_plain == CLASSES.index("normal")).all()  # pushed down
    assert (preds_adaptive == CLASSES.index("pneumothorax")).all()  # pushed up, through the +0.33


def test_straight_through_gradient_is_the_surrogates_gradient_at_the_defended_point(scan):
    _, target = scan
    from auditor.models.surrogate import load_surrogate

    sur = load_surrogate("target", target.spec, target.path, torch.device("cpu"))
    pre = OffsetQuantiser()
    x = torch.full((2, 1, 32, 32), GREY / 255, dtype=torch.float64).float()
    y = torch.tensor([1, 1])

    def grad(fn):
        leaf = x.clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(fn(leaf), y).backward()
        return leaf.grad

    module = defended_module(sur.module, pre)
    g_bpda = grad(module)
    z = torch.from_numpy(pre(x.numpy()))
    g_at_defended = grad(lambda leaf: sur.module(leaf + (z - leaf).detach()))
    torch.testing.assert_close(g_bpda, g_at_defended)
    assert (g_bpda > 0).all()  # loss grows with brightness at 0.68: towards pneumothorax
    g_plain = grad(sur.module)
    assert (g_plain < 0).all()  # without the defense: towards normal
    # autograd through the quantiser itself gives nothing to follow: the masking BPDA gets past
    assert torch.count_nonzero(grad(lambda leaf: sur.module(pre.exact_torch(leaf)))) == 0
