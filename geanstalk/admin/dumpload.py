"""`geanstalk dump` and `geanstalk load`: a queue's jobs as JSON lines, and back.

The protocol has no command that lists jobs, so dump finds them by id:
every id from 1 to the newest is peeked (pipelined, a batch per write), and
each job found is described by its stats-job. The newest id is learnt from
one probe put (into the tube ``geanstalk-dump-probe``, deleted at once), or
given with --max-id. Nothing else on the server changes: peek and stats-job
touch no job. It works the same against beanstalkd and geanstalk.

One line per job: ``{"id", "tube", "state", "pri", "delay", "ttr",
"body_base64"}`` where ``delay`` is the delay still to run (delayed jobs;
0 otherwise) and the body is base64, so any bytes survive. load puts each
job back with those values and buries the buried ones again.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from typing import IO

from .client import Client, Refused, parse_yaml
from .common import Declined, emit_json, make_main, non_negative

PROBE_TUBE = "geanstalk-dump-probe"
CAVEATS = (
    "caveats: job ids change on load; reserved jobs are dumped with state reserved "
    "and loaded as ready; a delayed job's remaining delay counts again from the load; "
    "jobs changed while the dump runs are taken as they were when read"
)
FIELDS = ("tube", "state", "pri", "delay", "ttr", "body_base64")


def newest_id(client: Client) -> int:
    """The highest job id the server has given: one probe put, deleted at once."""
    client.use(PROBE_TUBE)
    probe = client.put(b"", pri=2**32 - 1, delay=3600, ttr=1)
    client.delete(probe)
    client.use("default")
    return probe - 1


def scan(client: Client, first: int, last: int, batch: int = 500):  # type: ignore[no-untyped-def]
    """(id, body, stats-job) of every job with an id in first..last, in id order."""
    for start in range(first, last + 1, batch):
        ids = range(start, min(start + batch, last + 1))
        client.send(b"".join(b"peek %d\r\n" % i for i in ids))
        found = []
        for _ in ids:
            words = client.read_line()
            if words[0] == "FOUND":
                found.append((int(words[1]), client.read_body(int(words[2]))))
            elif words[0] != "NOT_FOUND":
                raise Refused(" ".join(words), "peek")
        if not found:
            continue
        client.send(b"".join(b"stats-job %d\r\n" % job_id for job_id, _ in found))
        for job_id, body in found:
            words = client.read_line()
            if words[0] == "OK":
                yield job_id, body, parse_yaml(client.read_body(int(words[1])))
            elif words[0] != "NOT_FOUND":  # NOT_FOUND: deleted since the peek
                raise Refused(" ".join(words), "stats-job")


def dump_record(job_id: int, body: bytes, stats: dict[str, object]) -> dict[str, object]:
    state = str(stats["state"])
    return {
        "id": job_id,
        "tube": stats["tube"],
        "state": state,
        "pri": stats["pri"],
        "delay": stats["time-left"] if state == "delayed" else 0,
        "ttr": stats["ttr"],
        "body_base64": base64.b64encode(body).decode("ascii"),
    }


def _dump(args: argparse.Namespace, client: Client) -> int:
    last = args.max_id if args.max_id is not None else newest_id(client)
    wanted = set(args.tubes)
    out: IO[str] = open(args.output, "w") if args.output else sys.stdout  # noqa: SIM115
    counts: dict[str, int] = {}
    try:
        for job_id, body, stats in scan(client, args.min_id, last):
            if wanted and stats["tube"] not in wanted:
                continue
            record = dump_record(job_id, body, stats)
            out.write(json.dumps(record) + "\n")
            counts[str(record["state"])] = counts.get(str(record["state"]), 0) + 1
    finally:
        if args.output:
            out.close()
        else:
            out.flush()
    total = sum(counts.values())
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none"
    print(f"dumped {total} jobs ({summary}) from ids {args.min_id}..{last}", file=sys.stderr)
    print(CAVEATS, file=sys.stderr)
    return 0


def _configure_dump(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tubes", nargs="*", metavar="TUBE", help="only these tubes (default all)")
    parser.add_argument("--output", "-o", help="write to this file (default stdout)")
    parser.add_argument(
        "--max-id", type=non_negative, help="highest id to look at (skips the probe put)"
    )
    parser.add_argument("--min-id", type=non_negative, default=1, help="lowest id (default 1)")


dump = make_main(
    "dump",
    "Every job (or those of the given tubes) as JSON lines: tube, state, priority, "
    "remaining delay, TTR and base64 body.",
    _configure_dump,
    _dump,
)


def parse_records(lines: IO[str], source: str) -> list[dict[str, object]]:
    """Every record of a dump, checked before anything is put."""
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            missing = [f for f in FIELDS if f not in record]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
            for key in ("pri", "delay", "ttr"):
                if not isinstance(record[key], int) or record[key] < 0:
                    raise ValueError(f"{key} must be a non-negative integer")
            record["body"] = base64.b64decode(record["body_base64"], validate=True)
            record["line"] = number
        except (ValueError, binascii.Error) as exc:
            raise Declined(f"{source}:{number}: not a dump record: {exc}") from exc
        records.append(record)
    return records


def load_one(client: Client, record: dict[str, object]) -> int:
    client.use(str(record["tube"]))
    buried = record["state"] == "buried"
    delay = 0 if buried or record["state"] != "delayed" else int(record["delay"])  # type: ignore[call-overload]
    pri = int(record["pri"])  # type: ignore[call-overload]
    new_id = client.put(record["body"], pri, delay, int(record["ttr"]))  # type: ignore[arg-type,call-overload]
    if buried:
        client.reserve_job(new_id)
        client.bury(new_id, pri)
    return new_id


def _load(args: argparse.Namespace, client: Client) -> int:
    if args.input == "-":
        records = parse_records(sys.stdin, "stdin")
    else:
        with open(args.input) as f:
            records = parse_records(f, args.input)
    wanted = set(args.tube or ())
    pairs = []
    for record in records:
        if wanted and record["tube"] not in wanted:
            continue
        try:
            pairs.append((record.get("id"), load_one(client, record)))
        except Refused as exc:
            raise Refused(
                f"{exc} at line {record['line']}; {len(pairs)} jobs were loaded before it"
            ) from exc
    if args.json:
        emit_json({"loaded": len(pairs), "ids": [{"old": o, "new": n} for o, n in pairs]})
    else:
        print(f"loaded {len(pairs)} jobs")
    print(CAVEATS, file=sys.stderr)
    return 0


def _configure_load(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="?", default="-", help="a dump file (default stdin)")
    parser.add_argument("--tube", "-t", action="append", help="only this tube's jobs (repeatable)")


load = make_main(
    "load", "Put the jobs of a dump (JSON lines) into a server.", _configure_load, _load
)
