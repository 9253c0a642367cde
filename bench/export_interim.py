"""Export the best-so-far weights of an unfinished ``xray-audit train`` run (for dry runs only).

Usage::

    python bench/export_interim.py /work/runs/k_resnet50_128 --data /work/runs/kermany_split/test.csv \\
        --out /work/runs/k_resnet50_128_interim

Reads ``RUN/state.pt`` (written atomically after every epoch) and writes, into
``--out`` (never into the run folder, so the training can continue),
``model.pt`` and ``model.onnx`` of the best validation-loss weights so far
(else the last epoch's), with ``xray_audit.interim`` set in the ONNX metadata
and the checkpoint's ``extra``. An audit of such a model measures a model that
is *not* the final one: label any figure made with it as interim. No model
card is written (no test metrics). Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Export; returns the exit code."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--data", required=True, help="images for the ONNX agreement check (folder or CSV)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    import torch

    from auditor.reference_models.registry import build_model, make_checkpoint
    from auditor.training.common import atomic_torch_save, load_training_data
    from auditor.training.export import export_classifier
    from auditor.training.recipe_config import classifier_spec

    run = Path(args.run)
    out = Path(args.out)
    if out.resolve() == run.resolve():
        raise SystemExit("--out must differ from the run folder")
    identity = json.loads((run / "run.json").read_text(encoding="utf-8"))["identity"]
    if identity.get("pretrained"):
        raise SystemExit("ImageNet-initialised runs use imagenet scaling; not handled here")
    state = torch.load(run / "state.pt", map_location="cpu", weights_only=True)
    weights = state.get("best_model") or state["model"]
    which = f"best epoch {state.get('best_epoch')}" if state.get("best_model") else f"last epoch {state['epoch']}"
    names, size, arch = tuple(identity["classes"]), int(identity["image_size"]), identity["arch"]
    net = build_model(arch, len(names), 1)
    net.load_state_dict(weights)
    net.eval()
    spec = classifier_spec(names, size, "unit")
    note = f"INTERIM weights of an unfinished run ({which} of {state['epoch']} finished epochs); not the final model"
    out.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(
        make_checkpoint(
            net,
            arch,
            len(names),
            1,
            spec.to_dict(),
            extra={"recipe": identity["recipe"], "class_names": list(names), "interim": note},
        ),
        out / "model.pt",
    )
    data = load_training_data(args.data, size, names, quiet=True, progress=False)
    info = export_classifier(
        net,
        spec,
        out / "model.onnx",
        data.images[:8],
        recipe={"name": identity["recipe"], "arch": arch, "interim": note},
        manifest_sha256=identity["data_manifest_sha256"],
        extra_metadata={"xray_audit.interim": note, "xray_audit.synthetic": "false"},
    )
    (out / "INTERIM.txt").write_text(note + "\n", encoding="utf-8")
    print(
        f"{note}\nonnx: {info['path']} (max |torch - onnx| {info['max_abs_diff']:.2e})\ncheckpoint: {out / 'model.pt'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
