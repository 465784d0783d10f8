"""`geanstalk stats` and `geanstalk tubes`: what the server holds, at a glance."""

from __future__ import annotations

import argparse
import fnmatch

from .client import Client, Refused
from .common import emit_json, make_main, print_dict, print_table

# The tubes table: column -> stats-tube key.
TUBE_COLUMNS = {
    "tube": "name",
    "ready": "current-jobs-ready",
    "urgent": "current-jobs-urgent",
    "reserved": "current-jobs-reserved",
    "delayed": "current-jobs-delayed",
    "buried": "current-jobs-buried",
    "waiting": "current-waiting",
    "paused": "pause-time-left",
    "total": "total-jobs",
}


def tube_stats(client: Client, pattern: str | None = None) -> list[dict[str, object]]:
    """stats-tube of every tube (matching the glob), tubes gone meanwhile left out."""
    found = []
    for name in client.list_tubes():
        if pattern and not fnmatch.fnmatchcase(name, pattern):
            continue
        try:
            found.append(client.stats_tube(name))
        except Refused as exc:
            if exc.reply == "NOT_FOUND":  # the tube went away since list-tubes
                continue
            raise
    return found


def tube_row(stats: dict[str, object]) -> dict[str, object]:
    """One row of the tubes table (columns as TUBE_COLUMNS names them)."""
    return {col: stats.get(key, 0) for col, key in TUBE_COLUMNS.items()}


def _stats(args: argparse.Namespace, client: Client) -> int:
    values = client.stats_tube(args.tube) if args.tube else client.stats()
    if args.json:
        emit_json(values)
    else:
        print_dict(values)
    return 0


def _configure_stats(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tube", "-t", help="one tube's stats-tube instead of the server's")


stats = make_main(
    "stats", "The server's stats (or one tube's with --tube).", _configure_stats, _stats
)


def _tubes(args: argparse.Namespace, client: Client) -> int:
    rows = [tube_row(t) for t in tube_stats(client, args.pattern)]
    key = args.sort
    rows.sort(key=lambda r: (r[key], r["tube"]), reverse=args.reverse)  # type: ignore[arg-type,return-value]
    if args.json:
        emit_json(rows)
    else:
        print_table(list(TUBE_COLUMNS), [list(r.values()) for r in rows])
    return 0


def _configure_tubes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", help="only tubes matching this glob (e.g. 'mail-*')")
    parser.add_argument(
        "--sort", "-s", choices=list(TUBE_COLUMNS), default="tube", help="sort by this column"
    )
    parser.add_argument("--reverse", "-r", action="store_true", help="largest first")


tubes = make_main(
    "tubes",
    "Every tube with its job counts: ready, urgent, reserved, delayed, buried, "
    "waiting clients, pause time left, total jobs put.",
    _configure_tubes,
    _tubes,
)
