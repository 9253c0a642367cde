"""The scan's stages take their inputs and return typed results; the orchestrator composes them and hands
them the factories that build surrogates and defenses (auditor/scan/pipeline.py, auditor/scan/factories.py)."""

from __future__ import annotations

import dataclasses

import pytest

from auditor.defenses.transforms import BitDepthReduction
from auditor.models.onnx import OnnxClassifier
from auditor.models.spec import read_spec
from auditor.models.surrogate import load_surrogate
from auditor.scan.attack import build_sets
from auditor.scan.context import ScanContext
from auditor.scan.data import load_data
from auditor.scan.options import ScanOptions
from auditor.scan.pipeline import Auditor
from auditor.scan.records import AttackStage
from onnx_factory import make_classifier, write_image_folder

CLASSES = ["normal", "pneumonia", "pneumothorax"]


@pytest.fixture()
def target_and_data(tmp_path):
    data = write_image_folder(tmp_path / "d", n_per_class=2)
    model = make_classifier(tmp_path / "m.onnx", channels=1, class_names=CLASSES)
    return OnnxClassifier(model, spec=read_spec(model, overrides={"image_size": 32})), data


def _options(tmp_path, **kw) -> ScanOptions:
    base = dict(
        attacks=("mifgsm",),
        epsilons=(8 / 255,),
        surrogate=str(tmp_path / "no-such-surrogate.pt"),  # never read: the factory builds the surrogate
        n_boot=0,
        detector=False,
        cache_dir=str(tmp_path / "c"),
        device="cpu",
    )
    return ScanOptions(**{**base, **kw})


def test_the_scan_builds_surrogates_and_defenses_only_through_its_factories(tmp_path, target_and_data):
    target, data = target_and_data
    asked: list = []

    def surrogates(spec=None):
        asked.append(spec)
        return load_surrogate("target", target.spec, target.path, "cpu")

    defenses = [BitDepthReduction(3)]
    opts = _options(tmp_path, defenses="not-a-registered-defense", bpda=True)
    result = Auditor(target, opts, surrogates=surrogates, defenses=lambda feature_extractor: defenses).run(str(data))
    names = [c.name for c in result.conditions]
    assert "mifgsm@8" in names and f"{defenses[0].name}/mifgsm@8" in names
    assert any(c.extra.adaptive for c in result.conditions)  # BPDA through the factory's defense
    assert asked and set(asked) == {None}  # the scan's own surrogate each time, never built from its text here
    assert not result.skipped


def test_the_attack_stage_returns_its_sets_and_reads_no_state(tmp_path, target_and_data):
    target, data = target_and_data
    ctx = ScanContext(target, _options(tmp_path, precision="fp32"))
    loaded = load_data(ctx, str(data))
    stage = build_sets(ctx, loaded, lambda spec=None: None)  # a surrogate that cannot be built: no gradient sets
    assert stage == AttackStage((), None) and stage.precision("fp32") == "fp32"
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.options = _options(tmp_path)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        loaded.y = None  # type: ignore[misc]
    assert not hasattr(ctx, "data")
