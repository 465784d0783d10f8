"""Bodies in the log (-b --body-cache): memory, draining a backlog, put throughput.

    python -m benchmarks.bodystore_bench                 # everything, defaults below
    python -m benchmarks.bodystore_bench --only memory --jobs 100000
    python -m benchmarks.bodystore_bench --baseline DIR  # put rows against another checkout

Rows (each against beanstalkd 1.12 and against geanstalk without the cache
limit, measured in the same run):

- memory: RSS growth per ready job after putting --jobs jobs of --body bytes,
  minus the cache, for `-b --body-cache CACHE`; the same with a cache larger
  than every body ("no limit"), and beanstalkd -b.
- drain: reserve + delete at 50 connections of a backlog 10x the cache,
  with the cache, and with every body in memory; the page-cache state is
  printed (cold after dropping the caches when this process may, else warm).
- put: put with `-b -f 50` at 50 connections, this checkout against
  --baseline (a checkout without the body store) and beanstalkd.
- big (only with --only big): 10^7 jobs of 1 KiB with --body-cache 256MiB:
  RSS, replay time at restart (after os.sync(): the puts' dirty pages are
  written out first), and how fast `stats` is answered while the restart
  loads them (one request every 10 ms, as a health check).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _p in (str(_HERE), str(_HERE.parent)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import loadgen_procfs as procfs  # noqa: E402
from loadgen_clients import wait_until_serving  # noqa: E402
from loadgen_run import Load, fill, run_load  # noqa: E402

from tests.servers import BEANSTALKD, ServerProcess, beanstalkd_command, free_port  # noqa: E402

MiB = 1 << 20
NO_LIMIT = 1 << 40  # a cache bigger than any run's bodies


def log(msg: str) -> None:
    print(msg, flush=True)


def geanstalk_argv(source: str | None, *args: str) -> list[str]:
    """`geanstalk serve` from this checkout, or from source (a directory on PYTHONPATH)."""
    python = [sys.executable, "-m", "geanstalk", "serve", *args]
    return ["env", f"PYTHONPATH={source}", *python] if source else python


@contextlib.contextmanager
def server(
    kind: str, flags: list[str], tmp_dir: str | None, source: str | None = None
) -> Iterator[ServerProcess]:
    logdir = tempfile.mkdtemp(prefix=f"bodystore-{kind}-", dir=tmp_dir)
    port = free_port()
    base = ["-l", "127.0.0.1", "-p", str(port), "-b", logdir, *flags]
    argv = beanstalkd_command(*base) if kind == "beanstalkd" else geanstalk_argv(source, *base)
    proc = ServerProcess(kind, argv, port)
    try:
        proc.start(timeout=60)
        wait_until_serving(proc.address, alive=lambda: proc.proc.poll() is None)  # type: ignore[union-attr]
        yield proc
    finally:
        proc.stop(timeout=120)
        shutil.rmtree(logdir, ignore_errors=True)


def drop_caches() -> bool:
    """Drop the page cache if this process may (root on a host that allows it)."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def machine() -> str:
    load = os.getloadavg()
    return f"{os.cpu_count()} CPUs, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"


# --- memory -------------------------------------------------------------------------


def measure_memory(jobs: int, body: int, cache: int, tmp_dir: str | None) -> dict[str, float]:
    runs = [
        ("geanstalk-cache", "geanstalk", ["--body-cache", str(cache)], cache),
        ("geanstalk-nolimit", "geanstalk", ["--body-cache", str(NO_LIMIT)], 0),
    ]
    if BEANSTALKD:
        runs.append(("beanstalkd", "beanstalkd", [], 0))
    out: dict[str, float] = {}
    for label, kind, flags, minus in runs:
        with server(kind, flags, tmp_dir) as s:
            before = procfs.rss_bytes(s.pid)
            t0 = time.monotonic()
            filled = fill(s.address, jobs, body, procs=2)
            took = time.monotonic() - t0
            time.sleep(0.5)
            after = procfs.rss_bytes(s.pid)
        out[label] = (after - before - minus) / filled
        log(
            f"memory  {label:18} {filled} jobs of {body} B in {took:.0f} s: RSS "
            f"{before // MiB} -> {after // MiB} MiB; (growth - cache {minus // MiB} MiB) / job "
            f"= {out[label]:.0f} B"
        )
    return out


# --- drain --------------------------------------------------------------------------


