"""`geanstalk top`: the server and its tubes, refreshed, with rates per second.

On a terminal the screen is redrawn in place every interval and `q` quits
(the terminal goes back to how it was, whatever happens). Without one (a
pipe, a log file, cron) each refresh is printed as a plain block, or with
--json as one JSON object per line, so the same command works in scripts.
Rates are deltas of the server's cumulative counters over the measured time
between two snapshots; the first frame has none yet.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import sys
import time
from collections.abc import Iterator

from .client import Client
from .common import emit_json, make_main
from .views import tube_row, tube_stats

# Server-wide rates: label -> the stats counters summed for it.
RATES = {
    "put/s": ("cmd-put",),
    "reserve/s": ("cmd-reserve", "cmd-reserve-with-timeout", "cmd-reserve-job"),
    "delete/s": ("cmd-delete",),
    "release/s": ("cmd-release",),
    "bury/s": ("cmd-bury",),
    "timeouts/s": ("job-timeouts",),
}
TUBE_COLUMNS = ("ready", "urgent", "reserved", "delayed", "buried", "waiting", "paused", "total")


class Snapshot:
    def __init__(self, client: Client, pattern: str | None) -> None:
        self.at = time.monotonic()
        self.stats = client.stats()
        found = tube_stats(client, pattern)
        self.tubes = {str(t["name"]): tube_row(t) for t in found}
        self.tube_deletes = {str(t["name"]): _num(t.get("cmd-delete")) for t in found}


def _num(value: object) -> int:
    return value if isinstance(value, int) else 0


def frame(prev: Snapshot | None, cur: Snapshot) -> dict[str, object]:
    """One refresh as data: the header figures, the rates, one row per tube."""
    elapsed = cur.at - prev.at if prev is not None else 0.0
    s = cur.stats

    def rate(now: int, before: int) -> float | None:
        if prev is None or elapsed <= 0:
            return None
        return round(max(now - before, 0) / elapsed, 1)

    rates = {}
    for label, keys in RATES.items():
        now = sum(_num(s.get(k)) for k in keys)
        before = sum(_num(prev.stats.get(k)) for k in keys) if prev else 0
        rates[label] = rate(now, before)
    tubes = []
    for name, row in sorted(cur.tubes.items()):
        old = prev.tubes.get(name) if prev else None
        entry = dict(row)
        entry["put/s"] = rate(_num(row["total"]), _num(old["total"])) if old else None
        old_del = prev.tube_deletes.get(name) if prev else None
        entry["delete/s"] = (
            rate(_num(cur.tube_deletes.get(name)), _num(old_del)) if old_del is not None else None
        )
        tubes.append(entry)
    header = {
        k: s.get(k)
        for k in (
            "version",
            "uptime",
            "current-connections",
            "current-producers",
            "current-workers",
            "current-waiting",
            "current-jobs-ready",
            "current-jobs-urgent",
            "current-jobs-reserved",
            "current-jobs-delayed",
            "current-jobs-buried",
            "total-jobs",
            "draining",
        )
    }
    return {
        "time": time.time(),
        "interval": round(elapsed, 3),
        "server": header,
        "rates": rates,
        "tubes": tubes,
    }


def _fmt_rate(value: object) -> str:
    return "-" if value is None else f"{value:g}"


def render(address: str, data: dict[str, object], width: int = 120) -> list[str]:
    s: dict[str, object] = data["server"]  # type: ignore[assignment]
    rates: dict[str, object] = data["rates"]  # type: ignore[assignment]
    lines = [
        f"geanstalk top - {address}  version {s.get('version')}  up {s.get('uptime')}s  "
        f"conns {s.get('current-connections')}  producers {s.get('current-producers')}  "
        f"workers {s.get('current-workers')}  waiting {s.get('current-waiting')}"
        + ("  DRAINING" if s.get("draining") == "true" else ""),
        f"jobs: ready {s.get('current-jobs-ready')}  urgent {s.get('current-jobs-urgent')}  "
        f"reserved {s.get('current-jobs-reserved')}  delayed {s.get('current-jobs-delayed')}  "
        f"buried {s.get('current-jobs-buried')}  total {s.get('total-jobs')}",
        "  ".join(f"{label} {_fmt_rate(v)}" for label, v in rates.items()),
        "",
    ]
    headers = ["TUBE", *(c.upper() for c in TUBE_COLUMNS), "PUT/S", "DELETE/S"]
    rows = [
        [
            str(t["tube"]),
            *(str(t[c]) for c in TUBE_COLUMNS),
            _fmt_rate(t["put/s"]),
            _fmt_rate(t["delete/s"]),
        ]
        for t in data["tubes"]  # type: ignore[attr-defined]
    ]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    for r in [headers, *rows]:
        line = "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        lines.append(line[:width])
    return lines


@contextlib.contextmanager
def _cbreak(fd: int) -> Iterator[None]:
    """Keys arrive one by one, unechoed; the terminal is restored on the way out."""
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        sys.stdout.write("\x1b[?25l")  # hide the cursor
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        sys.stdout.write("\x1b[?25h\n")
        sys.stdout.flush()


def _terminal_size(fd: int) -> os.terminal_size:
    """The terminal's own size (not $COLUMNS), or 120x40 where it reports none."""
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return os.terminal_size((120, 40))
    return size if size.columns and size.lines else os.terminal_size((120, 40))


def _wait_for_quit(fd: int, seconds: float) -> bool:
    """Wait up to seconds for a key; True when it was q (or Q, or end of input)."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            key = os.read(fd, 1)
            if key in (b"q", b"Q", b""):
                return True


def _top(args: argparse.Namespace, client: Client) -> int:
    interactive = sys.stdout.isatty() and sys.stdin.isatty() and not args.json
    prev: Snapshot | None = None
    shown = 0
    if not interactive:
        while True:
            cur = Snapshot(client, args.pattern)
            data = frame(prev, cur)
            if args.json:
                emit_json(data)
            else:
                print("\n".join(render(client.address, data)) + "\n", flush=True)
            shown += 1
            prev = cur
            if args.iterations and shown >= args.iterations:
                return 0
            time.sleep(args.interval)
    fd = sys.stdin.fileno()
    with _cbreak(fd):
        while True:
            cur = Snapshot(client, args.pattern)
            size = _terminal_size(sys.stdout.fileno())
            lines = render(client.address, frame(prev, cur), size.columns)[: size.lines - 1]
            lines.append("(q quits)")
            sys.stdout.write("\x1b[H\x1b[2J" + "\n".join(lines))
            sys.stdout.flush()
            shown += 1
            prev = cur
            if args.iterations and shown >= args.iterations:
                return 0
            if _wait_for_quit(fd, args.interval):
                return 0


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", help="only tubes matching this glob")
    parser.add_argument(
        "--interval", "-i", type=float, default=1.0, help="seconds between refreshes (default 1)"
    )
    parser.add_argument(
        "--iterations", "-n", type=int, default=0, help="stop after this many refreshes"
    )


top = make_main(
    "top",
    "Live view of the server and its tubes with rates per second (q quits).",
    _configure,
    _top,
)
