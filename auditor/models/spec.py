"""ModelSpec: read the input/output contract of an ONNX classifier, and apply it.

The contract is read once, in this order (later wins):

1. the graph: input name, rank-4 shape -> layout, channels, size; element type;
   output shape -> number of classes; the op producing the output -> output kind;
2. ``metadata_props``: either one key ``xray_audit.spec`` holding ModelSpec JSON
   (what our exporter writes) or loose keys ``class_names``/``labels``/``classes``,
   ``scaling``, ``mean``, ``std``, ``layout``, ``output_kind``;
3. a sidecar JSON file ``<model>.onnx.json`` with ModelSpec keys;
4. CLI flags.

When no layer says how intensities are scaled, the graph's first operations are read: a
Mul/Div/Add/Sub chain by constants right after the input (Transpose, Cast and Identity nodes in
between are followed, as tf2onnx exports put them there), such as Keras' ``Rescaling(1/255)`` or an
in-graph ImageNet mean/std, tells which input range the model expects
(:func:`infer_graph_scaling`); the spec records how it was inferred in its warnings. When the graph
has no such chain either, the documented default ``unit`` (``[0, 1]``) is used and a warning is
recorded in the spec (and so in the report); a scan then checks its clean predictions for the signs
of a wrong contract (:func:`contract_check`).

This module and ``auditor.models.onnx`` are the only places that know about
layout, channel count and scaling; everything else sees ``(N, 1, H, W)`` grey
images in ``[0, 1]``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from auditor.errors import ModelContractError, UsageError
from auditor.models.inputs import decode_output, encode_input, scaling_mean_std  # noqa: F401  (public API)
from auditor.models.onnx_file import load_onnx_proto
from auditor.types import (
    DTYPES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    LAYOUTS,
    MAX_IMAGE_PIXELS,
    OUTPUT_KINDS,
    SCALINGS,
    ModelSpec,
    printable,
)

DEFAULT_SIZE = 224
METADATA_KEY = "xray_audit.spec"

# ONNX TensorProto element types we can feed
_ONNX_DTYPES = {1: "float32", 10: "float16", 2: "uint8"}


def _dim(d) -> int | None:
    return d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None


def _parse_list(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        items = json.loads(value)
        if not isinstance(items, list) or any(isinstance(v, (list, dict)) for v in items):
            raise ValueError("not a flat JSON list")
        return [str(v) for v in items]
    if value.startswith("{"):  # {"0": "normal", ...}
        items = json.loads(value)
        if not isinstance(items, dict):
            raise ValueError("not a JSON object")
        return [str(items[k]) for k in sorted(items, key=lambda k: int(k))]
    return [v.strip() for v in value.split(",") if v.strip()]


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
    check_input_size(*facts["hw"], f"{path}: input {inp.name!r}")
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


def _metadata_overrides(model, path: str) -> dict[str, Any]:
    props = {p.key: p.value for p in model.metadata_props}
    out: dict[str, Any] = {}
    if METADATA_KEY in props:
        try:
            doc = json.loads(props[METADATA_KEY])
        except json.JSONDecodeError as exc:
            raise ModelContractError(f"{path}: metadata {METADATA_KEY} is not valid JSON ({exc.msg})") from None
        except RecursionError:  # a depth bomb
            raise ModelContractError(f"{path}: metadata {METADATA_KEY} is JSON nested too deeply") from None
        if not isinstance(doc, dict):
            raise ModelContractError(f"{path}: metadata {METADATA_KEY} is not a JSON object")
        allowed = {
            "layout",
            "channels",
            "height",
            "width",
            "scaling",
            "mean",
            "std",
            "output_kind",
            "class_names",
            "dtype",
        }
        out.update({k: v for k, v in doc.items() if k in allowed})
    for key in ("class_names", "labels", "classes"):
        if key in props and "class_names" not in out:
            try:
                out["class_names"] = _parse_list(props[key])
            except (json.JSONDecodeError, ValueError, KeyError, RecursionError):
                raise ModelContractError(
                    f"{path}: metadata {key!r} is neither a JSON list nor comma-separated"
                ) from None
    for key in ("scaling", "layout", "output_kind"):
        if key in props and key not in out:
            out[key] = props[key].strip()
    for key in ("mean", "std"):
        if key in props and key not in out:
            try:
                out[key] = [float(v) for v in _parse_list(props[key])]
            except (json.JSONDecodeError, ValueError, KeyError, RecursionError):
                raise ModelContractError(
                    f"{path}: metadata {key!r} = {props[key][:40]!r} is not a list of numbers"
                ) from None
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and bool(np.isfinite(float(v)))


def _check_types(over: dict[str, Any], origin: str) -> dict[str, Any]:
    """Type and range checks of one override layer (metadata JSON, sidecar, flags).

    Untrusted metadata must fail as a one-line :class:`ModelContractError`, never
    as a ``ValueError`` deep inside; returns the layer with lists normalised.
    """
    out = dict(over)
    for key in ("layout", "scaling", "output_kind", "dtype"):
        if key in out and not isinstance(out[key], str):
            raise ModelContractError(f"{origin}: {key} must be a string, got {type(out[key]).__name__}")
    for key in ("height", "width"):
        if key in out:
            v = out[key]
            if not _is_int(v) or not 1 <= v <= MAX_IMAGE_PIXELS:
                raise ModelContractError(f"{origin}: {key} must be a positive integer, got {str(v)[:40]!r}")
    if "height" in out and "width" in out:
        check_input_size(out["height"], out["width"], origin)
    for key in ("mean", "std"):
        if key in out:
            v = [out[key]] if _is_number(out[key]) else out[key]
            if not isinstance(v, (list, tuple)) or not 1 <= len(v) <= 3 or not all(_is_number(x) for x in v):
                raise ModelContractError(
                    f"{origin}: {key} must be a list of 1 or 3 finite numbers, got {str(out[key])[:40]!r}"
                )
            out[key] = [float(x) for x in v]
    if "class_names" in out:
        v = out["class_names"]
        if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) or _is_int(x) for x in v):
            raise ModelContractError(f"{origin}: class_names must be a list of strings, got {str(v)[:40]!r}")
        names = [str(x).strip() for x in v]
        if any(not n or len(n) > 200 for n in names):
            raise ModelContractError(f"{origin}: class names must be non-empty and at most 200 characters")
        out["class_names"] = names
    return out


def _validate_overrides(over: dict[str, Any], origin: str) -> dict[str, Any]:
    over = _check_types(over, origin)
    checks = {"layout": LAYOUTS, "scaling": SCALINGS, "output_kind": OUTPUT_KINDS, "dtype": DTYPES}
    for key, allowed in checks.items():
        if key in over and over[key] not in allowed:
            raise ModelContractError(f"{origin}: {key} {over[key]!r} is not one of {', '.join(allowed)}")
    if "channels" in over and (not _is_int(over["channels"]) or over["channels"] not in (1, 3)):
        raise ModelContractError(f"{origin}: channels must be 1 or 3, got {over['channels']!r}")
    return over


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


def _override_layers(
    model, path: str, sidecar: str | Path | None, overrides: dict[str, Any] | None, values: dict[str, Any]
) -> list[tuple[str, dict[str, Any]]]:
    """The layers over the graph, lowest first: ``metadata_props``, the sidecar JSON, CLI flags."""
    layers: list[tuple[str, dict[str, Any]]] = [("metadata", _metadata_overrides(model, path))]
    side = Path(sidecar) if sidecar else Path(path + ".json")
    if side.is_file():
        try:
            doc = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelContractError(f"{side}: sidecar is not readable JSON ({exc})") from None
        except RecursionError:  # a depth bomb
            raise ModelContractError(f"{side}: sidecar is JSON nested too deeply") from None
        if not isinstance(doc, dict):
            raise ModelContractError(f"{side}: sidecar must hold a JSON object")
        layers.append(("sidecar", doc))
    elif sidecar:
        raise ModelContractError(f"{side}: sidecar file not found")
    flags = {k: v for k, v in (overrides or {}).items() if v is not None}
    if "image_size" in flags:
        size = int(flags.pop("image_size"))
        if not values["dynamic_size"] and (size, size) != (values["height"], values["width"]):
            raise UsageError(
                f"--image-size {size} conflicts with the model's fixed input {values['height']}x{values['width']}"
            )
        flags["height"] = flags["width"] = size
    layers.append(("flag", flags))
    return layers


def _apply_layers(
    layers: list[tuple[str, dict[str, Any]]], values: dict[str, Any], sources: dict[str, str], path: str
) -> None:
    """Validate each layer and let it override ``values`` (a fixed graph size always wins)."""
    for origin, over in layers:
        try:
            over = _validate_overrides(over, f"{path} ({origin})")
        except ModelContractError as exc:
            if origin == "flag":  # a bad flag value is a usage error, not a broken model
                raise UsageError(str(exc)) from None
            raise
        for key, val in over.items():
            if key in ("height", "width") and not values["dynamic_size"] and int(val) != values[key]:
                continue  # a fixed graph size wins over metadata
            if key in ("layout", "channels", "scaling", "mean", "std", "output_kind", "class_names", "height", "width"):
                values[key] = val
                sources[key] = origin


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


def _resolve_scaling(
    values: dict[str, Any], sources: dict[str, str], warnings: list[str], path: str
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Settle ``values["scaling"]`` (custom when only mean/std are given, else the default) -> (mean, std)."""
    if "scaling" not in values:
        if "mean" in values and "std" in values:
            values["scaling"] = "custom"
            sources["scaling"] = sources.get("mean", "default")
        else:
            values["scaling"] = "unit" if values["dtype"] != "uint8" else "0-255"
            sources["scaling"] = "default"
            if values["dtype"] != "uint8":
                warnings.append(
                    "input scaling not declared by the model; assumed [0,1] (set --scaling or metadata 'scaling')"
                )
    if values["dtype"] == "uint8" and values["scaling"] != "0-255":
        raise ModelContractError(
            f"{path}: a uint8 input takes 0-255 pixels; scaling {values['scaling']!r} is impossible"
        )
    return scaling_mean_std(values["scaling"], int(values["channels"]), values.get("mean"), values.get("std"))


