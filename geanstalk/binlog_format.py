"""The binlog's bytes: file header and records, encoded and checked.

Nothing here touches a file or the event loop, so the format can be tested
(and reasoned about) on its own. docs/BINLOG.md describes the same layout
byte by byte; change both together and bump VERSION when old readers would
misread the new bytes.
"""

from __future__ import annotations

import math
import struct
import zlib

MAGIC = b"GSTKBLOG"
VERSION = 1

# Job states as stored on disk (the same numbers as geanstalk.core's).
READY = 0
DELAYED = 1
RESERVED = 2
BURIED = 3

# Record types.
JOB = 1  # a job's full image, body and tube included (put, or a compaction copy)
UPDATE = 2  # a job's mutable state after bury, kick, release with delay
DELETE = 3  # the job is gone

_U32 = 0xFFFFFFFF

# magic, version, highest job id ever seen when the file was created, crc32
_HEADER = struct.Struct("<8sIQI")
HEADER_SIZE = _HEADER.size  # 24
_VERSION_END = 12  # magic + version: enough to tell a newer format apart

# length of (type + fields + tube + body), crc32 of (length bytes + all that)
_PREFIX = struct.Struct("<II")
PREFIX_SIZE = _PREFIX.size  # 8
_LEN = struct.Struct("<I")

# type, id, order, priority, ttr, delay, state, created_at, runnable_at,
# reserves, timeouts, releases, buries, kicks, tube length, body length
_JOB = struct.Struct("<BQQIIIBdd5IBI")
JOB_FIELDS = _JOB  # the writer's hot path packs job records itself (binlog.Binlog.put)
PREFIX = _PREFIX
# type, id, order, priority, ttr, delay, state, runnable_at, five counters
_UPDATE = struct.Struct("<BQQIIIBd5I")
# type, id
_DELETE = struct.Struct("<BQ")
DELETE_FIELDS = _DELETE  # the writer's hot path packs delete records itself

JOB_FIXED = PREFIX_SIZE + _JOB.size
MAX_TUBE = 255


class FormatError(Exception):
    """A record or header that does not decode; the reader decides torn vs corrupt."""


class Truncated(FormatError):
    """The bytes end inside a header or record."""


class NewerVersion(FormatError):
    """The file was written by a newer format version than this code reads."""

    def __init__(self, version: int) -> None:
        super().__init__(f"format version {version}, this geanstalk reads up to {VERSION}")
        self.version = version


class JobImage:
    """The last journaled state of one live job: what recovery will rebuild.

    Times are wall-clock seconds (time.time()); ``runnable_at`` is None unless
    the job is delayed. ``order`` is the journal position of the record that
    gave the job its state, kept through compaction copies so that buried
    jobs come back in the order they were buried. ``file``, ``offset``,
    ``size``, ``updated`` and ``job`` are the reader's and writer's
    bookkeeping (where the job record is, whether an UPDATE record changed
    the job since, which Job it mirrors) and are neither encoded nor compared.
    """

    __slots__ = (
        "body",
        "buries",
        "created_at",
        "delay",
        "file",
        "id",
        "job",
        "kicks",
        "offset",
        "order",
        "priority",
        "releases",
        "reserves",
        "runnable_at",
        "size",
        "state",
        "timeouts",
        "ttr",
        "tube",
        "updated",
    )

    def __init__(
        self,
        id: int,
        order: int,
        priority: int,
        ttr: int,
        delay: int,
        state: int,
        created_at: float,
        runnable_at: float | None,
        counters: tuple[int, int, int, int, int],
        tube: bytes,
        body: bytes,
    ) -> None:
        self.id = id
        self.order = order
        self.priority = priority
        self.ttr = ttr
        self.delay = delay
        self.state = state
        self.created_at = created_at
        self.runnable_at = runnable_at
        self.reserves, self.timeouts, self.releases, self.buries, self.kicks = counters
        self.tube = tube
        self.body = body
        # Not stored: the file this record sits in, and the server's Job (for job.file).
        self.file = 0
        self.offset = 0
        self.size = 0
        self.updated = False
        self.job: object = None

    @property
    def counters(self) -> tuple[int, int, int, int, int]:
        return (self.reserves, self.timeouts, self.releases, self.buries, self.kicks)

    def set_state(
        self,
        order: int,
        priority: int,
        ttr: int,
        delay: int,
        state: int,
        runnable_at: float | None,
        counters: tuple[int, int, int, int, int],
    ) -> None:
        self.order = order
        self.priority = priority
        self.ttr = ttr
        self.delay = delay
        self.state = state
        self.runnable_at = runnable_at
        self.reserves, self.timeouts, self.releases, self.buries, self.kicks = counters

    def job_record_size(self) -> int:
        return JOB_FIXED + len(self.tube) + len(self.body)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JobImage):
            return NotImplemented
        return all(_same(getattr(self, k), getattr(other, k)) for k in _COMPARED)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in _COMPARED if k != "body")
        return f"JobImage({fields}, body=<{len(self.body)} bytes>)"

    __hash__ = None  # type: ignore[assignment]


