"""Sphinx configuration for trio_uring's docs (``make docs``; warnings are errors)."""

from __future__ import annotations

project = "trio_uring"
author = "the trio_uring developers"
copyright = "2026, the trio_uring developers"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.intersphinx", "sphinx.ext.napoleon"]
intersphinx_mapping: dict[str, tuple[str, None]] = {}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"undoc-members": False}
nitpicky = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
suppress_warnings = ["ref.python"]
