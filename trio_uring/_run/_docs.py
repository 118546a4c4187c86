"""``python -m trio_uring docs [PAGE]``: the documentation pages, readable where installed.

The README and the docs refer to pages as ``docs/NAME.rst``.  A wheel carries them in
``trio_uring/_docs/`` (``setup.py`` copies them there); a source checkout or an editable
install reads the checkout's ``docs/``.  Without a page it lists them with their titles
and where they are; with one it prints it (reStructuredText, as in the checkout).
"""

from __future__ import annotations

import os
import sys

#: The package directory (``trio_uring/``), where a wheel carries the pages in ``_docs/``.
_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def directory() -> str | None:
    """Where the pages are: the installed copy, else the source checkout's ``docs/``."""
    for candidate in (
        os.path.join(_HERE, "_docs"),
        os.path.join(os.path.dirname(_HERE), "docs"),
    ):
        if os.path.isfile(os.path.join(candidate, "index.rst")):
            return candidate
    return None


def pages(where: str) -> dict[str, str]:
    """Every page in ``where``: its name (``performance`` for ``performance.rst``) and title."""
    found = {}
    for entry in sorted(os.listdir(where)):
        if entry.endswith(".rst"):
            with open(os.path.join(where, entry), encoding="utf-8") as f:
                title = f.readline().strip()
            found[entry[: -len(".rst")]] = title
    return found


def main(page: str | None) -> int:
    """List the pages (``page`` None) or print one; 1 with a message if there is none."""
    where = directory()
    if where is None:
        print("python -m trio_uring docs: this install has no documentation pages", file=sys.stderr)
        return 1
    found = pages(where)
    if page is None:
        print(f"trio_uring's documentation, in {where}")
        print("(python -m trio_uring docs PAGE prints one; docs/PAGE.rst in the README)\n")
        for name, title in found.items():
            print(f"  {name:<18} {title}")
        return 0
    name = page.removeprefix("docs/").removesuffix(".rst")
    if name not in found:
        print(
            f"python -m trio_uring docs: no page {page!r}; the pages: {', '.join(found)}",
            file=sys.stderr,
        )
        return 1
    with open(os.path.join(where, name + ".rst"), encoding="utf-8") as f:
        sys.stdout.write(f.read())
    return 0
