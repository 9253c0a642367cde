"""Invariants of the attack loop, USMM, STM, the registry and device selection (tiny models, 32 px)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from attack_nets import CountingNet
from auditor.attacks.base import GradientAttack
from auditor.attacks.device import precision_context, resolve_precision
from auditor.attacks.mifgsm import MIFGSM
from auditor.attacks.projection import project
from auditor.attacks.quantize import quantize
from auditor.attacks.registry import list_attacks, make_attack
from auditor.attacks.stm import STM
from auditor.attacks.style import GhiasiNet, StyleBackendUnavailable
from auditor.attacks.usmm import USMM, usmm_scales
from auditor.errors import RuntimeFailure, UsageError
from auditor.models.device import pick_device

H = W = 32


@pytest.fixture()
def batch():
    g = torch.Generator().manual_seed(3)
    x = torch.rand((4, 1, H, W), generator=g)
    y = torch.tensor([0, 1, 2, 0])
    return x, y


def _pool(n: int = 9):
    rng = np.random.default_rng(1)
    return rng.uniform(0, 1, (n, 1, H, W)).astype(np.float32), np.arange(n, dtype=np.int64) % 3


ATTACKS = {
    "mifgsm": lambda m, **kw: MIFGSM(m, **kw),
    "usmm-pool": lambda m, **kw: USMM(m, mask_pool=_pool()[0], mask_pool_labels=_pool()[1], **kw),
    "usmm-batch": lambda m, **kw: USMM(m, mask_source="batch", **kw),
    "stm-randconv": lambda m, **kw: STM(m, num_style=4, **kw),
    "stm-adain": lambda m, **kw: STM(m, num_style=4, style_backend="adain-stats", **kw),
}


@pytest.mark.parametrize("name", list(ATTACKS))
@pytest.mark.parametrize("eps", [4 / 255, 16 / 255])
def test_invariants(name, eps, batch):
    x, y = batch
    atk = ATTACKS[name](CountingNet(), epsilon=eps, steps=3)
    a = atk(x, y, seed=1)
    assert a.shape == x.shape and a.dtype == torch.float32
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert float((a - x).abs().max()) <= eps + 1e-6
    assert float((a - x).abs().max()) > eps / 2  # it moved
    k = quantize(a.numpy(), x.numpy(), eps).astype(np.int64)
    # x is off the 8-bit grid: every stored level stays within eps of the float clean value
    assert np.abs(k / 255 - x.numpy().astype(np.float64)).max() <= eps + 1e-6
    assert np.abs(k - np.rint(x.numpy().astype(np.float64) * 255)).max() >= round(eps * 255) - 1  # budget used
    assert torch.equal(a, atk(x, y, seed=1))
    if not name.startswith("mifgsm"):
        assert not torch.equal(a, atk(x, y, seed=2))


def test_l2_norm_budget(batch):
    x, y = batch
    a = MIFGSM(CountingNet(), epsilon=0.5, norm="l2", steps=3)(x, y, seed=0)
    assert float((a - x).flatten(1).norm(dim=1).max()) <= 0.5 + 1e-5
    assert float(a.min()) >= 0 and float(a.max()) <= 1


def test_project_is_exact_on_box():
    x = torch.full((1, 1, 2, 2), 0.98)
    z = torch.tensor([[[[1.5, 0.0], [0.97, 0.99]]]])
    out = project(z, x, 0.05)
    assert torch.allclose(out, torch.tensor([[[[1.0, 0.93], [0.97, 0.99]]]]))


def test_project_l2_is_the_exact_euclidean_projection():
    """Hand-computed: outside the ball the perturbation is scaled onto the sphere, inside it is kept."""
    x = torch.full((3, 1, 2, 2), 0.5)
    d = torch.tensor([0.3, -0.4, 0.0, 0.0]).view(1, 1, 2, 2)  # ||d||_2 = 0.5
    z = x + torch.stack([d[0], 0.2 * d[0], 0 * d[0]])  # norms 0.5, 0.1, 0
    out = project(z, x, 0.25, "l2")
    torch.testing.assert_close(out[0], x[0] + 0.5 * d[0])  # 0.5 -> 0.25: scaled by 0.25 / 0.5
    torch.testing.assert_close(out[1], z[1])  # inside the ball (norm 0.1 < 1): unchanged
    torch.testing.assert_close(out[2], x[2])  # no perturbation stays none
    # then the pixel range: towards x, never out of [0, 1]
    edge = project(torch.full((1, 1, 1, 2), 2.0), torch.full((1, 1, 1, 2), 0.9), 1.0, "l2")
    torch.testing.assert_close(edge, torch.ones(1, 1, 1, 2))


def test_project_norm_names():
    x = torch.zeros(1, 1, 2, 2)
    z = torch.full((1, 1, 2, 2), 0.5)
    # a norm name built at run time (as from a CLI flag), not an interned literal
    assert torch.equal(project(z, x, 0.1, "".join(["l", "2"])), project(z, x, 0.1, "l2"))
    assert torch.equal(project(z, x, 0.1, "".join(["li", "nf"])), torch.full_like(z, 0.1))
    for bad in ("l1", "linfinity", "a", "z"):
        with pytest.raises(ValueError, match="unknown norm"):
            project(z, x, 0.1, bad)


def test_usmm_scale_grid_and_guard():
    assert usmm_scales(5, 0.1, 0.75) == pytest.approx([0.1, 0.2625, 0.425, 0.5875, 0.75])
    assert usmm_scales(1, 0.1, 0.75) == [0.75]
    assert USMM(CountingNet(), num_scale=1).num_copies == 3


def test_usmm_masks_come_from_other_class_pool_and_lie_in_range(batch):
    x, y = batch
    pool, pool_y = _pool()
    atk = USMM(CountingNet(), mask_pool=pool, mask_pool_labels=pool_y)
    xa = torch.full_like(x, 0.5)  # s * 0.5 * M <= 0.5625: no clipping, so M is recoverable
    copies = atk.transform(xa, y, torch.Generator().manual_seed(0)).view(15, 4, 1, H, W)
    idx = atk.last_mask_indices
    assert idx.shape == (15, 4)
    assert (pool_y[idx.numpy()] != y.numpy()[None, :]).all()
    scales = torch.tensor(atk.scales * 3).view(15, 1, 1, 1, 1)
    masks = copies / (scales * 0.5)
    assert float(masks.min()) >= 0.5 - 1e-5 and float(masks.max()) <= 1.5 + 1e-5
    expected = 0.5 + torch.from_numpy(pool)[idx.flatten()].view(15, 4, 1, H, W)
    assert torch.allclose(masks, expected, atol=1e-5)
    assert atk.label == "USMM (masks: other-class pool)"


def test_usmm_without_pool_falls_back_to_batch_with_note():
    atk = USMM(CountingNet())
    assert atk.mask_source == "batch" and atk.notes
    with pytest.raises(UsageError):
        USMM(CountingNet(), mask_source="pool")


@pytest.mark.parametrize(
    "factory,copies", [(lambda m: USMM(m, mask_source="batch"), 15), (lambda m: STM(m), 20), (lambda m: MIFGSM(m), 1)]
)
def test_copy_counts_per_iteration(factory, copies, batch):
    x, y = batch
    net = CountingNet()
    atk = factory(net)
    atk.max_batch_rows = 1000
    atk(x, y, seed=0)
    assert net.calls == atk.steps == 10
    assert net.rows == copies * len(x) * 10


def test_chunked_gradient_equals_one_batch(batch):
    x, y = batch
    pool, pool_y = _pool()
    one = USMM(CountingNet(), mask_pool=pool, mask_pool_labels=pool_y, max_batch_rows=1000)
    chunked = USMM(CountingNet(), mask_pool=pool, mask_pool_labels=pool_y, max_batch_rows=7)
    for a in (one, chunked):
        a.ensure_setup()
    g1 = one.gradient(x, y, torch.Generator().manual_seed(5))
    g2 = chunked.gradient(x, y, torch.Generator().manual_seed(5))
    assert torch.allclose(g1, g2, atol=1e-7, rtol=1e-5)
    assert chunked.model.calls == 9  # ceil(60 / 7)


class ConstantStyle:
    """Stub style backend: a constant grey image; records what it was given."""

    name = "constant"

    def __init__(self, value: float, in_channels: int = 1) -> None:
        self.value, self.in_channels, self.seen = value, in_channels, []

    def __call__(self, x, gen):  # noqa: D102
        self.seen.append(tuple(x.shape))
        return torch.full_like(x, self.value)


@pytest.mark.parametrize("in_channels", [1, 3])
def test_stm_mix_formula_with_stub_backend(in_channels, batch):
    x, y = batch
    eps = 8 / 255
    style = ConstantStyle(0.3, in_channels)
    atk = STM(CountingNet(), epsilon=eps, num_style=5, style_backend=style)
    atk.ensure_setup()
    xb = atk.transform(x, y, torch.Generator().manual_seed(0))
    assert xb.shape == (20, 1, H, W)
    assert all(s[1] == in_channels for s in style.seen)  # grey replicated only for a colour backend
    noise = xb - (0.5 * x.repeat(5, 1, 1, 1) + 0.5 * 0.3)
    bound = 2.0 * eps
    assert float(noise.abs().max()) <= bound + 1e-6
    assert float(noise.max()) > 0.9 * bound and float(noise.min()) < -0.9 * bound  # uniform over the full range
    assert atk.label == "STM (style backend: constant)"


def test_stm_labels_and_missing_ghiasi(tmp_path):
    assert STM(CountingNet()).label == "STM (style backend: randconv)"
    with pytest.raises(StyleBackendUnavailable):
        STM(CountingNet(), style_backend="ghiasi")
    with pytest.raises(StyleBackendUnavailable):
        STM(CountingNet(), style_backend="ghiasi", checkpoint_dir=str(tmp_path))


def test_ghiasi_backend_loads_user_checkpoint(tmp_path, batch):
    x, y = batch
    torch.manual_seed(0)
    net = GhiasiNet()
    assert sum(p.numel() for p in net.parameters()) == 1_954_593  # docs/algorithms.md §5.3
    torch.save({"state_dict_ghiasi": net.state_dict()}, tmp_path / "checkpoint_transformer.pth")
    cov = torch.eye(100, dtype=torch.float64) * 0.02
    torch.save(
        {"pbn_embedding_mean": torch.zeros(100), "pbn_embedding_covariance": cov},
        tmp_path / "checkpoint_embeddings.pth",
    )
    atk = STM(CountingNet(), num_style=2, steps=1, style_backend="ghiasi", checkpoint_dir=str(tmp_path))
    a = atk(x[:2, :, :30, :30], y[:2], seed=0)  # 30 px: not a multiple of 4, padded inside the backend
    assert a.shape == (2, 1, 30, 30)
    assert "N(mu_PBN, Sigma_PBN)" in atk.label
    assert atk.key_extras()["transformer_sha256"]
    torch.save({"state_dict_ghiasi": {"layers.0.conv.weight": torch.zeros(1)}}, tmp_path / "checkpoint_transformer.pth")
    bad = STM(CountingNet(), style_backend="ghiasi", checkpoint_dir=str(tmp_path))
    with pytest.raises(StyleBackendUnavailable):
        bad.ensure_setup()


def test_registry_validates_names_and_params():
    assert list_attacks("gradient") == ["mifgsm", "usmm", "stm", "apgd"] and list_attacks("query") == ["square"]
    assert list_attacks("visible") == ["blend"]
    with pytest.raises(UsageError, match="known attacks: mifgsm, usmm, stm"):
        make_attack("fgsm", CountingNet())
    for eps in (0, -0.1, 1.5):
        with pytest.raises(UsageError, match="outside"):
            make_attack("usmm", CountingNet(), epsilon=eps)
    with pytest.raises(UsageError, match="unknown parameter.*epsilonn"):
        make_attack("mifgsm", CountingNet(), epsilonn=0.1)
    with pytest.raises(UsageError):
        make_attack("stm", CountingNet(), num_style=0)
    atk = make_attack("usmm", CountingNet(), epsilon=4 / 255, num_mix=2)
    assert isinstance(atk, GradientAttack) and atk.num_copies == 10 and atk.alpha == pytest.approx(0.4 / 255)


def test_device_selection(monkeypatch):
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    # both branches of "auto" and of an explicit "cuda", whatever this host has
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("cuda") and pick_device("cuda") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeFailure, match="cuda"):
        pick_device("cuda")
    monkeypatch.undo()
    with pytest.raises(UsageError):
        pick_device("tpu")
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("bf16", torch.device("cpu")) == "bf16"
    with precision_context("bf16", torch.device("cpu")):
        out = nn.Linear(4, 2)(torch.ones(1, 4))
    assert out.dtype == torch.bfloat16


def _halves(n: int, seed: int):
    """Class 0: left half brighter by 0.08 than the right; class 1: the reverse (plus noise)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.uniform(0.3, 0.6, (n, 1, 1, 1)) + rng.normal(0, 0.02, (n, 1, H, W))
    x[:, :, :, : W // 2] += np.where(y == 0, 0.04, -0.04)[:, None, None, None]
    x[:, :, :, W // 2 :] += np.where(y == 0, -0.04, 0.04)[:, None, None, None]
    return torch.from_numpy(np.clip(x, 0, 1).astype(np.float32)), torch.from_numpy(y)


def test_white_box_attacks_succeed_on_trained_tiny_cnn():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 2)), nn.Flatten(), nn.Linear(8, 2)
    )
    xt, yt = _halves(64, 0)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(net(xt), yt).backward()
        opt.step()
    net.eval()
    x, y = _halves(24, 1)
    with torch.no_grad():
        clean = float((net(x).argmax(1) == y).float().mean())
    assert clean >= 0.9
    for atk in (MIFGSM(net, epsilon=16 / 255), USMM(net, epsilon=16 / 255), STM(net, epsilon=16 / 255, num_style=5)):
        xa = atk(x, y, seed=0)
        with torch.no_grad():
            acc = float((net(xa).argmax(1) == y).float().mean())
        assert acc <= clean - 0.5, (atk.name, clean, acc)


class NaNForBrightNet(nn.Module):
    """Finite weights, but the logits are NaN once a pixel exceeds 0.9 (log of a negative number)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.fc(torch.log(0.9 - x).mean((1, 2, 3))[:, None])


def test_non_finite_gradients_refuse_the_attack():
    from auditor.errors import ModelContractError

    x = torch.full((2, 1, H, W), 0.5)
    x[1, 0, 0, 0] = 0.95
    with pytest.raises(ModelContractError, match="NaN or infinite gradients for 1 image") as err:
        MIFGSM(NaNForBrightNet(), epsilon=8 / 255, steps=2)(x, torch.tensor([0, 1]), seed=0)
    assert err.value.exit_code == 3
    out = MIFGSM(NaNForBrightNet(), epsilon=8 / 255, steps=2)(x[:1], torch.tensor([0]), seed=0)
    assert torch.isfinite(out).all()  # finite gradients: the attack runs
