"""parse_defenses: names, values, paths, skips; and the feature-consistency defense."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from auditor.defenses.registry import list_defenses, parse_defenses
from auditor.errors import UsageError
from auditor.types import Skipped


def test_default_jpeg_sweep_and_canonical_names():
    pres = parse_defenses("jpeg, bitdepth:4 ,median:3,median")
    assert [p.name for p in pres] == ["jpeg:90", "jpeg:75", "jpeg:50", "jpeg:30", "bitdepth:4", "median:3"]


def test_defaults_and_dedup():
    assert [p.name for p in parse_defenses("bitdepth,median:5,jpeg:75,jpeg")] == [
        "bitdepth:4",
        "median:5",
        "jpeg:75",
        "jpeg:90",
        "jpeg:50",
        "jpeg:30",
    ]
    assert parse_defenses("") == [] and parse_defenses(None) == [] and parse_defenses(" , ") == []


def test_unknown_name_lists_known_names():
    with pytest.raises(UsageError) as err:
        parse_defenses("jpeg,blur:3")
    msg = str(err.value)
    assert "'blur'" in msg and all(n in msg for n in list_defenses()) and "\n" not in msg


@pytest.mark.parametrize(
    "spec,match",
    [
        ("jpeg:0", "jpeg quality"),
        ("jpeg:101", "jpeg quality"),
        ("jpeg:abc", "not an integer"),
        ("bitdepth:9", "bitdepth"),
        ("median:4", "median kernel"),
        ("median:x", "not an integer"),
        ("denoiser", "needs a path"),
        ("cyclegan:", "needs a path"),
    ],
)
def test_bad_values(spec, match):
    with pytest.raises(UsageError, match=match):
        parse_defenses(spec)


def test_paths_must_exist_and_be_regular_files(tmp_path):
    with pytest.raises(UsageError, match="file not found"):
        parse_defenses(f"denoiser:{tmp_path / 'nope.onnx'}")
    with pytest.raises(UsageError, match="not a regular file"):
        parse_defenses(f"cyclegan:{tmp_path}")
    with pytest.raises(UsageError, match="file not found"):
        parse_defenses(f"feature:{tmp_path / 'ref.png'}")


@pytest.fixture()
def ref_png(tmp_path):
    yy, xx = np.mgrid[0:40, 0:48]
    img = ((np.sin(xx / 5.0) * np.cos(yy / 7.0) + 1) * 127).astype(np.uint8)
    p = tmp_path / "ref.png"
    Image.fromarray(img).save(p)
    return p


def test_feature_without_extractor_is_skipped(ref_png):
    out = parse_defenses(f"jpeg:75,feature:{ref_png}")
    assert out[0].name == "jpeg:75"
    assert isinstance(out[1], Skipped) and out[1].kind == "defense" and out[1].name == f"feature:{ref_png.name}"
    assert "feature extractor" in out[1].reason


def _extractor():
    import torch

    g = torch.Generator().manual_seed(0)
    c1 = torch.nn.Conv2d(1, 4, 3, padding=1)
    c2 = torch.nn.Conv2d(4, 8, 3, stride=2, padding=1)
    with torch.no_grad():
        for m in (c1, c2):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.5)
            m.bias.zero_()
            m.requires_grad_(False)

    def features(x):
        a = torch.relu(c1(x))
        return [a, torch.relu(c2(a))]

    return features


def test_feature_defense_runs_bounded_and_deterministic(ref_png):
    features = _extractor()
    (pre,) = parse_defenses(f"feature:{ref_png}", feature_extractor=features)
    pre.iterations = 5
    x = np.random.default_rng(0).random((3, 1, 32, 32)).astype(np.float32)
    y1, y2 = pre(x), pre(x)
    assert y1.shape == x.shape and y1.dtype == np.float32
    assert y1.min() >= 0.0 and y1.max() <= 1.0
    assert np.abs(y1 - x).max() > 1e-4  # the optimisation moved the image
    assert np.abs(y1 - x).max() <= 5 * 0.01 * 1.1  # Adam moves each pixel by about lr per step at most
    np.testing.assert_array_equal(y1, y2)
    assert pre.gradient == "straight-through" and pre.params["lr"] == 0.01


def test_conv_feature_extractor_taps_conv_layers(ref_png):
    import torch

    from auditor.defenses.feature import ConvFeatureExtractor

    net = torch.nn.Sequential(
        *[m for c in (4, 8, 8) for m in (torch.nn.LazyConv2d(c, 3, padding=1), torch.nn.ReLU())],
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.LazyLinear(2),
    )
    net(torch.zeros(1, 1, 8, 8))  # materialise the lazy layers
    net.eval().requires_grad_(False)
    fe = ConvFeatureExtractor(net, max_layers=2)
    feats = fe(torch.zeros(2, 1, 16, 16))
    assert [tuple(f.shape) for f in feats] == [(2, 4, 16, 16), (2, 8, 16, 16)]
    assert fe(torch.zeros(1, 1, 8, 8))[0].shape[0] == 1  # no leftovers from the previous call
    (pre,) = parse_defenses(f"feature:{ref_png}", feature_extractor=fe)
    pre.iterations = 2
    x = np.random.default_rng(0).random((2, 1, 16, 16)).astype(np.float32)
    assert pre(x).shape == x.shape
