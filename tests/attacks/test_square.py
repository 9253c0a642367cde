"""The Square attack (Andriushchenko et al. 2020) queries only the ONNX model: margin on every output kind,
the window schedule, the 8-bit ε vertices, determinism, the query record, the cache, and a scan of a model
onnx2torch cannot convert."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from auditor.attacks.quantize import allowed_levels, quantize
from auditor.attacks.square import QueryModel, SquareAttack, margin, window_share
from auditor.cli import cli
from auditor.models.inputs import decode_output, decode_scores
from auditor.models.onnx import OnnxClassifier
from onnx_factory import brightness_images, make_classifier, write_image_folder

CLASSES = ["normal", "pneumonia", "pneumothorax"]


def test_window_share_halves_on_the_papers_schedule():
    assert window_share(0.05, 0, 10000) == 0.05
    assert window_share(0.05, 11, 10000) == 0.025
    assert window_share(0.05, 8001, 10000) == pytest.approx(0.05 / 2**9)
    assert window_share(0.05, 101, 1000) == pytest.approx(0.05 / 2**5)  # 101 of 1000 is 1010 of 10000


@pytest.mark.parametrize("output", ["logits", "probabilities", "sigmoid_logit", "sigmoid_probability"])
def test_scores_give_the_same_decision_as_the_probabilities(tmp_path, output):
    """The margin is negative exactly where the model's predicted class is not the label, for every output kind."""
    k = 2 if output.startswith("sigmoid") else 3
    path = make_classifier(tmp_path / "m.onnx", channels=1, output=output, num_classes=k, class_names=CLASSES[:k])
    model = OnnxClassifier(path)
    x, _ = brightness_images(3, 32, levels=(0.1, 0.45, 0.9)[:k])
    raw = model.predict_raw(x)
    scores, proba = decode_scores(raw, model.spec), decode_output(raw, model.spec)
    assert scores.shape == proba.shape and np.isfinite(scores).all()
    for y in range(k):
        labels = np.full(len(x), y)
        assert ((margin(scores, labels) < 0) == (proba.argmax(1) != y)).all()


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    root = tmp_path_factory.mktemp("square")
    return root, make_classifier(root / "target.onnx", channels=1, class_names=CLASSES)


def test_square_uses_only_budget_vertices_and_records_queries(target):
    _, path = target
    model = OnnxClassifier(path)
    x, y = brightness_images(3, 32)
    x = np.rint(x * 255) / 255
    qm = QueryModel(model.predict_scores, tuple(CLASSES), batch_size=4)
    eps = 64 / 255
    atk = SquareAttack(qm, epsilon=eps, queries=600)
    xa = atk(x, y, seed=5)
    lo, hi = allowed_levels(x, eps)
    levels = np.rint(xa * 255).astype(np.int32)
    assert ((levels == lo) | (levels == hi)).all()  # every pixel on an extreme 8-bit level of the budget
    assert np.array_equal(quantize(xa, x, eps), levels)  # the cache stores what was queried
    fooled = margin(model.predict_scores(xa), y) < 0
    assert fooled.any() and np.array_equal(fooled, atk.last_fooled)
    assert (atk.last_queries >= 1).all() and (atk.last_queries <= 600).all()
    assert (atk.last_queries[~fooled] == 600).all() and (atk.last_queries[fooled] < 600).all()
    assert atk.surrogate_rows == int(atk.last_queries.sum())
    again = SquareAttack(qm, epsilon=eps, queries=600)
    assert np.array_equal(again(x, y, seed=5), xa) and np.array_equal(again.last_queries, atk.last_queries)


def _unconvertible(src, dst):
    """``src`` with an identity ``Shrink`` (lambd 0, bias 0) after its input: ONNX Runtime runs it, onnx2torch
    has no converter for it."""
    m = onnx.load(str(src))
    g = m.graph
    name = g.input[0].name
    for node in g.node:
        node.input[:] = ["shrunk" if i == name else i for i in node.input]
    g.node.insert(0, onnx.helper.make_node("Shrink", [name], ["shrunk"], lambd=0.0, bias=0.0))
    onnx.save(m, str(dst))
    return dst


