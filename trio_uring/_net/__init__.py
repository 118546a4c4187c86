"""Networking, as trio users know it: :class:`~trio_uring.SocketStream` and
:class:`~trio_uring.SocketListener` (``_streams``, ``_listener``), trio's own sockets on the
completion path (``_trio_sockets``), ``SocketStream.send_file`` (``_sendfile``) and
trio's high-level helpers over them (``_highlevel``: ``serve_tcp``, ``open_tcp_stream``, ...).

Built on :mod:`trio_uring._core` (the manager's public methods) and
:mod:`trio_uring._ops`; re-exported by :mod:`trio_uring`.
"""
