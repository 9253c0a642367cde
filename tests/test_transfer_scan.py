"""Transfer diagnostics through a real scan: a surrogate that is the target's twin vs an unrelated target.

The surrogate is a SmallCNN with hand-set weights that detects local
high-frequency energy (a negated Laplacian): smooth images are ``normal``,
noisy ones ``pneumonia``. MI-FGSM adds texture to a smooth image within 2/255,
so on the surrogate it flips every smooth image (10 of the 12 correct ones;
the noisy ones keep their texture). The *twin* target is that network exported
to ONNX; the *unrelated* target classifies mean brightness (smooth images are
dark, noisy ones bright, 0.2 away from its boundary), which an L∞ budget of
4/255 cannot move: nothing transfers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from auditor.cli import cli
from auditor.reference_models.registry import build_model, make_checkpoint
from auditor.types import ModelSpec
from onnx_factory import make_classifier

CLASSES = ["normal", "pneumonia"]
N_SMOOTH, N_NOISY = 10, 2
WEAK_TEXT = "The attacks did not transfer"


def texture_net(threshold: float = 0.05, gain: float = 200.0) -> nn.Module:
    """SmallCNN whose ``pneumonia`` logit is ``gain * (max local -Laplacian - threshold)``."""
    net = build_model("small_cnn", 2, 1)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
        bns = [m for m in net.features if isinstance(m, nn.BatchNorm2d)]
        convs[0].weight[0, 0] = torch.tensor([[1.0, 1.0, 1.0], [1.0, -8.0, 1.0], [1.0, 1.0, 1.0]])
        for conv in convs[1:]:
            conv.weight[0, 0, 1, 1] = 1.0  # pass channel 0 through
        for bn in bns:
            bn.weight.fill_(1.0)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        bns[0].bias[0] = 0.01  # keeps the ReLU alive (a gradient) on smooth images
        net.fc.fc1.weight[0, 0] = 1.0
        net.fc.fc2.weight[1, 0] = gain
        net.fc.fc2.bias[1] = -gain * (threshold + 0.01)
    return net.eval()


def _spec(size: int) -> ModelSpec:
    return ModelSpec(
        input_name="input",
        channels=1,
        height=size,
        width=size,
        scaling="unit",
        class_names=tuple(CLASSES),
        output_kind="logits",
    )


def _write_data(root):
    import cv2

    rng = np.random.default_rng(3)
    for i in range(N_SMOOTH + N_NOISY):
        noisy = i >= N_SMOOTH
        # distinct files (exact duplicates are counted once): smooth images differ in their grey level
        img = np.full((32, 32), 0.7 if noisy else (76 + i) / 255)
        if noisy:
            img = img + rng.choice([-5 / 255, 5 / 255], (32, 32))
        d = root / CLASSES[int(noisy)]
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"img_{i:02d}.png"), np.rint(img * 255).astype(np.uint8))
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from auditor.training.export import export_classifier

    root = tmp_path_factory.mktemp("transfer")
    data = _write_data(root / "data")
    net = texture_net()
    sur = root / "surrogate.pt"
    torch.save(make_checkpoint(net, "small_cnn", 2, 1, _spec(32).to_dict()), sur)
    sur16 = root / "surrogate16.pt"
    torch.save(make_checkpoint(net, "small_cnn", 2, 1, _spec(16).to_dict()), sur16)
    twin = root / "twin.onnx"
    x = np.full((2, 1, 32, 32), 0.3, np.float32)
    x[1] += np.random.default_rng(0).choice([-5 / 255, 5 / 255], (1, 32, 32)).astype(np.float32)
    export_classifier(net, _spec(32), twin, x)
    unrelated = make_classifier(root / "brightness.onnx", channels=1, num_classes=2, class_names=CLASSES)
    return root, data, sur, sur16, twin, unrelated


def _scan(setup, target, out, *extra, surrogate=None):
    root, data, sur = setup[:3]
    args = [
        "scan",
        str(target),
        "--data",
        str(data),
        "--out",
        str(root / out),
        "--surrogate",
        str(surrogate or sur),
        "--cache-dir",
        str(root / "cache"),
        "--n-boot",
        "20",
        "--format",
        "json,html",
        "--attacks",
        "mifgsm",
        "--eps",
        "4",
        "--no-detector",
        "--no-progress",
        *extra,
    ]
    r = CliRunner().invoke(cli, args)
    doc = json.loads((root / out / "results.json").read_text()) if (root / out / "results.json").is_file() else None
    return r, doc


def _attack_cond(doc):
    return next(c for c in doc["conditions"] if c["name"] == "mifgsm@4")


def test_twin_surrogate_transfers_fully(setup):
    r, doc = _scan(setup, setup[4], "twin")
    assert r.exit_code == 0, r.output
    c = _attack_cond(doc)
    t = c["transfer"]
    assert t["surrogate_accuracy_clean"] == 1.0
    assert t["surrogate_flip_rate"] == pytest.approx(N_SMOOTH / (N_SMOOTH + N_NOISY))
    assert t["surrogate_accuracy"] == pytest.approx(N_NOISY / (N_SMOOTH + N_NOISY))
    assert c["flip_rate"] == pytest.approx(t["surrogate_flip_rate"])
    assert t["transfer_efficiency"] == pytest.approx(1.0)
    assert t["agreement_clean"] == 1.0
    assert t["surrogate_input_size"] == [[32, 32]] and t["target_input_size"] == [32, 32] and t["same_input_size"]
    assert doc["extras"]["transfer"]["weak"] is False
    html = (setup[0] / "twin" / "report.html").read_text()
    assert 'id="transfer-table"' in html and "mifgsm@4" in html
    assert WEAK_TEXT not in html and "WEAK EVIDENCE" not in r.output


def test_unrelated_target_gets_the_weak_transfer_headline(setup):
    r, doc = _scan(setup, setup[5], "unrelated")
    assert r.exit_code == 0, r.output
    c = _attack_cond(doc)
    t = c["transfer"]
    assert c["flip_rate"] == 0.0 and c["metrics"]["accuracy"] == 1.0
    assert t["surrogate_flip_rate"] > 0.8  # the attack worked on the surrogate ...
    assert t["transfer_efficiency"] == 0.0  # ... and nothing carried over
    assert t["agreement_clean"] == 1.0
    s = doc["extras"]["transfer"]
    assert s["weak"] is True and s["whitebox_worst"] is None
    html = (setup[0] / "unrelated" / "report.html").read_text()
    assert WEAK_TEXT in html and "No white-box bound was measured" in html and "--surrogate target" in html
    assert "WEAK EVIDENCE" in r.output


def test_surrogate_input_size_is_recorded(setup):
    r, doc = _scan(setup, setup[5], "small", surrogate=setup[3])
    assert r.exit_code == 0, r.output
    t = _attack_cond(doc)["transfer"]
    assert t["surrogate_input_size"] == [[16, 16]] and t["target_input_size"] == [32, 32]
    assert t["same_input_size"] is False
    assert (
        "The surrogate works at 16×16 pixels, the target at 32×32." in (setup[0] / "small" / "report.html").read_text()
    )


def test_min_transfer_fails_the_gate_only_on_the_vacuous_audit(setup):
    r, _ = _scan(setup, setup[5], "gate_strict", "--fail-under", "robust_accuracy=0.1")
    assert r.exit_code == 1 and "transfer-only audit" in r.output  # issue 23: no pass on transfer attacks alone
    # the scans here are transfer-only: --allow-transfer-only accepts that, so --min-transfer alone decides
    gate = ("--fail-under", "robust_accuracy=0.1", "--allow-transfer-only")
    r, _ = _scan(setup, setup[5], "gate_plain", *gate)
    assert r.exit_code == 0, r.output  # without the guard a vacuous audit passes
    r, doc = _scan(setup, setup[5], "gate_unrelated", *gate, "--min-transfer", "0.5")
    assert r.exit_code == 1, r.output
    assert "vacuous audit" in doc["gates"][0]["detail"] and doc["gates"][0]["passed"] is False
    r, doc = _scan(setup, setup[4], "gate_twin", *gate, "--min-transfer", "0.5")
    assert r.exit_code == 0, r.output
    assert doc["gates"][0]["passed"] is True
    # re-evaluating the stored results gives the same verdict
    results = setup[0] / "gate_plain" / "results.json"
    rr = CliRunner().invoke(
        cli,
        [
            "report",
            str(results),
            "--format",
            "json",
            "--out",
            str(setup[0] / "rerender"),
            "--fail-under",
            "robust_accuracy=0.1",
            "--min-transfer",
            "0.5",
            "--allow-transfer-only",
        ],
    )
    assert rr.exit_code == 1, rr.output


def test_min_transfer_without_a_robustness_gate_is_a_usage_error(setup):
    r, _ = _scan(setup, setup[5], "usage", "--fail-under", "accuracy=0.5", "--min-transfer", "0.5")
    assert r.exit_code == 2 and "guards robustness gates" in r.output
