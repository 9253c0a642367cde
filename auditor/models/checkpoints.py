"""The project's only checkpoint reader.

The format is ``xray-audit-checkpoint/1`` of :mod:`auditor.reference_models.registry`.

:func:`read_checkpoint` validates the file (``torch.load(weights_only=True)``),
:func:`build_network` loads its weights into the bare network (training
recipes) and :func:`load_checkpoint` wraps it in a frozen
:class:`~auditor.models.torch.TorchClassifier` (attacks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from auditor.errors import ModelContractError
from auditor.hashing import sha256_file
from auditor.models.torch import TorchClassifier, check_finite_weights
from auditor.types import ModelSpec

_sha256 = sha256_file


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate an ``xray-audit-checkpoint/1`` dict (weights only); one-line errors."""
    from auditor.reference_models.registry import ARCHITECTURES, CHECKPOINT_FORMAT

    p = Path(path)
    if not p.is_file():
        raise ModelContractError(f"{p}: surrogate checkpoint not found")
    try:
        doc = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle errors, truncated zips, disallowed globals
        raise ModelContractError(
            f"{p}: not a loadable torch checkpoint with weights_only=True ({type(exc).__name__})"
        ) from None
    if not isinstance(doc, dict):
        raise ModelContractError(f"{p}: checkpoint holds a {type(doc).__name__}, expected the {CHECKPOINT_FORMAT} dict")
    if doc.get("format") != CHECKPOINT_FORMAT:
        raise ModelContractError(f"{p}: checkpoint format {doc.get('format')!r} is not {CHECKPOINT_FORMAT!r}")
    missing = [k for k in ("arch", "num_classes", "in_channels", "state_dict", "spec") if k not in doc]
    if missing:
        raise ModelContractError(f"{p}: checkpoint lacks key(s) {', '.join(missing)}")
    if doc["arch"] not in ARCHITECTURES:
        raise ModelContractError(
            f"{p}: unknown architecture {doc['arch']!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        )
    for key in ("num_classes", "in_channels"):
        if not isinstance(doc[key], int) or doc[key] < 1:
            raise ModelContractError(f"{p}: {key} {doc[key]!r} is not a positive integer")
    if not isinstance(doc["state_dict"], dict):
        raise ModelContractError(f"{p}: state_dict is not a dict of tensors")
    try:
        spec = ModelSpec.from_dict(doc["spec"]) if isinstance(doc["spec"], dict) else None
    except (TypeError, ValueError) as exc:
        raise ModelContractError(f"{p}: invalid spec ({exc})") from None
    if spec is None:
        raise ModelContractError(f"{p}: spec is not a ModelSpec dictionary")
    if len(spec.class_names) != doc["num_classes"]:
        raise ModelContractError(f"{p}: spec has {len(spec.class_names)} class names for {doc['num_classes']} classes")
    return {**doc, "spec": spec}


def build_network(doc: dict[str, Any], path: str | Path) -> nn.Module:
    """The bare network of a validated :func:`read_checkpoint` result, weights loaded, in eval mode.

    For the training recipes, which fine-tune it; attacks use :func:`load_checkpoint`.
    """
    from auditor.reference_models.registry import build_model

    net = build_model(doc["arch"], doc["num_classes"], doc["in_channels"])
    try:
        net.load_state_dict(doc["state_dict"], strict=True)
    except RuntimeError as exc:
        first = next((ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()), str(exc))[:160]
        raise ModelContractError(f"{path}: weights do not fit architecture {doc['arch']} ({first})") from None
    check_finite_weights(net, str(path))
    return net.eval()


def load_checkpoint(
    path: str | Path,
    device: torch.device | str = "cpu",
    class_index: list[int] | None = None,
    doc: dict[str, Any] | None = None,
) -> TorchClassifier:
    """A frozen, eval-mode :class:`TorchClassifier` from an ``xray-audit-checkpoint/1`` file.

    ``doc`` may pass an already validated :func:`read_checkpoint` result of ``path``.
    """
    doc = doc if doc is not None else read_checkpoint(path)
    net = build_network(doc, path)
    model = TorchClassifier(net, doc["spec"], in_channels=doc["in_channels"], class_index=class_index)
    model.meta = {"arch": doc["arch"], "path": str(path), "sha256": _sha256(path)}
    return model.eval().requires_grad_(False).to(device)