def _class_names(
    values: dict[str, Any], k: int | None, sources: dict[str, str], warnings: list[str], path: str
) -> list[str]:
    """Declared class names checked against the ``k`` outputs, or default names with a warning."""
    names = values.get("class_names")
    n_classes = 2 if (k == 1 or values["output_kind"].startswith("sigmoid")) else k
    if names:
        names = [printable(str(n)) for n in names]  # untrusted metadata: no ANSI/control characters in reports
        if len(names) != n_classes:
            raise ModelContractError(
                f"{path}: {len(names)} class names ({', '.join(names)}) for a model with {n_classes} classes"
            )
        if len({n.lower() for n in names}) != len(names):
            raise ModelContractError(f"{path}: duplicate class names {names}")
    else:
        if k is None:
            raise ModelContractError(
                f"{path}: the number of classes is dynamic and no class names are given (--labels)"
            )
        names = ["negative", "positive"] if n_classes == 2 and k == 1 else [f"class_{i}" for i in range(n_classes)]
        sources["class_names"] = "default"
        warnings.append(f"class names not declared; using {', '.join(names)} (set --labels or metadata 'class_names')")
    if k is not None and k != 1 and values["output_kind"].startswith("sigmoid"):
        raise ModelContractError(
            f"{path}: output kind {values['output_kind']} needs a (N, 1) output, model has (N, {k})"
        )
    if k == 1 and not values["output_kind"].startswith("sigmoid"):  # a softmax over one value is always 1
        raise ModelContractError(
            f"{path}: a (N, 1) output needs output kind sigmoid_logit or sigmoid_probability, "
            f"not {values['output_kind']}"
        )
    return names


