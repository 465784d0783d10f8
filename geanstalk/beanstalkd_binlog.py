"""Reading a beanstalkd binlog directory (format versions 7 and 5), for the import.

An operator moving from beanstalkd brings its jobs along: this module reads
the reference server's write-ahead log the way beanstalkd 1.12 replays it at
start-up, so the jobs it returns are exactly those a restarted beanstalkd
would serve. It only ever opens the source files read-only.

beanstalkd's log (file.c, walg.c in its source) is a series of files
``binlog.N``. Each starts with a native ``int`` version (7 for 1.10 to 1.13;
5 for older logs), then records back to back: an ``int`` tube-name length,
the name, the raw ``Jobrec`` C struct, and for a full record the body with
its trailing CR LF. A record with name length 0 is a short record (a state
change, or a delete when its state is ``Invalid``). Files are preallocated
with zeros, so a record whose job id is 0 ends the file. The layout is the
machine's native one; this reader takes x86-64/aarch64 Linux's (little
endian, 8-byte alignment), which is what beanstalkd runs on in practice.
"""

from __future__ import annotations

import itertools
import os
import re
import struct
from dataclasses import dataclass, field

# Jobrec (version 7): id, pri, delay, ttr (ns), body_size, created_at, deadline_at
# (ns, wall clock), reserve/timeout/release/bury/kick counts, state; C padding kept.
_JOBREC7 = struct.Struct("<QI4xqqi4xqq5IB3x")
# Jobrec5: the same fields with times in microseconds, read up to the state byte.
_JOBREC5 = struct.Struct("<QI4xQQi4xQQ5IB")
_INT = struct.Struct("<i")
_SIZE_T = struct.Struct("<Q")

WALVER = 7
WALVER5 = 5
MAX_TUBE_NAME_LEN = 201  # a name is at most 200 bytes

# Jobrec.state
INVALID, READY, RESERVED, BURIED, DELAYED = range(5)
STATE_NAMES = {READY: "ready", RESERVED: "reserved", BURIED: "buried", DELAYED: "delayed"}

_NAME = re.compile(r"binlog\.([0-9]+)\Z")
_KNOWN_VERSIONS = (WALVER, WALVER5)


class BeanstalkdBinlogError(Exception):
    """The source directory cannot be read, or holds damage (file and offset named)."""


@dataclass
class Damage:
    path: str
    offset: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: offset {self.offset}: {self.reason}"


@dataclass
class BeanstalkdJob:
    """One job as a restarted beanstalkd would rebuild it (times in wall-clock ns)."""

    id: int
    tube: str
    priority: int
    delay_ns: int
    ttr_ns: int
    created_at_ns: int
    deadline_at_ns: int
    reserves: int
    timeouts: int
    releases: int
    buries: int
    kicks: int
    state: int
    body: bytes
    # Position of the record that last changed the job's state: buried jobs were
    # buried in this order, the order beanstalkd's kick followed before it
    # stopped. A compaction copy (same state, same counts) does not move it.
    order: int = 0


@dataclass
class BeanstalkdLog:
    """Everything read from a beanstalkd binlog directory."""

    # Live jobs in the order beanstalkd's replay list holds them (first record seen).
    jobs: dict[int, BeanstalkdJob] = field(default_factory=dict)
    records: int = 0  # records applied so far, for BeanstalkdJob.order
    files: list[str] = field(default_factory=list)
    max_id: int = 0  # the highest id replay created a job for; beanstalkd goes on from +1
    damage: list[Damage] = field(default_factory=list)


def list_files(directory: str) -> list[int]:
    """Numbers of the ``binlog.N`` files, oldest first (beanstalkd's own naming)."""
    try:
        names = os.listdir(directory)
    except OSError as exc:
        raise BeanstalkdBinlogError(f"cannot list {directory}: {exc.strerror}") from exc
    return sorted(int(m.group(1)) for m in map(_NAME.match, names) if m)


def looks_like_beanstalkd(directory: str) -> bool:
    """Whether directory holds a beanstalkd binlog (so geanstalk must not open it as its own).

    Cheap: reads the first 8 bytes of the binlog files. A geanstalk file starts
    with the ASCII magic ``GSTKBLOG``; a beanstalkd file with a small native int
    version followed by a tube-name length.
    """
    try:
        numbers = list_files(directory)
    except BeanstalkdBinlogError:
        return False
    for number in numbers:
        try:
            with open(os.path.join(directory, f"binlog.{number}"), "rb") as f:
                head = f.read(8)
        except OSError:
            continue
        if len(head) >= 4 and not head.startswith(b"GSTK"):
            (version,) = _INT.unpack_from(head)
            if version in _KNOWN_VERSIONS:
                return True
    return False


