"""Async files and paths without threads: ``open_file`` (``_open_file``) and the binary and
text layers it returns (``_binary_file``, ``_text_file``, sharing ``_file_base``), and
``Path`` with the whole-file helpers (``_path``).

Built on the file operations of :mod:`trio_uring._ops` (``_ops._files``); re-exported by
:mod:`trio_uring`.
"""
