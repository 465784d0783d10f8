"""The README's benchmark summary, written by the load generator (`--readme`).

The summary sits between two marker comments in README.md; a full run
replaces what is between them and leaves the rest of the file alone, so the
figures a newcomer reads are always those of a real run, not copied by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

BEGIN = "<!-- loadgen summary: written by python -m benchmarks.loadgen --readme README.md -->"
END = "<!-- end of loadgen summary -->"

# (table row label, scenario name), in the order the README shows them
ROWS = [
    ("put, pipelined 100 per write", "put-pipelined/c1/b100"),
    ("put, pipelined 100 per write", "put-pipelined/c10/b100"),
    ("put, pipelined 100 per write", "put-pipelined/c50/b100"),
    ("put, one at a time", "put-single/c1/b100"),
    ("put, one at a time", "put-single/c50/b100"),
    ("reserve + delete", "reserve-delete/c1/b100"),
    ("reserve + delete", "reserve-delete/c50/b100"),
    ("put with `-b -f 50`", "binlog-f50/c50/b100"),
    ("put with `-b -f 0`", "binlog-f0/c50/b100"),
]

G, B = "geanstalk", "beanstalkd"


def _num(x: float, digits: int = 0) -> str:
    return "-" if x != x else f"{x:,.{digits}f}"


def summary(
    when: str,
    table: dict[str, dict[str, Any]],
    startup: dict[str, tuple[float, float]],
    memory: dict[str, float],
    memory_binlog: dict[str, float],
) -> str:
    """Markdown for the block: the headline rows that were measured, then memory and start-up."""
    lines = [
        f"Run of {when}.",
        "",
        "| scenario (100 B bodies) | conns | geanstalk ops/s | beanstalkd ops/s | ratio "
        "| CPU µs/op geanstalk / beanstalkd |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, name in ROWS:
        rows = table.get(name, {})
        g, b = rows.get(G), rows.get(B)
        if g is None or b is None:
            continue
        conns = name.split("/")[1][1:]
        r = g.ops_per_s / b.ops_per_s if b.ops_per_s else float("nan")
        lines.append(
            f"| {label} | {conns} | {_num(g.ops_per_s)} | {_num(b.ops_per_s)} | {_num(r, 2)} "
            f"| {_num(g.cpu_us_per_op, 1)} / {_num(b.cpu_us_per_op, 1)} |"
        )
    other = []
    for label, mem in (
        ("RSS per ready job (10^6 jobs of 100 B)", memory),
        ("RSS per ready job with `-b`", memory_binlog),
    ):
        if G in mem and B in mem:
            other.append(f"| {label} | {mem[G]:,.0f} B | {mem[B]:,.0f} B | {mem[G] / mem[B]:.2f} |")
    if G in startup and B in startup:
        other.append(
            f"| start-up, exec to first accepted connection | {startup[G][0]:.0f} ms "
            f"| {startup[B][0]:.0f} ms | |"
        )
    if other:
        lines += ["", "| other measure | geanstalk | beanstalkd | ratio |", "|---|---:|---:|---:|"]
        lines += other
    return "\n".join(lines) + "\n"


def replace_block(path: Path, block: str) -> None:
    """Put block between the README's markers; refuse if they are missing."""
    text = path.read_text()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{path}: no loadgen summary markers ({BEGIN} ... {END})")
    head = text[: start + len(BEGIN)]
    path.write_text(head + "\n" + block + text[end:])
