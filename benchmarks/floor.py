"""geanstalk and beanstalkd beside the floor: a uvloop server that parses nothing.

    python -m benchmarks.floor [--conns 50] [--seconds 3] [--repeat 3]

Puts one at a time (the load generator's put-single scenario, 100 B bodies)
against three servers, interleaved with the order turned round each repeat:
geanstalk, beanstalkd, and benchmarks/floor_server.py, which answers every
read with a constant reply. The floor's CPU per put is what uvloop and the
read and write system calls cost before any Python of ours runs; how far it
sits above or below beanstalkd says how much Python per command a server on
this loop can afford at this concurrency and still keep level. Prints, per
server, the medians of ops/s and of the server's user and system CPU per put.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _p in (str(_HERE), str(_HERE.parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import loadgen  # noqa: E402
import loadgen_procfs as procfs  # noqa: E402
from loadgen_clients import wait_until_serving  # noqa: E402
from loadgen_run import Load, run_load  # noqa: E402

from tests.servers import BEANSTALKD, SKIP_NO_REFERENCE, ServerProcess, free_port  # noqa: E402

FLOOR = "floor"


def argv(kind: str, port: int) -> list[str]:
    if kind == FLOOR:
        return [sys.executable, str(_HERE / "floor_server.py"), str(port)]
    return loadgen.server_argv(kind, port)


def measure(kind: str, load: Load, seconds: float) -> tuple[float, float, float]:
    """ops/s, and the server's user and system CPU in us per op, for one fresh server."""
    port = free_port()
    with ServerProcess(kind, argv(kind, port), port) as server:
        wait_until_serving(server.address)
        run_load(server.address, None, load, 0.3)  # warm up: connections, caches, allocator
        user0, sys0 = procfs.cpu_split(server.pid)
        result = run_load(server.address, None, load, seconds)
        user1, sys1 = procfs.cpu_split(server.pid)
    per_op = 1e6 / result.ops
    return result.ops_per_s, (user1 - user0) * per_op, (sys1 - sys0) * per_op


def main(argv_: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv_)
    if BEANSTALKD is None:
        print(f"benchmarks.floor: {SKIP_NO_REFERENCE}", file=sys.stderr)
        return 2
    load = Load("put", args.conns, 100, batch=1)
    kinds = ("geanstalk", "beanstalkd", FLOOR)
    runs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in kinds}
    for rep in range(args.repeat):
        for kind in loadgen.run_order(kinds, rep):
            ops, user, system = measure(kind, load, args.seconds)
            runs[kind].append((ops, user, system))
            print(
                f"{kind:10} rep {rep + 1}: {ops:9.0f} ops/s  user {user:5.2f}  sys {system:5.2f} us/op",
                file=sys.stderr,
            )
    reference = statistics.median(r[0] for r in runs["beanstalkd"])
    print(f"\nput one at a time, c{args.conns}, 100 B; medians of {args.repeat} runs\n")
    print("| server | ops/s | ratio to beanstalkd | user us/op | system us/op |")
    print("|---|---:|---:|---:|---:|")
    for kind in kinds:
        ops, user, system = (statistics.median(r[i] for r in runs[kind]) for i in range(3))
        print(f"| {kind} | {ops:,.0f} | {ops / reference:.2f} | {user:.2f} | {system:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
