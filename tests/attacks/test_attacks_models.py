"""TorchClassifier preprocessing, checkpoints, surrogates and the onnx2torch white-box path."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from auditor.errors import ModelContractError, UsageError
from auditor.models.checkpoints import load_checkpoint
from auditor.models.convert import ConversionFailed, convert_onnx_to_torch
from auditor.models.inputs import encode_input
from auditor.models.surrogate import load_surrogate
from auditor.models.torch import Ensemble, TorchClassifier
from auditor.reference_models.registry import CHECKPOINT_FORMAT, build_model
from auditor.types import IMAGENET_MEAN, IMAGENET_STD, ModelSpec


class Recorder(nn.Module):
    """Returns fixed outputs and keeps the tensor it was fed."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.out, self.seen = out, None

    def forward(self, x):  # noqa: D102
        self.seen = x.detach().clone()
        return self.out[: x.shape[0]]


SPECS = [
    ModelSpec(
        channels=3,
        height=16,
        width=16,
        scaling="imagenet",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        class_names=("a", "b"),
    ),
    ModelSpec(channels=1, height=16, width=16, scaling="0-255", mean=(0.0,), std=(1.0,), class_names=("a", "b")),
    ModelSpec(channels=1, height=16, width=16, scaling="minus1-1", mean=(0.5,), std=(0.5,), class_names=("a", "b")),
    ModelSpec(
        layout="NHWC",
        channels=3,
        height=16,
        width=16,
        scaling="minus1-1",
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        class_names=("a", "b"),
    ),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.layout}-{s.channels}-{s.scaling}")
def test_normalisation_matches_encode_input(spec):
    x = np.random.default_rng(0).uniform(0, 1, (3, 1, 16, 16)).astype(np.float32)
    rec = Recorder(torch.zeros(3, 2))
    TorchClassifier(rec, spec)(torch.from_numpy(x))
    np.testing.assert_allclose(rec.seen.numpy(), encode_input(x, spec), rtol=1e-5, atol=1e-4)


def test_resize_channels_last_and_output_kinds():
    spec = SPECS[0]
    rec = Recorder(torch.tensor([[0.2, 0.8]]))
    model = TorchClassifier(rec, spec)
    model.set_channels_last(True)
    model(torch.rand(1, 1, 40, 24))
    assert rec.seen.shape == (1, 3, 16, 16)
    probs = TorchClassifier(
        Recorder(torch.tensor([[0.2, 0.8]])), dataclasses.replace(spec, output_kind="probabilities")
    )
    assert torch.allclose(probs(torch.rand(1, 1, 16, 16)).softmax(1), torch.tensor([[0.2, 0.8]]))
    sig = TorchClassifier(Recorder(torch.tensor([[1.5]])), dataclasses.replace(spec, output_kind="sigmoid_logit"))
    assert torch.allclose(sig(torch.rand(1, 1, 16, 16)).softmax(1)[0, 1], torch.sigmoid(torch.tensor(1.5)))
    perm = TorchClassifier(Recorder(torch.tensor([[0.1, 0.9]])), spec, class_index=[1, 0])
    assert torch.allclose(perm(torch.rand(1, 1, 16, 16)), torch.tensor([[0.9, 0.1]]))


def _write_checkpoint(path, classes=("normal", "pneumonia", "pneumothorax"), size=32, seed=0, **override):
    torch.manual_seed(seed)
    net = build_model("small_cnn", len(classes), 1)
    spec = ModelSpec(
        channels=1, height=size, width=size, scaling="minus1-1", mean=(0.5,), std=(0.5,), class_names=tuple(classes)
    )
    doc = {
        "format": CHECKPOINT_FORMAT,
        "arch": "small_cnn",
        "num_classes": len(classes),
        "in_channels": 1,
        "state_dict": net.state_dict(),
        "spec": spec.to_dict(),
    }
    doc.update(override)
    torch.save(doc, path)
    return path


