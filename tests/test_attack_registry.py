"""The attack registry is the one place that names attacks (issue 27): adding an attack touches one module
plus its registry entry, and every consumer reads the registry."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from auditor.attacks import registry
from auditor.errors import UsageError

ROOT = Path(__file__).resolve().parents[1] / "auditor"


def _docstring_nodes(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (module, class, function)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def _attack_literals(path: Path, names: list[str]) -> list[str]:
    """``file:line: text`` for every non-docstring string constant of ``path`` that names an attack."""
    pattern = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, names)) + r")(?![\w-])")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = _docstring_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if pattern.search(node.value):
                found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}: {node.value[:60]!r}")
    return found


def test_no_module_but_the_registry_and_the_attacks_own_names_an_attack():
    """A string literal naming a registered attack lives only in the registry's table or that attack's module."""
    names = registry.list_attacks()
    own = {Path(*spec.module.split(".")).with_suffix(".py"): spec.name for spec in registry.ATTACKS.values()}
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent)
        if rel == Path("auditor/attack_specs.py"):  # the registry's table
            continue
        allowed = [own[rel]] if rel in own else []
        others = [n for n in names if n not in allowed]
        offenders += _attack_literals(path, others)
    assert offenders == [], "attack names outside the registry:\n" + "\n".join(offenders)


def test_the_scanner_finds_a_literal_and_ignores_docstrings(tmp_path):
    """The check above can fail: a literal is found, a docstring and a longer word are not."""
    f = tmp_path / "m.py"
    f.write_text('"""Mentions usmm in prose."""\nX = ("usmm", "stmx", "a mifgsm b")\n', encoding="utf-8")
    global ROOT
    old, ROOT = ROOT, tmp_path / "pkg"
    try:
        found = _attack_literals(f, ["usmm", "stm", "mifgsm"])
    finally:
        ROOT = old
    assert [x.split(": ", 1)[1] for x in found] == ["'usmm'", "'a mifgsm b'"]


def test_every_spec_is_complete_and_its_class_matches():
    """Each entry names a known kind, and each model-using attack's class carries the registered name."""
    for name, spec in registry.ATTACKS.items():
        assert spec.name == name and spec.kind in registry.KINDS and spec.summary
        assert spec.cost({}) >= 0
        if spec.kind == "visible":
            assert callable(spec.load())
            continue
        cls = spec.load()
        assert cls.name == name, f"{spec.module}.{spec.cls}.name is {cls.name!r}, registered as {name!r}"
        assert spec.steps_param in cls.accepted_params() and "epsilon" in cls.accepted_params()


def test_scan_options_and_cli_read_the_registry():
    """The scan's attack tuples and the CLI's help come from the registry, so a new entry reaches them."""
    from auditor.cli.scan_flags import _parse_attacks
    from auditor.scan.options import GRADIENT_ATTACKS, KNOWN_ATTACKS, QUERY_ATTACKS, VISIBLE_ATTACKS

    assert KNOWN_ATTACKS == tuple(registry.ATTACKS)
    assert set(GRADIENT_ATTACKS) | set(QUERY_ATTACKS) | set(VISIBLE_ATTACKS) == set(KNOWN_ATTACKS)
    assert _parse_attacks(None, "s.pt") == registry.default_attacks()
    for name in QUERY_ATTACKS + VISIBLE_ATTACKS:  # need no surrogate
        assert _parse_attacks(name, None) == (name,)
    for name in GRADIENT_ATTACKS:
        with pytest.raises(UsageError, match="surrogate"):
            _parse_attacks(name, None)
    for name in KNOWN_ATTACKS:
        assert name in registry.help_text()


def test_cost_reads_the_steps_parameter():
    """The stage clock's cost model scales with the iterations an attack is given."""
    spec = registry.get_spec("mifgsm")
    assert spec.cost({"steps": 20}) == 2 * spec.cost({})


def test_unknown_attack_is_a_usage_error():
    with pytest.raises(UsageError, match="known attacks"):
        registry.get_spec("nope")
