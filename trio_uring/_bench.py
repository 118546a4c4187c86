"""``python -m trio_uring bench``: a quick side-by-side echo benchmark (placeholder, see benchmarks/)."""

from __future__ import annotations


def main(quick: bool = False, json_path: str | None = None) -> int:
    print("benchmark not implemented yet; see benchmarks/")
    return 0
