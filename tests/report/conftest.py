"""A hand-built AuditResult for the renderer tests (no model, no scan)."""

from __future__ import annotations

import base64
import io

import pytest

from auditor.types import AuditResult, Condition, GateOutcome, ModelSpec, Skipped

HOSTILE = "<script>alert(1)</script>"
CLASSES = ("normal", "pneumonia", "pneumothorax")
#: true class index per sample: 8 normal, 7 pneumonia, 5 pneumothorax
Y = (0,) * 8 + (1,) * 7 + (2,) * 5
N = len(Y)
MODEL_SHA = "ab12cd34ef56" + "0" * 52
MANIFEST_SHA = "5e" * 32


def _around(point: float, ci) -> list[float]:
    """The hand-set ``ci`` widened to hold its point estimate (the results schema refuses a point outside its CI)."""
    return [min(ci[0], point), max(ci[1], point)]


def metrics_of(pred, classes, acc_ci=(0.7, 0.95), f1_ci=(0.6, 0.9)) -> dict:
    """Metrics in the results.json shape, computed by hand from predictions."""
    k = len(classes)
    cm = [[0] * k for _ in range(k)]
    for t, p in zip(Y, pred):
        cm[t][p] += 1
    total = sum(map(sum, cm))
    per_class, f1s = {}, []
    for i, name in enumerate(classes):
        tp = cm[i][i]
        pred_i = sum(cm[r][i] for r in range(k))
        true_i = sum(cm[i])
        prec = tp / pred_i if pred_i else 0.0
        rec = tp / true_i if true_i else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        neg = total - true_i
        tn = total - true_i - pred_i + tp
        per_class[name] = {
            "precision": prec,
            "recall": rec,
            "f1": f1,
            "support": true_i,
            "sensitivity": rec,
            "specificity": tn / neg if neg else None,
            "sensitivity_ci": None,
        }
        f1s.append(f1)
    acc = sum(cm[i][i] for i in range(k)) / total
    return {
        "n": total,
        "labels": list(classes),
        "accuracy": acc,
        "accuracy_ci": _around(acc, acc_ci),
        "macro_f1": sum(f1s) / k,
        "macro_f1_ci": _around(sum(f1s) / k, f1_ci),
        "weighted_f1": acc,
        "per_class": per_class,
        "confusion_matrix": cm,
    }


def _preds(wrong: dict[int, int]) -> tuple[int, ...]:
    """Y with the samples in ``wrong`` (index -> predicted class) misclassified."""
    return tuple(wrong.get(i, y) for i, y in enumerate(Y))


def _rates(pred, clean_pred) -> dict:
    """Attack success rate over the clean-correct images, flip rate over all images (auditor.metrics)."""
    correct = [i for i in range(N) if clean_pred[i] == Y[i]]
    fooled = [i for i in correct if pred[i] != Y[i]]
    flipped = [i for i in range(N) if pred[i] != clean_pred[i]]
    return {
        "attack_success_rate": len(fooled) / len(correct),
        "attack_success_rate_ci": _around(len(fooled) / len(correct), [0.1, 0.6]),
        "flip_rate": len(flipped) / N,
        "flip_rate_ci": _around(len(flipped) / N, [0.05, 0.55]),
        "n_clean_correct": len(correct),
        "n_fooled": len(fooled),
        "n_flipped": len(flipped),
    }


def _png() -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(0.4, 0.4), dpi=20)
    FigureCanvasAgg(fig)
    fig.add_subplot().imshow([[0, 1], [1, 0]], cmap="gray")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return base64.b64encode(buf.getvalue()).decode()


