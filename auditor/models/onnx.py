"""ONNX Runtime adapters: the only module that imports ``onnxruntime``.

* :class:`OnnxClassifier` runs an image classifier under its :class:`ModelSpec`;
* :class:`OnnxImageModel` runs an image->image model (denoiser, CycleGAN
  generator) used as a preprocessor defense.

Security: model files are untrusted. External-data references must be relative
paths that stay inside the model's folder (no absolute paths, no ``..``, no
symlinks leaving the folder); the file size is bounded; a protobuf that does
not parse is a one-line :class:`ModelContractError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from auditor.errors import ModelContractError, NonFiniteOutput, RuntimeFailure
from auditor.hashing import sha256_file
from auditor.models.inputs import channels_to_grey, decode_output, decode_scores, encode_input, grey_to_channels
from auditor.models.onnx_file import load_onnx_proto, producer_text
from auditor.models.spec import read_spec
from auditor.models.spec_graph import check_input_size
from auditor.types import ModelSpec


def available_providers(device: str = "auto") -> list[str]:
    """Execution providers to ask for: CUDA first when available and allowed, CPU last."""
    import onnxruntime as ort

    have = ort.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in have:
        raise RuntimeFailure("CUDA requested (--device cuda) but ONNX Runtime has no CUDA provider here")
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in have:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _cuda_device_present() -> bool:
    # onnxruntime-gpu lists the CUDA provider even without a GPU; creating the
    # session then falls back with a noisy warning. Look for a device first.
    return any(Path("/dev").glob("nvidia[0-9]*")) or bool(os.environ.get("XRAY_AUDIT_ASSUME_CUDA"))


def make_session(path: str | Path, device: str = "auto", threads: int | None = None):
    """An ``InferenceSession`` on the best provider; records which one runs."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or max(1, min(os.cpu_count() or 1, 8))
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    providers = available_providers(device)
    if providers[0] == "CUDAExecutionProvider" and not _cuda_device_present():
        if device == "cuda":
            raise RuntimeFailure("CUDA requested (--device cuda) but no NVIDIA device is present")
        providers = ["CPUExecutionProvider"]
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelContractError(f"{path}: ONNX Runtime cannot load the model ({msg[:200]})") from None


