"""Property-based fuzzing: tampered results.json -> ``report`` and random ModelSpec metadata -> ``inspect``.

The property is the contract of the CLI: whatever the input, the exit code is a
documented one other than 5 (internal error) and stderr carries no traceback.
"""

from __future__ import annotations

import copy
import json

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis is not installed (pip install hypothesis)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.hostile.helpers import invoke, tiny_model  # noqa: E402

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from([0, 1, -1, 0.5, 1e308, "", "NaN", "normal", "clean"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _paths(doc, prefix=()):
    """Every (path) inside a JSON document, breadth-limited."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in list(doc.items())[:40]:
            out += _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            out += _paths(v, prefix + (i,))
    return out


def _assert_documented(r) -> None:
    assert r.exit_code in (0, 1, 2, 3, 4), (r.exit_code, r.stderr)
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    if r.exit_code:
        assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)


@pytest.fixture(scope="module")
def base_doc(hostile_base):
    return json.loads(hostile_base["results"].read_text())


@SETTINGS
@given(data=st.data())
def test_fuzzed_results_never_crash_report(data, base_doc, tmp_path_factory):
    doc = copy.deepcopy(base_doc)
    paths = _paths(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        value = data.draw(json_values)
        if not path:
            doc = value
            break
        node = doc
        try:
            for key in path[:-1]:
                node = node[key]
            if data.draw(st.booleans()) and isinstance(node, dict):
                node.pop(path[-1], None)
            else:
                node[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue
    folder = tmp_path_factory.mktemp("fuzz")
    src = folder / "results.json"
    src.write_text(json.dumps(doc))
    gates = "accuracy=0.5,robust_accuracy=0.3,max_flip_rate=0.5,sensitivity:normal=0.5,robust_sensitivity:pneumonia=0.1"
    _assert_documented(
        invoke("report", src, "--out", folder / "out", "--format", "json,csv,html,junit", "--fail-under", gates)
    )


SPEC_KEYS = ["layout", "channels", "height", "width", "scaling", "mean", "std", "output_kind", "class_names", "dtype"]
LOOSE_KEYS = ["class_names", "labels", "classes", "scaling", "mean", "std", "layout", "output_kind"]


@SETTINGS
@given(
    spec=st.dictionaries(st.sampled_from(SPEC_KEYS), json_values, max_size=5),
    loose=st.dictionaries(st.sampled_from(LOOSE_KEYS), st.text(max_size=30) | json_values.map(json.dumps), max_size=3),
    with_spec=st.booleans(),
    size=st.sampled_from([None, 32]),
)
def test_fuzzed_metadata_never_crash_inspect(spec, loose, with_spec, size, tmp_path_factory):
    metadata = dict(loose)
    if with_spec:
        metadata["xray_audit.spec"] = json.dumps(spec)
    folder = tmp_path_factory.mktemp("fuzzspec")
    path = tiny_model(folder / "m.onnx", size=size, class_names=None, declare_scaling=False, metadata=metadata)
    _assert_documented(invoke("inspect", path, "--json"))
