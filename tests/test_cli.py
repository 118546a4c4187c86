"""``python -m trio_uring``'s own command line (``info``, ``bench``, ``docs``; ``run`` is
``tests/test_launcher.py``): help a user can read, errors with the right usage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trio_uring", *args], capture_output=True, text=True, timeout=60
    )


def test_help_is_plain_text() -> None:
    proc = _cli("--help")
    assert proc.returncode == 0, proc.stderr
    assert "``" not in proc.stdout and ":func:" not in proc.stdout, proc.stdout
    for command in ("info", "bench", "run", "docs"):
        assert command in proc.stdout


def test_a_sub_commands_bad_option_shows_its_usage() -> None:
    proc = _cli("bench", "--no-such-option")
    assert proc.returncode == 2
    assert proc.stderr.startswith("usage: python -m trio_uring bench"), proc.stderr
    assert "python -m trio_uring bench: error: unrecognized arguments: --no-such-option" in (
        proc.stderr
    )
    proc = _cli("bench", "--suites", "nope")
    assert proc.returncode == 2
    assert "python -m trio_uring bench: error: --suites takes" in proc.stderr, proc.stderr


def test_quick_bench_help_agrees_with_the_docs() -> None:
    """The duration ``bench --help`` gives ``--quick`` is the one docs/performance.rst gives."""
    proc = _cli("bench", "--help")
    assert "(about 45 seconds)" in " ".join(proc.stdout.split()), proc.stdout
    performance = (ROOT / "docs" / "performance.rst").read_text()
    assert "``python -m trio_uring bench --quick`` (part of ``make run``; about 45 seconds)" in (
        performance
    )


def test_docs_lists_and_prints_the_pages() -> None:
    listing = _cli("docs")
    assert listing.returncode == 0, listing.stderr
    assert "performance        Performance" in listing.stdout, listing.stdout
    page = _cli("docs", "docs/sendfile.rst")  # as the README names it
    assert page.returncode == 0, page.stderr
    assert page.stdout == (ROOT / "docs" / "sendfile.rst").read_text()
    missing = _cli("docs", "no-such-page")
    assert missing.returncode == 1
    assert "no page 'no-such-page'" in missing.stderr