def read_directory(directory: str, max_job_size: int | None = None) -> BeanstalkdLog:
    """Replay every ``binlog.N`` in directory as beanstalkd 1.12 would.

    Damage does not stop the reading of later files (beanstalkd goes on too,
    "You may be missing data"); it is listed in ``damage`` for the caller to
    judge. A record that fails leaves the rest of its file unread, as in
    beanstalkd.
    """
    if not os.path.isdir(directory):
        raise BeanstalkdBinlogError(f"{directory} is not a directory")
    log = BeanstalkdLog()
    numbers = list_files(directory)
    for previous, number in itertools.pairwise(numbers):
        # beanstalkd deletes files oldest first only: a gap is a lost file
        for missing in range(previous + 1, number):
            log.damage.append(
                Damage(
                    os.path.join(directory, f"binlog.{missing}"),
                    0,
                    f"file missing between binlog.{previous} and binlog.{number}",
                )
            )
    for number in numbers:
        path = os.path.join(directory, f"binlog.{number}")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            log.damage.append(Damage(path, 0, f"cannot read: {exc.strerror}"))
            continue
        log.files.append(path)
        _FileReader(path, data, log, max_job_size).read()
    return log


class _FileReader:
    def __init__(
        self, path: str, data: bytes, log: BeanstalkdLog, max_job_size: int | None
    ) -> None:
        self.path = path
        self.data = data
        self.log = log
        self.max_job_size = max_job_size
        self.pos = 0

    def damage(self, offset: int, reason: str) -> None:
        self.log.damage.append(Damage(self.path, offset, reason))

    def take(self, n: int, what: str, record: int) -> bytes | None:
        if self.pos + n > len(self.data):
            self.damage(
                record,
                f"unexpected end of file reading {n} bytes of {what} "
                f"(got {len(self.data) - self.pos})",
            )
            return None
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def read(self) -> None:
        if len(self.data) < 4:
            self.damage(0, f"file of {len(self.data)} bytes has no version")
            return
        (version,) = _INT.unpack_from(self.data)
        self.pos = 4
        if version == WALVER:
            name_len, rec = _INT, _JOBREC7
        elif version == WALVER5:
            name_len, rec = _SIZE_T, _JOBREC5
        else:
            self.damage(0, f"unknown binlog version {version}")
            return
        while self.record(name_len, rec, version):
            pass

    def record(self, name_len: struct.Struct, rec: struct.Struct, version: int) -> bool:
        start = self.pos
        if len(self.data) - start < name_len.size:
            return self.trailing(start)  # beanstalkd stops here without complaint
        (namelen,) = name_len.unpack_from(self.data, start)
        self.pos += name_len.size
        if namelen < 0 or namelen >= MAX_TUBE_NAME_LEN:
            self.damage(start, f"tube name length {namelen} out of range")
            return False
        name = self.take(namelen, "tube name", start) if namelen else b""
        if name is None:
            return False
        fixed = self.take(rec.size, "job struct", start)
        if fixed is None:
            return False
        f = rec.unpack(fixed)
        job_id, pri, delay, ttr, body_size, created, deadline = f[:7]
        counters, state = f[7:12], f[12]
        if job_id == 0:
            return self.trailing(start)
        if version == WALVER5:  # microseconds
            delay, ttr, created, deadline = (v * 1000 for v in (delay, ttr, created, deadline))
        jobs = self.log.jobs
        job = jobs.get(job_id)
        if job is None and not namelen:
            # A short record whose full record was in a file beanstalkd already
            # deleted: the job was deleted or copied forward since. Ignored.
            return True
        if state == INVALID:
            jobs.pop(job_id, None)
            return True
        if state not in STATE_NAMES:
            self.damage(start, f"job {job_id} has unknown state {state}")
            return False
        if state == RESERVED:
            state = READY  # a reservation does not survive a restart
        if namelen:
            if body_size < 2:
                self.damage(start, f"job {job_id} has a body size of {body_size}")
                return False
            if self.max_job_size is not None and body_size - 2 > self.max_job_size:
                self.damage(
                    start,
                    f"job {job_id} is too big ({body_size - 2} > {self.max_job_size} bytes)",
                )
                return False
            if job is not None and body_size != len(job.body) + 2:
                self.damage(start, f"job {job_id} size changed")
                return False
            body = self.take(body_size, "job body", start)
            if body is None:
                return False
            if not body.endswith(b"\r\n"):
                self.damage(start, f"job {job_id}: body does not end in CR LF")
                return False
            try:
                tube = name.decode("ascii")
            except UnicodeDecodeError:
                self.damage(start, f"job {job_id}: tube name is not ASCII")
                return False
        else:
            assert job is not None
            tube, body = job.tube, job.body + b"\r\n"
        self.log.records += 1
        order = self.log.records
        if job is not None and job.state == state and job.buries == counters[3]:
            order = job.order  # a compaction copy (or no change): not a new bury
        image = BeanstalkdJob(
            job_id,
            tube,
            pri,
            delay,
            ttr,
            created,
            deadline,
            *counters,
            state,
            body[:-2],
            order,
        )
        if job is None:
            jobs[job_id] = image
            self.log.max_id = max(self.log.max_id, job_id)
        else:
            jobs[job_id] = image  # same key: the replay order stays that of the first record
        return True

    def trailing(self, start: int) -> bool:
        """The end of the records: beanstalkd's preallocated zeros, or damage."""
        if any(self.data[start:]):
            self.damage(start, "non-zero bytes after the last record")
        return False
