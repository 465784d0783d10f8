"""The record and header encodings on their own: round trips and refusals."""

from __future__ import annotations

import struct
import zlib

import pytest

from geanstalk import binlog_format as fmt


def image(**kw: object) -> fmt.JobImage:
    values: dict[object, object] = dict(
        id=7,
        order=3,
        priority=2**32 - 1,
        ttr=60,
        delay=5,
        state=fmt.DELAYED,
        created_at=1_700_000_000.25,
        runnable_at=1_700_000_005.5,
        counters=(1, 2, 3, 4, 5),
        tube=b"emails",
        body=b"hello\r\nworld\x00",
    )
    values.update(kw)
    return fmt.JobImage(**values)  # type: ignore[arg-type]


def test_job_record_round_trip() -> None:
    original = image()
    data = fmt.encode_job(original)
    assert len(data) == original.job_record_size()
    (kind, decoded), end = fmt.decode_record(data, 0)
    assert kind == fmt.JOB and end == len(data)
    assert decoded == original


def test_job_record_without_runnable_at_and_empty_body() -> None:
    original = image(state=fmt.BURIED, runnable_at=None, body=b"", tube=b"t" * 200)
    (_kind, decoded), _ = fmt.decode_record(fmt.encode_job(original), 0)
    assert decoded == original and decoded.runnable_at is None


def test_update_record_round_trip() -> None:
    original = image(state=fmt.BURIED, runnable_at=None, counters=(9, 8, 7, 6, 5), order=99)
    (kind, value), _end = fmt.decode_record(fmt.encode_update(original), 0)
    assert kind == fmt.UPDATE
    assert value == (7, 99, 2**32 - 1, 60, 5, fmt.BURIED, None, (9, 8, 7, 6, 5))


def test_delete_record_round_trip() -> None:
    data = fmt.encode_delete(2**64 - 1)
    assert fmt.decode_record(data, 0) == ((fmt.DELETE, 2**64 - 1), len(data))


def test_records_decode_one_after_another() -> None:
    data = fmt.encode_job(image()) + fmt.encode_update(image()) + fmt.encode_delete(7)
    kinds = []
    offset = 0
    while offset < len(data):
        (kind, _), offset = fmt.decode_record(data, offset)
        kinds.append(kind)
    assert kinds == [fmt.JOB, fmt.UPDATE, fmt.DELETE]


def test_counters_saturate_instead_of_failing() -> None:
    (_, decoded), _ = fmt.decode_record(fmt.encode_job(image(counters=(2**40, 0, 0, 0, 0))), 0)
    assert decoded.reserves == 2**32 - 1


def test_header_round_trip_and_size() -> None:
    header = fmt.encode_header(12345)
    assert len(header) == fmt.HEADER_SIZE == 24
    assert header.startswith(fmt.MAGIC)
    assert fmt.decode_header(header) == 12345


def test_header_newer_version_is_named() -> None:
    header = bytearray(fmt.encode_header(1))
    struct.pack_into("<I", header, 8, fmt.VERSION + 1)
    with pytest.raises(fmt.NewerVersion, match=f"version {fmt.VERSION + 1}"):
        fmt.decode_header(bytes(header))


def test_header_bad_magic_and_checksum() -> None:
    with pytest.raises(fmt.FormatError, match="magic"):
        fmt.decode_header(b"NOTALOG!" + bytes(16))
    header = bytearray(fmt.encode_header(1))
    header[15] ^= 1
    with pytest.raises(fmt.FormatError, match="checksum"):
        fmt.decode_header(bytes(header))


@pytest.mark.parametrize("cut", range(fmt.HEADER_SIZE))
def test_header_cut_short_is_truncated(cut: int) -> None:
    with pytest.raises(fmt.Truncated):
        fmt.decode_header(fmt.encode_header(1)[:cut])


def test_every_cut_of_a_record_is_truncated() -> None:
    data = fmt.encode_job(image())
    for cut in range(len(data)):
        with pytest.raises(fmt.Truncated):
            fmt.decode_record(data[:cut], 0)


def test_every_flipped_byte_of_a_record_is_detected() -> None:
    data = fmt.encode_update(image())
    for i in range(len(data)):
        damaged = bytearray(data)
        damaged[i] ^= 0x40
        with pytest.raises(fmt.FormatError):
            fmt.decode_record(bytes(damaged), 0)


def test_unknown_type_and_bad_state_are_refused() -> None:
    def seal(payload: bytes) -> bytes:
        length = struct.pack("<I", len(payload))
        return length + struct.pack("<I", zlib.crc32(payload, zlib.crc32(length))) + payload

    with pytest.raises(fmt.FormatError, match="unknown record type 9"):
        fmt.decode_record(seal(b"\x09" + bytes(8)), 0)
    update = bytearray(fmt.encode_update(image()))
    payload = bytearray(update[8:])
    payload[1 + 8 + 8 + 12] = 7  # the state byte
    with pytest.raises(fmt.FormatError, match="state 7"):
        fmt.decode_record(seal(bytes(payload)), 0)