def measure_drain(
    cache: int, body: int, conns: int, repeat: int, tmp_dir: str | None, cold: bool
) -> dict[str, list[float]]:
    backlog = 10 * cache // body
    out: dict[str, list[float]] = {"cache": [], "memory": []}
    for rep in range(repeat):
        order = [("cache", cache), ("memory", NO_LIMIT)]
        if rep % 2:
            order.reverse()
        for label, size in order:
            with server("geanstalk", ["--body-cache", str(size)], tmp_dir) as s:
                filled = fill(s.address, backlog, body, procs=2)
                state = "warm"
                if cold and label == "cache":
                    state = "cold (dropped)" if drop_caches() else "warm (cannot drop caches)"
                result = run_load(
                    s.address, s.pid, Load("reserve", conns, body, max_ops=filled), 600.0, 2
                )
            out[label].append(result.ops_per_s)
            limit = f"{size} B" if size < NO_LIMIT else "no limit"
            log(
                f"drain   {label:6} cache {limit:>12}: "
                f"{result.ops} of {filled} jobs in {result.seconds:.1f} s = "
                f"{result.ops_per_s:,.0f} reserve+delete/s (page cache {state})"
            )
    return out


# --- put ----------------------------------------------------------------------------


def measure_put(
    baseline: str | None, seconds: float, repeat: int, tmp_dir: str | None
) -> dict[str, list[float]]:
    kinds = [("geanstalk", None)]
    if baseline:
        kinds.append(("baseline", baseline))
    if BEANSTALKD:
        kinds.append(("beanstalkd", None))
    out: dict[str, list[float]] = {k: [] for k, _ in kinds}
    for rep in range(repeat):
        order = kinds if rep % 2 == 0 else list(reversed(kinds))
        for label, source in order:
            kind = "beanstalkd" if label == "beanstalkd" else "geanstalk"
            with server(kind, ["-f", "50"], tmp_dir, source) as s:
                load = Load("put", 50, 100, batch=1, max_ops=2_000_000)
                result = run_load(s.address, s.pid, load, seconds, 2)
            out[label].append(result.ops_per_s)
            out.setdefault(label + "-cpu", []).append(result.cpu_us_per_op)
            log(
                f"put     {label:10} -b -f 50 c50 b100: {result.ops_per_s:,.0f} put/s, "
                f"server CPU {result.cpu_us_per_op:.1f} us/put"
            )
    return out


# --- 10^7 jobs ----------------------------------------------------------------------