def test_a_scan_of_a_model_onnx2torch_cannot_convert_keeps_its_query_bound(tmp_path, target):
    root, path = target
    data = write_image_folder(tmp_path / "data", n_per_class=3, size=32)
    model = _unconvertible(path, tmp_path / "custom.onnx")
    args = ["scan", str(model), "--data", str(data), "--surrogate", "target", "--attacks", "apgd,square"]
    args += ["--eps", "64", "--queries", "300", "--attack-param", "apgd.steps=5", "--n-boot", "20"]
    args += ["--cache-dir", str(tmp_path / "cache"), "--format", "json,html", "--no-progress"]
    r = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    names = {c["name"]: c for c in res["conditions"]}
    assert "apgd@64" not in names and names["square@64"]["threat_model"] == "query"
    assert any(s["name"] == "surrogate target" for s in res["skipped"])
    curve = names["square@64"]["queries"]["curve"]
    assert curve[-1][0] == 300 and curve[-1][1] == pytest.approx(names["square@64"]["attack_success_rate"])
    html = (tmp_path / "out" / "report.html").read_text()
    assert 'id="query-curve"' in html and "≤300:" in html and "AML.T0043.001" in html
    # a second run loads the set and its per-image queries from the cache
    r2 = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "out2")])
    assert r2.exit_code == 0, r2.output
    res2 = json.loads((tmp_path / "out2" / "results.json").read_text())
    again = {c["name"]: c for c in res2["conditions"]}["square@64"]
    assert again["cache_hit"] is True and again["queries"] == names["square@64"]["queries"]


def test_attack_params_are_checked_before_any_data(tmp_path, target):
    _, path = target
    base = ["scan", str(path), "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]
    for extra, msg in [
        (["--attacks", "square", "--attack-param", "square.steps=3"], "no parameter 'steps'"),
        (["--attacks", "square", "--attack-param", "apgd.steps=3"], "not an attack of this scan"),
        (["--attacks", "square", "--attack-param", "square.queries"], "ATTACK.PARAM=VALUE"),
        (["--queries", "10"], "query attack"),
    ]:
        r = CliRunner().invoke(cli, [*base, *extra])
        assert r.exit_code == 2 and msg in r.output, (extra, r.output)


def _digest(x_adv, atk) -> str:
    blob = np.ascontiguousarray(x_adv, dtype=np.float32).tobytes()
    return hashlib.sha256(blob + atk.last_queries.astype(np.int64).tobytes() + atk.last_fooled.tobytes()).hexdigest()


# SHA-256 of (images, queries, fooled) from the per-image window loop of ca7b0c3, before it was vectorised:
# the same seed must give the same attack, bit for bit
PINNED = {
    (64, 600, 5): "abbd3a6a23ea9c0d45a2095ea7f29d12004e96e58e164053dbfb72ff15ab60f4",
    (12, 400, 1): "5481a294ccb345c928a0513a2c9759a60b67f240e2b91577f7ff5b99d2892960",
    "rgb": "47f2fe915d6d4eeb82128af1bc9dccf494dd0ba83088f3a0ba437735030105cb",
}


@pytest.mark.parametrize("eps,queries,seed", [(64, 600, 5), (12, 400, 1)])
def test_square_output_is_pinned_for_a_seed(target, eps, queries, seed):
    """Some images fooled and leaving the batch, or none; windows from 7 px down to 1 px, redrawn signs."""
    _, path = target
    model = OnnxClassifier(path)
    x, y = brightness_images(3, 32)
    x = np.rint(x * 255) / 255
    atk = SquareAttack(
        QueryModel(model.predict_scores, tuple(CLASSES), batch_size=4), epsilon=eps / 255, queries=queries
    )
    assert _digest(atk(x, y, seed=seed), atk) == PINNED[(eps, queries, seed)]


def test_square_output_is_pinned_for_three_channels():
    """One sign per channel: a window is redrawn only when every channel's new side equals its current one."""
    w = np.array([[-20.0, 0.0, 20.0], [-5.0, 0.0, 5.0], [3.0, 0.0, -3.0]])

    def scores(x):
        return x.mean(axis=(2, 3)) @ w + np.array([8.0, 0.0, -8.0])

    x, y = brightness_images(2, 24, seed=3)
    x = np.rint(np.concatenate([x, x[:, :, ::-1], 1 - x], axis=1) * 255) / 255
    atk = SquareAttack(QueryModel(scores, tuple(CLASSES), batch_size=3), epsilon=32 / 255, queries=300)
    assert _digest(atk(x, y, seed=7), atk) == PINNED["rgb"]