_COMPARED = tuple(
    k for k in JobImage.__slots__ if k not in ("file", "job", "offset", "size", "updated")
)


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _u32(value: int) -> int:
    """Counters saturate rather than make a record unwritable."""
    return value if value <= _U32 else _U32


# crc32 of a record's 4 length bytes, by length: the CRC chains on from it, so
# the payload is checksummed in one call. Bounded: lengths follow body sizes.
_LEN_CRC: dict[int, int] = {}
_LEN_CRC_MAX = 4096


def length_crc(length: int) -> int:
    """The CRC state after a record's length bytes, for chaining over its payload."""
    crc = _LEN_CRC.get(length)
    if crc is None:
        if len(_LEN_CRC) >= _LEN_CRC_MAX:
            _LEN_CRC.clear()
        crc = _LEN_CRC[length] = zlib.crc32(_LEN.pack(length))
    return crc


def _seal(payload: bytes) -> bytes:
    """Prefix a payload with its length and the CRC of both."""
    length = len(payload)
    return _PREFIX.pack(length, zlib.crc32(payload, length_crc(length))) + payload


def encode_header(max_id: int) -> bytes:
    head = _HEADER.pack(MAGIC, VERSION, max_id, 0)[: HEADER_SIZE - 4]
    return head + struct.pack("<I", zlib.crc32(head))


def decode_header(data: bytes | memoryview) -> int:
    """The header's max id; Truncated, NewerVersion or FormatError when unusable."""
    if len(data) < len(MAGIC):
        if bytes(data) == MAGIC[: len(data)]:
            raise Truncated("file ends inside its header")
        raise FormatError("not a geanstalk binlog file (bad magic)")
    if bytes(data[: len(MAGIC)]) != MAGIC:
        raise FormatError("not a geanstalk binlog file (bad magic)")
    if len(data) < _VERSION_END:
        raise Truncated("file ends inside its header")
    (version,) = struct.unpack_from("<I", data, len(MAGIC))
    if version > VERSION:
        raise NewerVersion(version)
    if len(data) < HEADER_SIZE:
        raise Truncated("file ends inside its header")
    _, version, max_id, crc = _HEADER.unpack_from(data, 0)
    if version < 1 or zlib.crc32(data[: HEADER_SIZE - 4]) != crc:
        raise FormatError("file header checksum mismatch")
    return int(max_id)


def encode_job(image: JobImage) -> bytes:
    if len(image.tube) > MAX_TUBE:
        raise ValueError(f"tube name longer than {MAX_TUBE} bytes")
    runnable_at = image.runnable_at
    fields = [
        JOB,
        image.id,
        image.order,
        image.priority,
        image.ttr,
        image.delay,
        image.state,
        image.created_at,
        math.nan if runnable_at is None else runnable_at,
        image.reserves,
        image.timeouts,
        image.releases,
        image.buries,
        image.kicks,
        len(image.tube),
        len(image.body),
    ]
    try:
        fixed = _JOB.pack(*fields)
    except struct.error:
        fields[9:14] = map(_u32, fields[9:14])
        fixed = _JOB.pack(*fields)
    return _seal(fixed + image.tube + image.body)


def encode_update(image: JobImage) -> bytes:
    return encode_update_fields(
        image.id,
        image.order,
        image.priority,
        image.ttr,
        image.delay,
        image.state,
        image.runnable_at,
        image.counters,
    )


def encode_update_fields(
    job_id: int,
    order: int,
    priority: int,
    ttr: int,
    delay: int,
    state: int,
    runnable_at: float | None,
    counters: tuple[int, int, int, int, int],
) -> bytes:
    """An UPDATE record from plain values (the writer keeps no JobImage)."""
    fields = [
        UPDATE,
        job_id,
        order,
        priority,
        ttr,
        delay,
        state,
        math.nan if runnable_at is None else runnable_at,
        *counters,
    ]
    try:
        return _seal(_UPDATE.pack(*fields))
    except struct.error:
        fields[8:13] = map(_u32, fields[8:13])
        return _seal(_UPDATE.pack(*fields))


def encode_delete(job_id: int) -> bytes:
    return _seal(_DELETE.pack(DELETE, job_id))


Update = tuple[int, int, int, int, int, int, "float | None", tuple[int, int, int, int, int]]
Record = tuple[int, "JobImage | Update | int"]