def build_result(classes=CLASSES, *, compared: bool = True, examples: int = 0) -> AuditResult:
    """The fixture result; ``classes`` lets a test use hostile class names."""
    clean_pred = _preds({0: 1, 9: 0, 16: 0})  # 17/20 correct
    spec = ModelSpec(
        input_name="input",
        channels=3,
        height=224,
        width=224,
        scaling="imagenet",
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        class_names=tuple(classes),
        sources={"layout": "graph", "scaling": "sidecar"},
    )
    attack_wrong = {
        4: {0: 1, 9: 0, 16: 0, 17: 0},
        8: {0: 1, 9: 0, 16: 0, 17: 0, 18: 0, 10: 2, 1: 2},
        16: {0: 1, 9: 0, 16: 0, 17: 0, 18: 0, 10: 2, 1: 2, 11: 0, 12: 0, 19: 1},
    }
    conds = [Condition("clean", "clean", metrics_of(clean_pred, classes), predictions=clean_pred)]
    for eps, wrong in attack_wrong.items():
        pred = _preds(wrong)
        conds.append(
            Condition(
                f"usmm@{eps}",
                "attack",
                metrics_of(pred, classes, (0.3, 0.8), (0.25, 0.75)),
                attack="usmm",
                epsilon=eps / 255,
                surrogate="resnet50-ref (sha256 77aa…)",
                threat_model="transfer",
                extra={
                    **_rates(pred, clean_pred),
                    "linf_mean": eps / 255,
                    "l2_mean": 0.5 * eps,
                    "ssim_mean": 0.99 - eps / 200,
                    "psnr_mean": 50 - eps,
                    "cost_ms_per_image": 12.5,
                    "backend": "torch-cpu",
                },
                predictions=pred,
            )
        )
    stm_pred = _preds({0: 1, 9: 0, 16: 0, 17: 0, 18: 1})
    conds.append(
        Condition(
            "stm@8",
            "attack",
            metrics_of(stm_pred, classes, (0.5, 0.9), (0.45, 0.85)),
            attack="stm",
            epsilon=8 / 255,
            surrogate="resnet50-ref (sha256 77aa…)",
            threat_model="transfer",
            extra={**_rates(stm_pred, clean_pred), "linf_mean": 8 / 255, "ssim_mean": 0.97, "psnr_mean": 41.0},
            predictions=stm_pred,
        )
    )
    jc_pred = _preds({0: 1, 9: 0, 16: 0, 3: 1})  # 16/20
    conds.append(
        Condition(
            "jpeg:75/clean",
            "defense",
            metrics_of(jc_pred, classes, (0.6, 0.9)),
            defense="jpeg:75",
            extra={**_rates(jc_pred, clean_pred), "cost_ms_per_image": 1.5},
            predictions=jc_pred,
        )
    )
    ja_pred = _preds({0: 1, 9: 0, 16: 0, 3: 1, 17: 0})  # 15/20
    conds.append(
        Condition(
            "jpeg:75/usmm@8",
            "defense",
            metrics_of(ja_pred, classes, (0.5, 0.9)),
            attack="usmm",
            epsilon=8 / 255,
            surrogate="resnet50-ref (sha256 77aa…)",
            threat_model="transfer",
            defense="jpeg:75",
            extra={**_rates(ja_pred, clean_pred), "cost_ms_per_image": 1.5},
            predictions=ja_pred,
        )
    )
    samples = tuple(
        {
            "path": f"{classes[y]}/img{i:02d}.png",
            "label": classes[y],
            "label_index": y,
            "patient_id": f"p{i // 2:02d}" if i % 5 else None,
            "sha256": f"{i:064x}",
        }
        for i, y in enumerate(Y)
    )
    detector = {
        "reference_based": {
            "thresholds": {"edge": 0.0123, "ssim": 0.95},
            "target_fpr": 0.05,
            "benign_fpr": 0.04,
            "per_condition": {
                "usmm@4": {"detection_rate": 0.4, "auc_edge": 0.71, "auc_ssim": 0.66},
                "usmm@8": {
                    "detection_rate": 0.7,
                    "auc_edge": 0.88,
                    "auc_ssim": 0.81,
                    "roc": {"edge": {"fpr": [0, 0.05, 0.2, 1], "tpr": [0, 0.6, 0.85, 1]}},
                },
                "usmm@16": {"detection_rate": 0.95, "auc_edge": 0.97, "auc_ssim": 0.93},
                "stm@8": {"detection_rate": 0.5, "auc_edge": 0.77, "auc_ssim": 0.7},
            },
        },
        "feature_squeezing": {
            "thresholds": {"l1": 0.31},
            "target_fpr": 0.05,
            "benign_fpr": 0.06,
            "per_condition": {"usmm@8": {"detection_rate": 0.3, "auc": 0.62}},
        },
        "fft_example": {
            "condition": "usmm@16",
            "sample": "normal/img01.png",
            "spectra": {"clean": [1.0, 0.5, 0.25], "adversarial": [1.0, 0.6, 0.4]},
        },
    }
    extras: dict = {}
    if examples:
        png = _png()
        extras["examples"] = [
            {
                "class": classes[2],
                "path": f"{classes[2]}/img{i:02d}.png",
                "condition": "usmm@8",
                "images": {"clean": png, "adversarial": png, "perturbation": png, "defended": png},
                "predictions": {"clean": classes[2], "adversarial": classes[0], "defended": classes[2]},
            }
            for i in range(examples)
        ]
    other = None
    if compared:
        base = build_result(classes, compared=False)
        other_conds = tuple(
            Condition(
                c.name,
                c.kind,
                metrics_of(c.predictions[:1] + Y[1:], classes) if c.name != "clean" else c.metrics,
                attack=c.attack,
                epsilon=c.epsilon,
                surrogate=c.surrogate,
                threat_model=c.threat_model,
                defense=c.defense,
            )
            for c in base.conditions
        )
        other = AuditResult(
            **{
                **base.__dict__,
                "conditions": other_conds,
                "detector": None,
                "gates": (),
                "model": {**base.model, "path": "/models/hardened.onnx", "sha256": "9f" * 32},
            }
        )
    return AuditResult(
        schema_version="1.0",
        tool_version="0.1.0",
        created="2025-03-01T10:00:00+00:00",
        finished="2025-03-01T10:42:17+00:00",
        command="xray-audit scan model.onnx --data cxr --eps 4,8,16",
        model={
            "path": "/models/densenet121-cxr.onnx",
            "sha256": MODEL_SHA,
            "spec": spec.to_dict(),
            "opset": 17,
            "producer": "pytorch 2.4",
        },
        data={
            "root": "/data/cxr",
            "format": "folder",
            "manifest_sha256": MANIFEST_SHA,
            "n_images": N,
            "per_class": {classes[0]: 8, classes[1]: 7, classes[2]: 5},
            "skipped": [{"name": "broken/img99.png", "reason": "cannot decode PNG", "kind": "image"}],
            "caveats": ["patient ids known for 16 of 20 images"],
        },
        conditions=tuple(conds),
        samples=samples,
        parameters={
            "seed": 1234,
            "epsilons": [4, 8, 16],
            "attacks": ["usmm", "stm"],
            "defenses": ["jpeg:75"],
            "n_boot": 200,
            "attack_params": {"usmm": {"steps": 10, "decay": 1.0, "seed": 7}},
        },
        environment={
            "python": "3.11.7",
            "numpy": "1.26.4",
            "onnxruntime": "1.18.0",
            "weasyprint": "70.0",
            "onnx_provider": "CPUExecutionProvider",
            "seconds_total": 2542.1,
        },
        skipped=(Skipped("blend@0.3", "no --style-image given", "attack"),),
        detector=detector,
        gates=(
            GateOutcome("accuracy", 0.8, 0.85, True, "passed: 0.8500 (required >= 0.8; clean)"),
            GateOutcome("robust_accuracy", 0.7, 0.5, False, "failed: 0.5000 (required >= 0.7; worst: usmm@16)"),
        ),
        compared=(other,) if other is not None else (),
        extras=extras,
    )


@pytest.fixture(scope="session")
def plain_result() -> AuditResult:
    """Fixture result with the plain class names normal/pneumonia/pneumothorax."""
    return build_result()


@pytest.fixture(scope="session")
def result() -> AuditResult:
    """Fixture result whose third class label carries a ``<script>`` payload."""
    return build_result(("normal", "pneumonia", f"pneumothorax {HOSTILE}"), examples=2)


@pytest.fixture(scope="session")
def html_text(result) -> str:
    from auditor.report.html import render_html

    return render_html(result)


@pytest.fixture(scope="session")
def pdf_bytes(result, html_text) -> bytes:
    from auditor.report.pdf import PdfRenderer

    return PdfRenderer().render(result, html=html_text)
