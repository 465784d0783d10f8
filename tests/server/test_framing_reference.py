"""Framing corner cases played against beanstalkd 1.12 and geanstalk alike.

These are the cases where the reference's 224-byte line buffer shows
through: a lone CR hides a later CR LF inside the same window, a window
that fills without a line end is discarded whole, and a CR LF that
straddles two windows is not seen. Each stream is sent in one write and
again byte by byte; geanstalk must answer exactly as the reference does.
"""

from __future__ import annotations

import pytest

from tests.servers import BEANSTALKD, SKIP_NO_REFERENCE, running

pytestmark = pytest.mark.skipif(BEANSTALKD is None, reason=SKIP_NO_REFERENCE)


def _put_line(total: int) -> bytes:
    """A valid `put 0 0 1 1` line padded with spaces to total bytes with CR LF."""
    core = b"put 0 0 1 1"
    pad = total - len(core) - 2
    return b"put" + b" " * (pad + 1) + b"0 0 1 1\r\n"


CASES = {
    "lone_cr_hides_the_line_end_until_the_window_fills": (
        b"list-tube-used\rx\r\nlist-tube-used\r\n" + b"y" * 250 + b"\r\nlist-tube-used\r\n"
    ),
    "lone_cr_then_window_fills_exactly": b"a\r" + b"b" * 221 + b"\r\nlist-tube-used\r\n",
    "line_of_exactly_224_bytes_is_accepted": _put_line(224) + b"x\r\n",
    "line_of_225_bytes_swallows_the_next_line": (
        _put_line(225) + b"x\r\nlist-tube-used\r\nlist-tube-used\r\n"
    ),
    "line_of_448_bytes_then_command": b"z" * 446 + b"\r\nlist-tube-used\r\n",
    "empty_line_is_unknown_command": b"\r\n\r\nlist-tube-used\r\n",
    "bare_lf_is_not_a_line_end": b"list-tube-used\nlist-tube-used\r\n",
    "kick_and_timeout_numbers_as_strtoul_and_strtol": (
        b"put 0 0 1 1\r\na\r\nreserve\r\nbury 1 0\r\nkick -1\r\n"
        b"reserve-with-timeout abc\r\nkick 5junk\r\nkick \r\n"
    ),
    "job_too_big_body_skipped_then_commands": (
        b"put 0 0 1 65536\r\n" + b"b" * 65536 + b"\r\nlist-tube-used\r\n"
    ),
    "nul_and_odd_names": b"use a\x00b\r\nuse -a\r\nwatch a b\r\nignore \r\nuse a(b)$\r\n",
}


def _converse(kind: str, data: bytes, bytewise: bool) -> bytes:
    with running(kind) as server:
        s = server.connect()
        with s:
            if bytewise:
                for i in range(len(data)):
                    s.sendall(data[i : i + 1])
            else:
                s.sendall(data)
            s.sendall(b"quit\r\n")
            s.settimeout(5)
            out = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except TimeoutError:
                    break
                if not chunk:
                    break
                out += chunk
            return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_framing_matches_the_reference(name: str) -> None:
    data = CASES[name]
    expected = _converse("beanstalkd", data, bytewise=False)
    assert _converse("geanstalk", data, bytewise=False) == expected
    if len(data) < 2000:
        assert _converse("geanstalk", data, bytewise=True) == expected
