"""A synthetic AuditResult with many conditions, for the layout tests of the PDF and the browser.

Every attack kind (USMM and STM transfer at several budgets, STM with two style backends, a
white-box condition, a style blend), three defenses with their attacked and adaptive (BPDA)
conditions, a ``--compare`` model, long class names and long file names: the widest report
the renderer is asked for, built without a model or a scan.
"""

from __future__ import annotations

from dataclasses import replace

from tests.report.conftest import MANIFEST_SHA, MODEL_SHA, Y, _preds, _rates, build_result, metrics_of

LONG_CLASSES = (
    "no_finding_normal_radiograph",
    "community_acquired_bacterial_pneumonia",
    "tension_pneumothorax_with_mediastinal_shift",
)
LONG_MODEL_PATH = "/srv/regulated-models/cardiothoracic/densenet121_cxr_multicentre_v2026_11_final_release.onnx"
LONG_SKIPPED = "site-07/scanner-ge-discovery-xr656/patient_000123456789_study_20250301_series_0004_image_0007.dcm"
DEFENSES = ("jpeg:75", "median:3", "bitdepth:4")
ATTACKS = (  # name, attack, eps (x/255), threat model, wrong predictions
    ("usmm@4", "usmm", 4, "transfer", {0: 1, 9: 0, 16: 0, 17: 0}),
    ("usmm@8", "usmm", 8, "transfer", {0: 1, 9: 0, 16: 0, 17: 0, 18: 0, 10: 2}),
    ("usmm@16", "usmm", 16, "transfer", {0: 1, 9: 0, 16: 0, 17: 0, 18: 0, 10: 2, 1: 2, 11: 0}),
    ("stm[randconv]@16", "stm", 16, "transfer", {0: 1, 9: 0, 16: 0, 17: 0, 18: 1}),
    ("stm[ghiasi]@8", "stm", 8, "transfer", {0: 1, 9: 0, 16: 0, 2: 2}),
    ("usmm[target]@8", "usmm", 8, "white-box", {0: 1, 9: 0, 16: 0, 17: 0, 18: 0, 10: 2, 1: 2, 11: 0, 12: 0}),
)


def _transfer_block(i: int, threat: str) -> dict:
    return {
        "surrogate_accuracy_clean": 0.9012 - i / 100,
        "surrogate_accuracy": 0.1234 + i / 100,
        "surrogate_flip_rate": 0.8321 - i / 100,
        "surrogate_attack_success_rate": 0.8765 - i / 100,
        "transfer_efficiency": 0.4567 + i / 50,
        "agreement_clean": 0.7777 - i / 100,
        "surrogate_input_size": [[64, 64]] if threat == "transfer" else [[224, 224]],
        "target_input_size": [224, 224],
        "same_input_size": threat != "transfer",
    }


