"""The model contract as the ONNX graph states it: the image input, the class-score output and the input scaling.

* :func:`check_input_size` refuses an input size above the pixel limit;
* the graph's one image input (name, dtype, layout, channels, size) and its first ``(N, K)`` output
  (width and kind: logits, probabilities, one sigmoid unit) give the lowest layer of
  :func:`auditor.models.spec.read_spec`;
* :func:`infer_graph_scaling` reads the scaling a model expects from the Mul/Div/Add/Sub chain by
  constants right after its input (Transpose, Cast and Identity nodes in between are followed, as
  tf2onnx exports put them there), such as Keras' ``Rescaling(1/255)`` or an in-graph ImageNet
  mean/std.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from auditor.errors import ModelContractError
from auditor.types import IMAGENET_MEAN, IMAGENET_STD, MAX_IMAGE_PIXELS

# ONNX TensorProto element types we can feed
_ONNX_DTYPES = {1: "float32", 10: "float16", 2: "uint8"}


def _dim(d) -> int | None:
    return d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None


def check_input_size(height: int | None, width: int | None, origin: str) -> None:
    """Refuse an input size whose pixel count exceeds :data:`~auditor.types.MAX_IMAGE_PIXELS`.

    Called on the graph's fixed size before any session or buffer exists, so an
    untrusted model cannot make the audit allocate a 20000x20000 batch.
    """
    if height is not None and width is not None and height * width > MAX_IMAGE_PIXELS:
        raise ModelContractError(
            f"{origin}: input of {height}x{width} = {height * width} pixels is above the "
            f"limit of {MAX_IMAGE_PIXELS} pixels"
        )


def _graph_facts(model, path: str) -> dict[str, Any]:
    """Facts read from the ONNX graph itself: its one image input, then its class-score output."""
    return {**_input_facts(model.graph, path), **_output_facts(model.graph, path)}


def _input_facts(graph, path: str) -> dict[str, Any]:
    """Name, dtype, batch, layout, channels and size of the graph's one image input (size limit checked)."""
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise ModelContractError(f"{path}: expected exactly one image input, found {len(inputs)} ({names})")
    inp = inputs[0]
    ttype = inp.type.tensor_type if inp.type.HasField("tensor_type") else None
    if ttype is None:
        raise ModelContractError(f"{path}: input {inp.name!r} is not a tensor")
    elem = _ONNX_DTYPES.get(ttype.elem_type)
    if elem is None:
        raise ModelContractError(
            f"{path}: input {inp.name!r} has element type {ttype.elem_type}, not float32/float16/uint8"
        )
    dims = [_dim(d) for d in ttype.shape.dim] if ttype.HasField("shape") else []
    if len(dims) != 4:
        raise ModelContractError(
            f"{path}: input {inp.name!r} has rank {len(dims)}, an image classifier needs rank 4 (N,C,H,W or N,H,W,C)"
        )
    facts: dict[str, Any] = {"input_name": inp.name, "dtype": elem, "dynamic_batch": dims[0] is None}
    d1, d3 = dims[1], dims[3]
    if d1 in (1, 3) and d3 not in (1, 3):
        facts.update(layout="NCHW", channels=d1, hw=(dims[2], dims[3]))
    elif d3 in (1, 3) and d1 not in (1, 3):
        facts.update(layout="NHWC", channels=d3, hw=(dims[1], dims[2]))
    elif d1 in (1, 3) and d3 in (1, 3):
        facts.update(layout="NCHW", channels=d1, hw=(dims[2], dims[3]), ambiguous=True)
    else:
        raise ModelContractError(
            f"{path}: input {inp.name!r} shape {['?' if d is None else d for d in dims]} has no channel axis of size 1 or 3"
        )
    height, width = facts["hw"]
    check_input_size(height, width, f"{path}: input {inp.name!r}")
    return facts


