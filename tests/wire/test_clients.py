"""Real client libraries (greenstalk, pystalk) driving the server as users' code does.

Each test runs against geanstalk and against the reference beanstalkd, so an
expectation that fails on both is a wrong test, not a server bug. Tests share
one server per kind and keep to their own tubes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import greenstalk
import pytest
from pystalk import BeanstalkClient, BeanstalkError

from tests.servers import ServerProcess

_serial = itertools.count(1)


@pytest.fixture
def tube(request: pytest.FixtureRequest) -> str:
    """A tube name no other test uses."""
    return f"clients.{request.node.originalname}.{next(_serial)}"


@pytest.fixture
def green(server: ServerProcess, tube: str) -> Iterator[greenstalk.Client]:
    client = greenstalk.Client(server.address, use=tube, watch=tube)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def green_bytes(server: ServerProcess, tube: str) -> Iterator[greenstalk.Client]:
    client = greenstalk.Client(server.address, encoding=None, use=tube, watch=tube)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def stalk(server: ServerProcess, tube: str) -> Iterator[BeanstalkClient]:
    client = BeanstalkClient(server.address[0], server.address[1], socket_timeout=10)
    client.use(tube)
    client.watchlist = [tube]
    try:
        yield client
    finally:
        client.close()


# --- greenstalk --------------------------------------------------------------------


def test_greenstalk_put_reserve_delete(green: greenstalk.Client) -> None:
    job_id = green.put("hello wire")
    job = green.reserve(timeout=5)
    assert (job.id, job.body) == (job_id, "hello wire")
    green.delete(job)
    with pytest.raises(greenstalk.NotFoundError):
        green.peek(job_id)


def test_greenstalk_binary_body(green_bytes: greenstalk.Client) -> None:
    body = bytes(range(256)) + b"\r\n" * 3
    green_bytes.put(body)
    job = green_bytes.reserve(timeout=5)
    assert job.body == body
    green_bytes.delete(job)


def test_greenstalk_priorities_then_fifo(green: greenstalk.Client) -> None:
    for body, pri in [("c", 10), ("a", 1), ("d", 10), ("b", 1)]:
        green.put(body, priority=pri)
    got = []
    for _ in range(4):
        job = green.reserve(timeout=5)
        got.append(job.body)
        green.delete(job)
    assert got == ["a", "b", "c", "d"]


def test_greenstalk_tubes(server: ServerProcess, green: greenstalk.Client, tube: str) -> None:
    assert green.using() == tube
    assert green.watching() == [tube]
    other = tube + ".other"
    assert green.watch(other) == 2
    assert {tube, other} <= set(green.tubes())
    assert green.ignore(tube) == 1
    with pytest.raises(greenstalk.NotIgnoredError):
        green.ignore(other)
    assert green.watching() == [other]
    with greenstalk.Client(server.address, use=other) as producer:
        producer.put("from other")
    job = green.reserve(timeout=5)
    assert job.body == "from other"
    assert green.stats_job(job)["tube"] == other
    green.delete(job)


def test_greenstalk_delay(green: greenstalk.Client) -> None:
    job_id = green.put("later", delay=1)
    assert green.stats_job(job_id)["state"] == "delayed"
    assert green.peek_delayed().id == job_id
    with pytest.raises(greenstalk.TimedOutError):
        green.reserve(timeout=0)
    job = green.reserve(timeout=5)
    assert job.id == job_id
    green.delete(job)


def test_greenstalk_bury_kick(green: greenstalk.Client) -> None:
    first = green.put("first")
    second = green.put("second")
    for _ in range(2):
        green.bury(green.reserve(timeout=5), priority=7)
    assert green.peek_buried().id == first
    assert green.stats_tube(green.using())["current-jobs-buried"] == 2
    assert green.kick(1) == 1
    assert green.peek_ready().id == first
    green.kick_job(second)
    stats = green.stats_job(second)
    assert (stats["state"], stats["pri"], stats["buries"], stats["kicks"]) == ("ready", 7, 1, 1)


def test_greenstalk_release_touch(green: greenstalk.Client) -> None:
    job_id = green.put("work", priority=50, ttr=30)
    job = green.reserve(timeout=5)
    green.touch(job)
    green.release(job, priority=3)
    stats = green.stats_job(job_id)
    assert (stats["state"], stats["pri"], stats["releases"], stats["reserves"]) == (
        "ready",
        3,
        1,
        1,
    )
    job = green.reserve(timeout=5)
    green.release(job, delay=100)
    assert green.stats_job(job_id)["state"] == "delayed"
    assert green.reserve_job(job_id).id == job_id
    green.delete(job_id)


def test_greenstalk_ttr_and_deadline_soon(green: greenstalk.Client) -> None:
    job_id = green.put("short", ttr=1)
    green.reserve(timeout=5)
    with pytest.raises(greenstalk.DeadlineSoonError):
        green.reserve(timeout=5)
    green.delete(job_id)


def test_greenstalk_errors(green: greenstalk.Client) -> None:
    with pytest.raises(greenstalk.NotFoundError):
        green.delete(10**15)
    with pytest.raises(greenstalk.NotFoundError):
        green.stats_tube(green.using() + ".absent")
    with pytest.raises(greenstalk.BadFormatError):
        green.use("-bad")
    with pytest.raises(greenstalk.JobTooBigError):
        green.put("x" * 70000)


def test_greenstalk_stats_and_pause(green: greenstalk.Client) -> None:
    green.put("x")
    stats = green.stats()
    assert stats["current-jobs-ready"] >= 1
    assert stats["max-job-size"] == 65535
    assert {"uptime", "total-jobs", "current-connections", "version"} <= set(stats)
    green.pause_tube(green.using(), 100)
    tube_stats = green.stats_tube(green.using())
    assert (tube_stats["pause"], tube_stats["current-jobs-ready"]) == (100, 1)
    with pytest.raises(greenstalk.TimedOutError):
        green.reserve(timeout=0)


# --- pystalk -------------------------------------------------------------------------


def test_pystalk_put_reserve_delete(stalk: BeanstalkClient, tube: str) -> None:
    status, job_id = stalk.put_job_into(tube, b"payload")  # pystalk returns (status, id)
    assert status == b"INSERTED"
    job = stalk.reserve_job(timeout=5)
    assert (job.job_id, job.job_data) == (job_id, b"payload")
    stalk.delete_job(job)
    with pytest.raises(BeanstalkError) as err:
        stalk.delete_job(job_id)
    assert err.value.message == "NOT_FOUND"


def test_pystalk_priorities_and_reserve_iter(stalk: BeanstalkClient) -> None:
    for body, pri in [(b"low", 100), (b"high", 1), (b"mid", 50)]:
        stalk.put_job(body, pri=pri)
    bodies = []
    for job in stalk.reserve_iter():
        bodies.append(job.job_data)
        stalk.delete_job(job)
    assert bodies == [b"high", b"mid", b"low"]


def test_pystalk_tubes(server: ServerProcess, stalk: BeanstalkClient, tube: str) -> None:
    other = tube + ".other"
    with stalk.using(other) as inserter:
        inserter.put_job(b"elsewhere")
    assert set(stalk.list_tubes()) >= {tube, other}
    with pytest.raises(BeanstalkError):
        stalk.reserve_job(timeout=0)
    stalk.watch(other)
    job = stalk.reserve_job(timeout=5)
    assert job.job_data == b"elsewhere"
    stalk.delete_job(job)


def test_pystalk_release_bury_kick_peek(stalk: BeanstalkClient) -> None:
    _, job_id = stalk.put_job(b"cycle", pri=9)
    _, delayed = stalk.put_job(b"sleepy", delay=1000)
    assert stalk.peek_delayed().job_id == delayed
    job = stalk.reserve_job(timeout=5)
    stalk.release_job(job.job_id, pri=4)
    assert stalk.peek_ready().job_id == job_id
    job = stalk.reserve_job(timeout=5)
    stalk.bury_job(job.job_id, pri=6)
    assert stalk.peek_buried().job_id == job_id
    assert stalk.kick_jobs(10) == (b"KICKED", 1)  # buried first: the delayed job stays
    stats = stalk.stats_job(job_id)
    assert (stats["state"], stats["pri"], stats["releases"], stats["buries"]) == ("ready", 6, 1, 1)
    stalk.kick_job(delayed)
    assert stalk.stats_job(delayed)["state"] == "ready"


def test_pystalk_stats_and_pause(stalk: BeanstalkClient, tube: str) -> None:
    stalk.put_job(b"x", delay=500)
    tube_stats = stalk.stats_tube(tube)
    assert (tube_stats["name"], tube_stats["current-jobs-delayed"]) == (tube, 1)
    stats = stalk.stats()
    assert stats["current-jobs-delayed"] >= 1 and "rusage-utime" in stats
    stalk.pause_tube(tube, 60)
    assert stalk.stats_tube(tube)["pause"] == 60
    stalk.unpause_tube(tube)
    assert stalk.stats_tube(tube)["pause"] == 0
