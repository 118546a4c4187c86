"""Where a server's time goes: py-spy samples one variant under echo load.

    python benchmarks/profile.py [VARIANT] [--conns 256] [--size 64] [--seconds 5]
                                 [--native] [--out benchmarks/results/profile-VARIANT.txt]

Starts ``servers.py VARIANT`` pinned to one CPU, loads it with the C load
generator on another, attaches ``py-spy record --format raw`` (``pip install
py-spy``) for ``--seconds``, then prints the functions with the most samples,
by self time and inclusive, as a share of all samples.  The raw collapsed
stacks are kept (``--out``) for flame graphs (``flamegraph.pl`` / speedscope).
With ``--native``, C frames (the kernel entry of syscalls, cffi, the
interpreter) are sampled too.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from servers import ALL_VARIANTS  # noqa: E402

from trio_uring.bench import cpu_plan, find_loadgen, start_server  # noqa: E402


def top(stacks: dict[str, int], n: int = 25) -> str:
    """Self and inclusive sample shares per frame from py-spy's collapsed stacks."""
    total = sum(stacks.values()) or 1
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    for stack, count in stacks.items():
        frames = [_short(f) for f in stack.split(";") if f]
        if not frames:
            continue
        own[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    lines = [f"{total} samples", "", "self time:"]
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(n)]
    lines += ["", "inclusive:"]
    lines += [f"  {100 * c / total:5.1f}%  {f}" for f, c in incl.most_common(n)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)"; keep native frames as they are
    name, _, where = frame.partition(" (")
    if not where:
        return frame
    path = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({'/'.join(Path(path).parts[-2:])})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variant", nargs="?", default="uring-streams")
    parser.add_argument("--conns", type=int, default=256)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--native", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(pyspy).exists():
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return 2
    variant = {v.name: v for v in ALL_VARIANTS}[args.variant]
    out = args.out or HERE / "results" / f"profile-{variant.name}-{args.conns}x{args.size}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    server_cpu, client_cpu = cpu_plan()
    loadgen = find_loadgen(cache_dir=HERE / ".build")
    cmd = [sys.executable, str(HERE / "servers.py"), variant.name, "--mode", "echo"]
    if server_cpu is not None:
        cmd += ["--cpu", str(server_cpu)]
    env = dict(os.environ)
    env.update(variant.env)
    with start_server(cmd, env) as (_proc, ready, _err):
        lg = loadgen.command(
            "echo", ready["port"], args.conns, args.size, warmup=1,
            duration=args.seconds + 1.5, stat_pid=ready["pid"], cpu=client_cpu,
        )  # fmt: skip
        gen = subprocess.Popen(lg, stdout=subprocess.PIPE, text=True)
        time.sleep(1.2)
        spy = [pyspy, "record", "--pid", str(ready["pid"]), "--format", "raw", "--nonblocking"]
        spy += ["--rate", str(args.rate), "--duration", str(int(args.seconds)), "-o", str(out)]
        if args.native:
            spy.append("--native")
        subprocess.run(spy, check=True, capture_output=True)
        stdout, _ = gen.communicate(timeout=60)
    stacks: dict[str, int] = {}
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            stacks[stack] = stacks.get(stack, 0) + int(count)
    print(f"{variant.name}, echo {args.conns}x{args.size}B, load generator: {stdout.strip()}")
    print(top(stacks))
    print(f"\ncollapsed stacks: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
