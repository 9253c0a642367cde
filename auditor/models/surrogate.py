"""The surrogate of a scan: :func:`load_surrogate` builds a :class:`Surrogate` from ``--surrogate``.

The flag holds ``PATH[,PATH...]`` or ``target``.

A path is a checkpoint (:mod:`auditor.models.checkpoints`) or a surrogate zoo
folder (:func:`zoo_members`); several paths form an :class:`~auditor.models.torch.Ensemble`;
``target`` converts the ONNX target (:mod:`auditor.models.convert`). Member
logits are put in the target's class order (:func:`class_permutation`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from auditor.errors import ModelContractError, UsageError
from auditor.hashing import sha256_file
from auditor.models.checkpoints import load_checkpoint, read_checkpoint
from auditor.models.convert import convert_onnx_to_torch
from auditor.models.torch import Ensemble, TorchClassifier
from auditor.types import ModelSpec

_sha256 = sha256_file


@dataclass
class Surrogate:
    """A torch model attacks differentiate through, aligned with the target's classes.

    ``module`` maps ``(N, 1, H, W)`` in ``[0, 1]`` to logits over
    ``class_names`` (the target's order). ``identity`` holds ``kind``
    (``checkpoint``/``ensemble``/``target``), ``paths``, ``sha256``, ``arch``
    and a short ``label``. ``threat_model`` is ``white-box`` or ``transfer``.
    """

    module: nn.Module
    class_names: tuple[str, ...]
    identity: dict[str, Any] = field(default_factory=dict)
    threat_model: str = "transfer"


def class_permutation(surrogate_names: tuple[str, ...], target_names: tuple[str, ...], where: str) -> list[int] | None:
    """Indices ``idx`` with ``surrogate_logits[:, idx]`` in the target's order; None when already aligned.

    Names compare case-insensitively; a different set is a :class:`UsageError`.
    """
    s = [n.lower() for n in surrogate_names]
    t = [n.lower() for n in target_names]
    if s == t:
        return None
    if sorted(s) != sorted(t):
        raise UsageError(
            f"{where}: surrogate classes {list(surrogate_names)} differ from the target's {list(target_names)}"
        )
    return [s.index(name) for name in t]


ZOO_FILE = "zoo.json"


def zoo_members(folder: str | Path) -> list[str]:
    """Checkpoint paths of a surrogate zoo folder (``zoo.json`` of ``xray-audit train surrogates``).

    Each member's SHA-256 must match the one recorded when it was trained
    (:class:`ModelContractError` otherwise, as for a missing member).
    """
    root = Path(folder)
    index = root / ZOO_FILE
    if not index.is_file():
        raise UsageError(
            f"{root}: a folder given to --surrogate must be a surrogate zoo with {ZOO_FILE} "
            "(xray-audit train surrogates)"
        )
    import json

    try:
        doc = json.loads(index.read_text(encoding="utf-8"))
        members = [(str(m["checkpoint"]), str(m["sha256"])) for m in doc["members"]]
    except RecursionError:  # a depth bomb
        raise ModelContractError(f"{index}: not a surrogate zoo index (JSON nested too deeply)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelContractError(f"{index}: not a surrogate zoo index ({type(exc).__name__})") from None
    if not members:
        raise ModelContractError(f"{index}: the zoo has no members")
    paths = []
    for rel, sha in members:
        p = (root / rel).resolve()
        if root.resolve() not in p.parents:
            raise ModelContractError(f"{index}: member {rel!r} lies outside the zoo folder")
        if not p.is_file():
            raise ModelContractError(f"{index}: member checkpoint {rel} not found")
        if _sha256(p) != sha:
            raise ModelContractError(f"{index}: member {rel} does not match the SHA-256 recorded in the zoo")
        paths.append(str(p))
    return paths


def load_surrogate(
    spec_string: str, target_spec: ModelSpec | None, target_path: str | Path | None, device: torch.device | str = "cpu"
) -> Surrogate:
    """``PATH``, ``PATH,PATH,...`` (logit-averaging ensemble) or ``target`` (white-box via onnx2torch).

    A ``PATH`` that is a folder is a surrogate zoo (:func:`zoo_members`): all its members join the ensemble.

    Raises :class:`UsageError` for an empty spec or class-set mismatch,
    :class:`ModelContractError` for a bad checkpoint and
    :class:`ConversionFailed` when the target cannot be converted faithfully.
    """
    text = (spec_string or "").strip()
    if not text:
        raise UsageError("--surrogate is empty; give a checkpoint path, a comma list of paths, or 'target'")
    if text.lower() == "target":
        if target_spec is None or target_path is None:
            raise UsageError("--surrogate target needs a target ONNX model")
        model = convert_onnx_to_torch(target_path, target_spec).to(device)
        ident = {
            "kind": "target",
            "paths": [str(target_path)],
            "sha256": [model.meta["sha256"]],
            "arch": "onnx2torch",
            "label": "target (white-box, onnx2torch)",
            "agreement_max_prob_diff": model.meta["agreement_max_prob_diff"],
        }
        return Surrogate(model, tuple(target_spec.class_names), ident, "white-box")
    paths = [
        m
        for p in text.split(",")
        if p.strip()
        for m in (zoo_members(p.strip()) if Path(p.strip()).is_dir() else [p.strip()])
    ]
    members: list[TorchClassifier] = []
    names: tuple[str, ...] | None = tuple(target_spec.class_names) if target_spec is not None else None
    for p in paths:
        doc = read_checkpoint(p)
        doc_names = tuple(doc["spec"].class_names)
        if names is None:
            names = doc_names
        perm = class_permutation(doc_names, names, p)
        members.append(load_checkpoint(p, device, class_index=perm, doc=doc))
    module: nn.Module = members[0] if len(members) == 1 else Ensemble(members).eval().requires_grad_(False)
    arch = "+".join(m.meta["arch"] for m in members)
    label = ", ".join(f"{m.meta['arch']} ({Path(m.meta['path']).name})" for m in members)
    ident = {
        "kind": "checkpoint" if len(members) == 1 else "ensemble",
        "paths": [m.meta["path"] for m in members],
        "sha256": [m.meta["sha256"] for m in members],
        "arch": arch,
        "label": label if len(members) == 1 else f"ensemble of {label}",
    }
    assert names is not None
    return Surrogate(module, names, ident, "transfer")