def stats_while_starting(
    address: tuple[str, int], proc: ServerProcess, every: float = 0.01
) -> dict[str, float]:
    """Ask `stats` from exec until the server reports every job loaded, one
    request every ``every`` seconds (as a health check would, rather than
    flat out: a client spinning on the same two CPUs would measure the
    scheduler, not the server).

    Returns: seconds from exec to the first answer (the interpreter
    starting: the socket is bound at once and the first request waits in
    its backlog), how long that first answer took, and over the answers
    after it while jobs were still loading: how many, the median, the 99th
    percentile and the slowest (ms).
    """
    t0 = time.monotonic()
    first = first_took = None
    during: list[float] = []
    slowest_at = (0.0, 0)
    sock = None
    while True:
        if proc.proc.poll() is not None:  # type: ignore[union-attr]
            raise RuntimeError("server exited during start-up")
        if sock is None:
            try:
                sock = socket.create_connection(address, timeout=600)
            except OSError:
                time.sleep(0.001)
                continue
        a = time.monotonic()
        sock.sendall(b"stats\r\n")
        data = b""
        while b"\r\n" not in data or len(data) < int(data.split()[1]) + data.index(b"\r\n") + 4:
            data += sock.recv(65536)
        took = (time.monotonic() - a) * 1000
        ready = int(data.split(b"current-jobs-ready: ")[1].split(b"\n")[0])
        if first is None:
            first, first_took = time.monotonic() - t0, took
        elif ready < proc.extra["jobs"]:  # type: ignore[operator]
            during.append(took)
            if took >= max(during):
                slowest_at = (time.monotonic() - t0, ready)
        if ready >= proc.extra["jobs"]:  # type: ignore[operator]
            sock.close()
            during.sort()
            n = len(during)
            return {
                "first": first,
                "first_took": first_took or 0.0,
                "answers": n,
                "median": during[n // 2] if n else 0.0,
                "p99": during[min(n - 1, n * 99 // 100)] if n else 0.0,
                "max": during[-1] if n else 0.0,
                "max_at": slowest_at[0],
                "max_ready": slowest_at[1],
            }
        time.sleep(every)


def peak_rss(pid: int) -> int:
    """VmHWM: the most resident memory the process has had (bytes)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def measure_big(jobs: int, tmp_dir: str | None) -> None:
    logdir = tempfile.mkdtemp(prefix="bodystore-big-", dir=tmp_dir)
    try:
        port = free_port()
        flags = ["-l", "127.0.0.1", "-p", str(port), "-b", logdir, "--body-cache", "256MiB"]
        s = ServerProcess("geanstalk", geanstalk_argv(None, *flags), port)
        s.start(timeout=60)
        wait_until_serving(s.address)
        t0 = time.monotonic()
        filled = fill(s.address, jobs, 1024, procs=2)
        log(f"big     put {filled} jobs of 1 KiB in {time.monotonic() - t0:.0f} s")
        rss = procfs.rss_bytes(s.pid)
        log(
            f"big     RSS {rss / MiB:,.0f} MiB = {rss / filled:.0f} B/job (cache 256 MiB "
            f"included), peak {peak_rss(s.pid) / MiB:,.0f} MiB"
        )
        s.stop(timeout=600)
        # The puts left gigabytes of dirty pages: write them out first, so
        # that the restart measures the server, not the kernel's writeback.
        os.sync()
        s = ServerProcess("geanstalk", geanstalk_argv(None, *flags), port, extra={"jobs": filled})
        t0 = time.monotonic()
        s.proc = None
        s.start(timeout=600)
        st = stats_while_starting(s.address, s)
        took = time.monotonic() - t0
        rss = procfs.rss_bytes(s.pid)
        log(
            f"big     restart: every job back after {took:.1f} s; first stats answered "
            f"{st['first']:.2f} s after exec (took {st['first_took']:.1f} ms); then "
            f"{st['answers']:.0f} stats during the load: median {st['median']:.2f} ms, "
            f"p99 {st['p99']:.2f} ms, slowest {st['max']:.2f} ms ({st['max_at']:.1f} s "
            f"after exec, {st['max_ready']:.0f} jobs back)"
        )
        log(
            f"big     RSS {rss / MiB:,.0f} MiB ({rss / filled:.0f} B/job), "
            f"peak during replay {peak_rss(s.pid) / MiB:,.0f} MiB"
        )
        s.stop(timeout=600)
    finally:
        shutil.rmtree(logdir, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", action="append", help="memory, drain, put or big (repeatable)")
    ap.add_argument("--jobs", type=int, default=1_000_000, help="jobs for the memory row")
    ap.add_argument("--body", type=int, default=4096)
    ap.add_argument("--cache", type=int, default=64 * MiB, help="--body-cache for memory/drain")
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--cold", action="store_true", help="drop the page cache before draining")
    ap.add_argument("--baseline", help="a checkout without the body store, for the put row")
    ap.add_argument("--big-jobs", type=int, default=10_000_000)
    ap.add_argument("--tmp-dir", help="where the logs go (default: system temp)")
    args = ap.parse_args()
    only = set(args.only or ["memory", "drain", "put"])
    log(f"# bodystore bench, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine()}")
    if "memory" in only:
        mem = measure_memory(args.jobs, args.body, args.cache, args.tmp_dir)
        ours = mem["geanstalk-cache"]
        line = f"memory  {ours:.0f} B/job + cache with --body-cache {args.cache // MiB}MiB"
        line += f"; no limit {mem['geanstalk-nolimit']:.0f} B/job ({ours / mem['geanstalk-nolimit']:.2f}x)"
        if "beanstalkd" in mem:
            line += f"; beanstalkd {mem['beanstalkd']:.0f} B/job ({ours / mem['beanstalkd']:.3f}x)"
        log(line)
    if "drain" in only:
        d = measure_drain(args.cache, args.body, args.conns, args.repeat, args.tmp_dir, args.cold)
        a, b = statistics.median(d["cache"]), statistics.median(d["memory"])
        log(f"drain   median {a:,.0f}/s with the cache, {b:,.0f}/s all in memory: {a / b:.2f}x")
    if "put" in only:
        p = measure_put(args.baseline, args.seconds, args.repeat, args.tmp_dir)
        med = {k: statistics.median(v) for k, v in p.items()}
        cpu = ", ".join(f"{k[:-4]} {v:.1f}" for k, v in med.items() if k.endswith("-cpu"))
        log(f"put     median server CPU us/put: {cpu}")
        line = f"put     median {med['geanstalk']:,.0f}/s"
        if "baseline" in med:
            line += (
                f"; baseline {med['baseline']:,.0f}/s ({med['geanstalk'] / med['baseline']:.2f}x)"
            )
        if "beanstalkd" in med:
            line += f"; beanstalkd {med['beanstalkd']:,.0f}/s ({med['geanstalk'] / med['beanstalkd']:.2f}x)"
        log(line)
    if "big" in only:
        measure_big(args.big_jobs, args.tmp_dir)
    log(f"# done; {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
