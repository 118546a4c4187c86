"""The core: the ring, its C part, the operation lifecycle, the I/O manager.

Like ``trio._core`` it imports nothing above it.  ``_build_ring`` is the cffi
source of the C part (``_ring_cffi``); ``_constants`` the kernel ABI;
``_kernels`` which feature came with which Linux release (and the emulation
of older ones); ``_ring`` sets a ring up and probes it; ``_operation`` is the
one operation lifecycle; ``_manager`` is trio's I/O manager on top of the ring;
``_trio_compat`` holds every private trio name trio_uring uses.
"""