def read_spec(
    path: str | Path,
    *,
    model=None,
    sidecar: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    default_size: int = DEFAULT_SIZE,
) -> ModelSpec:
    """Read the ModelSpec of an ONNX file (graph, then metadata, sidecar, flags).

    ``overrides`` holds CLI values (``layout``, ``channels``, ``scaling``,
    ``mean``, ``std``, ``class_names``, ``output_kind``, ``image_size``); ``None``
    values are ignored. ``model`` may be an already loaded ``onnx.ModelProto``.
    """
    path = str(path)
    if model is None:
        model = load_onnx_proto(path)
    facts = _graph_facts(model, path)
    values, sources, warnings = _graph_values(facts, default_size)
    _apply_layers(_override_layers(model, path, sidecar, overrides, values), values, sources, path)
    if "scaling" not in values and "mean" not in values and "std" not in values and values["dtype"] != "uint8":
        inferred = infer_graph_scaling(model.graph, values["input_name"], int(values["channels"]))
        if inferred is not None:
            values["scaling"], sources["scaling"] = inferred[0], "graph"
            warnings.append(inferred[1])
    mean, std = _resolve_scaling(values, sources, warnings, path)
    names = _class_names(values, facts["num_outputs"], sources, warnings, path)
    check_input_size(int(values["height"]), int(values["width"]), f"{path} ({sources.get('height', 'graph')})")
    return ModelSpec(
        input_name=values["input_name"],
        layout=values["layout"],
        channels=int(values["channels"]),
        height=int(values["height"]),
        width=int(values["width"]),
        dtype=values["dtype"],
        scaling=values["scaling"],
        mean=mean,
        std=std,
        output_name=values["output_name"],
        output_kind=values["output_kind"],
        class_names=tuple(names),
        dynamic_batch=bool(values["dynamic_batch"]),
        dynamic_size=bool(values["dynamic_size"]),
        sources=sources,
        warnings=tuple(warnings),
    )


def spec_with(spec: ModelSpec, **changes: Any) -> ModelSpec:
    """A copy of ``spec`` with some fields changed."""
    return dataclasses.replace(spec, **changes)


