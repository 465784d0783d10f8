"""The admin commands that look at or change jobs.

Anything that changes a job another client could be working on first takes
it: `reserve-job` makes the admin connection its only holder, so a worker
can never be handed a job the CLI is about to bury, move or delete, and a
job a worker took first is simply skipped. Moves put the copy before
deleting the original, so a failure half way leaves a duplicate, never a
loss.
"""

from __future__ import annotations

import argparse
import sys
import time

from .client import Client, Job, Refused
from .common import (
    Declined,
    UsageProblem,
    body_fields,
    emit_json,
    make_main,
    non_negative,
    print_dict,
    write_body,
)

STATES = ("ready", "delayed", "buried")


def show_job(args: argparse.Namespace, client: Client, job: Job) -> None:
    stats = client.stats_job(job.id)
    if args.json:
        emit_json({"id": job.id, "stats": stats, **body_fields(job.body)})
    else:
        print_dict(stats)
        print(f"body ({len(job.body)} bytes):")
        write_body(job.body)


# --- peek TUBE STATE, job ID ---------------------------------------------------------


def _peek(args: argparse.Namespace, client: Client) -> int:
    client.use(args.tube)
    job = client.peek_state(args.state)
    if job is None:
        raise Refused(f"no {args.state} job in tube {args.tube}")
    show_job(args, client, job)
    return 0


