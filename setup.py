# The C part is built by cffi in API mode at install time (see trio_uring/_core/_build_ring.py).
from setuptools import setup

setup(cffi_modules=["trio_uring/_core/_build_ring.py:ffibuilder"])
