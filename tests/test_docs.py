"""Documentation references resolve: every ``docs/<name>.md §N`` cited in the code exists in the repo.

Rules (see docs/architecture.md §1):

* a ``docs/<name>.md`` reference in a ``.py`` file, ``README.md`` or ``docs/*.md`` names a file
  that exists, and each section anchor after it (``§4.3``, ``§7.6, §7.7``, ``section 5``) is the
  number of a heading of that file;
* a document is never cited by its bare name (``algorithms.md §6``): the path must be spelled
  ``docs/algorithms.md`` so it can be checked;
* a ``§`` in code belongs to such a reference, and a bare ``§N`` in a document is one of its own sections;
* files quoted in the docs (``auditor/attacks/usmm.py``, ``attacks/sets.py``) exist;
* README.md links to docs/.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: names of design documents the code has cited without their folder (the project's research notes)
DOC_STEMS = {"algorithms", "architecture", "perf", "style", "ecosystem"}
SKIP_DIRS = {".git", "build", "dist", "node_modules", "__pycache__", "demo-out", ".venv", "venv"}

_NUM = r"\d+(?:\.\d+)*"
_ANCHOR = rf"(?:§\s*|sections?\s+)({_NUM})"
REF = re.compile(rf"docs/([\w.-]+\.md)`?((?:(?:\s*,\s*|\s+and\s+|\s+)(?:§\s*|sections?\s+){_NUM})*)")
BARE = re.compile(r"(?<![\w/.-])([\w-]+)\.md\b")
HEADING = re.compile(rf"^#{{1,6}}\s+({_NUM})\.?\s", re.MULTILINE)
#: a file quoted in the docs: `auditor/attacks/usmm.py`, `attacks/sets.py`, `feature.py:FeatureConsistencyDefense`
REPO_PATH = re.compile(r"`([\w/-]*[\w-]+\.(?:py|j2|md|toml|sh))(?::[\w.]+)?`")


def _python_files() -> list[Path]:
    own = Path(__file__).resolve()  # this file holds deliberately broken examples
    return sorted(
        p
        for p in ROOT.rglob("*.py")
        if p.resolve() != own
        and not any(part in SKIP_DIRS or part.endswith(".egg-info") for part in p.relative_to(ROOT).parts)
    )


def _doc_files() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def _sections(doc: Path) -> set[str]:
    return set(HEADING.findall(doc.read_text(encoding="utf-8")))


def _rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


def reference_problems(text: str, label: str, python: bool, own_sections: set[str] | None = None) -> list[str]:
    """Unresolvable documentation references in ``text`` (file ``label``), as ``label:line: message``.

    ``own_sections`` (a document checking itself): a bare ``§N`` must be one of them.
    """
    problems: list[str] = []
    covered: list[tuple[int, int]] = []

    def where(pos: int) -> str:
        return f"{label}:{text.count(chr(10), 0, pos) + 1}"

    for m in REF.finditer(text):
        covered.append(m.span())
        doc = DOCS / m.group(1)
        if not doc.is_file():
            problems.append(f"{where(m.start())}: docs/{m.group(1)} does not exist")
            continue
        known = _sections(doc)
        for anchor in re.findall(_ANCHOR, m.group(2)):
            if anchor not in known:
                problems.append(f"{where(m.start())}: docs/{m.group(1)} has no section {anchor}")
    for m in BARE.finditer(text):
        if m.group(1) in DOC_STEMS or (DOCS / f"{m.group(1)}.md").is_file():
            problems.append(f"{where(m.start())}: cite {m.group(0)} as docs/{m.group(0)}")
    for m in re.finditer(rf"§\s*({_NUM})?", text):
        if any(a <= m.start() < b for a, b in covered):
            continue
        if python:
            problems.append(f"{where(m.start())}: '§' outside a docs/<name>.md reference")
        elif own_sections is not None and m.group(1) and m.group(1) not in own_sections:
            problems.append(f"{where(m.start())}: this document has no section {m.group(1)}")
    return problems


def test_repository_has_its_docs():
    names = {p.name for p in _doc_files()}
    assert {"algorithms.md", "architecture.md"} <= names
    for doc in _doc_files():
        assert _sections(doc), f"{_rel(doc)} has no numbered sections to cite"


@pytest.mark.parametrize("group", ["python", "markdown"])
def test_every_documentation_reference_resolves(group):
    files = _python_files() if group == "python" else [ROOT / "README.md", *_doc_files()]
    assert files, f"no {group} files found under {ROOT}"
    problems = [
        msg
        for f in files
        for msg in reference_problems(
            f.read_text(encoding="utf-8", errors="replace"),
            _rel(f),
            f.suffix == ".py",
            _sections(f) if f.parent == DOCS else None,
        )
    ]
    assert problems == []


def test_code_cites_the_docs():
    """The code's references are what ties it to the docs; they must not silently disappear."""
    cited = [f for f in _python_files() if REF.search(f.read_text(encoding="utf-8", errors="replace"))]
    assert len(cited) >= 10, [_rel(f) for f in cited]