def _configure_peek(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tube")
    parser.add_argument("state", choices=STATES)


peek = make_main("peek", "The next ready, delayed or buried job of a tube.", _configure_peek, _peek)


def _job(args: argparse.Namespace, client: Client) -> int:
    show_job(args, client, client.peek(args.id))
    return 0


def _configure_job(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", type=non_negative)


job = make_main("job", "One job by id: its stats-job and body.", _configure_job, _job)


# --- put, kick, kick-job, pause, delete ID ----------------------------------------------


def _put(args: argparse.Namespace, client: Client) -> int:
    body = args.body.encode("utf-8") if args.body is not None else sys.stdin.buffer.read()
    client.use(args.tube)
    job_id = client.put(body, args.pri, args.delay, args.ttr)
    if args.json:
        emit_json({"id": job_id, "tube": args.tube})
    else:
        print(job_id)
    return 0


def _configure_put(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tube")
    parser.add_argument("--body", help="the job body (default: read from stdin)")
    parser.add_argument("--pri", type=non_negative, default=1024)
    parser.add_argument("--delay", type=non_negative, default=0)
    parser.add_argument("--ttr", type=non_negative, default=60)


put = make_main(
    "put", "Put one job (body from --body or stdin); prints its id.", _configure_put, _put
)


def _kick(args: argparse.Namespace, client: Client) -> int:
    client.use(args.tube)
    kicked = client.kick(args.count)
    if args.json:
        emit_json({"tube": args.tube, "kicked": kicked})
    else:
        print(f"kicked {kicked}")
    return 0


def _configure_kick(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tube")
    parser.add_argument("count", nargs="?", type=non_negative, default=1)


kick = make_main(
    "kick",
    "Kick up to N (default 1) buried jobs of a tube, or delayed ones if none is buried.",
    _configure_kick,
    _kick,
)


def _kick_job(args: argparse.Namespace, client: Client) -> int:
    client.kick_job(args.id)
    if args.json:
        emit_json({"id": args.id, "kicked": True})
    return 0


def _configure_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", type=non_negative)


kick_job = make_main("kick-job", "Kick one buried or delayed job.", _configure_id, _kick_job)


def _pause(args: argparse.Namespace, client: Client) -> int:
    client.pause_tube(args.tube, args.seconds)
    if args.json:
        emit_json({"tube": args.tube, "paused": args.seconds})
    return 0


def _configure_pause(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tube")
    parser.add_argument("seconds", type=non_negative, help="0 resumes the tube")


pause = make_main("pause", "Stop handing out a tube's jobs for SECONDS.", _configure_pause, _pause)


def _delete(args: argparse.Namespace, client: Client) -> int:
    if args.state is None:
        if args.all or not args.target.isdigit():
            raise UsageProblem("use `delete ID`, or `delete TUBE --state STATE --all`")
        client.delete(int(args.target))
        if args.json:
            emit_json({"deleted": [int(args.target)]})
        return 0
    if not args.all:
        raise UsageProblem("deleting a tube's jobs needs --all (and a confirmation or --yes)")
    tube, state = args.target, args.state
    client.use(tube)
    count = client.stats_tube(tube).get(f"current-jobs-{state}", 0)
    if not args.yes and not confirm(f"delete all {count} {state} jobs of tube {tube}?"):
        raise Declined("not confirmed; nothing deleted (--yes skips the question)")
    deleted = []
    while True:
        found = client.peek_state(state)
        if found is None:
            break
        try:
            client.delete(found.id)
        except Refused as exc:
            if exc.reply != "NOT_FOUND":
                raise
            continue  # a worker took it meanwhile; peek again
        deleted.append(found.id)
    if args.json:
        emit_json({"tube": tube, "state": state, "deleted": deleted})
    else:
        print(f"deleted {len(deleted)}")
    return 0


def confirm(question: str) -> bool:
    """Ask on the terminal; without one there is nobody to say yes."""
    if not sys.stdin.isatty():
        return False
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _configure_delete(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="ID|TUBE")
    parser.add_argument("--state", choices=STATES, help="with TUBE: which jobs to delete")
    parser.add_argument("--all", action="store_true", help="with TUBE: every job in that state")
    parser.add_argument("--yes", "-y", action="store_true", help="do not ask")


delete = make_main(
    "delete",
    "Delete one job by id, or every job of a tube in one state (--state S --all).",
    _configure_delete,
    _delete,
)


# --- bury TUBE [N], move FROM TO --state S [N] ------------------------------------------


def take(client: Client, state: str) -> Job | None:
    """Reserve the next job in state of the used tube for this connection alone.

    Peek then reserve-job: a job a worker reserves between the two is skipped
    (peek again). None once the tube has no job in that state.
    """
    while True:
        found = client.peek_state(state)
        if found is None:
            return None
        try:
            return client.reserve_job(found.id)
        except Refused as exc:
            if exc.reply != "NOT_FOUND":
                raise


def _bury(args: argparse.Namespace, client: Client) -> int:
    client.use(args.tube)
    buried = []
    for _ in range(args.count):
        job = take(client, "ready")
        if job is None:
            break
        pri = int(client.stats_job(job.id)["pri"])  # type: ignore[call-overload]
        client.bury(job.id, pri)
        buried.append(job.id)
    if args.json:
        emit_json({"tube": args.tube, "buried": buried})
    else:
        print(f"buried {len(buried)}")
    return 0


def _configure_bury(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tube")
    parser.add_argument("count", nargs="?", type=non_negative, default=1)


bury = make_main(
    "bury",
    "Bury up to N (default 1) ready jobs of a tube, keeping their priorities.",
    _configure_bury,
    _bury,
)


def move_one(client: Client, source: str, dest: str, state: str) -> tuple[int, int] | None:
    """Move the next job in state from source to dest; (old id, new id), or None."""
    client.use(source)
    while True:
        found = client.peek_state(state)
        if found is None:
            return None
        try:
            stats = client.stats_job(found.id)
            job = client.reserve_job(found.id)
        except Refused as exc:
            if exc.reply != "NOT_FOUND":
                raise
            continue
        break
    pri, ttr = int(stats["pri"]), int(stats["ttr"])  # type: ignore[call-overload]
    delay = int(stats["time-left"]) if state == "delayed" else 0  # type: ignore[call-overload]
    client.use(dest)
    new_id = client.put(job.body, pri, delay, ttr)
    if state == "buried":
        client.reserve_job(new_id)
        client.bury(new_id, pri)
    client.delete(job.id)
    return job.id, new_id


def _move(args: argparse.Namespace, client: Client) -> int:
    if args.source == args.dest:
        raise UsageProblem("FROM and TO are the same tube")
    moved = []
    while args.count is None or len(moved) < args.count:
        pair = move_one(client, args.source, args.dest, args.state)
        if pair is None:
            break
        moved.append(pair)
    if args.json:
        emit_json({"moved": [{"old": old, "new": new} for old, new in moved]})
    else:
        print(f"moved {len(moved)}")
    return 0


def _configure_move(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="FROM")
    parser.add_argument("dest", metavar="TO")
    parser.add_argument(
        "count", nargs="?", type=non_negative, help="at most this many (default all)"
    )
    parser.add_argument("--state", choices=STATES, required=True)


move = make_main(
    "move",
    "Move jobs in one state to another tube (new ids; priority, TTR, remaining delay "
    "and buried state kept).",
    _configure_move,
    _move,
)


# --- tail TUBE --action ----------------------------------------------------------------


def _tail(args: argparse.Namespace, client: Client) -> int:
    client.watch_only(args.tube)
    seen: set[int] = set()
    shown = 0
    while args.count is None or shown < args.count:
        job = client.reserve(timeout=1)
        if job is None:
            continue
        stats = client.stats_job(job.id)
        pri = int(stats["pri"])  # type: ignore[call-overload]
        if job.id in seen:
            # Released by us before and back already: let a real worker have it.
            client.release(job.id, pri)
            time.sleep(0.2)
            continue
        if args.json:
            emit_json({"id": job.id, "tube": args.tube, "stats": stats, **body_fields(job.body)})
        else:
            print(f"--- job {job.id} (pri {pri}, {len(job.body)} bytes)")
            write_body(job.body)
        shown += 1
        if args.action == "delete":
            client.delete(job.id)
        elif args.action == "bury":
            client.bury(job.id, pri)
        else:
            seen.add(job.id)
            client.release(job.id, pri)
    return 0


def _configure_tail(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tube")
    parser.add_argument(
        "--action",
        choices=("release", "bury", "delete"),
        default="release",
        help="what to do with each job after printing it (default release)",
    )
    parser.add_argument("--count", "-n", type=non_negative, help="stop after this many jobs")


tail = make_main(
    "tail",
    "Reserve each job of a tube as it comes, print it, then release, bury or delete it.",
    _configure_tail,
    _tail,
)
