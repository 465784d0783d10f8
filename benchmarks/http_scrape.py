"""Does the HTTP endpoint slow the command path? geanstalk with ``--http`` and
a Prometheus-like scrape of /metrics every second, against geanstalk without
``--http``, and beanstalkd beside both, in the same run.

    python -m benchmarks.http_scrape                      # ~2 minutes
    python -m benchmarks.http_scrape --markdown benchmarks/results/http_scrape.md

Each scenario runs the load generator's clients (loadgen_run.run_load) on a
fresh server of each kind, repeated with the order of the servers turned
round each time; each figure is the median. The scraper is a thread of this
process that fetches /metrics once a second and checks every reply.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from loadgen_run import Load, fill, run_load

from tests.servers import BEANSTALKD, free_port, make_server

SCENARIOS = {
    "put-single/c10": (Load("put", 10, 100), 0),
    "put-pipelined/c1": (Load("put", 1, 100, batch=100), 0),
    "reserve-delete/c10": (Load("reserve", 10, 100), 400_000),
}
KINDS = ("geanstalk", "geanstalk+http", "beanstalkd")


class Scraper(threading.Thread):
    """GET /metrics every `interval` seconds until stopped; counts the scrapes."""

    def __init__(self, port: int, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.interval = interval
        self.stop_event = threading.Event()
        self.scrapes = 0
        self.bytes = 0
        self.error: str | None = None

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            try:
                with urllib.request.urlopen(self.url, timeout=10) as r:
                    body = r.read()
                if r.status != 200 or b"cmd_put{" not in body:
                    self.error = f"bad scrape: {r.status}"
                    return
                self.scrapes += 1
                self.bytes = len(body)
            except OSError as exc:
                self.error = str(exc)
                return


@dataclass
class Row:
    ops: list[float]
    cpu: list[float]
    scrapes: int = 0
    scrape_bytes: int = 0


def one_run(kind: str, load: Load, prefill: int, seconds: float) -> tuple[float, float, int, int]:
    args: list[str] = []
    http = 0
    if kind == "geanstalk+http":
        http = free_port()
        args = ["--http", f"127.0.0.1:{http}"]
    server = make_server(kind.split("+")[0], *args).start()
    scraper = None
    try:
        if prefill:
            fill(server.address, prefill, load.body)
        if http:
            scraper = Scraper(http)
            scraper.start()
        result = run_load(server.address, server.pid, load, seconds)
        if scraper is not None:
            scraper.stop_event.set()
            scraper.join(15)
            if scraper.error:
                raise RuntimeError(scraper.error)
        return (
            result.ops_per_s,
            result.cpu_us_per_op,
            scraper.scrapes if scraper else 0,
            scraper.bytes if scraper else 0,
        )
    finally:
        if scraper is not None:
            scraper.stop_event.set()
        server.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--markdown", help="write the table to this file")
    ap.add_argument("--scenario", action="append", help="only these (names as listed)")
    opts = ap.parse_args(argv)
    kinds = [k for k in KINDS if k != "beanstalkd" or BEANSTALKD]
    chosen = {k: v for k, v in SCENARIOS.items() if not opts.scenario or k in opts.scenario}
    load_before = os.getloadavg()[0]
    rows: dict[tuple[str, str], Row] = {}
    for name, (load, prefill) in chosen.items():
        for rep in range(opts.repeat):
            order = kinds if rep % 2 == 0 else list(reversed(kinds))
            for kind in order:
                ops, cpu, scrapes, size = one_run(kind, load, prefill, opts.seconds)
                row = rows.setdefault((name, kind), Row([], []))
                row.ops.append(ops)
                row.cpu.append(cpu)
                row.scrapes += scrapes
                row.scrape_bytes = size or row.scrape_bytes
                print(f"{name} {kind}: {ops:,.0f} ops/s, {cpu:.1f} us CPU/op", file=sys.stderr)
    load_after = os.getloadavg()[0]
    lines = [
        "| scenario | geanstalk ops/s | +http ops/s | http/plain | beanstalkd ops/s "
        "| +http/beanstalkd | CPU us/op plain | CPU us/op +http | CPU +http/plain "
        "| CPU us/op beanstalkd | scrapes (bytes each) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in chosen:
        plain = rows[(name, "geanstalk")]
        http = rows[(name, "geanstalk+http")]
        ref = rows.get((name, "beanstalkd"))
        p_ops, h_ops = statistics.median(plain.ops), statistics.median(http.ops)
        r_ops = statistics.median(ref.ops) if ref else float("nan")
        r_cpu = statistics.median(ref.cpu) if ref else float("nan")
        p_cpu, h_cpu = statistics.median(plain.cpu), statistics.median(http.cpu)
        lines.append(
            f"| {name} | {p_ops:,.0f} | {h_ops:,.0f} | {h_ops / p_ops:.2f} | {r_ops:,.0f} "
            f"| {h_ops / r_ops:.2f} | {p_cpu:.1f} | {h_cpu:.1f} | {h_cpu / p_cpu:.2f} "
            f"| {r_cpu:.1f} | {http.scrapes} ({http.scrape_bytes:,}) |"
        )
    head = (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {opts.seconds:g} s per run, "
        f"median of {opts.repeat}, servers interleaved; load average {load_before:.2f} before, "
        f"{load_after:.2f} after (2 cores shared with other work: the server's CPU per "
        "operation moves less with the load than ops/s does)."
    )
    table = "\n".join(lines)
    print(head)
    print(table)
    if opts.markdown:
        with open(opts.markdown, "w") as f:
            f.write(
                "# Command path with and without the HTTP endpoint\n\n"
                "`geanstalk+http`: `--http` on, /metrics scraped once a second during the run.\n\n"
                "Command: `python -m benchmarks.http_scrape --markdown "
                "benchmarks/results/http_scrape.md`\n\n" + head + "\n\n" + table + "\n"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
