"""Ray set building sends only the batches missing from the cache (no Ray needed: the dispatch is recorded)."""

from __future__ import annotations

import numpy as np

import auditor.distributed as dist
from auditor.attacks.set_records import SetData, SetRun
from auditor.types import ModelSpec
from tests.attacks.test_attacks_sets import _data, _surrogate


def test_only_missing_batches_go_to_ray_tasks(tmp_path, monkeypatch):
    x, y, names = _data(5)  # batches of 2: 0, 1, 2
    sent: list[list[int]] = []
    shipped = []

    def run_shards(attack, params, recipe, data, run, todo, **kw):
        shipped.append((data, run))
        sent.append(list(todo))
        return []

    monkeypatch.setattr(dist, "_run_shards", run_shards)
    spec = ModelSpec(class_names=("a", "b", "c"), height=x.shape[-2], width=x.shape[-1])
    params = {"epsilon": 4 / 255, "steps": 2}

    def build():
        data, run = SetData(x, y, names, "m" * 64), SetRun(tmp_path, 1, batch_size=2, device="cpu")
        recipe = dist.SurrogateRecipe("unused", spec)
        return dist.build_set_on_ray("mifgsm", params, _surrogate(), recipe, data, run)

    first = build()  # empty cache: every batch is sent (the stub computes nothing, the driver does)
    assert sent == [[0, 1, 2]] and not first.cache_hit
    # the tasks get the records the single-process path builds the set with (the same images and run)
    data, run = shipped[0]
    assert isinstance(data, SetData) and isinstance(run, SetRun) and data.images is x and run.batch_size == 2
    again = build()  # finished set: no task at all
    assert sent == [[0, 1, 2]] and again.cache_hit
    (first.dir / "batches" / "00001.json").unlink()
    third = build()
    assert sent[-1] == [1] and len(sent) == 2
    np.testing.assert_array_equal(np.asarray(third.images), np.asarray(first.images))
