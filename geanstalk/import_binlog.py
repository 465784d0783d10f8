"""``geanstalk import-binlog BEANSTALKD_DIR GEANSTALK_DIR``: bring beanstalkd's jobs across.

The operator stops beanstalkd, imports, and starts ``geanstalk serve -b
GEANSTALK_DIR``: every job is back with its id, tube, priority, TTR, delay
(a delayed job keeps its wall-clock deadline), buried state and counters,
and new ids go on where beanstalkd's would have. The source directory is
only read; damage in it is reported with file and offset and, unless
``--force``, nothing is written. The new log is written under temporary
names and renamed into place once complete and synced; an interrupted
import leaves ``binlog.N.importing`` files behind (start again in an empty
directory).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator

from . import beanstalkd_binlog as bb
from . import binlog_format as fmt

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
DEFAULT_FILE_SIZE = 10485760
DEFAULT_MAX_JOB_SIZE = 65535  # serve's -z default
_U32 = 0xFFFFFFFF
_STATES = {bb.READY: fmt.READY, bb.DELAYED: fmt.DELAYED, bb.BURIED: fmt.BURIED}


class ImportRefused(Exception):
    """The import cannot be done safely; the message says why."""


def to_image(job: bb.BeanstalkdJob, order: int) -> fmt.JobImage:
    """A beanstalkd job as geanstalk's log stores it.

    ``buries`` is taken as recorded: what beanstalkd's ``stats-job`` showed
    before it stopped (beanstalkd 1.12 itself adds one to every buried job's
    count each time it replays its log; geanstalk keeps the true count, see
    docs/COMPAT.md).
    """
    state = _STATES[job.state]
    return fmt.JobImage(
        job.id,
        order,
        min(job.priority, _U32),
        min(max(job.ttr_ns // 1_000_000_000, 0), _U32),
        min(max(job.delay_ns // 1_000_000_000, 0), _U32),
        state,
        job.created_at_ns / 1e9,
        job.deadline_at_ns / 1e9 if state == fmt.DELAYED else None,
        (job.reserves, job.timeouts, job.releases, job.buries, job.kicks),
        job.tube.encode("ascii"),
        job.body,
    )


def check_source_idle(directory: str) -> None:
    """Refuse while a beanstalkd still holds its lock on directory (it may still write)."""
    path = os.path.join(directory, "lock")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ImportRefused(f"cannot open {path}: {exc.strerror}") from exc
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            raise ImportRefused(
                f"a beanstalkd is still running on {directory} (it holds {path}); stop it first"
            ) from exc
    finally:
        os.close(fd)  # also drops the shared lock; nothing in the source was changed


@contextlib.contextmanager
def locked_destination(directory: str) -> Iterator[None]:
    """Create directory if needed and hold geanstalk's lock on it while writing."""
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise ImportRefused(f"cannot create {directory}: {exc.strerror}") from exc
    path = os.path.join(directory, "lock")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ImportRefused(f"cannot create {path}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise ImportRefused(f"{directory} is in use by a running geanstalk") from exc
        yield
    finally:
        os.close(fd)


def write_log(directory: str, images: list[fmt.JobImage], max_id: int, file_size: int) -> int:
    """Write images as geanstalk binlog files 1, 2, ...; the number of files written."""
    chunks: list[list[bytes]] = [[fmt.encode_header(max_id)]]
    size = fmt.HEADER_SIZE
    for image in images:
        record = fmt.encode_job(image)
        if size + len(record) > file_size and size > fmt.HEADER_SIZE:
            chunks.append([fmt.encode_header(max_id)])
            size = fmt.HEADER_SIZE
        chunks[-1].append(record)
        size += len(record)
    temporary = []
    for number, parts in enumerate(chunks, start=1):
        tmp = os.path.join(directory, f"binlog.{number}.importing")
        with open(tmp, "wb") as f:
            f.write(b"".join(parts))
            f.flush()
            os.fsync(f.fileno())
        temporary.append((tmp, os.path.join(directory, f"binlog.{number}")))
    # Only the renames remain: an import stopped before the summary is printed
    # leaves *.importing files behind, and a new import refuses the directory.
    for tmp, final in temporary:
        os.rename(tmp, final)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return len(chunks)


def import_binlog(
    source: str, dest: str, file_size: int = DEFAULT_FILE_SIZE, force: bool = False
) -> dict[str, object]:
    """Do the import; a summary of what was brought across. ImportRefused when it cannot."""
    if not os.path.isdir(source):
        raise ImportRefused(f"{source} is not a directory")
    if os.path.exists(dest) and os.path.samefile(source, dest):
        raise ImportRefused("the destination must be a different directory from the source")
    check_source_idle(source)
    try:
        log = bb.read_directory(source)
    except bb.BeanstalkdBinlogError as exc:
        raise ImportRefused(str(exc)) from exc
    if not log.files:
        raise ImportRefused(f"{source} holds no beanstalkd binlog files (binlog.N)")
    if log.damage and not force:
        lines = "\n".join(f"  {d}" for d in log.damage)
        raise ImportRefused(
            f"damage in the beanstalkd binlog:\n{lines}\n"
            "nothing was written; --force imports the jobs that could be read "
            "(as beanstalkd itself would start with them)"
        )
    # In the order of each job's last record: buried jobs keep the order they
    # were buried in (kick takes them as it did before beanstalkd stopped).
    ordered = sorted(log.jobs.values(), key=lambda job: job.order)
    images = [to_image(job, order) for order, job in enumerate(ordered, start=1)]
    with locked_destination(dest):
        existing = [n for n in os.listdir(dest) if n.startswith("binlog.")]
        if existing:
            raise ImportRefused(
                f"{dest} already holds binlog files ({', '.join(sorted(existing))}); "
                "import into an empty directory"
            )
        files = write_log(dest, images, log.max_id, file_size)
    states = Counter(bb.STATE_NAMES[j.state] for j in log.jobs.values())
    return {
        "source": source,
        "destination": dest,
        "source_files": len(log.files),
        "files_written": files,
        "jobs": len(images),
        "ready": states.get("ready", 0),
        "delayed": states.get("delayed", 0),
        "buried": states.get("buried", 0),
        "tubes": len({j.tube for j in log.jobs.values()}),
        "next_id": log.max_id + 1,
        "largest_body": max((len(j.body) for j in log.jobs.values()), default=0),
        "damage": [str(d) for d in log.damage],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="geanstalk import-binlog",
        description="Copy the jobs of a stopped beanstalkd's binlog directory into a new "
        "geanstalk binlog directory (the source is only read).",
    )
    parser.add_argument("source", metavar="BEANSTALKD_DIR")
    parser.add_argument("dest", metavar="GEANSTALK_DIR")
    parser.add_argument(
        "-s",
        "--binlog-size",
        type=int,
        default=DEFAULT_FILE_SIZE,
        help="size of each written log file (as serve -s; default %(default)s)",
    )
    parser.add_argument(
        "--force", action="store_true", help="import what can be read despite damage"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    if args.binlog_size <= 0:
        print("geanstalk import-binlog: --binlog-size must be positive", file=sys.stderr)
        return EXIT_USAGE
    try:
        summary = import_binlog(args.source, args.dest, args.binlog_size, args.force)
    except ImportRefused as exc:
        print(f"geanstalk import-binlog: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as exc:
        print(f"geanstalk import-binlog: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    if args.json:
        print(json.dumps(summary))
        return EXIT_OK
    for line in summary["damage"]:  # type: ignore[attr-defined]
        print(f"warning: skipped after damage: {line}", file=sys.stderr)
    print(
        f"imported {summary['jobs']} jobs ({summary['ready']} ready, {summary['delayed']} "
        f"delayed, {summary['buried']} buried) in {summary['tubes']} tubes from "
        f"{summary['source_files']} beanstalkd files into {args.dest}; next job id "
        f"{summary['next_id']}.\nStart the server with: geanstalk serve -b {args.dest}"
        + (
            f" -z {summary['largest_body']}  (the largest job has {summary['largest_body']} "
            "bytes, more than the default -z 65535; use the -z beanstalkd had)"
            if summary["largest_body"] > DEFAULT_MAX_JOB_SIZE  # type: ignore[operator]
            else ""
        )
    )
    return EXIT_OK
