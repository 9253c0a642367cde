"""Reading an untrusted ONNX file into an ``onnx.ModelProto`` (no onnxruntime here).

Security: model files are untrusted. External-data references must be relative
paths that stay inside the model's folder (no absolute paths, no ``..``, no
symlinks leaving the folder); the file size is bounded; a protobuf that does
not parse is a one-line :class:`ModelContractError`. Used by
:mod:`auditor.models.spec` (reading the contract) and :mod:`auditor.models.onnx`
(running the model), which therefore do not import each other in a circle.
"""

from __future__ import annotations

from pathlib import Path

from auditor.errors import ModelContractError

MAX_MODEL_BYTES = 2 * 1024**3


def _check_external_data(model, path: Path) -> None:
    base = path.parent.resolve()
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                tensors.append(attr.t)
    for t in tensors:
        if t.data_location != 1:  # 1 = EXTERNAL
            continue
        loc = next((e.value for e in t.external_data if e.key == "location"), "")
        p = Path(loc)
        if not loc or p.is_absolute() or ".." in p.parts:
            raise ModelContractError(f"{path}: external data path {loc!r} of tensor {t.name!r} leaves the model folder")
        target = (base / p).resolve()
        if base not in target.parents and target != base:
            raise ModelContractError(f"{path}: external data {loc!r} resolves outside the model folder")
        if not target.is_file():
            raise ModelContractError(f"{path}: external data file {loc!r} is missing")


def load_onnx_proto(path: str | Path):
    """Parse an ONNX file without trusting it; raise one-line errors."""
    import onnx

    p = Path(path)
    if not p.exists():
        raise ModelContractError(f"{p}: model file not found")
    if not p.is_file():
        raise ModelContractError(f"{p}: not a regular file")
    size = p.stat().st_size
    if size == 0:
        raise ModelContractError(f"{p}: model file is empty")
    if size > MAX_MODEL_BYTES:
        raise ModelContractError(f"{p}: model file is {size / 1e9:.1f} GB, above the 2 GB limit")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ModelContractError(f"{p}: not a readable ONNX model ({type(exc).__name__})") from None
    if not model.HasField("graph") or len(model.graph.node) == 0:
        raise ModelContractError(f"{p}: the ONNX file holds no graph")
    _check_external_data(model, p)
    return model


def producer_text(model) -> str:
    """``"<producer name> <version>"`` of an ONNX model, leaving out missing parts.

    tf2onnx writes its version as ``"1.17.0 None"`` when it has no git revision; a part that is
    empty or reads ``None`` is dropped, so that model shows as ``tf2onnx 1.17.0``.
    """
    words = f"{model.producer_name or ''} {model.producer_version or ''}".split()
    return " ".join(w for w in words if w.lower() not in ("none", "null"))


def inline_initializer_aliases(model):
    """``model`` with every ``Identity`` node that only renames an initializer replaced by a copy of that
    initializer under the node's output name (in place; returned for chaining).

    torch's ONNX exporter stores identical tensors once and feeds the other users through ``Identity`` aliases
    (for example the all-zero convolution biases of a network whose batch norms still hold their initial
    statistics). The graph computes the same values either way, but onnx2torch takes a ``Conv`` or ``Gemm``
    weight and bias from the initializers only and fails on an alias (``KeyError``), which cost such a target
    its white-box attacks. A graph output is never turned into an initializer.
    """
    import onnx

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    kept = []
    for node in graph.node:
        if (
            node.op_type == "Identity"
            and node.domain in ("", "ai.onnx")
            and len(node.input) == 1
            and len(node.output) == 1
            and node.input[0] in inits
            and node.output[0] not in inits
            and node.output[0] not in outputs
        ):
            alias = onnx.TensorProto()
            alias.CopyFrom(inits[node.input[0]])
            alias.name = node.output[0]
            graph.initializer.append(alias)
            inits[alias.name] = alias
        else:
            kept.append(node)
    if len(kept) != len(graph.node):
        del graph.node[:]
        graph.node.extend(kept)
    return model
