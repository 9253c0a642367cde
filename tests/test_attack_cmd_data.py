"""``xray-audit attack`` opens CSV manifests as ``scan`` does: ``--images-dir`` and ``--allow-outside-root``."""

from __future__ import annotations

import json

from click.testing import CliRunner

from auditor.cli import cli


def _attack(setup, manifest, out, *extra):
    args = ["attack", "--surrogate", setup.surrogate, "--data", manifest, "--out", out]
    args += ["--attacks", "mifgsm", "--eps", "8", "-q", "--no-progress", *extra]
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_attack_takes_images_outside_the_manifest_root_only_with_the_flag(scan_setup):
    import cv2

    setup = scan_setup("attack-outside", n_per_class=2)
    outside = sorted(setup.data.glob("*/*.png"))
    lists = setup.root / "lists"
    (lists / "normal").mkdir(parents=True)
    own = lists / "normal" / "own.png"
    cv2.imwrite(str(own), 255 - cv2.imread(str(outside[0]), cv2.IMREAD_GRAYSCALE))  # not a duplicate of any other
    manifest = lists / "list.csv"
    manifest.write_text("path,label\nnormal/own.png,normal\n" + "".join(f"{p},{p.parent.name}\n" for p in outside))

    refused = _attack(setup, manifest, setup.root / "sets-refused")
    assert refused.exit_code == 0, refused.output
    doc = json.loads((setup.root / "sets-refused" / "attack_summary.json").read_text())
    assert [s["n_images"] for s in doc["sets"]] == [1]
    assert len(doc["skipped"]) == len(outside)
    assert all("outside the data root" in s["reason"] and "--allow-outside-root" in s["reason"] for s in doc["skipped"])

    allowed = _attack(setup, manifest, setup.root / "sets-allowed", "--allow-outside-root")
    assert allowed.exit_code == 0, allowed.output
    doc = json.loads((setup.root / "sets-allowed" / "attack_summary.json").read_text())
    assert [s["n_images"] for s in doc["sets"]] == [1 + len(outside)]
    assert doc["skipped"] == []


def test_attack_resolves_manifest_paths_against_images_dir(scan_setup):
    setup = scan_setup("attack-images-dir", n_per_class=2)
    inside = sorted(setup.data.glob("*/*.png"))
    manifest = setup.root / "rel.csv"
    manifest.write_text("path,label\n" + "".join(f"{p.relative_to(setup.data)},{p.parent.name}\n" for p in inside))
    result = _attack(setup, manifest, setup.root / "sets", "--images-dir", setup.data)
    assert result.exit_code == 0, result.output
    doc = json.loads((setup.root / "sets" / "attack_summary.json").read_text())
    assert [s["n_images"] for s in doc["sets"]] == [len(inside)]
