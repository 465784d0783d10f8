"""`delete TUBE --state S --all` asks on a terminal, and only "y" deletes."""

from __future__ import annotations

import os
import sys

import greenstalk

from tests.admin.terminal import Terminal
from tests.servers import ServerProcess


def _delete_all(server: ServerProcess) -> list[str]:
    return [sys.executable, "-m", "geanstalk", "delete", "gone", "--state", "buried", "--all",
            "-a", f"127.0.0.1:{server.port}"]  # fmt: skip


def test_delete_all_asks_and_only_yes_deletes(server: ServerProcess) -> None:
    with greenstalk.Client(server.address, use="gone") as gs:
        for _ in range(3):
            job_id = gs.put("x")
            gs.reserve_job(job_id)
            gs.bury(greenstalk.Job(job_id, ""))
        for answer, code, left in ((b"n\n", 1, 3), (b"y\n", 0, 0)):
            term = Terminal(_delete_all(server))
            try:
                term.read_until(lambda out: b"delete all 3 buried jobs of tube gone? [y/N]" in out)
                os.write(term.master, answer)
                assert term.proc.wait(30) == code
            finally:
                term.close()
            assert gs.stats_tube("gone")["current-jobs-buried"] == left
