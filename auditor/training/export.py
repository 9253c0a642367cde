"""ONNX export with the model contract inside, checked against torch before it is kept.

Classifiers get ``metadata_props``:

* ``xray_audit.spec`` -- JSON ``{layout, channels, height, width, scaling,
  mean, std, output_kind, class_names}`` read by :func:`auditor.models.spec.read_spec`;
* ``xray_audit.recipe`` -- JSON of the recipe name and hyper-parameters;
* ``xray_audit.data_manifest_sha256`` -- the training data fingerprint;
* ``xray_audit.metrics`` -- JSON of the clean test metrics;
* ``xray_audit.kind`` -- ``classifier`` or ``image_model``.

The exported network takes exactly the tensor its spec describes (no hidden
normalisation): a model trained on ``[0, 1]`` grey images declares scaling
``unit``; one trained under ImageNet normalisation declares ``imagenet``.

Image->image models (denoiser, CycleGAN generator) take ``image`` ``(N, 1, H, W)``
in ``[0, 1]`` and return ``restored`` of the same shape in ``[0, 1]``; their
contract is ``xray_audit.image_spec``.

Every export goes to a temporary file, is run with ONNX Runtime (through
:mod:`auditor.models.onnx`, the only module that imports it) on sample images,
and is renamed to the final name only when ``max |onnx - torch| <= 1e-4``;
otherwise the temporary file is removed and :class:`RuntimeFailure` is raised.
The legacy TorchScript exporter (``dynamo=False``) is used: it runs offline
without ``onnxscript``.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from auditor.atomic import atomic_path
from auditor.errors import RuntimeFailure
from auditor.models.inputs import encode_input
from auditor.types import ModelSpec

OPSET = 17
TOLERANCE = 1e-4
SPEC_KEY = "xray_audit.spec"
IMAGE_SPEC_KEY = "xray_audit.image_spec"


def _export_graph(
    module: nn.Module,
    example: torch.Tensor,
    path: Path,
    input_name: str,
    output_name: str,
    image_output: bool = False,
    dynamic_size: bool = False,
) -> None:
    """``torch.onnx.export`` (legacy exporter, opset 17, dynamic batch axis; dynamic H/W on request)."""
    in_axes = {0: "N", 2: "H", 3: "W"} if dynamic_size else {0: "N"}
    out_axes = in_axes if image_output else {0: "N"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: in_axes, output_name: out_axes},
            do_constant_folding=True,
        )


def _attach_metadata(path: Path, props: dict[str, str], doc: str) -> None:
    import onnx

    model = onnx.load(str(path))
    keep = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for k, v in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    model.doc_string = doc
    model.producer_name = "xray-audit"
    onnx.save(model, str(path))


def _run_onnx(path: Path, input_name: str, x: np.ndarray) -> np.ndarray:
    from auditor.models.onnx import make_session

    sess = make_session(path, device="cpu", threads=1)
    return sess.run(None, {input_name: x})[0]


def _verify(module: nn.Module, path: Path, input_name: str, batches: list[np.ndarray], final: Path) -> float:
    worst = 0.0
    for xb in batches:
        with torch.no_grad():
            ref = module(torch.from_numpy(xb)).numpy()
        got = _run_onnx(path, input_name, xb)
        if got.shape != ref.shape:
            path.unlink(missing_ok=True)
            raise RuntimeFailure(
                f"export check failed for {final.name}: ONNX output shape {got.shape} != torch {ref.shape}"
            )
        worst = max(worst, float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64)))))
    if not np.isfinite(worst) or worst > TOLERANCE:
        path.unlink(missing_ok=True)
        raise RuntimeFailure(f"export check failed for {final.name}: max |onnx - torch| = {worst:.3g} > {TOLERANCE:g}")
    return worst


def spec_metadata(spec: ModelSpec) -> dict[str, Any]:
    """The ``xray_audit.spec`` JSON object of a classifier spec."""
    return {
        "layout": spec.layout,
        "channels": spec.channels,
        "height": spec.height,
        "width": spec.width,
        "scaling": spec.scaling,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "output_kind": spec.output_kind,
        "class_names": list(spec.class_names),
    }


def export_classifier(
    model: nn.Module,
    spec: ModelSpec,
    out_path: str | Path,
    sample_images: np.ndarray,
    *,
    recipe: dict[str, Any] | None = None,
    manifest_sha256: str = "",
    metrics: dict[str, Any] | None = None,
    extra_metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Export a classifier to ONNX with its contract in ``metadata_props`` and verify it.

    ``model`` maps the spec's input tensor (``encode_input(x, spec)``) to
    logits. ``sample_images`` are ``(N, 1, H, W)`` grey images in ``[0, 1]`` at
    the spec's size (at least 1; a few different ones are best). Returns
    ``{"path", "max_abs_diff", "opset"}``.
    """
    final = Path(out_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    module = copy.deepcopy(model).to("cpu").eval()
    x = np.asarray(sample_images, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != 1 or x.shape[2:] != (spec.height, spec.width) or len(x) == 0:
        raise ValueError(f"sample_images must be (N, 1, {spec.height}, {spec.width}), got {x.shape}")
    enc = encode_input(x, spec)
    example = torch.from_numpy(enc[: min(2, len(enc))])
    with atomic_path(final, ".onnx") as tmp:
        _export_graph(module, example, tmp, spec.input_name, spec.output_name)
        props = {
            SPEC_KEY: json.dumps(spec_metadata(spec)),
            "xray_audit.kind": "classifier",
            "xray_audit.recipe": json.dumps(recipe or {}, default=str),
            "xray_audit.data_manifest_sha256": manifest_sha256,
            "xray_audit.metrics": json.dumps(metrics or {}, default=str),
        }
        props.update(extra_metadata or {})
        _attach_metadata(
            tmp,
            props,
            f"xray-audit classifier ({(recipe or {}).get('name', 'recipe')}); classes {', '.join(spec.class_names)}",
        )
        batches = [enc[:1], enc[: min(len(enc), 8)]]
        worst = _verify(module, tmp, spec.input_name, batches, final)
    return {"path": str(final), "max_abs_diff": worst, "opset": OPSET}


def export_image_model(
    model: nn.Module,
    out_path: str | Path,
    sample_images: np.ndarray,
    *,
    recipe: dict[str, Any] | None = None,
    manifest_sha256: str = "",
    metrics: dict[str, Any] | None = None,
    dynamic_size: bool = True,
    extra_metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Export an image->image model (``image`` (N,1,H,W) in [0,1] -> ``restored``, same shape) and verify it.

    With ``dynamic_size`` the height/width axes are dynamic and the check also
    runs at a second size. Returns ``{"path", "max_abs_diff", "opset"}``.
    """
    final = Path(out_path)
    final.parent.mkdir(parents=True, exist_ok=True)
    module = copy.deepcopy(model).to("cpu").eval()
    x = np.asarray(sample_images, dtype=np.float32)
    if x.ndim != 4 or x.shape[1] != 1 or len(x) == 0:
        raise ValueError(f"sample_images must be (N, 1, H, W), got {x.shape}")
    h, w = x.shape[2:]
    with atomic_path(final, ".onnx") as tmp:
        _export_graph(
            module,
            torch.from_numpy(x[: min(2, len(x))]),
            tmp,
            "image",
            "restored",
            image_output=True,
            dynamic_size=dynamic_size,
        )
        meta = {
            "layout": "NCHW",
            "channels": 1,
            "height": int(h),
            "width": int(w),
            "scaling": "unit",
            "output": "image",
            "dynamic_size": bool(dynamic_size),
        }
        props = {
            IMAGE_SPEC_KEY: json.dumps(meta),
            "xray_audit.kind": "image_model",
            "xray_audit.recipe": json.dumps(recipe or {}, default=str),
            "xray_audit.data_manifest_sha256": manifest_sha256,
            "xray_audit.metrics": json.dumps(metrics or {}, default=str),
        }
        props.update(extra_metadata or {})
        _attach_metadata(tmp, props, f"xray-audit image->image model ({(recipe or {}).get('name', 'recipe')})")
        batches = [x[:1], x[: min(len(x), 4)]]
        if dynamic_size:
            import torch.nn.functional as F

            h2, w2 = h + 16, w + 16
            batches.append(
                F.interpolate(torch.from_numpy(x[:2]), size=(h2, w2), mode="bilinear", align_corners=False)
                .clamp(0, 1)
                .numpy()
            )
        worst = _verify(module, tmp, "image", batches, final)
    return {"path": str(final), "max_abs_diff": worst, "opset": OPSET}