def _output_facts(graph, path: str) -> dict[str, Any]:
    """Name, width and kind (logits, probabilities, one sigmoid unit) of the first rank-2 output ``(N, K)``."""
    facts: dict[str, Any] = {}
    outs = list(graph.output)
    chosen = None
    for o in outs:
        if not o.type.HasField("tensor_type"):
            continue
        odims = [_dim(d) for d in o.type.tensor_type.shape.dim]
        if len(odims) == 2:
            chosen = (o.name, odims)
            break
    if chosen is None:
        shapes = [[_dim(d) for d in o.type.tensor_type.shape.dim] for o in outs if o.type.HasField("tensor_type")]
        raise ModelContractError(f"{path}: no output of shape (N, K) or (N, 1); outputs have shapes {shapes}")
    facts["output_name"], odims = chosen
    facts["num_outputs"] = odims[1]
    producer = next((n for n in graph.node if facts["output_name"] in n.output), None)
    op = producer.op_type if producer is not None else ""
    k = odims[1]
    if k == 1:
        facts["output_kind"] = "sigmoid_probability" if op == "Sigmoid" else "sigmoid_logit"
    elif op in ("Softmax", "LogSoftmax"):
        facts["output_kind"] = "probabilities" if op == "Softmax" else "logits"
    else:
        facts["output_kind"] = "logits"
    return facts


def _graph_values(facts: dict[str, Any], default_size: int) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """Contract values read from the graph, where each came from, and the warnings so far."""
    sources: dict[str, str] = {k: "graph" for k in ("input_name", "layout", "channels", "dtype", "output_kind")}
    warnings: list[str] = []
    if facts.pop("ambiguous", False):
        warnings.append("layout is ambiguous from the input shape; assumed NCHW (set --layout to change)")
    values: dict[str, Any] = {
        "input_name": facts["input_name"],
        "layout": facts["layout"],
        "channels": facts["channels"],
        "dtype": facts["dtype"],
        "output_name": facts["output_name"],
        "output_kind": facts["output_kind"],
        "dynamic_batch": facts["dynamic_batch"],
    }
    h, w = facts["hw"]
    values["dynamic_size"] = h is None or w is None
    values["height"], values["width"] = (h or default_size), (w or default_size)
    sources["height"] = sources["width"] = "graph" if not values["dynamic_size"] else "default"
    return values, sources, warnings


# ----------------------------------------------------------------------------- scaling inside the graph
#: ops passed over between the input and its rescaling (tf2onnx puts a Transpose, sometimes a Cast, there)
_PASS_THROUGH = frozenset({"Transpose", "Cast", "Identity"})
_AFFINE_OPS = frozenset({"Mul", "Div", "Add", "Sub"})
_FLOAT_TYPES = frozenset({1, 10, 11, 16})  # float, float16, double, bfloat16
#: the longest chain of ops read after the input
_MAX_CHAIN = 12
#: prefix of the spec warning that says how the scaling was read from the graph
INFERRED_NOTE = "input scaling inferred from the graph"


def _constant_arrays(graph) -> dict[str, np.ndarray]:
    """Small constant tensors of ``graph`` by name: initializers and ``Constant`` node outputs (at most 64 values)."""
    from onnx import numpy_helper

    tensors = [(t.name, t) for t in graph.initializer]
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.HasField("t"):
                    tensors.append((node.output[0], attr.t))
    out: dict[str, np.ndarray] = {}
    for name, t in tensors:
        if int(np.prod(t.dims)) > 64 or t.data_location == 1:  # large or external: never a rescaling constant
            continue
        try:
            out[name] = np.asarray(numpy_helper.to_array(t), dtype=np.float64).reshape(-1)
        except (ValueError, TypeError):
            continue
    return out


