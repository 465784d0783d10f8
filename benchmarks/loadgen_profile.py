"""Profile geanstalk while the load generator drives one scenario.

    python benchmarks/loadgen_profile.py put-pipelined/c10/b100 --seconds 5
    python benchmarks/loadgen_profile.py put-single/c10/b100 --tool cprofile

py-spy (the default) samples the running server from outside, native frames
included, and costs the server almost nothing; cProfile runs inside it,
slows it several-fold, but counts calls exactly. Both print the top
functions by own time and by inclusive time.
"""

from __future__ import annotations

import argparse
import collections
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import loadgen
from loadgen_clients import wait_until_serving
from loadgen_run import fill, run_load

from tests.servers import ServerProcess, free_port, geanstalk_command


def _function(frame: str) -> str:
    """'name (file:line)' -> 'name (file)': time per function, not per line."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0].rstrip(')')})" if where else name


def top_from_collapsed(path: Path, n: int) -> str:
    """Own and inclusive sample shares per function from py-spy's raw (collapsed) output.

    Frames present in nearly every sample (the event loop, runpy) say nothing
    and are left out of the inclusive list.
    """
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        c = int(count)
        frames = [_function(f) for f in stack.split(";")]
        total += c
        own[frames[-1]] += c
        for f in set(frames):
            incl[f] += c
    out = [f"{total} samples", "", "own time:"]
    out += [f"{100 * c / total:6.1f}%  {f}" for f, c in own.most_common(n)]
    out += ["", "inclusive time (frames in over 90% of samples left out):"]
    rows = [(f, c) for f, c in incl.most_common() if c <= 0.9 * total][:n]
    out += [f"{100 * c / total:6.1f}%  {f}" for f, c in rows]
    return "\n".join(out)


def prepare(server: ServerProcess, sc: loadgen.Scenario) -> None:
    """Wait until the server serves, warm it up briefly, then pre-fill if needed."""
    wait_until_serving(server.address)
    run_load(server.address, None, sc.load, 0.3, sc.procs)
    if sc.prefill:
        fill(server.address, sc.prefill, sc.load.body, procs=sc.procs)


def drive(server: ServerProcess, sc: loadgen.Scenario, seconds: float) -> None:
    r = run_load(server.address, server.pid, sc.load, seconds, sc.procs)
    print(f"{sc.name}: {r.ops} ops, {r.ops_per_s:.0f}/s under the profiler", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario", help="a loadgen scenario name, e.g. put-single/c10/b100")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--tool", choices=("py-spy", "cprofile"), default="py-spy")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", help="keep the raw profile here")
    a = ap.parse_args(argv)
    settings = loadgen.Settings(seconds=a.seconds, patterns=(a.scenario,))
    matches = [sc for sc in loadgen.scenarios(settings) if sc.name == a.scenario]
    if not matches:
        ap.error(f"no scenario named {a.scenario!r}")
    sc = matches[0]
    work = Path(tempfile.mkdtemp(prefix="loadgen-profile-"))
    try:
        port = free_port()
        (work / "binlog").mkdir()
        flags = ["-b", str(work / "binlog"), *sc.flags] if sc.binlog else list(sc.flags)
        serve = geanstalk_command("-l", "127.0.0.1", "-p", str(port), *flags)
        if a.tool == "cprofile":
            out = Path(a.out or work / "server.prof")
            argv_ = [sys.executable, "-m", "cProfile", "-o", str(out), *serve[1:]]
            with ServerProcess("geanstalk", argv_, port) as server:
                prepare(server, sc)
                drive(server, sc, a.seconds)
            # the profile is written when the server exits after SIGTERM
            stats = pstats.Stats(str(out))
            stats.sort_stats("tottime").print_stats(a.top)
            stats.sort_stats("cumulative").print_stats(a.top)
            return 0
        spy = shutil.which("py-spy")
        if spy is None:
            ap.error("py-spy is not installed; use --tool cprofile")
        out = Path(a.out or work / "server.txt")
        with ServerProcess("geanstalk", serve, port) as server:
            prepare(server, sc)
            rec = subprocess.Popen(
                [spy, "record", "--native", "-r", "250", "--format", "raw", "-o", str(out),
                 "-d", str(int(a.seconds + 3)), "--pid", str(server.pid)],
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)  # py-spy attaches
            drive(server, sc, a.seconds)
            rec.wait(a.seconds + 60)
        print(top_from_collapsed(out, a.top))
        return 0
    finally:
        if not a.out:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
