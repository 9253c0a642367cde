"""Write a copy of an ONNX classifier that ONNX Runtime runs unchanged but onnx2torch cannot convert.

Usage::

    python bench/make_unconvertible.py model.onnx --out model_custom.onnx

The copy routes the graph input through one ``Shrink`` node with ``lambd = 0`` and ``bias = 0``, which is the
identity (ONNX operator spec: ``y = x - bias`` for ``x > lambd``, ``x + bias`` for ``x < -lambd``, else 0), and
for which onnx2torch has no converter. It stands in for the real exports a white-box audit cannot use (custom
operators, many TF/Keras graphs): its predictions equal the original's, so the query bound of the copy is
directly comparable with the original's white-box bound (issue 23, "one non-convertible model"). The script
checks both claims before it writes: same outputs on random inputs under ONNX Runtime, and a failing
conversion.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper


def add_identity_shrink(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose first input feeds an identity ``Shrink`` node before any other node."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    source = graph.input[0].name
    routed = f"{source}__through_shrink"
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == source:
                node.input[i] = routed
    graph.node.insert(0, helper.make_node("Shrink", [source], [routed], lambd=0.0, bias=0.0, name="identity_shrink"))
    onnx.checker.check_model(out)
    return out


def _random_batch(session: ort.InferenceSession, n: int = 4) -> np.ndarray:
    inp = session.get_inputs()[0]
    shape = [n if not isinstance(d, int) else d for d in inp.shape]
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    """Write the copy, after checking it predicts as the original and that onnx2torch refuses it."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    copy = add_identity_shrink(onnx.load(str(args.model)))
    original = ort.InferenceSession(str(args.model), providers=["CPUExecutionProvider"])
    changed = ort.InferenceSession(copy.SerializeToString(), providers=["CPUExecutionProvider"])
    x = _random_batch(original)
    name_a, name_b = original.get_inputs()[0].name, changed.get_inputs()[0].name
    if not np.array_equal(original.run(None, {name_a: x})[0], changed.run(None, {name_b: x})[0]):
        print("error: the copy's outputs differ from the original's", file=sys.stderr)
        return 1
    try:
        from onnx2torch import convert

        convert(copy)
    except Exception as exc:  # noqa: BLE001 - any refusal is what we want to confirm
        print(f"onnx2torch refuses the copy, as intended: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
    else:
        print("error: onnx2torch converted the copy; it would not stand for an unconvertible model", file=sys.stderr)
        return 1
    onnx.save(copy, str(args.out))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