def _resolves(quoted: str, files: list[str]) -> bool:
    """A quoted path names a repository file exactly or by its trailing parts (``attacks/sets.py``)."""
    return any(f == quoted or f.endswith("/" + quoted) for f in files)


def test_paths_quoted_in_the_docs_exist():
    files = [
        _rel(p)
        for p in ROOT.rglob("*")
        if p.is_file()
        and not any(part in SKIP_DIRS or part.endswith(".egg-info") for part in p.relative_to(ROOT).parts)
    ]
    missing = [
        f"{_rel(doc)}: {m.group(1)}"
        for doc in _doc_files()
        for m in REPO_PATH.finditer(doc.read_text(encoding="utf-8"))
        if not _resolves(m.group(1), files)
    ]
    assert missing == []


def test_a_document_checks_its_own_section_references():
    text = "## 1. One\n\n## 2. Two\n\nsee §2 and §3; docs/algorithms.md §5.3 is elsewhere\n"
    problems = reference_problems(text, "doc.md", python=False, own_sections={"1", "2"})
    assert len(problems) == 1 and "no section 3" in problems[0]


@pytest.mark.parametrize(
    "quoted, ok",
    [
        ("auditor/attacks/usmm.py", True),
        ("attacks/usmm.py", True),
        ("usmm.py", True),
        ("attacks/nowhere.py", False),
        ("sm.py", False),
    ],
)
def test_quoted_path_resolution(quoted, ok):
    assert _resolves(quoted, ["auditor/attacks/usmm.py", "auditor/attacks/stm.py"]) is ok


def test_readme_links_to_the_docs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = set(re.findall(r"\]\((docs/[^)#\s]+)", readme))
    assert {"docs/algorithms.md", "docs/architecture.md"} <= links
    assert [link for link in links if not (ROOT / link).exists()] == []


@pytest.mark.parametrize(
    "snippet, expected",
    [
        ("see docs/algorithms.md §5.3 for it", []),
        ("docs/algorithms.md §7.6, §7.7 and section 9", []),
        ("docs/algorithms.md §99", ["has no section 99"]),
        ("docs/algorithms.md §7.6 and §42.1", ["has no section 42.1"]),
        ("`docs/architecture.md` §77", ["has no section 77"]),
        ("docs/nowhere.md", ["does not exist"]),
        ("per algorithms.md section 6.4", ["cite algorithms.md as docs/algorithms.md"]),
        ("(perf.md caution)", ["cite perf.md as docs/perf.md"]),
        ("a lone § 3 anchor", ["outside a docs/<name>.md reference"]),
        ("writes README.md and model_card.md", []),
    ],
)
def test_reference_checker_catches_broken_references(snippet, expected):
    problems = reference_problems(f'"""{snippet}"""\n', "probe.py", python=True)
    assert len(problems) == len(expected), problems
    for msg, part in zip(problems, expected):
        assert part in msg
