"""Reading a binlog directory back: which jobs are live, and in what state.

Replay is the only reader of the log, so it is also where damage is judged:
the end of the newest file may be torn by a crash in the middle of a write
(it is cut off with a warning, since no reply for it can have gone out),
while damage anywhere else means the disk lost data we had acknowledged, and
the server must refuse to start rather than silently drop jobs.
"""

from __future__ import annotations

import logging
import math
import os
import re
import struct
from dataclasses import dataclass, field

from .binlog_format import (
    DELETE,
    HEADER_SIZE,
    JOB,
    JOB_FIELDS,
    PREFIX_SIZE,
    FormatError,
    JobImage,
    NewerVersion,
    Truncated,
    decode_header,
    decode_record,
)
from .errors import BinlogCorrupt, BinlogError

log = logging.getLogger("geanstalk.binlog")

_NAME = re.compile(r"binlog\.([1-9][0-9]*)\Z")


# After a job record's fixed fields (JOB_FIELDS) in an index entry: its file
# number, offset and size, whether an UPDATE changed the job since, then the
# tube name's bytes.
LOCATION = struct.Struct("<IQIB")

# The index without bodies is kept in many small dicts rather than one: a
# dict of ten million entries that grows copies its whole table in one step,
# holding the GIL for a tenth of a second or more, while the server answers
# `stats` from another thread during the replay. Entries are grouped by the
# MiB of the file their record starts in (a "segment"), and a job's segment
# is found in the dict of its range of 2**WHERE_SHIFT ids (consecutive ids
# stay together: sharding by the low bits instead makes each lookup a cache
# miss and the replay a third slower).
SEGMENT_SHIFT = 20
WHERE_SHIFT = 14


def segment_key(number: int, offset: int) -> int:
    """The key of the segment holding a record: they sort as the records lie."""
    return (number << 32) | (offset >> SEGMENT_SHIFT)


@dataclass
class Replay:
    """The log's content: live jobs (by id, with the file of their job record).

    With bodies, ``live`` holds each job's image; without (what the server
    uses: bodies stay in the log), ``segments`` holds one compact bytes entry
    per job instead (``JOB_FIELDS`` + ``LOCATION`` + tube name, about 130
    bytes in all, a third of an image): for each segment of the log, in log
    order, the entries of the live jobs whose record lies there, in the order
    of their records; ``where[job_id >> WHERE_SHIFT][job_id]`` is the
    segment of a job's entry.
    """

    live: dict[int, tuple[JobImage, int]] = field(default_factory=dict)
    segments: dict[int, dict[int, bytes]] = field(default_factory=dict)
    where: dict[int, dict[int, int]] = field(default_factory=dict)
    files: list[tuple[int, int]] = field(default_factory=list)  # (number, size), oldest first
    max_id: int = 0
    max_order: int = 0
    last_number: int = 0  # highest file number seen, even one dropped as torn


def file_name(number: int) -> str:
    return f"binlog.{number}"


def list_files(directory: str) -> list[int]:
    """Numbers of the binlog files in directory, oldest first."""
    try:
        names = os.listdir(directory)
    except OSError as exc:
        raise BinlogError(f"cannot list binlog directory {directory}: {exc.strerror}") from exc
    numbers = []
    for name in names:
        match = _NAME.match(name)
        if match:
            numbers.append(int(match.group(1)))
    return sorted(numbers)


def replay(directory: str, with_bodies: bool = True) -> Replay:
    """The directory's live jobs; without bodies, each image still says where its
    job record lies (``offset``, ``size``) so the body can be read back."""
    result = Replay()
    numbers = list_files(directory)
    result.last_number = numbers[-1] if numbers else 0
    for i, number in enumerate(numbers):
        path = os.path.join(directory, file_name(number))
        size = _replay_file(path, number, i == len(numbers) - 1, result, with_bodies)
        if size is not None:
            result.files.append((number, size))
    return result


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise BinlogError(f"cannot read binlog file {path}: {exc.strerror}") from exc


def _replay_file(
    path: str, number: int, last: bool, result: Replay, with_bodies: bool = True
) -> int | None:
    """Apply one file's records; its valid size, or None when it was dropped."""
    data = _read(path)
    view = memoryview(data)
    try:
        result.max_id = max(result.max_id, decode_header(view))
    except NewerVersion as exc:
        raise BinlogError(f"{path} was written by a newer geanstalk: {exc}") from exc
    except FormatError as exc:
        if last and (isinstance(exc, Truncated) or not any(data)):
            log.warning("binlog: %s: torn file header (%d bytes) removed", path, len(data))
            _remove(path)
            return None
        raise BinlogCorrupt(path, 0, str(exc)) from exc
    offset = HEADER_SIZE
    seg = key = -1
    entries: dict[int, bytes] = {}
    while offset < len(data):
        try:
            record, next_offset = decode_record(view, offset, with_bodies)
        except FormatError as exc:
            if last and _is_torn_tail(view, offset, exc):
                log.warning(
                    "binlog: %s: torn last record at offset %d (%s); truncated %d bytes",
                    path,
                    offset,
                    exc,
                    len(data) - offset,
                )
                _truncate(path, offset)
                return offset
            raise BinlogCorrupt(path, offset, str(exc)) from exc
        if with_bodies:
            if record[0] == JOB:
                record[1].offset = offset  # type: ignore[union-attr]
                record[1].size = next_offset - offset  # type: ignore[union-attr]
            _apply(record, number, result)
        else:
            if offset >> SEGMENT_SHIFT != seg:
                seg = offset >> SEGMENT_SHIFT
                key = segment_key(number, offset)
                entries = result.segments.setdefault(key, {})
            _index(record, view, key, entries, number, offset, next_offset - offset, result)
        offset = next_offset
    return offset