def test_load_checkpoint_and_errors(tmp_path):
    good = _write_checkpoint(tmp_path / "s.pt")
    model = load_checkpoint(good, "cpu")
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 3)
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    assert len(model.meta["sha256"]) == 64
    cases = {
        "fmt.pt": {"format": "other/1"},
        "arch.pt": {"arch": "vgg"},
        "keys.pt": {"state_dict": {"x": torch.zeros(1)}},
        "ncls.pt": {"num_classes": 5},
    }
    for name, override in cases.items():
        with pytest.raises(ModelContractError) as err:
            load_checkpoint(_write_checkpoint(tmp_path / name, **override), "cpu")
        assert "\n" not in str(err.value) and name in str(err.value)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelContractError):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(ModelContractError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_surrogate_classes_are_aligned_with_target(tmp_path):
    target = ModelSpec(channels=1, height=32, width=32, class_names=("Normal", "Pneumonia", "Pneumothorax"))
    a = _write_checkpoint(tmp_path / "a.pt")
    b = _write_checkpoint(tmp_path / "b.pt", classes=("pneumothorax", "normal", "pneumonia"), seed=1)
    x = torch.rand(2, 1, 32, 32)
    sa = load_surrogate(str(a), target, None, "cpu")
    assert sa.threat_model == "transfer" and sa.identity["kind"] == "checkpoint" and sa.identity["arch"] == "small_cnn"
    sb = load_surrogate(str(b), target, None, "cpu")
    raw = load_checkpoint(b)(x)
    assert torch.allclose(sb.module(x), raw[:, [1, 2, 0]])
    ens = load_surrogate(f"{a},{b}", target, None, "cpu")
    assert isinstance(ens.module, Ensemble) and ens.identity["kind"] == "ensemble"
    assert torch.allclose(ens.module(x), (sa.module(x) + sb.module(x)) / 2, atol=1e-6)
    c = _write_checkpoint(tmp_path / "c.pt", classes=("normal", "covid", "pneumothorax"))
    with pytest.raises(UsageError, match="differ from the target"):
        load_surrogate(str(c), target, None, "cpu")
    no_target = load_surrogate(str(b), None, None, "cpu")
    assert no_target.class_names == ("pneumothorax", "normal", "pneumonia")


def _export_tiny_onnx(path, spec: ModelSpec):
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(spec.channels, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    ).eval()
    buf = io.BytesIO()
    torch.onnx.export(
        net,
        torch.rand(1, spec.channels, spec.height, spec.width),
        buf,
        dynamo=False,
        input_names=["input"],
        output_names=["output"],
        opset_version=17,
        dynamic_axes={"input": {0: "n"}, "output": {0: "n"}},
    )
    path.write_bytes(buf.getvalue())
    return net


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnx2torch_conversion_agrees_with_ort(tmp_path):
    spec = ModelSpec(
        channels=3,
        height=32,
        width=32,
        scaling="imagenet",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        class_names=("normal", "pneumonia", "pneumothorax"),
    )
    path = tmp_path / "tiny.onnx"
    net = _export_tiny_onnx(path, spec)
    sur = load_surrogate("target", spec, str(path), "cpu")
    assert sur.threat_model == "white-box" and sur.identity["kind"] == "target"
    assert sur.identity["agreement_max_prob_diff"] <= 1e-3
    x = torch.rand(4, 1, 32, 32)
    ref = net(
        ((x.expand(-1, 3, -1, -1)) - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    )
    assert torch.allclose(sur.module(x), ref, atol=1e-4)
    xg = x.clone().requires_grad_(True)
    sur.module(xg).sum().backward()
    assert xg.grad is not None and float(xg.grad.abs().sum()) > 0
    with pytest.raises(ConversionFailed, match="disagrees"):
        convert_onnx_to_torch(path, spec, tol=-1.0)


def test_a_target_whose_biases_are_identity_aliases_converts_for_white_box(tmp_path):
    """torch's exporter stores identical tensors once and aliases the others through Identity nodes (here two
    all-zero convolution biases, as in a network whose batch norms keep their initial statistics); onnx2torch
    alone fails on the alias (KeyError), the conversion must not, and must agree with ONNX Runtime."""
    import onnx2torch
    from onnx import numpy_helper

    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(0, 0.3, (4, 1, 3, 3)), rng.normal(0, 0.3, (4, 4, 3, 3))
    tensors = {"w1": w1, "b": np.zeros(4), "w2": w2, "fc_w": rng.normal(0, 0.5, (2, 4)), "fc_b": np.zeros(2)}
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in tensors.items()]
    nodes = [
        helper.make_node("Identity", ["b"], ["b_alias"]),
        helper.make_node("Conv", ["input", "w1", "b"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b_alias"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c2"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["output"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "aliases",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 2])],
        inits,
    )
    path = tmp_path / "aliases.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what the pinned ONNX Runtime reads
    onnx.save(model, path)
    with pytest.raises(KeyError, match="b_alias"):
        onnx2torch.convert(onnx.load(path))  # the failure this guards against
    spec = ModelSpec(channels=1, height=8, width=8, class_names=("a", "b"), input_name="input", output_name="output")
    sur = load_surrogate("target", spec, str(path), "cpu")
    assert sur.threat_model == "white-box" and sur.identity["agreement_max_prob_diff"] <= 1e-5
    assert [n.op_type for n in onnx.load(path).graph.node].count("Identity") == 1  # the file itself is untouched


def test_initializer_aliases_are_inlined_in_chains_but_never_for_graph_outputs():
    from onnx import numpy_helper

    from auditor.models.onnx_file import inline_initializer_aliases

    t = numpy_helper.from_array(np.arange(3, dtype=np.float32), "t")
    nodes = [
        helper.make_node("Identity", ["t"], ["a"]),
        helper.make_node("Identity", ["a"], ["b"]),  # an alias of an alias
        helper.make_node("Identity", ["t"], ["out"]),  # a graph output stays a node
        helper.make_node("Add", ["x", "b"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [3]) for n in ("y", "out")],
        [t],
    )
    model = inline_initializer_aliases(helper.make_model(graph))
    assert [n.op_type for n in model.graph.node] == ["Identity", "Add"]
    assert [i.name for i in model.graph.initializer] == ["t", "a", "b"]
    assert all(np.array_equal(numpy_helper.to_array(i), [0, 1, 2]) for i in model.graph.initializer)


def test_unsupported_op_raises_conversion_failed(tmp_path):
    node = helper.make_node("FancyOp", ["input"], ["output"], domain="example.custom")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 2])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("example.custom", 1)]
    )
    path = tmp_path / "custom.onnx"
    onnx.save(model, path)
    spec = ModelSpec(channels=1, height=8, width=8, class_names=("a", "b"))
    with pytest.raises(ConversionFailed) as err:
        load_surrogate("target", spec, str(path), "cpu")
    assert "\n" not in str(err.value)


