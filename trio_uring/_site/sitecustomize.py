"""Put on PYTHONPATH by ``pytest --trio-uring`` so trio programs it starts also use io_uring."""

import os

if os.environ.get("TRIO_URING_INSTALL", "") not in ("", "0"):
    try:
        import trio_uring

        trio_uring.install()
    except Exception as exc:  # never break the child's start-up
        import sys

        print(f"trio_uring: could not install in a child process: {exc}", file=sys.stderr)