def _is_torn_tail(view: memoryview, offset: int, exc: FormatError) -> bool:
    """A crash mid-write leaves a short record, or a whole-looking last one that fails.

    Zero-filled tails count too: a file system may extend a file before the
    data lands. A record that fails but has more records after it is damage.
    """
    if isinstance(exc, Truncated) or not any(view[offset:]):
        return True
    length = int.from_bytes(view[offset : offset + 4], "little")
    return offset + PREFIX_SIZE + length == len(view)


def _apply(record: tuple[int, object], number: int, result: Replay) -> None:
    kind, value = record
    if kind == JOB:
        assert isinstance(value, JobImage)
        result.live[value.id] = (value, number)
        result.max_id = max(result.max_id, value.id)
        result.max_order = max(result.max_order, value.order)
    elif kind == DELETE:
        assert isinstance(value, int)
        result.live.pop(value, None)
        result.max_id = max(result.max_id, value)
    else:
        job_id, order, priority, ttr, delay, state, runnable_at, counters = value  # type: ignore[misc]
        result.max_id = max(result.max_id, job_id)
        result.max_order = max(result.max_order, order)
        entry = result.live.get(job_id)
        # An update whose job record is gone belongs to a job deleted later:
        # files are only removed oldest first, once none of their jobs is live.
        if entry is not None:
            entry[0].set_state(order, priority, ttr, delay, state, runnable_at, counters)
            entry[0].updated = True


_FIXED = JOB_FIELDS.size
_TUBE_LEN = 14  # index of tube_len in JOB_FIELDS' fields


def _index(
    record: tuple[int, object],
    view: memoryview,
    key: int,
    entries: dict[int, bytes],
    number: int,
    offset: int,
    size: int,
    r: Replay,
) -> None:
    """_apply for an index without bodies: one bytes entry per live job, in
    ``entries`` (the segment ``key`` of the record at offset)."""
    kind, value = record
    if kind == JOB:
        assert isinstance(value, JobImage)
        job_id = value.id
        start = offset + 8  # the record's fields, after its length and CRC
        tube_len = view[start + 66]
        entry = (
            bytes(view[start : start + _FIXED])
            + LOCATION.pack(number, offset, size, 0)
            + bytes(view[start + _FIXED : start + _FIXED + tube_len])
        )
        where = r.where.get(job_id >> WHERE_SHIFT)
        if where is None:
            where = r.where[job_id >> WHERE_SHIFT] = {}
        old = where.get(job_id)
        if old is not None:
            # A newer record of the job: its entry moves to the end (the
            # segment's dict keeps the order of the records).
            r.segments[old].pop(job_id, None)
        where[job_id] = key
        entries[job_id] = entry
        if job_id > r.max_id:
            r.max_id = job_id
        if value.order > r.max_order:
            r.max_order = value.order
    elif kind == DELETE:
        assert isinstance(value, int)
        where = r.where.get(value >> WHERE_SHIFT)
        old = where.pop(value, None) if where is not None else None
        if old is not None:
            r.segments[old].pop(value, None)
        if value > r.max_id:
            r.max_id = value
    else:
        job_id, order, priority, ttr, delay, state, runnable_at, counters = value  # type: ignore[misc]
        r.max_id = max(r.max_id, job_id)
        r.max_order = max(r.max_order, order)
        where = r.where.get(job_id >> WHERE_SHIFT)
        old = where.get(job_id) if where is not None else None
        if old is None:  # its job was deleted later (see _apply)
            return
        held = r.segments[old]
        entry = held[job_id]
        f = list(JOB_FIELDS.unpack_from(entry, 0))
        f[2:7] = order, priority, ttr, delay, state
        f[8] = math.nan if runnable_at is None else runnable_at
        f[9:14] = counters
        loc = list(LOCATION.unpack_from(entry, _FIXED))
        loc[3] = 1
        tube = entry[_FIXED + LOCATION.size :]
        held[job_id] = JOB_FIELDS.pack(*f) + LOCATION.pack(*loc) + tube


def _truncate(path: str, size: int) -> None:
    try:
        os.truncate(path, size)
    except OSError as exc:
        raise BinlogError(f"cannot truncate torn binlog file {path}: {exc.strerror}") from exc


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError as exc:
        raise BinlogError(f"cannot remove torn binlog file {path}: {exc.strerror}") from exc