def build_wide_result():
    """The many-conditions result (see the module docstring)."""
    base = build_result(LONG_CLASSES, compared=True, examples=2)
    clean = base.conditions[0]
    clean_pred = clean.predictions
    conds = [clean]
    for i, (name, attack, eps, threat, wrong) in enumerate(ATTACKS):
        pred = _preds(wrong)
        conds.append(
            type(clean)(
                name,
                "attack",
                metrics_of(pred, LONG_CLASSES, (0.3 + i / 100, 0.8 - i / 100), (0.25, 0.75 - i / 100)),
                attack=attack,
                epsilon=eps / 255,
                surrogate="resnet18-surrogate-ensemble (sha256 77aa01)" if threat == "transfer" else "target",
                threat_model=threat,
                extra={
                    **_rates(pred, clean_pred),
                    "linf_mean": eps / 255,
                    "l2_mean": 0.5 * eps + i / 10,
                    "ssim_mean": 0.99 - eps / 200,
                    "psnr_mean": 50 - eps - i / 10,
                    "cost_ms_per_image": 12.5 + i,
                    "backend": "randconv" if "randconv" in name else "torch-cpu",
                    "transfer": _transfer_block(i, threat),
                },
                predictions=pred,
            )
        )
    blend_pred = _preds({0: 1, 9: 0, 16: 0, 5: 2})
    conds.append(
        type(clean)(
            "blend@0.3",
            "style_blend",
            metrics_of(blend_pred, LONG_CLASSES, (0.55, 0.9)),
            extra={**_rates(blend_pred, clean_pred), "ssim_mean": 0.9, "psnr_mean": 30.5},
            predictions=blend_pred,
        )
    )
    for j, d in enumerate(DEFENSES):
        dc_pred = _preds({0: 1, 9: 0, 16: 0, 3 + j: 1})
        conds.append(
            type(clean)(
                f"{d}/clean",
                "defense",
                metrics_of(dc_pred, LONG_CLASSES, (0.6, 0.9)),
                defense=d,
                extra={**_rates(dc_pred, clean_pred), "cost_ms_per_image": 1.5 + j},
                predictions=dc_pred,
            )
        )
        for name, attack, eps, threat, _ in ATTACKS[:4]:
            da_pred = _preds({0: 1, 9: 0, 16: 0, 3 + j: 1, 17: 0, 12 + j: 0})
            conds.append(
                type(clean)(
                    f"{d}/{name}",
                    "defense",
                    metrics_of(da_pred, LONG_CLASSES, (0.5, 0.9)),
                    attack=attack,
                    epsilon=eps / 255,
                    surrogate="resnet18-surrogate-ensemble (sha256 77aa01)",
                    threat_model=threat,
                    defense=d,
                    extra={**_rates(da_pred, clean_pred), "cost_ms_per_image": 1.5 + j},
                    predictions=da_pred,
                )
            )
    bpda_pred = _preds({0: 1, 9: 0, 16: 0, 3: 1, 17: 0, 12: 0, 13: 0})
    conds.append(
        type(clean)(
            "usmm@8+bpda:jpeg:75",
            "defense",
            metrics_of(bpda_pred, LONG_CLASSES, (0.4, 0.85)),
            attack="usmm",
            epsilon=8 / 255,
            surrogate="resnet18-surrogate-ensemble (sha256 77aa01)",
            threat_model="transfer",
            defense="jpeg:75",
            extra={**_rates(bpda_pred, clean_pred), "adaptive": True},
            predictions=bpda_pred,
        )
    )
    compared = tuple(
        replace(
            other,
            conditions=tuple(
                replace(
                    c, metrics=metrics_of(c.predictions[:1] + Y[1:], LONG_CLASSES) if c.name != "clean" else c.metrics
                )
                for c in conds
            ),
            model={
                **other.model,
                "path": "/srv/regulated-models/cardiothoracic/densenet121_adversarially_trained.onnx",
            },
            gates=(),
        )
        for other in base.compared
    )
    return replace(
        base,
        conditions=tuple(conds),
        compared=compared,
        model={**base.model, "path": LONG_MODEL_PATH, "sha256": MODEL_SHA},
        data={
            **base.data,
            "manifest_sha256": MANIFEST_SHA,
            "skipped": [{"name": LONG_SKIPPED, "reason": "cannot decode DICOM pixel data", "kind": "image"}],
            "dropped": {"lateral_projection_not_in_the_model_contract": 3},
        },
        environment={
            **base.environment,
            # as a demo scan records them: long unbroken values beside long keys
            "allocator": "jemalloc (MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1)",
            "platform": "Linux-6.18.44-fc-v1272-x86_64-with-glibc2.36",
            "onnxruntime-gpu": "1.31.1",
            "opencv-python-headless": "5.0.0.93",
            "precision_choice": {
                "attack": "usmm",
                "bf16_ms_per_row": 0.422,
                "bf16_speedup": 1.976,
                "check": {"agreement": 1.0, "min_agreement": 0.95, "n": 4, "success_bf16": 1.0, "success_fp32": 1.0},
                "chosen": "bf16",
                "device": "cpu",
                "fp32_ms_per_row": 0.834,
                "reason": "bf16 1.976x faster and its white-box predictions match fp32 on 100% of the first batch",
                "requested": "auto",
                "rows": 32,
                "seconds": 1.03,
                "timed_passes": 3,
            },
            "seconds_per_stage": {
                "attacked": {"images": 360, "images_per_second": 1553.3, "seconds": 0.232},
                "clean": {"images": 60, "images_per_second": 2887.1, "seconds": 0.021},
                "defended": {"images": 840, "images_per_second": 1343.4, "seconds": 0.625},
                "read": {"images": 60, "images_per_second": 3086.2, "seconds": 0.019},
            },
        },
        parameters={
            **base.parameters,
            "attacks": ["usmm", "stm", "blend"],
            "defenses": list(DEFENSES),
            "epsilons": [4, 8, 16],
        },
    )
