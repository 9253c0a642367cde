"""JSON depth bombs in every JSON the tool reads: a clear exit 3 (or a cache entry treated as unusable),
never a RecursionError (exit 5). results.json is covered in test_hostile_results.py."""

from __future__ import annotations

import numpy as np
import pytest

from auditor.attacks import cache
from auditor.attacks.cache import CacheMismatch
from tests.hostile.helpers import assert_outcome, invoke, scan_args, tiny_model

BOMB = "[" * 100_000 + "]" * 100_000
OBJECT_BOMB = '{"a":' * 100_000 + "1" + "}" * 100_000


def test_sidecar_depth_bomb_is_exit_3(tmp_path):
    model = tiny_model(tmp_path / "m.onnx")
    (tmp_path / "m.onnx.json").write_text(BOMB)
    r = invoke("inspect", model)
    assert_outcome(r, 3)
    assert "nested too deeply" in r.stderr


@pytest.mark.parametrize("key", ["xray_audit.spec", "labels", "mean"])
def test_metadata_depth_bomb_never_crashes(key, tmp_path):
    model = tiny_model(tmp_path / "m.onnx", metadata={key: BOMB if key != "xray_audit.spec" else OBJECT_BOMB})
    r = invoke("inspect", model, "--json")
    assert r.exit_code in (0, 3) and "internal error" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    if key == "xray_audit.spec":
        assert_outcome(r, 3)


def test_zoo_index_depth_bomb_is_exit_3(model, data, tmp_path):
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "zoo.json").write_text(OBJECT_BOMB)
    out = tmp_path / "out"
    r = invoke(*scan_args(model, data, out, "--attacks", "mifgsm", "--surrogate", zoo, "--cache-dir", tmp_path / "c"))
    assert_outcome(r, 3)
    assert "zoo" in r.stderr


def test_cache_documents_with_a_depth_bomb_are_unusable_not_fatal(tmp_path):
    (tmp_path / cache.INDEX_FILE).write_text(BOMB)
    assert cache.read_index(tmp_path, "key", ["a.png"]) is None
    marker = tmp_path / "done.json"
    marker.write_text(OBJECT_BOMB)
    with pytest.raises(CacheMismatch, match="unreadable"):
        cache.read_batch(tmp_path, marker, ["a.png"], np.zeros((1, 1, 8, 8), np.float32), "0" * 64)
