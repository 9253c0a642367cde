"""Cache-key completeness, as a property: two requests share an adversarial-set key exactly when
they agree on every input that shapes the set.

Shaping inputs: the attack and each of its parameters, epsilon, the seed, the surrogate's weights,
the data (manifest, image content, labels, names), the resolution, the precision, the batch size
(batch ``b`` is attacked with a seed derived from ``(seed, b)``) and the tool version. Irrelevant
inputs (the device, where the cache lives, a progress callback, parameter order, the array and
sequence types the same values arrive in) must not change the key, or sets are never reused.

Keys are obtained from :func:`build_adversarial_set` itself with ``only_batches=set()`` (nothing
is attacked), so the test exercises the real key computation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import auditor
from auditor.attacks.set_records import SetData, SetRun
from auditor.attacks.sets import build_adversarial_set
from auditor.models.surrogate import load_surrogate
from auditor.reference_models.registry import build_model, make_checkpoint

CLASSES = ["normal", "pneumonia", "pneumothorax"]
N, SIZE = 4, 16

#: one alternative value per parameter of each attack (the base uses the defaults)
ATTACK_CHANGES = {
    "mifgsm": {},
    "usmm": {"num_scale": 2, "num_mix": 2, "scale_low": 0.2, "scale_high": 0.6, "mix_range": 0.3},
    "stm": {"num_style": 3, "gamma": 0.4, "beta": 1.0, "style_backend": "adain-stats"},
}
LOOP_CHANGES = {
    "steps": 3,
    "alpha": 0.002,
    "decay": 0.5,
    "norm": "l2",
    "max_batch_rows": 2,
    "channels_last": False,
    "fold_bn": False,
}
#: changes of everything else that shapes a set (each is a name -> how the request changes)
OTHER_CHANGES = (
    "epsilon",
    "seed",
    "surrogate_weights",
    "manifest",
    "image_content",
    "labels",
    "names",
    "resolution",
    "precision",
    "batch_size",
    "tool_version",
    "mask_pool",
)
#: changes that must NOT change the key
IRRELEVANT = ("device", "cache_dir", "progress", "param_order", "float64_images", "int32_labels", "names_tuple")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cachekey")
    spec = {
        "layout": "NCHW",
        "channels": 1,
        "height": SIZE,
        "width": SIZE,
        "scaling": "unit",
        "mean": [0.0],
        "std": [1.0],
        "class_names": CLASSES,
        "output_kind": "logits",
    }
    surrogates = []
    for seed in (0, 1):  # same architecture and classes, different weights
        torch.manual_seed(seed)
        path = root / f"sur{seed}.pt"
        torch.save(make_checkpoint(build_model("small_cnn", 3, 1).eval(), "small_cnn", 3, 1, spec), path)
        surrogates.append(load_surrogate(str(path), None, None, "cpu"))
    rng = np.random.default_rng(0)
    images = {s: rng.uniform(0, 1, (N, 1, s, s)).astype(np.float32) for s in (SIZE, SIZE + 4)}
    return root, surrogates, images, {}


def key_of(env, attack: str, changes: frozenset) -> str:
    """The key of the request ``changes`` applied to the base request of ``attack`` (memoised)."""
    root, surrogates, images, memo = env
    if (attack, changes) in memo:
        return memo[attack, changes]
    ch = dict(changes)
    x = images[SIZE + 4 if "resolution" in ch else SIZE].copy()
    if "image_content" in ch:
        x[0, 0, 0, 0] = 1.0 - x[0, 0, 0, 0]
    y = np.array([0, 1, 2, 0] if "labels" not in ch else [0, 1, 2, 1])
    names = [f"{CLASSES[k]}/img{i}.png" for i, k in enumerate([0, 1, 2, 0])]
    if "names" in ch:
        names[3] = "normal/other.png"
    params = {"epsilon": 8 / 255 if "epsilon" not in ch else 4 / 255}
    params.update({k[len("param:") :]: v for k, v in ch.items() if k.startswith("param:")})
    if attack == "usmm":
        pool = x if "mask_pool" not in ch else x[::-1].copy()
        params.update(mask_pool=pool, mask_pool_labels=y if "mask_pool" not in ch else y[::-1].copy())
    if "param_order" in ch:
        params = dict(reversed(list(params.items())))
    if "float64_images" in ch:
        x = x.astype(np.float64)
    if "int32_labels" in ch:
        y = y.astype(np.int32)
    if "names_tuple" in ch:
        names = tuple(names)
    old_version = auditor.__version__
    if "tool_version" in ch:
        auditor.__version__ = old_version + ".post1"
    try:
        aset = build_adversarial_set(
            attack,
            params,
            surrogates[1 if "surrogate_weights" in ch else 0],
            SetData(x, y, names, "m" * 64 if "manifest" not in ch else "n" * 64),
            SetRun(
                root / ("elsewhere" if "cache_dir" in ch else "cache"),
                seed=1 if "seed" in ch else 0,
                batch_size=3 if "batch_size" in ch else 2,
                device="cpu" if "device" in ch else None,
                precision="bf16" if "precision" in ch else "fp32",
            ),
            progress=(lambda k: None) if "progress" in ch else None,
            only_batches=set(),
        )
    finally:
        auditor.__version__ = old_version
    memo[attack, changes] = aset.key
    return aset.key


def shaping_changes(attack: str) -> list[tuple[str, object]]:
    """(name, value) pairs; parameter changes are ``param:<name>``."""
    params = {**LOOP_CHANGES, **ATTACK_CHANGES[attack]}
    out = [(f"param:{k}", v) for k, v in params.items()] + [(name, True) for name in OTHER_CHANGES]
    return [c for c in out if c[0] != "mask_pool" or attack == "usmm"]


@st.composite
def requests(draw):
    attack = draw(st.sampled_from(sorted(ATTACK_CHANGES)))
    shaping = draw(st.sets(st.sampled_from(shaping_changes(attack)), max_size=3))
    noise = draw(st.sets(st.sampled_from([(name, True) for name in IRRELEVANT]), max_size=3))
    return attack, frozenset(shaping), frozenset(noise)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=requests(), b=requests())
def test_keys_agree_exactly_when_the_shaping_inputs_agree(env, a, b):
    (atk_a, shape_a, noise_a), (atk_b, shape_b, noise_b) = a, b
    same = atk_a == atk_b and shape_a == shape_b
    assert (key_of(env, atk_a, shape_a | noise_a) == key_of(env, atk_b, shape_b | noise_b)) is same


@pytest.mark.parametrize("attack", sorted(ATTACK_CHANGES))
def test_every_single_shaping_input_changes_the_key(env, attack):
    """The exhaustive one-at-a-time version of the property (hypothesis samples combinations)."""
    base = key_of(env, attack, frozenset())
    keys = {name: key_of(env, attack, frozenset([(name, value)])) for name, value in shaping_changes(attack)}
    assert [name for name, k in keys.items() if k == base] == []
    assert len(set(keys.values())) == len(keys)  # and no two of them collide
    for name in IRRELEVANT:
        assert key_of(env, attack, frozenset([(name, True)])) == base, name


def test_surrogate_without_identity_is_keyed_by_its_weights(env):
    """A bare nn.Module (library use, no checkpoint identity) must still key on its weights."""
    root, surrogates, images, _ = env
    x, y = images[SIZE], np.array([0, 1, 2, 0])
    names = [f"img{i}.png" for i in range(N)]

    def key(module):
        return build_adversarial_set(
            "mifgsm",
            {"epsilon": 8 / 255},
            module,
            SetData(x, y, names, "m" * 64),
            SetRun(root / "bare", seed=0, batch_size=2),
            only_batches=set(),
        ).key

    assert key(surrogates[0].module) != key(surrogates[1].module)
    assert key(surrogates[0].module) == key(surrogates[0].module)
