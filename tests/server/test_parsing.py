"""The pure parsing helpers: numbers, names and command words as 1.12 reads them."""

from __future__ import annotations

import pytest

from geanstalk.protocol import (
    PUT_CACHE_MAX,
    parse_kick_bound,
    parse_put,
    parse_put_cached,
    parse_reserve_timeout,
    read_uint,
    valid_name,
    which_command,
)
from geanstalk.stats import (
    OP_PAUSE_TUBE,
    OP_PUT,
    OP_QUIT,
    OP_RESERVE,
    OP_RESERVE_JOB,
    OP_STATS,
    OP_STATSJOB,
    OP_UNKNOWN,
)


@pytest.mark.parametrize(
    ("line", "limit", "whole", "expected"),
    [
        (b"x 12", 2**32 - 1, True, (12, 4)),
        (b"x    12", 2**32 - 1, True, (12, 7)),
        (b"x 4294967295", 2**32 - 1, True, (4294967295, 12)),
        (b"x 4294967296", 2**32 - 1, True, None),
        (b"x 18446744073709551615", 2**64 - 1, True, (2**64 - 1, 22)),
        (b"x 18446744073709551616", 2**64 - 1, True, None),
        (b"x +1", 2**32 - 1, True, None),
        (b"x -1", 2**32 - 1, True, None),
        (b"x 1 ", 2**32 - 1, True, None),
        (b"x 1 ", 2**32 - 1, False, (1, 3)),
        (b"x \t1", 2**32 - 1, True, None),
        (b"x ", 2**32 - 1, True, None),
        (b"x 007", 2**32 - 1, True, (7, 5)),
    ],
)
def test_read_uint(line: bytes, limit: int, whole: bool, expected: object) -> None:
    assert read_uint(line, 1, limit, whole) == expected


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        (b"5", 5),
        (b"5abc", 5),
        (b"  +7", 7),
        (b"\t3", 3),
        (b"-1", 4294967295),
        (b"4294967296", 0),
        (b"18446744073709551615", 4294967295),
        (b"18446744073709551616", None),
        (b"abc", None),
        (b"", None),
        (b" ", None),
    ],
)
def test_kick_bound_is_strtoul_truncated_to_32_bits(arg: bytes, expected: int | None) -> None:
    assert parse_kick_bound(b"kick " + arg, 5) == expected


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        (b"0", 0),
        (b"10", 10),
        (b"abc", 0),
        (b"", 0),
        (b"1x", 1),
        (b"-1", -1),
        (b"4294967296", 0),
        (b"4294967297", 1),
        (b"2147483648", -1),
        (b"9223372036854775807", -1),
        (b"9223372036854775808", None),
    ],
)
def test_reserve_timeout_is_strtol_truncated_to_int(arg: bytes, expected: int | None) -> None:
    assert parse_reserve_timeout(b"reserve-with-timeout " + arg, 21) == expected


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        (b"default", True),
        (b"a" * 200, True),
        (b"a" * 201, False),
        (b"", False),
        (b"-a", False),
        (b"a-", True),
        (b"A-Za-z0-9+/;.$_()", True),
        (b"a b", False),
        (b"a*", False),
        (b"\xc3\xa9", False),
    ],
)
def test_valid_name(name: bytes, ok: bool) -> None:
    assert valid_name(name) is ok


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"put 1 2 3 4", (1, 2, 3, 4, True)),
        (b"put  1   2 3  4", (1, 2, 3, 4, True)),
        (b"put 1 2 3 4 ", (1, 2, 3, 4, False)),
        (b"put 1 2 3 4x", (1, 2, 3, 4, False)),
        (b"put 1 2 3", None),
        (b"put 4294967296 0 0 0", None),
        (b"put 0 0 0 4294967295", (0, 0, 0, 4294967295, True)),
        (b"put -1 0 0 0", None),
    ],
)
def test_parse_put(line: bytes, expected: object) -> None:
    assert parse_put(line) == expected
    assert parse_put_cached(line) == expected
    assert parse_put_cached(line) == expected  # the remembered answer


def test_put_cache_stays_bounded_and_right_past_its_size() -> None:
    lines = [b"put %d 0 60 %d" % (i, i % 7) for i in range(3 * PUT_CACHE_MAX)]
    lines += [b"put x %d" % i for i in range(10)]
    for line in lines + lines[::-1]:
        assert parse_put_cached(line) == parse_put(line)


@pytest.mark.parametrize(
    ("line", "op"),
    [
        (b"put 1", OP_PUT),
        (b"put", OP_UNKNOWN),
        (b"reserve", OP_RESERVE),
        (b"reservex", OP_RESERVE),
        (b"reserve-job", OP_RESERVE),
        (b"reserve-job 1", OP_RESERVE_JOB),
        (b"reserve-with-timeout", OP_RESERVE),
        (b"stats-job", OP_STATS),
        (b"stats-job 1", OP_STATSJOB),
        (b"quitnow", OP_QUIT),
        (b"pause-tubefoo 1", OP_PAUSE_TUBE),
        (b"delete", OP_UNKNOWN),
        (b"", OP_UNKNOWN),
    ],
)
def test_which_command_uses_the_references_prefixes(line: bytes, op: int) -> None:
    assert which_command(line) == op