def _leading_affine(graph, input_name: str, channels: int) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """The affine map ``y = a * x + b`` (per channel) the graph applies right after its input, and its ops.

    Follows the input through single-consumer Transpose/Cast/Identity nodes and Mul/Div/Add/Sub nodes
    whose other operand is a constant with one or ``channels`` values; stops at the first other op.
    ``None`` when no such op changes the values.
    """
    consts = _constant_arrays(graph)
    consumers: dict[str, list] = {}
    for node in graph.node:
        if node.op_type in ("Shape", "Size"):  # reads the shape, not the values (tf2onnx's dynamic shapes)
            continue
        for name in set(node.input):
            consumers.setdefault(name, []).append(node)
    a, b = np.ones(1), np.zeros(1)
    ops: list[str] = []
    cur = input_name
    for _ in range(_MAX_CHAIN):
        nodes = consumers.get(cur, [])
        if len(nodes) != 1 or cur not in nodes[0].input[:2]:
            break
        node = nodes[0]
        if node.op_type in _PASS_THROUGH and node.input[0] == cur:
            to = next((at.i for at in node.attribute if at.name == "to"), 1)
            if node.op_type == "Cast" and to not in _FLOAT_TYPES:
                break
            cur = node.output[0]
            continue
        if node.op_type not in _AFFINE_OPS or len(node.input) != 2:
            break
        first = node.input[0] == cur
        c = consts.get(node.input[1] if first else node.input[0])
        if c is None or c.size not in (1, channels) or not np.isfinite(c).all():
            break
        if node.op_type == "Mul":
            a, b = a * c, b * c
        elif node.op_type == "Div":
            if not first or (c == 0).any():
                break
            a, b = a / c, b / c
        elif node.op_type == "Add":
            b = b + c
        elif first:  # x - c
            b = b - c
        else:  # c - x
            a, b = -a, c - b
        ops.append(f"{node.op_type} {_fmt_values(c)}")
        cur = node.output[0]
    if not ops or (np.allclose(a, 1.0) and np.allclose(b, 0.0)):
        return None
    return a, b, ops


def _fmt_values(v: np.ndarray) -> str:
    vals = [f"{x:.6g}" for x in np.asarray(v).reshape(-1)]
    return vals[0] if len(vals) == 1 else "[" + ", ".join(vals) + "]"


def _normalised(lo: np.ndarray, hi: np.ndarray) -> bool:
    """True when ``[lo, hi]`` (per channel) looks like a network's working range: [0, 1], [-1, 1], z-scores."""
    span, mag = hi - lo, np.maximum(np.abs(lo), np.abs(hi))
    return bool((span >= 0.5).all() and (span <= 10).all() and (mag <= 10).all())


def _range_text(lo: np.ndarray, hi: np.ndarray) -> str:
    lo_v, hi_v = float(np.min(lo)), float(np.max(hi))
    return f"[{lo_v:.3g}, {hi_v:.3g}]"


def infer_graph_scaling(graph, input_name: str, channels: int) -> tuple[str, str] | None:
    """The input scaling the graph itself implies, and a note saying how it was read; ``None`` when unsure.

    The graph's leading affine map (:func:`_leading_affine`) is applied to the two input ranges a
    vendor's model takes, ``[0, 1]`` (``unit``) and ``[0, 255]`` (``0-255``). The range that lands in
    a network's working range (span 0.5-10, values within +-10: ``[0, 1]``, ``[-1, 1]``, ImageNet
    z-scores) is the one the model expects: ``x * 1/255`` maps 0-255 pixels to ``[0, 1]``, an
    in-graph ``(x - mean) / std`` with ImageNet figures maps ``[0, 1]`` to z-scores. A Caffe-style
    mean subtraction of about 80-140 grey levels alone also means 0-255 pixels. ``None`` when both
    or neither range fits.
    """
    found = _leading_affine(graph, input_name, channels)
    if found is None:
        return None
    a, b, ops = found
    fits = {}
    for name, top in (("unit", 1.0), ("0-255", 255.0)):
        y0, y1 = b, a * top + b
        lo, hi = np.minimum(y0, y1), np.maximum(y0, y1)
        if _normalised(lo, hi):
            fits[name] = (lo, hi, top)
    chain = " -> ".join(ops)
    if not fits and np.allclose(a, 1.0) and ((b <= -80) & (b >= -140)).all():
        return "0-255", (
            f"{INFERRED_NOTE}: right after the input it subtracts a mean of 0-255 pixels ({chain}); "
            "scaling 0-255 (set --scaling to override)"
        )
    if len(fits) != 1:
        return None
    ((name, (lo, hi, top)),) = fits.items()
    what = f"maps {'0-255 pixels' if top == 255.0 else '[0, 1] images'} to {_range_text(lo, hi)}"
    std, mean = 1.0 / (a * top), -b / (a * top)  # the rescaling as (x01 - mean) / std
    if np.allclose(np.mean(mean), np.mean(IMAGENET_MEAN), atol=0.01) and np.allclose(
        np.mean(std), np.mean(IMAGENET_STD), atol=0.01
    ):
        what += " (ImageNet mean/std)"
    return (
        name,
        f"{INFERRED_NOTE}: right after the input it computes {chain}, which {what}; scaling {name} (set --scaling to override)",
    )
