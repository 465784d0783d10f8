"""The floor comparison (benchmarks/floor.py) runs end to end and counts real replies."""

from __future__ import annotations

import floor
import pytest
from loadgen_clients import wait_until_serving
from loadgen_run import Load, run_load

from tests.servers import BEANSTALKD, SKIP_NO_REFERENCE, ServerProcess, free_port


def test_the_floor_server_answers_every_put_of_the_load_generator() -> None:
    port = free_port()
    with ServerProcess(floor.FLOOR, floor.argv(floor.FLOOR, port), port) as server:
        wait_until_serving(server.address)
        result = run_load(server.address, server.pid, Load("put", 3, 100), seconds=0.3)
    assert result.ops > 0  # the clients check every reply is INSERTED


@pytest.mark.skipif(BEANSTALKD is None, reason=SKIP_NO_REFERENCE)
def test_floor_prints_a_row_per_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert floor.main(["--conns", "2", "--seconds", "0.2", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "ops/s" not in line]
    assert [row.split(" | ")[0] for row in rows] == ["| geanstalk", "| beanstalkd", "| floor"]
    assert "| 1.00 |" in rows[1]  # beanstalkd against itself
