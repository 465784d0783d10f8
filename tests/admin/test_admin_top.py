"""`geanstalk top` in a real pseudo-terminal (redraw, rates, q quits) and without one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import greenstalk

from tests.admin.terminal import Terminal
from tests.servers import ServerProcess


def _command(server: ServerProcess, *args: str) -> list[str]:
    return [sys.executable, "-m", "geanstalk", "top", "-a", f"127.0.0.1:{server.port}", *args]


def _last_frame(output: bytes) -> bytes:
    """The last completely drawn screen (empty while the first is still arriving)."""
    frames = [f for f in output.split(b"\x1b[H\x1b[2J") if b"(q quits)" in f]
    return frames[-1] if frames else b""


def test_top_redraws_with_rates_and_q_quits(server: ServerProcess) -> None:
    with greenstalk.Client(server.address, use="jobs") as gs:
        gs.put("first")
        term = Terminal(_command(server, "--interval", "0.3"))
        try:
            term.read_until(lambda out: b"TUBE" in out and b"jobs" in _last_frame(out))
            assert b"(q quits)" in term.output
            assert b"\x1b[?25l" in term.output  # cursor hidden while drawing
            for _ in range(5):
                gs.put("more")

            def rate_shown(out: bytes) -> bool:
                for line in _last_frame(out).splitlines():
                    cells = line.split()
                    if cells[:1] == [b"jobs"] and cells[-2] not in (b"-", b"0"):
                        return True
                return False

            term.read_until(rate_shown)  # PUT/S of the tube became positive
            frame = _last_frame(term.output)
            assert b"ready 6" in frame
            os.write(term.master, b"q")
            assert term.proc.wait(20) == 0
            term.read_until(lambda out: b"\x1b[?25h" in out)  # the cursor is given back
        finally:
            term.close()


def test_top_without_terminal_prints_plain_frames(server: ServerProcess) -> None:
    with greenstalk.Client(server.address, use="plain") as gs:
        gs.put("x", priority=1)
    text = subprocess.run(
        _command(server, "-n", "1"), capture_output=True, timeout=60, check=True
    ).stdout.decode()
    assert "\x1b" not in text
    assert text.startswith("geanstalk top - 127.0.0.1:")
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}
    assert rows["TUBE"][:9] == [
        "TUBE",
        "READY",
        "URGENT",
        "RESERVED",
        "DELAYED",
        "BURIED",
        "WAITING",
        "PAUSED",
        "TOTAL",
    ]
    assert rows["plain"][1:3] == ["1", "1"]
    frames = subprocess.run(
        _command(server, "-n", "2", "-i", "0.1", "--json"),
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    first, second = (json.loads(f) for f in frames)
    assert first["rates"]["put/s"] is None  # no delta before the second snapshot
    assert second["rates"]["put/s"] == 0 and second["interval"] > 0
    assert {t["tube"] for t in second["tubes"]} >= {"default", "plain"}
