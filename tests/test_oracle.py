"""An independent oracle for the headline numbers of a scan.

The scan's accuracy under every attacked, defended and adaptive (BPDA) condition is recomputed
here without the auditor's evaluation code: the cached adversarial PNGs are read with OpenCV,
the defenses are re-implemented from their definitions (OpenCV JPEG, ``scipy.ndimage`` median
with reflect border, ``round(x * (2^b - 1)) / (2^b - 1)`` bit depth), the ONNX target runs in a
bare ONNX Runtime session, and the results must equal results.json exactly (predictions and
accuracy). The data sit close to the brightness model's decision boundaries so that the attacks
and one defense really change predictions, i.e. a scan that scored the clean images under the
attack names, or skipped a defense, could not pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from scipy.ndimage import median_filter

from auditor.cli import cli
from onnx_factory import make_classifier

CLASSES = ["normal", "pneumonia", "pneumothorax"]
#: mean grey levels per class, 0.02-0.04 from the model's boundaries at 0.3 and 0.7
LEVELS = {"normal": (0.26, 0.28), "pneumonia": (0.32, 0.34, 0.66, 0.68), "pneumothorax": (0.72, 0.74)}
SIZE, SOURCE_SIZE = 32, 36
DEFENSES = ("jpeg:75", "median:3", "bitdepth:4", "bitdepth:2")


def _write_data(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for cls, levels in LEVELS.items():
        (root / cls).mkdir(parents=True)
        for i in range(4):
            img = np.clip(levels[i % len(levels)] + rng.uniform(-0.06, 0.06, (SOURCE_SIZE, SOURCE_SIZE)), 0, 1)
            cv2.imwrite(str(root / cls / f"{cls}_{i}.png"), np.rint(img * 255).astype(np.uint8))
    return root


# ----------------------------------------------------------------------------- reference implementations
def ref_jpeg(x: np.ndarray, quality: int) -> np.ndarray:
    out = []
    for img in x[:, 0]:
        ok, buf = cv2.imencode(
            ".jpg", np.clip(np.rint(img * 255), 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        assert ok
        out.append(cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255)
    return np.stack(out)[:, None]


def ref_median(x: np.ndarray, k: int) -> np.ndarray:
    return median_filter(x, size=(1, 1, k, k), mode="reflect")


def ref_bitdepth(x: np.ndarray, bits: int) -> np.ndarray:
    m = 2**bits - 1
    return (np.round(x.astype(np.float64) * m) / m).astype(np.float32)


def ref_defense(name: str, x: np.ndarray) -> np.ndarray:
    kind, value = name.split(":")
    return {"jpeg": ref_jpeg, "median": ref_median, "bitdepth": ref_bitdepth}[kind](x, int(value))


def ref_predict(model: Path, x: np.ndarray) -> np.ndarray:
    """argmax of the bare ONNX model; this target takes (N, 1, H, W) float32 in [0, 1]."""
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    (logits,) = sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})
    return logits.argmax(1)


def ref_load_clean(data: Path, paths: list[str]) -> np.ndarray:
    """Square sources, shrunk with OpenCV's area filter to the model's size."""
    out = []
    for p in paths:
        img = cv2.imread(str(data / p), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
        out.append(cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA))
    return np.stack(out)[:, None]


def read_set(meta: dict, cache: Path, paths: list[str]) -> tuple[np.ndarray, dict]:
    """The cached 8-bit PNGs of a set, in sample order, and the request its key was computed from."""
    set_dir = cache / meta["key"]
    request = json.loads((set_dir / "request.json").read_text())
    sub = f"{request['attack']}_eps{round(request['params']['epsilon'] * 255)}"
    imgs = [cv2.imread(str(set_dir / sub / Path(p).with_suffix(".png")), cv2.IMREAD_UNCHANGED) for p in paths]
    assert all(i is not None and i.dtype == np.uint8 and i.shape == (SIZE, SIZE) for i in imgs)
    return np.stack(imgs)[:, None].astype(np.float32) / 255, request


# ----------------------------------------------------------------------------- the test
@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    root = tmp_path_factory.mktemp("oracle")
    data = _write_data(root / "data")
    target = make_classifier(root / "target.onnx", channels=1, class_names=CLASSES)
    r = CliRunner().invoke(
        cli,
        [
            "scan",
            str(target),
            "--data",
            str(data),
            "--out",
            str(root / "out"),
            "--surrogate",
            "target",
            "--attacks",
            "mifgsm,usmm",
            "--eps",
            "4,16",
            "--defenses",
            ",".join(DEFENSES),
            "--bpda",
            "--no-detector",
            "--cache-dir",
            str(root / "cache"),
            "--n-boot",
            "0",
            "-q",
            "--format",
            "json",
        ],
    )
    assert r.exit_code == 0, r.output
    return root, data, target, json.loads((root / "out" / "results.json").read_text())


def test_every_condition_equals_an_independent_recomputation(scanned):
    root, data, target, doc = scanned
    paths = [s["path"] for s in doc["samples"]]
    y = np.array([CLASSES.index(s["label"]) for s in doc["samples"]])
    assert [s["label_index"] for s in doc["samples"]] == y.tolist()
    clean = ref_load_clean(data, paths)
    sets = {m["name"]: m for m in doc["extras"]["adversarial_sets"]}
    expected: dict[str, np.ndarray] = {"clean": ref_predict(target, clean)}
    for cond in doc["conditions"]:
        name = cond["name"]
        if name == "clean":
            continue
        base = name.split("/", 1)[1] if "/" in name else name  # "jpeg:75/usmm@16" -> "usmm@16"
        if base == "clean":
            x = clean
        else:
            x, request = read_set(sets[base], root / "cache", paths)
            # the set on disk is the one the condition is named after (attack, budget, the target as surrogate)
            assert request["attack"] == cond["attack"]
            assert request["params"]["epsilon"] == pytest.approx(cond["epsilon"])
            assert request["surrogate_sha256"] == [doc["model"]["sha256"]] or "+bpda:" in name
            assert np.abs(x - clean).max() <= cond["epsilon"] + 0.5 / 255 + 1e-6  # budget, plus the source's 8-bit grid
        if cond.get("defense"):
            x = ref_defense(cond["defense"], x)
        expected[name] = ref_predict(target, x)
    assert set(expected) == {c["name"] for c in doc["conditions"]}
    for cond in doc["conditions"]:
        pred = expected[cond["name"]]
        assert cond["predictions"] == pred.tolist(), cond["name"]
        assert cond["metrics"]["accuracy"] == float(np.mean(pred == y)), cond["name"]
    # the oracle can tell the conditions apart: attacks and one defense change predictions here
    acc = {c["name"]: c["metrics"]["accuracy"] for c in doc["conditions"]}
    assert acc["clean"] == 1.0 and acc["mifgsm@16"] < 0.5 and acc["usmm@16"] < 0.5
    assert acc["bitdepth:2/clean"] < 1.0
    assert {"mifgsm@16+bpda:jpeg:75", "usmm@16+bpda:median:3"} <= set(acc)


def test_attack_rates_follow_from_the_predictions(scanned):
    """Success = clean-correct images made wrong / clean-correct; flips = prediction changed vs clean / all."""
    root, data, target, doc = scanned
    y = np.array([s["label_index"] for s in doc["samples"]])
    clean = np.array(doc["conditions"][0]["predictions"])
    ok = clean == y
    for cond in doc["conditions"][1:]:
        pred = np.array(cond["predictions"])
        fooled = ok & (pred != y)
        assert cond["attack_success_rate"] == float(fooled.sum() / ok.sum()), cond["name"]
        assert cond["flip_rate"] == float(np.mean(pred != clean)), cond["name"]
        assert (cond["n_clean_correct"], cond["n_fooled"], cond["n_flipped"]) == (
            int(ok.sum()),
            int(fooled.sum()),
            int(np.sum(pred != clean)),
        ), cond["name"]