def decode_record(
    data: bytes | memoryview, offset: int, with_body: bool = True
) -> tuple[Record, int]:
    """The record at offset and the offset after it.

    Truncated when the bytes end before the record does; FormatError when
    the record is whole but wrong (checksum, type, lengths, field values).
    With ``with_body=False`` a job record's body is checked but not copied
    (the image's body is b""): replay keeps where bodies lie, not the bytes.
    """
    end = len(data)
    if end - offset < PREFIX_SIZE:
        raise Truncated("file ends inside a record's length and checksum")
    length, crc = _PREFIX.unpack_from(data, offset)
    start = offset + PREFIX_SIZE
    if length == 0:
        raise FormatError("record of length 0")
    if start + length > end:
        raise Truncated(f"record of {length} bytes runs past the end of the file")
    payload = data[start : start + length]
    if zlib.crc32(payload, zlib.crc32(data[offset : offset + 4])) != crc:
        raise FormatError("record checksum mismatch")
    kind = payload[0]
    if kind == JOB:
        if length < _JOB.size:
            raise FormatError("job record too short")
        f = _JOB.unpack_from(payload, 0)
        tube_len, body_len = f[14], f[15]
        if _JOB.size + tube_len + body_len != length:
            raise FormatError("job record lengths disagree")
        tube = bytes(payload[_JOB.size : _JOB.size + tube_len])
        body = bytes(payload[_JOB.size + tube_len :]) if with_body else b""
        _check_state(f[6])
        if not math.isfinite(f[7]):
            raise FormatError("job creation time is not a finite number")
        image = JobImage(
            f[1], f[2], f[3], f[4], f[5], f[6], f[7], _none_if_nan(f[8]), f[9:14], tube, body
        )
        return (JOB, image), start + length
    if kind == UPDATE:
        if length != _UPDATE.size:
            raise FormatError("update record of the wrong length")
        f = _UPDATE.unpack_from(payload, 0)
        _check_state(f[6])
        update = (f[1], f[2], f[3], f[4], f[5], f[6], _none_if_nan(f[7]), f[8:13])
        return (UPDATE, update), start + length  # type: ignore[return-value]
    if kind == DELETE:
        if length != _DELETE.size:
            raise FormatError("delete record of the wrong length")
        return (DELETE, _DELETE.unpack_from(payload, 0)[1]), start + length
    raise FormatError(f"unknown record type {kind}")


def _check_state(state: int) -> None:
    if state > BURIED:
        raise FormatError(f"job state {state} out of range")


def _none_if_nan(value: float) -> float | None:
    """A stored time: NaN means none; an infinity no writer stores (and no
    timer or stats line could use) is damage."""
    if math.isnan(value):
        return None
    if math.isinf(value):
        raise FormatError("a time in the record is infinite")
    return value


# --- reading one record back, and rewriting it -------------------------------------

_PREFIX_AND_JOB = PREFIX_SIZE + _JOB.size
_ID_AT = PREFIX_SIZE + 1  # where a job record's id sits, counted from its prefix
_TUBE_LEN_AT = PREFIX_SIZE + 66
_ID = struct.Struct("<Q")


def job_record_body(record: bytes | memoryview, job_id: int) -> bytes:
    """The body of one whole job record (prefix included), checked.

    FormatError when the record is not the job record of job_id or its
    checksum fails: a body read back from disk is never handed out unchecked.
    """
    check_job_record(record, job_id)
    return bytes(record[_PREFIX_AND_JOB + record[_TUBE_LEN_AT] :])


def check_job_record(record: bytes | memoryview, job_id: int) -> None:
    """FormatError unless record is, whole and intact, the job record of job_id."""
    size = len(record)
    if size < _PREFIX_AND_JOB:
        raise FormatError("job record too short")
    length, crc = _PREFIX.unpack_from(record, 0)
    if length + PREFIX_SIZE != size:
        raise FormatError("record length disagrees with the index")
    if zlib.crc32(record[PREFIX_SIZE:], length_crc(length)) != crc:
        raise FormatError("record checksum mismatch")
    if record[PREFIX_SIZE] != JOB or _ID.unpack_from(record, _ID_AT)[0] != job_id:
        raise FormatError(f"not the job record of job {job_id}")


def job_record_with_update(record: bytes | memoryview, update: bytes) -> bytes:
    """A job record carrying the state of a later UPDATE record (both whole, checked).

    Compaction's copy of a job changed since its put: created_at, tube and
    body from the job record, everything mutable from the update.
    """
    f = _JOB.unpack_from(record, PREFIX_SIZE)
    u = _UPDATE.unpack_from(update, PREFIX_SIZE)
    fixed = _JOB.pack(JOB, f[1], u[2], u[3], u[4], u[5], u[6], f[7], u[7], *u[8:13], f[14], f[15])
    return _seal(fixed + bytes(record[_PREFIX_AND_JOB:]))