def test_fold_batchnorm_keeps_the_function_and_the_original(tmp_path):
    from auditor.models.torch import fold_batchnorm

    model = load_checkpoint(_write_checkpoint(tmp_path / "s.pt"))
    for m in model.modules():  # non-trivial running statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    folded = fold_batchnorm(model)
    assert folded is not model and any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(3, 1, 32, 32, requires_grad=True)
    xg = x.detach().clone().requires_grad_(True)
    assert torch.allclose(model(x), folded(xg), atol=1e-5)
    model(x).logsumexp(1).sum().backward()
    folded(xg).logsumexp(1).sum().backward()
    assert torch.allclose(x.grad, xg.grad, atol=1e-6, rtol=1e-4)
    plain = nn.Linear(2, 2)
    assert fold_batchnorm(plain) is plain


@pytest.mark.parametrize("size", [(512, 128), (500, 128)])
def test_every_pixel_of_a_larger_set_gets_gradient(size):
    """512->128 (and a non-integer 500->128): the surrogate's resize leaves no pixel without gradient."""
    src, dst = size
    spec = ModelSpec(channels=1, height=dst, width=dst, scaling="unit", mean=(0.0,), std=(1.0,), class_names=("a", "b"))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 2, 3, padding=1), nn.Flatten(2))
    model = TorchClassifier(_SumLogits(net), spec).eval()
    x = torch.rand(1, 1, src, src, requires_grad=True)
    model(x)[:, 1].sum().backward()
    zero = (x.grad == 0).float().mean().item()
    assert zero == 0.0, f"{zero:.1%} of the pixels get no gradient"


class _SumLogits(nn.Module):
    """Per-class sum of a per-pixel map: every resized pixel influences the logits."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x):  # noqa: D102
        return self.net(x).sum(-1)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_surrogate_with_non_finite_weights_is_refused(tmp_path, bad):
    torch.manual_seed(0)
    state = build_model("small_cnn", 3, 1).state_dict()
    key = next(k for k, v in state.items() if v.is_floating_point() and v.dim() > 1)
    state[key] = state[key].clone()
    state[key].view(-1)[0] = bad
    path = _write_checkpoint(tmp_path / "nan.pt", state_dict=state)
    with pytest.raises(ModelContractError, match="NaN or infinite") as err:
        load_surrogate(str(path), None, None)
    assert err.value.exit_code == 3 and key in str(err.value)
