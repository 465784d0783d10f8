"""advance() moves an in-process server's clock: delays, TTRs, pauses and timeouts end
at once, each at its own moment, with nothing sleeping (raw sockets, the fixtures of the plugin)."""

from __future__ import annotations

import pytest
from raw_client import Wire


@pytest.fixture
def wire(geanstalk_server):
    w = Wire(geanstalk_server.address)
    yield w
    w.close()


def test_a_delayed_job_becomes_ready_when_its_delay_has_passed(geanstalk_server, wire) -> None:
    assert wire.ask("put 0 3600 60 5", b"later") == "INSERTED 1"
    assert wire.ask("reserve-with-timeout 0") == "TIMED_OUT"
    geanstalk_server.advance(3599)
    assert wire.stats_job(1)["state"] == "delayed"
    assert int(wire.stats_job(1)["time-left"]) in (0, 1)
    assert wire.ask("reserve-with-timeout 0") == "TIMED_OUT"
    geanstalk_server.advance(1)
    assert wire.ask("reserve-with-timeout 0") == "RESERVED 1 5\nlater"


def test_a_blocked_reserve_gets_the_job_whose_delay_ends(geanstalk_server, wire) -> None:
    wire.ask("put 0 600 60 1", b"x")
    wire.send("reserve")
    geanstalk_server.advance(600)
    assert wire.reply() == "RESERVED 1 1\nx"


def test_a_ttr_runs_out_the_job_comes_back_and_deadline_soon_is_answered(
    geanstalk_server,
) -> None:
    worker, other = Wire(geanstalk_server.address), Wire(geanstalk_server.address)
    try:
        worker.ask("put 5 0 120 3", b"job")
        assert worker.ask("reserve") == "RESERVED 1 3\njob"
        worker.send("reserve")  # blocks: nothing else is ready
        geanstalk_server.advance(119.5)  # inside the 1 s safety margin
        assert worker.reply() == "DEADLINE_SOON"
        assert other.stats_job(1)["state"] == "reserved"
        geanstalk_server.advance(1)  # past the TTR
        stats = other.stats_job(1)
        assert (stats["state"], stats["timeouts"]) == ("ready", "1")
        assert other.ask("reserve-with-timeout 0") == "RESERVED 1 3\njob"
    finally:
        worker.close()
        other.close()


def test_a_job_handed_on_at_a_ttr_end_gets_its_deadline_from_that_moment(
    geanstalk_server,
) -> None:
    first, second = Wire(geanstalk_server.address), Wire(geanstalk_server.address)
    try:
        first.ask("put 0 0 10 1", b"a")
        first.ask("reserve")
        second.send("reserve")  # waits for the job
        geanstalk_server.advance(25)  # TTR ends at 10: second has it from then, until 20
        assert second.reply() == "RESERVED 1 1\na"
        stats = first.stats_job(1)
        assert (stats["state"], stats["timeouts"]) == ("ready", "2")
    finally:
        first.close()
        second.close()


def test_reserve_with_timeout_times_out(geanstalk_server, wire) -> None:
    wire.send("reserve-with-timeout 300")
    geanstalk_server.advance(299)
    wire.send("stats-tube default")  # queued behind the blocked reserve: nothing yet
    geanstalk_server.advance(1)
    assert wire.reply() == "TIMED_OUT"
    assert wire.reply().startswith("OK ")


def test_a_paused_tube_resumes(geanstalk_server, wire) -> None:
    wire.ask("put 0 0 60 1", b"p")
    assert wire.ask("pause-tube default 1000") == "PAUSED"
    assert wire.ask("reserve-with-timeout 0") == "TIMED_OUT"
    geanstalk_server.advance(400)
    stats = wire.stats_tube("default")
    assert stats["pause"] == "1000" and int(stats["pause-time-left"]) in (599, 600)
    wire.send("reserve")
    geanstalk_server.advance(600)
    assert wire.reply() == "RESERVED 1 1\np"


def test_age_and_uptime_move_with_the_clock(geanstalk_server, wire) -> None:
    wire.ask("put 0 0 60 1", b"a")
    geanstalk_server.advance(86400)
    assert int(wire.stats_job(1)["age"]) in (86400, 86401)
    assert int(yaml_uptime(wire)) >= 86400


def yaml_uptime(wire: Wire) -> str:
    from raw_client import yaml_dict

    return yaml_dict(wire.ask("stats"))["uptime"]


def test_advance_refuses_to_go_back(geanstalk_server) -> None:
    with pytest.raises(ValueError):
        geanstalk_server.advance(-1)


def test_on_asyncio_s_own_loop_too(geanstalk_server_factory) -> None:
    server = geanstalk_server_factory(no_uvloop=True)
    assert not server.config.uvloop
    wire = Wire(server.address)
    try:
        wire.ask("put 0 30 60 1", b"d")
        wire.send("reserve-with-timeout 100")
        server.advance(30)
        assert wire.reply() == "RESERVED 1 1\nd"
        assert wire.ask("delete 1") == "DELETED"
        wire.send("reserve-with-timeout 100")
        server.advance(100)
        assert wire.reply() == "TIMED_OUT"
    finally:
        wire.close()
