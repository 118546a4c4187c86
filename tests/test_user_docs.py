"""The figures and pages a user reads agree: what the README quotes is in the docs it
cites, the performance page reads as documentation (no development log), and every
page the README names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text()


def _section(text: str, title: str) -> str:
    """The README section under ``## title``, up to the next ``## ``."""
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def _normal(text: str) -> str:
    """Figures written either way match: ``1.36x`` with a multiplication sign or an x,
    ``42,761``, ``42 850`` and ``42850``, ``us`` with a micro sign or a u."""
    text = text.replace("\u00d7", "x").replace("\u00b5", "u").replace("\u2013", "-")
    return re.sub(r"(?<=\d)[, \u2009](?=\d{3}\b)", "", text)


def _figures(text: str) -> set[str]:
    """Every number in ``text`` that has a decimal point or a unit-like suffix."""
    return set(re.findall(r"\d+(?:\.\d+)?x|\d+\.\d+|\d{4,}", _normal(text)))


def test_readme_numbers_are_in_the_docs_they_cite() -> None:
    numbers = _section(README, "Numbers")
    cited = {name for name in re.findall(r"docs/([a-z-]+)\.rst", numbers)}
    assert {"performance", "sendfile", "files"} <= cited, cited
    docs = _normal(" ".join((DOCS / f"{name}.rst").read_text() for name in cited))
    missing = sorted(figure for figure in _figures(numbers) if figure not in docs)
    assert not missing, f"README figures not in docs/{{{','.join(sorted(cited))}}}.rst: {missing}"


def test_send_file_figures_agree_between_readme_performance_and_sendfile() -> None:
    sendfile = _normal((DOCS / "sendfile.rst").read_text())
    performance = _normal((DOCS / "performance.rst").read_text())
    quoted = re.search(r"`send_file`: ([\d.]+) GB/s, ([\d.]+x)", _normal(README))
    assert quoted, "the README no longer quotes send_file's figures"
    for figure in quoted.groups():
        assert figure in sendfile and figure in performance, figure


def test_trio_suite_result_agrees() -> None:
    proof = _section(README, 'Proof of "exactly like trio"')
    result = re.search(r"On\s+(\d{4}-\d\d-\d\d)[^*]*\*\*(\d+ passed[^*]*)\*\*", proof)
    assert result, proof
    page = " ".join((DOCS / "trio-suite.rst").read_text().split())
    assert result[1] in page and result[2] in page, result.groups()


def test_quick_bench_duration_agrees() -> None:
    performance = (DOCS / "performance.rst").read_text()
    (duration,) = re.findall(
        r"bench --quick`` \(part of ``make run``; (about [\w ]+)\)", performance
    )
    assert f"in {duration}" in " ".join(README.split()), duration
    assert "25 seconds" not in README + performance and "one-to-two" not in README


def test_performance_page_reads_as_documentation() -> None:
    """The development log (issues, commits, sessions) lives in performance-history.rst."""
    text = (DOCS / "performance.rst").read_text()
    assert not re.search(r"\bissue \d+|\bsession\b", text, re.IGNORECASE)
    assert not re.search(r"``[0-9a-f]{7,}``", text), "a commit hash"
    assert ":doc:`performance-history`" in text
    index = (DOCS / "index.rst").read_text()
    assert "\n   performance\n   performance-history\n" in index


def test_every_page_the_readme_names_exists() -> None:
    named = set(re.findall(r"docs/([a-z-]+)\.rst", README))
    assert named, "the README names no page"
    assert not {name for name in named if not (DOCS / f"{name}.rst").is_file()}
