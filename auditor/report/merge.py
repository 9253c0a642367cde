"""``xray-audit report --merge``: several scans of one model on one data set as one result.

A transfer audit from a surrogate zoo and a white-box scan of the target are separate scans; the
merged result holds every condition of both, so the worst case and the transfer verdict span all
threat models. Merging is refused (:class:`~auditor.errors.ResultsError`, exit 3) unless the scans
are of the same model (SHA-256), the same input contract, the same data (manifest SHA-256) and the
same image rows, and unless a condition name found in two scans has the same numbers in both (the
clean condition is in every scan; with the same ``--seed`` and ``--n-boot`` it is identical).

What the merged result keeps: the first scan's identity, parameters and environment; the union of
conditions (in order of first appearance), skipped items, data caveats, adversarial-set records and
notes; the first detector block and examples found. Gates are dropped (they judged one part; give
``--fail-under`` to judge the whole). ``extras.merged_from`` lists each scan (file, command, dates,
parameters) and ``extras.transfer`` is recomputed over the merged conditions.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, Sequence

from auditor.errors import ResultsError
from auditor.transfer import transfer_summary
from auditor.types import SCHEMA_VERSION, AuditResult, Condition

#: ModelSpec keys that do not change what the model was fed (where a value came from, what was said)
_SPEC_NOTES = ("sources", "warnings")


def _contract(result: AuditResult) -> dict[str, Any]:
    spec = result.model.get("spec") or {}
    return {k: v for k, v in spec.items() if k not in _SPEC_NOTES}


def _sample_key(result: AuditResult) -> list[tuple]:
    return [(s.get("path"), s.get("sha256"), s.get("label_index")) for s in result.samples]


def check_mergeable(results: Sequence[AuditResult], names: Sequence[str]) -> None:
    """Raise :class:`ResultsError` unless every result scanned the same model, contract and data rows."""
    if len(results) < 2:
        raise ResultsError("--merge needs at least two results.json files")
    first, first_name = results[0], names[0]
    for res, name in zip(results[1:], names[1:]):
        for what, a, b in (
            ("model SHA-256", first.model.get("sha256"), res.model.get("sha256")),
            ("data manifest SHA-256", first.data.get("manifest_sha256"), res.data.get("manifest_sha256")),
        ):
            if not a or not b:
                raise ResultsError(f"cannot merge {name}: it or {first_name} records no {what}")
            if a != b:
                raise ResultsError(f"cannot merge {name} into {first_name}: different {what} ({b[:12]} vs {a[:12]})")
        if _contract(res) != _contract(first):
            diff = sorted(
                k
                for k in set(_contract(res)) | set(_contract(first))
                if _contract(res).get(k) != _contract(first).get(k)
            )
            raise ResultsError(
                f"cannot merge {name} into {first_name}: the model was fed differently ({', '.join(diff)} differ)"
            )
        if first.samples and res.samples and _sample_key(first) != _sample_key(res):
            raise ResultsError(f"cannot merge {name} into {first_name}: the scored images differ (rows or order)")
        if first.compared or res.compared:
            raise ResultsError(f"cannot merge {name}: scans with --compare models are not merged")


def _numbers(c: Condition) -> str:
    """What must agree between two conditions of the same name: metrics, predictions, probabilities."""
    doc = {
        "metrics": c.metrics,
        "predictions": list(c.predictions),
        "probabilities": [list(p) for p in c.probabilities],
    }
    return json.dumps(doc, sort_keys=True, default=str)


def _merged_conditions(results: Sequence[AuditResult], names: Sequence[str]) -> tuple[Condition, ...]:
    """The union of the conditions by name; the same name with other numbers is refused."""
    out: dict[str, tuple[Condition, str]] = {}
    for res, name in zip(results, names):
        for c in res.conditions:
            seen = out.get(c.name)
            if seen is None:
                out[c.name] = (c, name)
            elif _numbers(seen[0]) != _numbers(c):
                raise ResultsError(
                    f"cannot merge: condition {c.name!r} has different numbers in {seen[1]} and {name} "
                    "(rescan with the same --seed and --n-boot, or rename)"
                )
    return tuple(c for c, _ in out.values())


def _unique(items: list) -> list:
    """``items`` without repeats (compared as JSON), first occurrence kept."""
    seen, out = set(), []
    for item in items:
        key = json.dumps(item, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def merge_results(results: Sequence[AuditResult], names: Sequence[str], command: str = "") -> AuditResult:
    """One :class:`AuditResult` from scans of the same model and data (see the module docstring)."""
    check_mergeable(results, names)
    first = results[0]
    conditions = _merged_conditions(results, names)
    data = dict(first.data)
    data["caveats"] = _unique([c for r in results for c in r.data.get("caveats") or []])
    data["skipped"] = _unique([s for r in results for s in r.data.get("skipped") or []])
    skipped = {(s.name, s.reason, s.kind): s for r in results for s in r.skipped}
    extras: dict[str, Any] = {}
    for r in reversed(results):  # the first scan's value wins
        extras.update({k: v for k, v in r.extras.items() if k not in ("notes", "adversarial_sets")})
    extras["adversarial_sets"] = _unique([m for r in results for m in r.extras.get("adversarial_sets") or []])
    differ = sorted(
        k
        for k in {k for r in results for k in r.parameters}
        if len({json.dumps(r.parameters.get(k), default=str) for r in results}) > 1
    )
    notes = [n for r in results for n in r.extras.get("notes") or []]
    notes.append(
        f"merged from {len(results)} scans ({', '.join(names)})"
        + (f"; their parameters differ in {', '.join(differ)} (the first scan's are shown)" if differ else "")
        + ("; gates of the scans were dropped" if any(r.gates for r in results) else "")
    )
    extras["notes"] = _unique(notes)
    extras["merged_from"] = [
        {
            "results": name,
            "command": r.command,
            "created": r.created,
            "finished": r.finished,
            "parameters": r.parameters,
        }
        for r, name in zip(results, names)
    ]
    extras["transfer"] = transfer_summary(conditions)
    detector = next((r.detector for r in results if r.detector), None)
    samples = next((r.samples for r in results if len(r.samples)), first.samples)
    return replace(
        first,
        schema_version=SCHEMA_VERSION,
        created=min(r.created for r in results),
        finished=max(r.finished or "" for r in results),
        command=command,
        data=data,
        conditions=conditions,
        samples=samples,
        skipped=tuple(skipped.values()),
        detector=detector,
        gates=(),
        extras=extras,
    )
