"""STM's default ``randconv`` style backend really changes style, and the attack measures that it does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from attack_nets import CountingNet
from auditor.attacks.set_records import SetData, SetRun
from auditor.attacks.sets import build_adversarial_set
from auditor.attacks.stm import STM
from auditor.attacks.style import NEAR_AFFINE_CORR, RandConvStyle, abs_correlation
from auditor.models.surrogate import Surrogate

CXR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cxr"
#: draws of the backend per image in the share tests
DRAWS = 5


def near_affine_share(x: torch.Tensor, draws: int = DRAWS) -> float:
    """Share of randconv copies of ``x`` that are (almost) an intensity change of it."""
    gen = torch.Generator().manual_seed(0)
    style = RandConvStyle()
    corr = torch.cat([abs_correlation(style(x, gen), x) for _ in range(draws)])
    return float((corr > NEAR_AFFINE_CORR).float().mean())


def _real_images(n: int = 24, size: int = 224) -> torch.Tensor:
    import cv2

    if not CXR.is_dir():
        pytest.skip(f"{CXR} is absent (shared real chest X-ray images)")
    files = sorted(CXR.glob("*/*.png"))
    if len(files) < n:
        pytest.skip(f"{CXR} holds {len(files)} PNGs, the test needs {n}")
    picked = files[:: len(files) // n][:n]
    imgs = [
        cv2.resize(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), (size, size), interpolation=cv2.INTER_AREA) for f in picked
    ]
    return torch.from_numpy(np.stack(imgs)[:, None].astype(np.float32) / 255.0)


def _phantom(n: int = 8, size: int = 128) -> torch.Tensor:
    """Smooth synthetic chest-like images: a bright body, two dark lung fields, a soft gradient."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for i in range(n):
        body = np.exp(-((((xx - 0.5) / 0.42) ** 2 + ((yy - 0.55) / 0.5) ** 2) ** 2))
        lungs = sum(np.exp(-(((xx - cx) / 0.14) ** 2 + ((yy - 0.5) / 0.25) ** 2)) for cx in (0.33 + 0.01 * i, 0.67))
        out.append(np.clip(0.15 + 0.7 * body - 0.35 * lungs + 0.1 * yy, 0, 1))
    return torch.from_numpy(np.stack(out)[:, None].astype(np.float32))


def test_no_one_by_one_kernel():
    assert min(RandConvStyle.kernel_sizes) >= 3


def test_style_copies_of_real_radiographs_are_rarely_intensity_changes():
    share = near_affine_share(_real_images())
    assert share < 0.10, f"{share:.1%} of the randconv copies are near-affine intensity changes"


def test_style_copies_of_a_synthetic_image_are_rarely_intensity_changes():
    share = near_affine_share(_phantom())
    assert share < 0.10, f"{share:.1%} of the randconv copies are near-affine intensity changes"


def test_abs_correlation_sees_affine_changes():
    x = _phantom(2, 32)
    assert torch.allclose(abs_correlation(0.5 - 0.3 * x, x), torch.ones(2), atol=1e-5)
    assert float(abs_correlation(torch.full_like(x, 0.3), x).max()) < 1e-3  # a flat copy carries no structure


def test_the_attack_measures_its_style_copies_and_records_them(tmp_path):
    x = _phantom(4, 32).numpy()
    y = np.array([0, 1, 2, 0])
    atk = STM(CountingNet(), epsilon=8 / 255, num_style=5, steps=2)
    assert atk.style_diversity is None and "style_diversity" not in atk.params()
    atk(torch.from_numpy(x), torch.from_numpy(y), seed=0)
    d = atk.style_diversity
    assert d["copies"] == 4 * 5 * 2 and d["threshold"] == NEAR_AFFINE_CORR
    assert d["near_affine_share"] == d["near_affine"] / d["copies"] < 0.10

    surrogate = Surrogate(CountingNet(), ("a", "b", "c"), {"kind": "checkpoint", "sha256": ["0" * 64]}, "transfer")
    names = [f"img{i}.png" for i in range(4)]
    params = {"epsilon": 8 / 255, "num_style": 3, "steps": 1}
    first = build_adversarial_set(
        "stm", params, surrogate, SetData(x, y, names, "m" * 64), SetRun(tmp_path, 0, batch_size=2)
    )
    assert first.params["style_diversity"]["copies"] == 4 * 3
    again = build_adversarial_set(
        "stm", params, surrogate, SetData(x, y, names, "m" * 64), SetRun(tmp_path, 0, batch_size=2)
    )
    assert again.cache_hit and again.key == first.key  # the measurement never enters the cache key
    assert again.params["style_diversity"] == first.params["style_diversity"]


def test_sets_of_an_earlier_randconv_are_not_reused():
    # the cache key sees the backend's configuration, not just its name
    extras = STM(CountingNet()).key_extras()
    assert extras["randconv"] == {"kernel_sizes": [3, 5, 7, 9], "zero_mean": True, "mix_max": 0.8}


class _ColourBackend:
    """A 3-channel style network that records its input and weights the channels 0.3, 0.6, 0.9."""

    name = "colour-test"
    in_channels = 3

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        self.seen.append(x.clone())
        return x * torch.tensor([0.3, 0.6, 0.9]).reshape(1, 3, 1, 1)


def test_a_colour_style_network_gets_the_grey_value_on_every_channel_and_returns_grey():
    x = _phantom(3, 16)
    backend = _ColourBackend()
    atk = STM(CountingNet(), epsilon=8 / 255, num_style=2, steps=1, style_backend=backend)
    out = atk.stylise(x, torch.Generator().manual_seed(0))
    fed = torch.cat(backend.seen)
    assert fed.shape == (3, 3, 16, 16)
    for c in range(3):
        torch.testing.assert_close(fed[:, c : c + 1], x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, 0.6 * x)  # the mean of the three weighted copies
