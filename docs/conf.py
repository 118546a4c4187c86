"""Sphinx configuration for trio_uring's docs (``make docs``: warnings are errors, every
reference must resolve, nothing is suppressed; tests/test_docs.py checks the result)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

# autodoc documents the source: this checkout's package, with the hot path from its .py
# files rather than its mypyc build (whose functions show no docstring or signature).
# Both are set before anything imports trio_uring.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ["TRIO_URING_PURE"] = "1"

project = "trio_uring"
author = "the trio_uring developers"
copyright = "2026, the trio_uring developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.intersphinx", "sphinx.ext.napoleon"]
# The inventories are vendored (docs/inventories/README.rst says where they come from and
# how to remake them): the build reads no network.
intersphinx_mapping = {
    "python": ("https://docs.python.org/3.11/", "inventories/python.inv"),
    "trio": ("https://trio.readthedocs.io/en/stable/", "inventories/trio.inv"),
}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
# (Shown by name, not expanded to the Literal it stands for.)
autodoc_type_aliases = {"ZeroCopyPolicy": "trio_uring.ZeroCopyPolicy"}
nitpicky = True
exclude_patterns = ["_build", "inventories"]
html_theme = "alabaster"

#: Names that annotations spell otherwise than the entry they mean: a module imported
#: under another name, or a private module's name for a public idea.  (Each target is
#: an entry of these docs or of a vendored inventory: an unknown one still fails.)
REFERENCE_ALIASES = {
    "tsocket.SocketType": "trio.socket.SocketType",
    "SocketType": "trio.socket.SocketType",
    "_stdlib_socket.socket": "socket.socket",
    "Abort": "trio.lowlevel.Abort",
    "trio._highlevel_serve_listeners.ListenerT": "trio.abc.Listener",
    "trio._highlevel_serve_listeners.StreamT": "trio.abc.Stream",
    "trio_uring._core._trio_compat.HasFileno": "HasFileno",
    "trio_uring._net._sendfile.HasFileno": "HasFileno",
}


def _aliased_reference(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve a reference in :data:`REFERENCE_ALIASES` to its target (runs before
    intersphinx, which then resolves the rewritten target if it is trio's or Python's)."""
    if node.get("refdomain") != "py":
        return None
    target = REFERENCE_ALIASES.get(node.get("reftarget"))
    if target is None:
        return None
    node["reftarget"] = target
    domain = env.get_domain("py")
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], target, node, contnode
    )


def setup(app: Any) -> None:
    app.connect("missing-reference", _aliased_reference, priority=400)
