"""The MI-FGSM loop (auditor/attacks/base.py) against an independent reference, rule by rule.

Written to kill mutation survivors (``make mutation``, docs/mutation.md): the update rule is checked
with scripted gradients against the formula of Dong et al. (CVPR 2018, arXiv:1710.06081), the
gradient against autograd of the mean cross-entropy, and the hooks, checks and bookkeeping one by one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from auditor.attacks.base import GradientAttack, default_batch_rows
from auditor.attacks.usmm import USMM
from auditor.errors import ModelContractError, UsageError

H = W = 6


class SmallNet(nn.Module):
    """Fixed-weight conv net, 3 classes, with a BatchNorm (so folding has something to fold)."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3 * 4, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
            self.bn.running_mean.copy_(torch.randn(3, generator=g) * 0.1)
            self.bn.running_var.copy_(torch.rand(3, generator=g) + 0.5)
        self.eval()

    def forward(self, x):  # noqa: D102
        return self.fc(F.adaptive_avg_pool2d(torch.tanh(self.bn(self.conv(x))), 2).flatten(1))


class Scripted(GradientAttack):
    """The loop with scripted gradients: isolates the MI-FGSM update rule from any network."""

    def __init__(self, grads, **kw):
        super().__init__(nn.Linear(1, 1), fold_bn=False, channels_last=False, **kw)
        self.grads = list(grads)

    def gradient(self, x_adv, y, gen):  # noqa: D102
        return self.grads.pop(0).clone()


def _reference(x, grads, eps, alpha, decay, norm):
    """Dong et al.'s MI-FGSM update in float64 numpy, written from the paper."""
    x = x.double().numpy()
    xa, m = x.copy(), np.zeros_like(x)
    for g in grads:
        g = g.double().numpy()
        mean_abs = np.abs(g).reshape(len(g), -1).mean(1).reshape(-1, 1, 1, 1)
        m = decay * m + g / np.where(mean_abs > 0, mean_abs, 1.0)
        if norm == "linf":
            xa = np.clip(np.clip(xa + alpha * np.sign(m), x - eps, x + eps), 0, 1)
        else:
            n = np.sqrt((m.reshape(len(m), -1) ** 2).sum(1)).reshape(-1, 1, 1, 1)
            d = xa + alpha * m / np.where(n > 0, n, 1.0) - x
            dn = np.sqrt((d.reshape(len(d), -1) ** 2).sum(1)).reshape(-1, 1, 1, 1)
            xa = np.clip(x + d * np.minimum(1.0, eps / np.where(dn > 0, dn, 1.0)), 0, 1)
    return xa


def _scripted_grads(steps=4, n=3):
    """Per-image gradient scales that differ by orders of magnitude between steps and images (all
    below 1), and one image whose gradient is zero: per-image L1 normalisation decides the signs."""
    g = torch.Generator().manual_seed(11)
    out = []
    for t in range(steps):
        scale = torch.tensor([1e-3 * 10**t, 0.5 / 10**t, 0.0][:n]).view(-1, 1, 1, 1)
        out.append(torch.randn((n, 1, H, W), generator=g) * scale)
    return out


@pytest.mark.parametrize("norm,eps,alpha", [("linf", 0.3, 0.07), ("linf", 0.05, None), ("l2", 0.9, 0.35)])
@pytest.mark.parametrize("decay", [1.0, 0.5, 0.0])
def test_update_rule_equals_the_paper_with_scripted_gradients(norm, eps, alpha, decay):
    x = torch.rand((3, 1, H, W), generator=torch.Generator().manual_seed(2)) * 0.6 + 0.2
    grads = _scripted_grads()
    atk = Scripted(grads, epsilon=eps, steps=4, alpha=alpha, decay=decay, norm=norm)
    out = atk(x, torch.zeros(3, dtype=torch.long), seed=0)
    a = eps / 4 if alpha is None else alpha
    expected = _reference(x, grads, eps, a, decay, norm)
    np.testing.assert_allclose(out.double().numpy(), expected, atol=2e-6)
    np.testing.assert_array_equal(out[2].numpy(), x[2].numpy())  # zero gradient: the image does not move
    assert not torch.equal(out[0], x[0]) and not torch.equal(out[1], x[1])


