"""ModelSpec: read the input/output contract of an ONNX classifier.

The contract is read once, in this order (later wins):

1. the graph: input name, rank-4 shape -> layout, channels, size; element type;
   output shape -> number of classes; the op producing the output -> output kind
   (:mod:`auditor.models.spec_graph`);
2. ``metadata_props``: either one key ``xray_audit.spec`` holding ModelSpec JSON
   (what our exporter writes) or loose keys ``class_names``/``labels``/``classes``,
   ``scaling``, ``mean``, ``std``, ``layout``, ``output_kind``;
3. a sidecar JSON file ``<model>.onnx.json`` with ModelSpec keys;
4. CLI flags.

When no layer says how intensities are scaled, the graph's first operations are read
(:func:`auditor.models.spec_graph.infer_graph_scaling`); the spec records how it was inferred in
its warnings. When the graph has no such chain either, the documented default ``unit``
(``[0, 1]``) is used and a warning is recorded in the spec (and so in the report); a scan then
checks its clean predictions for the signs of a wrong contract
(:func:`auditor.models.contract_check.contract_check`).

The contract is applied by :mod:`auditor.models.inputs` (numpy) and :mod:`auditor.models.torch`
(torch); everything else sees ``(N, 1, H, W)`` grey images in ``[0, 1]``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from auditor.errors import ModelContractError, UsageError
from auditor.models.inputs import scaling_mean_std
from auditor.models.onnx_file import load_onnx_proto
from auditor.models.spec_graph import _graph_facts, _graph_values, check_input_size, infer_graph_scaling
from auditor.types import (
    DTYPES,
    LAYOUTS,
    MAX_IMAGE_PIXELS,
    OUTPUT_KINDS,
    SCALINGS,
    ModelSpec,
    printable,
)

DEFAULT_SIZE = 224
METADATA_KEY = "xray_audit.spec"


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
    sigmoid = k == 1 or values["output_kind"].startswith("sigmoid")
    if names:
        names = [printable(str(n)) for n in names]  # untrusted metadata: no ANSI/control characters in reports
        # a dynamic number of classes is the number of names given
        n_classes = 2 if sigmoid else (len(names) if k is None else k)
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
        n_classes = 2 if sigmoid else k
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