# ----------------------------------------------------------------------------- the clean-stage sanity check
#: the fewest labelled images the clean-stage check judges
CONTRACT_CHECK_MIN_IMAGES = 10
#: the largest per-class spread (standard deviation over images) of scores still called near-constant
FLAT_SCORE_STD = 0.05
#: accuracy within this of the largest class share counts as "at the class-share level"
SHARE_MARGIN = 0.05


def contract_check(spec: ModelSpec, y: np.ndarray, proba: np.ndarray) -> dict[str, Any] | None:
    """Whether the clean predictions of a model whose scaling was guessed look like a wrong contract.

    Runs only when the spec's scaling is the default (nothing declared it, the graph did not
    imply it) and at least :data:`CONTRACT_CHECK_MIN_IMAGES` images of two or more classes are
    scored. Suspect when every image gets the same class, or when the accuracy is at the largest
    class share (within :data:`SHARE_MARGIN`) while every class score is near-constant across
    images (spread below :data:`FLAT_SCORE_STD`): what a model fed values on the wrong scale does.
    Returns ``{"reason", "fix", "scaling", "accuracy", "class_share"}`` or ``None``.
    """
    if spec.sources.get("scaling") != "default" or spec.dtype == "uint8":
        return None
    y = np.asarray(y).reshape(-1)
    proba = np.asarray(proba, dtype=np.float64)
    if len(y) < CONTRACT_CHECK_MIN_IMAGES or len(np.unique(y)) < 2 or proba.shape[0] != len(y):
        return None
    pred = proba.argmax(1)
    acc = float(np.mean(pred == y))
    share = float(np.bincount(y).max() / len(y))
    spread = float(proba.std(axis=0).max())
    names = list(spec.class_names)
    if len(np.unique(pred)) == 1:
        k = int(pred[0])
        reason = f"every one of the {len(y)} clean images is predicted {names[k] if k < len(names) else k}"
    elif acc <= share + SHARE_MARGIN and spread < FLAT_SCORE_STD:
        reason = (
            f"clean accuracy {100 * acc:.1f}% is at the largest class share ({100 * share:.1f}%) and the "
            f"class scores hardly vary across images (spread {spread:.3f})"
        )
    else:
        return None
    others = [s for s in ("0-255", "imagenet", "minus1-1") if s != spec.scaling]
    fix = (
        f"the input scaling was not declared and {spec.scaling!r} was assumed; rerun with the model's "
        f"scaling ({', '.join('--scaling ' + s for s in others)}, or --scaling custom --mean .. --std ..), "
        "or declare 'scaling' in the model's metadata or a sidecar JSON"
    )
    return {"reason": reason, "fix": fix, "scaling": spec.scaling, "accuracy": acc, "class_share": share}


#: the most images the other scalings are tried on when the contract check fails
SUGGEST_MAX_IMAGES = 64


def suggest_scaling(
    check: dict[str, Any], spec: ModelSpec, y: np.ndarray, predict: Callable[[ModelSpec], np.ndarray]
) -> dict[str, Any]:
    """``check`` with the named scaling that makes the model work, tried on the images of ``y``.

    ``predict(spec)`` returns the class probabilities of those images (at most
    :data:`SUGGEST_MAX_IMAGES`) fed with ``spec``. Each named scaling other than the assumed one is
    tried; the best is suggested (``check["suggested"]``, ``check["tried"]``, and a ``fix`` naming
    the flag) when its accuracy beats the assumed one and passes :func:`contract_check` itself.
    """
    y = np.asarray(y).reshape(-1)
    tried: dict[str, float] = {}
    for name in ("0-255", "imagenet", "minus1-1", "unit"):
        if name == spec.scaling:
            continue
        mean, std = scaling_mean_std(name, spec.channels)
        alt = spec_with(spec, scaling=name, mean=mean, std=std)
        proba = np.asarray(predict(alt), dtype=np.float64)
        if contract_check(alt, y, proba) is None:  # the alternative does not look misfed itself
            tried[name] = float(np.mean(proba.argmax(1) == y))
    if not tried:
        return check
    best = max(tried, key=lambda k: tried[k])
    if tried[best] <= check["accuracy"]:
        return {**check, "tried": tried}
    fix = (
        f"--scaling {best} gives {100 * tried[best]:.1f}% clean accuracy on {len(y)} of the images "
        f"(the assumed {spec.scaling!r}: {100 * check['accuracy']:.1f}%); rerun with --scaling {best}, or declare "
        "'scaling' in the model's metadata or a sidecar JSON"
    )
    return {**check, "tried": tried, "suggested": best, "fix": fix}