def test_gradient_is_the_input_gradient_of_the_mean_cross_entropy():
    net = SmallNet()
    x = torch.rand((5, 1, H, W), generator=torch.Generator().manual_seed(4))
    y = torch.tensor([0, 1, 2, 1, 0])
    leaf = x.clone().requires_grad_(True)
    (want,) = torch.autograd.grad(F.cross_entropy(net(leaf), y), leaf)
    for rows in (None, 2):
        atk = GradientAttack(SmallNet(), max_batch_rows=rows, channels_last=False)
        atk.ensure_setup()
        got = atk.gradient(x, y, torch.Generator().manual_seed(0))
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-4)
        assert atk.surrogate_rows == 5
        atk.gradient(x, y, torch.Generator().manual_seed(0))
        assert atk.surrogate_rows == 10


class TwoScales(GradientAttack):
    """Two copies per image, ``x / 2`` and ``x / 4`` (a linear transform, so the chain rule is known)."""

    num_copies = 2

    def transform(self, x_adv, y, gen):  # noqa: D102
        return torch.cat([x_adv * 0.5, x_adv * 0.25])


class TwoScalesOnCopies(TwoScales):
    grad_wrt_copies = True


@pytest.mark.parametrize("klass", [TwoScales, TwoScalesOnCopies])
def test_copies_are_labelled_copy_major_and_their_gradients_combined(klass):
    net = SmallNet()
    x = torch.rand((3, 1, H, W), generator=torch.Generator().manual_seed(5))
    y = torch.tensor([2, 0, 1])
    copies = torch.cat([x * 0.5, x * 0.25]).requires_grad_(True)
    (gc,) = torch.autograd.grad(F.cross_entropy(net(copies), y.repeat(2)), copies)
    # through the transform: the chain rule weights each copy by its factor; on the copies: plain sum
    want = 0.5 * gc[:3] + 0.25 * gc[3:] if klass is TwoScales else gc[:3] + gc[3:]
    atk = klass(SmallNet(), max_batch_rows=4)
    atk.ensure_setup()
    torch.testing.assert_close(atk.gradient(x, y, torch.Generator().manual_seed(0)), want, atol=1e-6, rtol=1e-4)
    assert atk.surrogate_rows == 6


def test_base_hooks_are_identity_sum_and_names():
    atk = GradientAttack(SmallNet())
    x = torch.rand((2, 1, H, W))
    assert atk.num_copies == 1 and atk.transform(x, None, None) is x
    grads = torch.arange(12.0).view(6, 1, 1, 2)  # 3 copies of 2 images
    torch.testing.assert_close(atk.aggregate(grads, 2), grads.view(3, 2, 1, 1, 2).sum(0))
    assert atk.label == "MI-FGSM" and atk.key_extras() == {}
    assert atk.params() == {
        "epsilon": 16 / 255,
        "steps": 10,
        "alpha": 16 / 255 / 10,
        "decay": 1.0,
        "norm": "linf",
        "precision": "fp32",
    }


class CountingSetup(GradientAttack):
    def setup(self):  # noqa: D102
        self.setups = getattr(self, "setups", 0) + 1
        super().setup()


def test_setup_runs_once_folds_batchnorm_and_freezes():
    net = SmallNet().train()
    atk = CountingSetup(net, fold_bn=True)
    atk.ensure_setup()
    atk.ensure_setup()
    assert atk.setups == 1
    assert not any(isinstance(m, nn.BatchNorm2d) for m in atk.model.modules())  # folded copy
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())  # the caller's module keeps its BN
    assert not atk.model.training and not any(p.requires_grad for p in atk.model.parameters())
    kept = CountingSetup(SmallNet(), fold_bn=False)
    kept.ensure_setup()
    assert any(isinstance(m, nn.BatchNorm2d) for m in kept.model.modules())


