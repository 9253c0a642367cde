"""The defense and detector stages' wiring (auditor/scan/defense.py, auditor/scan/detect.py), with recording
stand-ins for their workers.

Written to kill mutation survivors (``make mutation``, docs/mutation.md). The end-to-end behaviour
(BPDA flags a masking defense, not a removing one) is pinned in tests/test_adaptive.py; here each
decision of the stage is checked on its own: which defenses run or are skipped (and said so), how
the detectors' calibration and held-out halves are drawn, which set each adaptive attack starts
from and with which parameters, and what it records.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import auditor.attacks.sets as sets_mod
import auditor.defenses.bpda as bpda_mod
import auditor.defenses.calibration as calibration_mod
import auditor.defenses.detect as detect_mod
import auditor.defenses.registry as registry_mod
import auditor.defenses.spectra as spectra_mod
import auditor.scan.defense as stage
import auditor.scan.detect as detect_stage
from auditor.condition_ids import THREAT_TRANSFER, THREAT_WHITE_BOX, SetId
from auditor.models.surrogate import Surrogate
from auditor.result_records import AdaptiveSetMeta
from auditor.scan.context import ScanContext
from auditor.scan.factories import defense_factory
from auditor.scan.records import AdversarialSet, AttackStage
from auditor.types import Skipped


class Reporter:
    def __init__(self):
        self.infos, self.warns, self.tasks = [], [], []

    def info(self, m):
        self.infos.append(m)

    def warn(self, m):
        self.warns.append(m)

    @contextlib.contextmanager
    def task(self, name, total):
        self.tasks.append((name, total))
        yield lambda n: None


def _auditor(**opts):
    base = dict(
        defenses="jpeg:75",
        surrogate="sur.pt",
        seed=5,
        batch_size=3,
        attack_params={},
        style_backend="randconv",
        stm_checkpoint="ckpt",
        cache_dir="/tmp/unused-cache",
        attack_batch_size=4,
        device="cpu",
        precision="fp32",
        bpda_attacks=(),
    )
    base.update(opts)
    target = SimpleNamespace(calls=[])

    def predict_proba(x, batch_size):
        target.calls.append((len(x), batch_size))
        return np.tile([0.5, 0.5], (len(x), 1))

    target.predict_proba = predict_proba
    return ScanContext(target, SimpleNamespace(**base), Reporter())


def _no_surrogate(spec=None):
    pytest.fail("no surrogate asked")


def _data(n=10, side=8):
    images = np.random.default_rng(1).uniform(0, 1, (n, 1, side, side)).astype(np.float32)
    return SimpleNamespace(
        images=images,
        y=np.arange(n) % 3,
        samples=[SimpleNamespace(rel_path=f"c/{i}.png") for i in range(n)],
        info={"manifest_sha256": "f" * 64},
    )


@dataclass
class FakeDefense:
    name: str = "jpeg"
    params: dict = field(default_factory=lambda: {"sha256": "abc"})
    measured: list = field(default_factory=list)

    def measure_cost(self, x):
        self.measured.append(x.shape)


# --------------------------------------------------------------------------- build_preprocessors
def test_preprocessors_skip_with_a_warning_and_measure_the_rest(monkeypatch):
    good = FakeDefense()
    skip = Skipped("median", "not installed", "defense")
    seen = {}

    def parse(spec, feature_extractor=None):
        seen.update(spec=spec, fe=feature_extractor)
        return [skip, good]

    monkeypatch.setattr(registry_mod, "parse_defenses", parse)  # the default factory asks the registry
    aud = _auditor()
    assert stage.build_preprocessors(aud, _data(10), defense_factory(aud.options.defenses), _no_surrogate) == [good]
    assert aud.skipped == [skip] and aud.reporter.warns == ["skipped median: not installed"]
    assert good.measured == [(stage.COST_SAMPLE, 1, 8, 8)] and stage.COST_SAMPLE == 8
    assert seen == {"spec": "jpeg:75", "fe": None}
    no_defenses = _auditor(defenses=None)
    assert stage.build_preprocessors(no_defenses, _data(3), lambda fe: [good], _no_surrogate) == [good]  # no crash
    assert good.measured[-1] == (3, 1, 8, 8)


@pytest.mark.parametrize("surrogate_opt,loaded", [("sur.pt", True), ("sur.pt", False), (None, True)])
def test_feature_defense_gets_the_surrogates_features(monkeypatch, surrogate_opt, loaded):
    module = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))
    calls, seen = [], {}

    def surrogates(spec=None):
        calls.append(spec)
        return Surrogate(module, ("a",)) if loaded else None

    aud = _auditor(defenses="feature,jpeg", surrogate=surrogate_opt)
    assert stage.build_preprocessors(aud, _data(), lambda fe: seen.update(fe=fe) or [], surrogates) == []
    assert len(calls) == (1 if surrogate_opt else 0)
    if surrogate_opt and loaded:
        from auditor.defenses.feature import ConvFeatureExtractor

        assert isinstance(seen["fe"], ConvFeatureExtractor)
    else:
        assert seen["fe"] is None


# --------------------------------------------------------------------------- run_detectors
class Recorder:
    def __init__(self):
        self.calls = []


def _fake_detectors(monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(
        calibration_mod, "make_benign_pairs", lambda images, seed: rec.calls.append(("pairs", seed)) or images + 10
    )

    def calibrate(clean, benign):
        rec.calls.append(("calibrate", clean.copy(), benign.copy()))
        return "REF"

    def evaluate(det, clean, benign, suspects):
        rec.calls.append(("evaluate", det, clean.copy(), benign.copy(), {k: v.copy() for k, v in suspects.items()}))
        return {"ref": 1}

    class FS:
        def __init__(self, proba):
            self.proba = proba

        def calibrate(self, clean):
            rec.calls.append(("fs_calibrate", clean.copy()))
            self.proba(clean)

        def evaluate(self, clean, suspects):
            rec.calls.append(("fs_evaluate", clean.copy(), sorted(suspects)))
            return {"fs": 1}

    def spectra(a, b):
        rec.calls.append(("fft", a.copy(), b.copy()))
        return {"clean": np.full((8, 8), 1 / 3), "adv": np.zeros((8, 8))}

    monkeypatch.setattr(detect_mod, "calibrate_reference_detector", calibrate)
    monkeypatch.setattr(detect_mod, "evaluate_detector", evaluate)
    monkeypatch.setattr(detect_mod, "FeatureSqueezingDetector", FS)
    monkeypatch.setattr(spectra_mod, "fft_spectra", spectra)
    return rec


def _set(set_id: SetId, kind: str, images=None, **kw) -> AdversarialSet:
    """A typed set with only what the stage under test reads."""
    return AdversarialSet(set_id, kind, images, {}, "", AdaptiveSetMeta("", "", False, "", 0.0, None), None, "", **kw)


class _Pre:
    name = "jpeg"


def _sets(data):
    kind = "".join(["att", "ack"])  # built at run time, as from parsed options: not an interned literal
    return [
        _set(SetId(), "clean", data.images),
        _set(SetId("mifgsm", 4 / 255), kind, data.images + 1),
        _set(SetId("mifgsm", 8 / 255), kind, data.images + 2),
        _set(SetId("usmm", 2 / 255), kind, data.images + 3),
        _set(SetId("jpeg", 1.0), "defense", data.images),
        _set(SetId("mifgsm", 1.0), "adaptive", data.images, defense=_Pre(), base=_set(SetId("mifgsm", 8 / 255), kind)),
        _set(SetId("blend", alpha=0.5), "style_blend", data.images),
    ]


@pytest.mark.parametrize("n", [8, 9, 11])
def test_detectors_calibrate_on_one_half_and_test_on_the_other(monkeypatch, n):
    rec = _fake_detectors(monkeypatch)
    aud, data = _auditor(), _data(n)
    out = detect_stage.run_detectors(aud, data, _sets(data))
    perm = np.random.default_rng(5).permutation(n)
    cal, held = np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])
    assert out.split.to_json() == {"calibration_images": n // 2, "held_out_images": n - n // 2, "seed": 5}
    kinds = [c[0] for c in rec.calls]
    assert kinds == ["pairs", "calibrate", "evaluate", "fs_calibrate", "fs_evaluate", "fft"]
    assert rec.calls[0] == ("pairs", 5)
    _, c_clean, c_benign = rec.calls[1]
    np.testing.assert_array_equal(c_clean, data.images[cal])
    np.testing.assert_array_equal(c_benign, data.images[cal] + 10)
    _, det, e_clean, e_benign, suspects = rec.calls[2]
    assert det == "REF" and sorted(suspects) == ["mifgsm@4", "mifgsm@8", "usmm@2"]
    np.testing.assert_array_equal(e_clean, data.images[held])
    np.testing.assert_array_equal(e_benign, data.images[held] + 10)
    np.testing.assert_array_equal(suspects["mifgsm@8"], data.images[held] + 2)
    np.testing.assert_array_equal(rec.calls[3][1], data.images[cal])
    np.testing.assert_array_equal(rec.calls[4][1], data.images[held])
    assert aud.target.calls == [(n // 2, 3)]  # the target's probabilities, at --batch-size
    # the FFT example: the first held-out image under the largest-epsilon attack
    np.testing.assert_array_equal(rec.calls[5][1], data.images[held[0], 0])
    np.testing.assert_array_equal(rec.calls[5][2], data.images[held[0], 0] + 2)
    fft = out.fft_example
    assert fft.condition == "mifgsm@8" and fft.sample == f"c/{held[0]}.png"
    assert np.array(fft.spectra["clean"]).shape == (64, 64)
    assert fft.spectra["clean"][0][0] == pytest.approx(0.333, abs=1e-6)  # rounded
    assert out.reference_based == {"ref": 1} and out.feature_squeezing == {"fs": 1}
    assert not aud.skipped


@pytest.mark.parametrize("n", [7, 3])
def test_detectors_need_four_images_per_half(monkeypatch, n):
    rec = _fake_detectors(monkeypatch)
    aud, data = _auditor(), _data(n)
    assert detect_stage.run_detectors(aud, data, _sets(data)) is None
    assert aud.skipped == [Skipped("detector", f"too few images ({n}) to calibrate and test a detector", "detector")]
    assert [c[0] for c in rec.calls] == ["pairs"]


def test_detectors_without_attacks_do_nothing(monkeypatch):
    rec = _fake_detectors(monkeypatch)
    data = _data(10)
    assert detect_stage.run_detectors(_auditor(), data, _sets(data)[:1]) is None
    assert rec.calls == []


# --------------------------------------------------------------------------- build_bpda_sets
class FakeModule(torch.nn.Module):
    gradient = "straight-through"


def _fake_bpda(monkeypatch, *, surrogate=True, skip=(), threat=THREAT_TRANSFER):
    calls = {"build": [], "defended": [], "surrogate": 0}
    sur = Surrogate(torch.nn.Identity(), ("a", "b", "c"), {"sha256": ["s1"], "label": "resnet"}, threat)

    def load(spec=None):
        calls["surrogate"] += 1
        return sur if surrogate else None

    calls["factory"] = load  # the surrogate factory the orchestrator would pass

    def defended(module, pre):
        calls["defended"].append((module, pre.name))
        return Skipped(f"bpda:{pre.name}", "no torch path", "defense") if pre.name in skip else FakeModule()

    def build(attack, params, adaptive, data, run, **kw):
        images = data.images
        calls["build"].append(
            dict(
                attack=attack,
                params=params,
                adaptive=adaptive,
                images=images,
                y=data.labels,
                names=data.names,
                cache_dir=run.cache_dir,
                manifest=data.manifest_sha256,
                seed=run.seed,
                batch_size=run.batch_size,
                device=run.device,
                precision=run.precision,
                **kw,
            )
        )
        out = np.clip(images + 0.01 * (1 + len(calls["build"])), 0, 1)
        return SimpleNamespace(
            images=out,
            key=f"k{len(calls['build'])}",
            cache_hit=False,
            seconds=1.234,
            backend=None,
            label=attack.upper(),
            warnings=("batch 0: poisoned",) if attack == "usmm" else (),
        )

    monkeypatch.setattr(bpda_mod, "defended_module", defended)
    monkeypatch.setattr(sets_mod, "build_adversarial_set", build)
    return calls, sur


def _runtime(text: str) -> str:
    """The same string built at run time (as parsed from a CLI flag), so never an interned literal."""
    return "".join(list(text))


def _attack_sets():
    kind, usmm, stm = _runtime("attack"), _runtime("usmm"), _runtime("stm")
    x = type("X", (), {"name": "x"})()
    return [
        _set(SetId(), "clean"),
        _set(SetId("mifgsm", 4 / 255), kind),
        _set(SetId("mifgsm", 8 / 255), kind),
        _set(SetId("mifgsm", 2 / 255), kind),
        _set(SetId(usmm, 4 / 255), kind),
        _set(SetId(stm, 16 / 255, "randconv"), kind),
        _set(SetId(stm, 16 / 255, "adain"), kind),  # a tie: the first wins
        _set(SetId("mifgsm", 1.0), "adaptive", defense=x, base=_set(SetId("mifgsm", 8 / 255), kind)),  # not a base
        _set(SetId("blend", alpha=0.5), "style_blend"),
    ]


def _bpda(aud, data, pres, sets, calls, precision="fp32"):
    """The BPDA stage with the recording surrogate factory of :func:`_fake_bpda`."""
    return stage.build_bpda_sets(aud, data, calls["factory"], pres, sets, precision)


def test_bpda_attacks_option_limits_the_adaptive_attacks(monkeypatch):
    """``--bpda-attacks mifgsm,stm``: USMM gets no adaptive set, the others keep their largest epsilon."""
    calls, sur = _fake_bpda(monkeypatch)
    aud, data = _auditor(bpda_attacks=("mifgsm", "stm")), _data(6)
    out = _bpda(aud, data, [FakeDefense("jpeg", {})], _attack_sets(), calls)
    assert [s.name for s in out] == ["mifgsm@8+bpda:jpeg", "stm[randconv]@16+bpda:jpeg"]


def test_adaptive_attacks_start_from_the_largest_epsilon_of_each_attack(monkeypatch):
    calls, sur = _fake_bpda(monkeypatch)
    aud, data = _auditor(attack_params={"mifgsm": {"steps": 3}}), _data(6)
    precision = AttackStage(precision_choice={"chosen": "bf16"}).precision(aud.options.precision)
    jpeg, median = FakeDefense("jpeg", {"sha256": "abc"}), FakeDefense("median", {})
    out = _bpda(aud, data, [jpeg, median], _attack_sets(), calls, precision)
    assert [s.name for s in out] == [
        "mifgsm@8+bpda:jpeg",
        "usmm@4+bpda:jpeg",
        "stm[randconv]@16+bpda:jpeg",
        "mifgsm@8+bpda:median",
        "usmm@4+bpda:median",
        "stm[randconv]@16+bpda:median",
    ]
    assert calls["surrogate"] == 1 and calls["defended"] == [(sur.module, "jpeg"), (sur.module, "median")]
    b = calls["build"]
    assert [c["params"]["epsilon"] for c in b[:3]] == [8 / 255, 4 / 255, 16 / 255]
    assert b[0]["params"] == {"epsilon": 8 / 255, "steps": 3}
    assert b[1]["params"]["mask_pool"] is data.images and b[1]["params"]["mask_pool_labels"] is data.y
    assert sorted(b[1]["params"]) == ["epsilon", "mask_pool", "mask_pool_labels"]  # no STM options for USMM
    assert b[2]["params"] == {"epsilon": 16 / 255, "style_backend": "randconv", "checkpoint_dir": "ckpt"}
    for c in b:
        assert c["images"] is data.images and c["y"] is data.y and c["names"] == [f"c/{i}.png" for i in range(6)]
        assert str(c["cache_dir"]) == "/tmp/unused-cache" and c["manifest"] == "f" * 64 and c["seed"] == 5
        assert c["batch_size"] == 4 and c["precision"] == "bf16" and str(c["device"]) == "cpu"
    adaptive = b[0]["adaptive"]
    assert isinstance(adaptive.module, FakeModule) and adaptive.class_names == sur.class_names
    assert adaptive.identity["sha256"] == ["s1", "bpda:jpeg:abc"]
    assert adaptive.identity["label"] == "resnet + jpeg (straight-through gradient)"
    assert b[3]["adaptive"].identity["sha256"] == ["s1", "bpda:median:"]
    assert sur.identity == {"sha256": ["s1"], "label": "resnet"}  # the scan's surrogate is not changed
    first = out[0]
    assert first.kind == "adaptive" and first.attack == "mifgsm" and first.epsilon == 8 / 255
    assert first.defense is jpeg and first.base.name == "mifgsm@8" and first.label == "MIFGSM + BPDA"
    assert first.surrogate == "resnet + jpeg (straight-through gradient)"
    assert first.threat_model == THREAT_TRANSFER  # the surrogate's threat model, one of THREAT_MODELS
    assert first.meta.to_json() == {
        "name": "mifgsm@8+bpda:jpeg",
        "key": "k1",
        "cache_hit": False,
        "gradient": "straight-through",
        "seconds": 1.23,
        "backend": None,
    }
    assert first.stats["linf_max"] == pytest.approx(0.02, abs=1e-6)
    assert aud.reporter.infos[0] == "adaptive attack mifgsm@8+bpda:jpeg"
    assert aud.reporter.tasks[0] == ("mifgsm@8+bpda:jpeg", 6)
    # a cached batch that failed its check: warned and listed, per adaptive set
    assert aud.reporter.warns == ["usmm@4+bpda:jpeg: batch 0: poisoned", "usmm@4+bpda:median: batch 0: poisoned"]
    assert Skipped("usmm@4+bpda:jpeg cache", "batch 0: poisoned", "cache") in aud.skipped


def test_bpda_sets_of_a_whitebox_scan_are_not_labelled_transfer(monkeypatch):
    """fb43584 labelled every adaptive set "transfer (adaptive ...)", also when the surrogate is the target."""
    calls, _ = _fake_bpda(monkeypatch, threat=THREAT_WHITE_BOX)
    out = _bpda(_auditor(), _data(4), [FakeDefense()], _attack_sets()[:2], calls)
    assert [s.threat_model for s in out] == [THREAT_WHITE_BOX]


def test_precision_defaults_to_the_option_and_label_to_the_surrogate_flag(monkeypatch):
    calls, sur = _fake_bpda(monkeypatch)
    sur.identity.pop("label")
    aud = _auditor(precision="fp32", surrogate="zoo/resnet")
    precision = AttackStage().precision(aud.options.precision)  # nothing measured: the option
    out = _bpda(aud, _data(4), [FakeDefense()], _attack_sets()[:2], calls, precision)
    assert calls["build"][0]["precision"] == "fp32"
    assert out[0].surrogate == "zoo/resnet + jpeg (straight-through gradient)"


def test_a_defense_without_torch_path_is_skipped_not_attacked(monkeypatch):
    calls, _ = _fake_bpda(monkeypatch, skip=("median",))
    aud = _auditor()
    out = _bpda(aud, _data(4), [FakeDefense("median"), FakeDefense("jpeg")], _attack_sets()[:2], calls)
    assert [s.name for s in out] == ["mifgsm@4+bpda:jpeg"]
    assert aud.skipped == [Skipped("bpda:median", "no torch path", "defense")]


@pytest.mark.parametrize("case", ["no_attacks", "no_defenses", "no_surrogate"])
def test_no_adaptive_sets_without_attacks_defenses_or_surrogate(monkeypatch, case):
    calls, _ = _fake_bpda(monkeypatch, surrogate=case != "no_surrogate")
    sets_in = _attack_sets()[:1] if case == "no_attacks" else _attack_sets()
    pres = [] if case == "no_defenses" else [FakeDefense()]
    assert _bpda(_auditor(), _data(4), pres, sets_in, calls) == []
    assert calls["build"] == [] and calls["surrogate"] == (1 if case == "no_surrogate" else 0)