class OnnxClassifier:
    """An ONNX image classifier driven through its :class:`ModelSpec`.

    ``predict_proba`` takes ``(N, 1, H, W)`` grey images in ``[0, 1]`` at the
    spec's size and returns ``(N, K)`` class probabilities.
    """

    def __init__(
        self,
        path: str | Path,
        spec: ModelSpec | None = None,
        device: str = "auto",
        threads: int | None = None,
        overrides: dict | None = None,
    ) -> None:
        self.path = str(path)
        proto = load_onnx_proto(path)
        self.spec = spec or read_spec(path, model=proto, overrides=overrides)
        self.sha256 = sha256_file(path)
        self.opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=None)
        self.producer = producer_text(proto)
        del proto
        self.session = make_session(path, device, threads)
        self.provider = self.session.get_providers()[0]

    def predict_raw(self, x: np.ndarray) -> np.ndarray:
        """Raw model outputs for one batch."""
        feed = {self.spec.input_name: encode_input(x, self.spec)}
        try:
            (out,) = self.session.run([self.spec.output_name], feed)
        except Exception as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelContractError(f"{self.path}: inference failed ({msg[:200]})") from None
        return out

    def predict_proba(
        self, x: np.ndarray, batch_size: int = 32, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        """Class probabilities, batched; ``progress(n)`` is called after each batch.

        Raises :class:`NonFiniteOutput` (exit 3) naming the number of images
        when any output is NaN or infinite: such a row has no class.
        """
        if not self.spec.dynamic_batch:
            batch_size = 1
        out = []
        bad: list[int] = []
        for i in range(0, len(x), batch_size):
            chunk = x[i : i + batch_size]
            raw = np.asarray(self.predict_raw(chunk))
            probs = decode_output(raw, self.spec)
            finite = np.isfinite(raw.reshape(len(raw), -1)).all(1) & np.isfinite(probs).all(1)
            bad.extend(i + int(j) for j in np.flatnonzero(~finite))
            out.append(probs)
            if progress:
                progress(len(chunk))
        if bad:
            raise NonFiniteOutput(
                f"{self.path}: the model returned NaN or infinite outputs for {len(bad)} of "
                f"{len(x)} image(s) (first: row {bad[0]})",
                rows=tuple(bad),
            )
        k = self.spec.num_classes
        return np.concatenate(out, axis=0) if out else np.zeros((0, k))

    def predict_scores(self, x: np.ndarray) -> np.ndarray:
        """Log-odds scores ``(N, K)`` of one batch (:func:`~auditor.models.inputs.decode_scores`), for query
        attacks; NaN or infinite outputs raise :class:`NonFiniteOutput` (exit 3)."""
        raw = np.asarray(self.predict_raw(np.asarray(x, dtype=np.float32)))
        scores = decode_scores(raw, self.spec)
        bad = np.flatnonzero(~np.isfinite(raw.reshape(len(raw), -1)).all(1))
        if bad.size:
            raise NonFiniteOutput(
                f"{self.path}: the model returned NaN or infinite outputs for {bad.size} of {len(x)} queried "
                f"image(s) (first: row {int(bad[0])})",
                rows=tuple(int(b) for b in bad),
            )
        return scores

    def identity(self) -> dict:
        """What the report records about the model."""
        return {
            "path": self.path,
            "sha256": self.sha256,
            "opset": self.opset,
            "producer": self.producer,
            "provider": self.provider,
            "spec": self.spec.to_dict(),
        }


class OnnxImageModel:
    """An ONNX image->image model (denoiser, CycleGAN generator) used before the classifier.

    Contract: one input and one output of the same shape ``(N, C, H, W)`` with
    C in {1, 3}, values in ``[0, 1]``. A 3-channel output is averaged to grey.
    """

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None) -> None:
        self.path = str(path)
        proto = load_onnx_proto(path)
        g = proto.graph
        inits = {i.name for i in g.initializer}
        ins = [i for i in g.input if i.name not in inits]
        if len(ins) != 1 or len(g.output) != 1:
            raise ModelContractError(f"{path}: an image->image model needs one input and one output")

        def dims(v):
            return [
                d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in v.type.tensor_type.shape.dim
            ]

        din, dout = dims(ins[0]), dims(g.output[0])
        if len(din) != 4 or len(dout) != 4:
            raise ModelContractError(f"{path}: image->image model needs rank-4 input and output, got {din} -> {dout}")
        if any(a is not None and b is not None and a != b for a, b in zip(din[1:], dout[1:])):
            raise ModelContractError(f"{path}: output shape {dout} differs from input shape {din}")
        check_input_size(din[2], din[3], f"{path}: input")
        self.channels = din[1] if din[1] in (1, 3) else 1
        self.input_name, self.output_name = ins[0].name, g.output[0].name
        self.sha256 = sha256_file(path)
        self.session = make_session(path, device, threads)

    def __call__(self, x: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Apply to an ``(N, 1, H, W)`` batch in ``[0, 1]``; returns the same shape."""
        outs = []
        for i in range(0, len(x), batch_size):
            chunk = np.asarray(x[i : i + batch_size], dtype=np.float32)
            feed = grey_to_channels(chunk, self.channels)
            (y,) = self.session.run([self.output_name], {self.input_name: feed})
            if y.shape[0] != chunk.shape[0] or y.shape[2:] != chunk.shape[2:]:
                raise ModelContractError(f"{self.path}: output shape {y.shape} differs from input shape {feed.shape}")
            outs.append(np.clip(channels_to_grey(y), 0.0, 1.0).astype(np.float32))
        return np.concatenate(outs, axis=0) if outs else np.zeros_like(x)