class MemoryFormatRecorder(nn.Module):
    """Records set_channels_last calls (the TorchClassifier protocol)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(1, 3)
        self.calls = []

    def set_channels_last(self, flag):  # noqa: D102
        self.calls.append(flag)

    def forward(self, x):  # noqa: D102
        return self.lin(x.mean((1, 2, 3))[:, None])


@pytest.mark.parametrize("flag", [True, False])
def test_channels_last_is_asked_of_the_model_only_when_on(flag):
    atk = GradientAttack(MemoryFormatRecorder(), channels_last=flag)
    atk.ensure_setup()
    assert atk.model.calls == ([True] if flag else [])


class Noisy(GradientAttack):
    """A random transform: the output depends on the generator."""

    num_copies = 2

    def transform(self, x_adv, y, gen):  # noqa: D102
        noise = torch.rand((2,) + tuple(x_adv.shape), generator=gen).to(x_adv)
        return (x_adv.unsqueeze(0) + 0.3 * noise).flatten(0, 1)


def test_seed_and_generator():
    x = torch.rand((2, 1, H, W), generator=torch.Generator().manual_seed(8))
    y = torch.tensor([0, 2])
    run = lambda **kw: Noisy(SmallNet(), steps=2, epsilon=0.1, channels_last=False)(x, y, **kw)  # noqa: E731
    base = run(seed=0)
    assert torch.equal(run(), base)  # no seed: seed 0
    assert torch.equal(run(generator=torch.Generator().manual_seed(0)), base)
    assert not torch.equal(run(seed=1), base)
    assert torch.equal(run(seed=1, generator=torch.Generator().manual_seed(0)), base)  # the generator wins


def test_shapes_are_checked():
    atk = GradientAttack(SmallNet())
    with pytest.raises(ValueError, match="expected x"):
        atk(torch.rand(2, H, W), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="expected x"):
        atk(torch.rand(2, 1, 1, H, W), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="expected x"):
        atk(torch.rand(2, 1, H, W), torch.tensor([0, 1, 2]))


@pytest.mark.parametrize(
    "kw",
    [
        {"model": "net"},
        {"epsilon": 0},
        {"epsilon": 1.01},
        {"epsilon": "0.1"},
        {"steps": 0},
        {"steps": 2.0},
        {"alpha": 0},
        {"alpha": -0.1},
        {"alpha": "0.1"},
        {"decay": -0.1},
        {"decay": "1"},
        {"norm": "l1"},
        {"max_batch_rows": 0},
        {"max_batch_rows": 2.0},
    ],
)
def test_bad_parameters_are_usage_errors(kw):
    model = kw.pop("model", SmallNet())
    with pytest.raises(UsageError):
        GradientAttack(model, **kw)


def test_boundary_parameters_are_accepted():
    atk = GradientAttack(SmallNet(), epsilon=1, steps=1, decay=0, max_batch_rows=1, alpha=1)
    assert (atk.epsilon, atk.steps, atk.decay, atk.alpha, atk.max_batch_rows) == (1.0, 1, 0.0, 1.0, 1)
    assert GradientAttack(SmallNet(), epsilon=0.2, steps=4).alpha == pytest.approx(0.05)
    assert str(GradientAttack(SmallNet()).device) == "cpu"
    assert str(GradientAttack(nn.Identity()).device) == "cpu"  # no parameters: cpu


def test_default_batch_rows():
    assert default_batch_rows(224, 224) == 20
    assert default_batch_rows(448, 448) == 5
    assert default_batch_rows(112, 112) == 32  # 80 capped at 32
    assert default_batch_rows(200, 224) == 22
    assert default_batch_rows(4000, 4000) == 1
    atk = GradientAttack(SmallNet())
    assert atk.chunk_rows(torch.zeros(1, 1, 448, 448)) == 5
    assert atk.chunk_rows(torch.zeros(1, 1, 224, 448)) == 10 and atk.chunk_rows(torch.zeros(1, 1, 1, 31360)) == 32
    atk.max_batch_rows = 3
    assert atk.chunk_rows(torch.zeros(1, 1, 448, 448)) == 3


def test_accepted_params_are_keyword_only_of_subclass_then_base():
    names = USMM.accepted_params()
    assert "model" not in names and "self" not in names
    assert names.index("mask_source") < names.index("epsilon")
    assert set(GradientAttack.accepted_params()) == {
        "epsilon",
        "steps",
        "alpha",
        "decay",
        "norm",
        "max_batch_rows",
        "precision",
        "channels_last",
        "fold_bn",
        "device",
    }
    assert len(names) == len(set(names))


class NaNRows(nn.Module):
    """Finite weights; logits are NaN for the images whose first pixel exceeds 0.9."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1, 3)

    def forward(self, x):  # noqa: D102
        return self.fc(torch.log(0.9 - x[:, :, :1, :1]).flatten(1))


