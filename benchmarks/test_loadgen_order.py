"""The load generator's run order: no server always goes first into a scenario."""

from __future__ import annotations

import loadgen
import pytest
from loadgen_run import RunResult


def test_every_repeat_turns_the_order_round(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[tuple[str, str]] = []

    def fake_run(kind: str, sc: loadgen.Scenario, s: loadgen.Settings) -> RunResult:
        ran.append((sc.name + f"/c{sc.load.conns}/b{sc.load.body}", kind))
        return RunResult(ops=100, seconds=1.0, server_cpu=0.001)

    monkeypatch.setattr(loadgen, "run_scenario_once", fake_run)
    s = loadgen.Settings(repeat=4, conns=(1,), bodies=(100,), log=lambda line: None)
    table = loadgen.run_throughput(s)

    first = ran[0][0]
    kinds = [kind for name, kind in ran if name == first]
    assert kinds == ["geanstalk", "beanstalkd", "beanstalkd", "geanstalk"] * 2
    assert all(len(rows["geanstalk"].runs) == 4 for rows in table.values())
    assert all(len(rows["beanstalkd"].runs) == 4 for rows in table.values())


def test_run_order_alternates_for_any_number_of_servers() -> None:
    assert loadgen.run_order(("a",), 1) == ["a"]
    assert loadgen.run_order(("a", "b", "c"), 0) == ["a", "b", "c"]
    assert loadgen.run_order(("a", "b", "c"), 1) == ["c", "b", "a"]