def test_non_finite_gradient_message_counts_the_images():
    x = torch.full((4, 1, H, W), 0.5)
    x[[0, 2], 0, 0, 0] = 0.95
    with pytest.raises(ModelContractError, match="for 2 image"):
        GradientAttack(NaNRows(), steps=1, channels_last=False)(x, torch.zeros(4, dtype=torch.long))


def test_normalisation_is_per_image_over_all_channels():
    """Dong et al. normalise each image's gradient by its mean |g| over (C, H, W), not per channel:
    with two channels whose relative scale changes between steps, the two differ."""
    g = torch.Generator().manual_seed(11)
    grads = [
        torch.randn((2, 2, 3, 3), generator=g) * torch.tensor([1.0, 10.0 ** (2 * t - 3)]).view(1, 2, 1, 1)
        for t in range(4)
    ]
    x = torch.full((2, 2, 3, 3), 0.5)
    out = Scripted(grads, epsilon=0.4, steps=4, alpha=0.05)(x, torch.zeros(2, dtype=torch.long))
    np.testing.assert_allclose(out.double().numpy(), _reference(x, grads, 0.4, 0.05, 1.0, "linf"), atol=2e-6)


def test_l2_step_has_length_alpha_even_for_a_short_momentum():
    """Opposite gradients leave a momentum of norm sqrt(0.5) < 1: the step is still alpha long."""
    g1 = torch.ones((1, 1, 6, 6))
    g2 = -torch.ones((1, 1, 6, 6))
    g2[0, 0, 0, 0], g2[0, 0, 0, 1] = -0.5, -1.5  # mean |g2| = 1: the momentum is g1 + g2 exactly
    x = torch.full((1, 1, 6, 6), 0.5)
    out = Scripted([g1, g2], epsilon=1.0, steps=2, alpha=0.1, norm="l2")(x, torch.zeros(1, dtype=torch.long))
    first = 0.1 / 6  # step 1: alpha * (all ones) / ||all ones|| = alpha / 6 per pixel
    want = torch.full((1, 1, 6, 6), 0.5 + first)
    want[0, 0, 0, 0] += 0.1 / np.sqrt(2)
    want[0, 0, 0, 1] -= 0.1 / np.sqrt(2)
    torch.testing.assert_close(out, want, atol=1e-6, rtol=0)


def test_negative_epsilon_is_refused_and_row_budget_is_20_images_of_224():
    with pytest.raises(UsageError):
        GradientAttack(SmallNet(), epsilon=-0.1)
    # 20 * 224 * 224 = 1003520 pixels; these sizes sit just below and above a rounding edge
    assert default_batch_rows(1, 80410) == 12 and default_batch_rows(1, 80153) == 13


class WithCatchAll(GradientAttack):
    def __init__(self, model, *, extra_option: int = 1, **rest):
        super().__init__(model, **rest)


def test_accepted_params_leave_out_a_catch_all():
    names = WithCatchAll.accepted_params()
    assert names[0] == "extra_option" and "rest" not in names and "epsilon" in names


def test_norm_name_built_at_run_time_and_documented_defaults():
    """A norm read from a CLI flag is not an interned literal: it must select the same update."""
    x = torch.full((1, 1, H, W), 0.5)
    grads = _scripted_grads(steps=2, n=1)
    run = lambda norm: Scripted([g.clone() for g in grads], epsilon=0.3, steps=2, alpha=0.1, norm=norm)(  # noqa: E731
        x, torch.zeros(1, dtype=torch.long)
    )
    assert torch.equal(run("".join(["li", "nf"])), run("linf"))
    atk = GradientAttack(SmallNet())
    assert atk.channels_last is True and atk.fold_bn is True and atk.norm == "linf" and atk.max_batch_rows is None


def test_setup_freezes_the_parameters_without_folding():
    kept = GradientAttack(SmallNet().train(), fold_bn=False)
    kept.ensure_setup()
    assert not kept.model.training and not any(p.requires_grad for p in kept.model.parameters())
