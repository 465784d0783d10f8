"""A server whose binlog is still loading: connections are accepted, `stats`
is answered, every other command waits for the load and then runs in order.

The load is held at its start with a Runner ``on_loading`` hook, so what the
client sees while it loads does not depend on timing; the ids the held
commands get after it prove they ran only once every job was back.
"""

from __future__ import annotations

import asyncio
import pathlib
import socket
import time

import pytest

from geanstalk import runner as runner_module
from geanstalk.config import ServerConfig
from geanstalk.runner import Runner
from tests.servers import (
    ServerProcess,
    free_port,
    geanstalk_command,
    listening_socket,
    recv_until,
)


class Client:
    """A raw connection on the test's loop: bytes out, whole replies in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> Client:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def reply(self) -> bytes:
        """One reply, with its body when it announces one."""
        line = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), 30)
        words = line.split()
        if words and words[0] in (b"OK", b"RESERVED", b"FOUND"):
            line += await asyncio.wait_for(self.reader.readexactly(int(words[-1]) + 2), 30)
        return line

    def close(self) -> None:
        self.writer.close()


def _stat(reply: bytes, key: str) -> int:
    return int(reply.split(f"\n{key}: ".encode())[1].split(b"\n")[0])


def _put_many(port: int, n: int) -> None:
    """n jobs of a few bytes through one pipelined connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(b"".join(b"put 100 0 60 3\r\njob\r\n" for _ in range(n)))
        got = 0
        tail = b""  # a CR at the end of a read: its LF may start the next one
        while got < n:
            chunk = s.recv(1 << 20)
            assert chunk, "server closed during the puts"
            data = tail + chunk
            got += data.count(b"\r\n")
            tail = b"\r" if data.endswith(b"\r") else b""


async def _fill(cfg: ServerConfig, n: int, extra: bytes = b"", replies: int = 0) -> None:
    """A first server puts n jobs in the log (then extra commands), and stops."""
    sock = listening_socket()
    runner = Runner(cfg, [sock], install_signals=False)
    await runner.start()
    try:
        port = sock.getsockname()[1]
        await asyncio.to_thread(_put_many, port, n)
        if extra:
            c = await Client.connect(port)
            await c.send(extra)
            for _ in range(replies):
                await c.reply()
            c.close()
    finally:
        await runner.stop()


async def _start_held(cfg: ServerConfig) -> tuple[Runner, int, asyncio.Event, asyncio.Task[None]]:
    """A second server, its load held until the returned event is set."""
    sock = listening_socket()
    runner = Runner(cfg, [sock], install_signals=False)
    gate = asyncio.Event()
    loading = asyncio.Event()

    async def hold(r: Runner) -> None:
        loading.set()
        await gate.wait()

    runner.on_loading.append(hold)
    task = asyncio.create_task(runner.start())
    await loading.wait()
    return runner, sock.getsockname()[1], gate, task


@pytest.fixture(params=[None, 0], ids=["default-cache", "body-cache-0"])
def config(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> ServerConfig:
    return ServerConfig(binlog_dir=str(tmp_path), fsync_ms=0, body_cache=request.param)


def test_stats_is_answered_and_other_commands_wait_for_the_load(config: ServerConfig) -> None:
    async def scenario() -> None:
        await _fill(config, 3, b"reserve\r\n", 1)  # job 1 reserved: back as ready
        runner, port, gate, started = await _start_held(config)
        try:
            assert not runner.ready and runner.server is not None and runner.server.loading
            c = await Client.connect(port)
            await c.send(b"stats\r\nstats\r\n")
            for _ in range(2):
                reply = await c.reply()
                assert reply.startswith(b"OK ")
                assert _stat(reply, "current-jobs-ready") == 0
                assert _stat(reply, "current-connections") == 1
            # Everything from the first other command on waits, in order,
            # stats included.
            await c.send(b"put 0 0 10 3\r\nnew\r\nstats\r\nreserve\r\n")
            other = await Client.connect(port)
            await other.send(b"use elsewhere\r\nlist-tube-used\r\n")
            gate.set()
            await started
            assert runner.ready and not runner.server.loading
            assert await c.reply() == b"INSERTED 4\r\n"  # after the 3 recovered
            reply = await c.reply()
            assert _stat(reply, "current-jobs-ready") == 4
            assert _stat(reply, "cmd-stats") == 3
            assert await c.reply() == b"RESERVED 4 3\r\nnew\r\n"
            assert await other.reply() == b"USING elsewhere\r\n"
            assert await other.reply() == b"USING elsewhere\r\n"
            await c.send(b"peek 1\r\n")
            assert await c.reply() == b"FOUND 1 3\r\njob\r\n"
            c.close()
            other.close()
        finally:
            gate.set()
            await runner.stop()

    asyncio.run(scenario())


def test_quit_and_half_close_while_loading(config: ServerConfig) -> None:
    async def scenario() -> None:
        await _fill(config, 2)
        runner, port, gate, started = await _start_held(config)
        try:
            quitter = await Client.connect(port)
            await quitter.send(b"stats\r\nquit\r\nput 0 0 1 1\r\nx\r\n")
            assert (await quitter.reply()).startswith(b"OK ")
            assert await asyncio.wait_for(quitter.reader.read(), 30) == b""  # closed, nothing else
            # Half-closed after a stats: answered and closed during the load.
            halfway = await Client.connect(port)
            await halfway.send(b"stats\r\n")
            halfway.writer.write_eof()
            assert (await halfway.reply()).startswith(b"OK ")
            assert await asyncio.wait_for(halfway.reader.read(), 30) == b""
            # Half-closed with a command held: answered after the load, then closed.
            held = await Client.connect(port)
            await held.send(b"peek 2\r\n")
            held.writer.write_eof()
            assert not runner.ready
            gate.set()
            await started
            assert await held.reply() == b"FOUND 2 3\r\njob\r\n"
            assert await asyncio.wait_for(held.reader.read(), 30) == b""
            # Nothing the quitter sent after quit ran.
            c = await Client.connect(port)
            await c.send(b"stats\r\n")
            reply = await c.reply()
            assert (_stat(reply, "current-jobs-ready"), _stat(reply, "cmd-put")) == (2, 0)
            c.close()
        finally:
            gate.set()
            await runner.stop()

    asyncio.run(scenario())


def test_a_stop_during_the_load_keeps_every_job(
    config: ServerConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One batch of jobs per loop step: the stop lands in the middle.
    monkeypatch.setattr(runner_module, "RESTORE_SLICE", 0.0)

    async def scenario() -> None:
        await _fill(config, 5000)
        runner, port, gate, started = await _start_held(config)
        c = await Client.connect(port)
        await c.send(b"stats\r\nput 0 0 10 1\r\nx\r\n")
        assert (await c.reply()).startswith(b"OK ")
        runner.request_stop("test")
        gate.set()
        await started
        assert not runner.ready and runner.server is not None
        assert len(runner.server.storage.jobs) < 5000  # cut short at a batch
        await runner.stop()
        # The held put never ran: the client gets the close, no reply.
        assert await asyncio.wait_for(c.reader.read(), 30) == b""
        runner, port, gate, started = await _start_held(config)
        gate.set()
        await started
        c = await Client.connect(port)
        await c.send(b"stats\r\n")
        reply = await c.reply()
        assert _stat(reply, "current-jobs-ready") == 5000
        c.close()
        await runner.stop()

    asyncio.run(scenario())


def test_stats_follows_the_jobs_as_they_come_back(
    config: ServerConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between batches the loop answers: `stats` sees the count grow."""
    monkeypatch.setattr(runner_module, "RESTORE_SLICE", 0.0)
    jobs = 20_000

    async def scenario() -> None:
        await _fill(config, jobs)
        runner, port, gate, started = await _start_held(config)
        try:
            c = await Client.connect(port)
            gate.set()
            seen = []
            while True:
                await c.send(b"stats\r\n")
                ready = _stat(await c.reply(), "current-jobs-ready")
                seen.append(ready)
                if ready == jobs:
                    break
            await started
            assert seen == sorted(seen), seen
            assert any(0 < n < jobs for n in seen), seen  # answered between batches
            c.close()
        finally:
            gate.set()
            await runner.stop()

    asyncio.run(scenario())


def test_a_real_server_answers_stats_while_a_big_log_loads(tmp_path: pathlib.Path) -> None:
    """`geanstalk serve` from exec: the port answers `stats` at once, and a
    reserve sent during the load gets the first job once it is back."""
    jobs = 100_000
    port = free_port()
    argv = geanstalk_command("-l", "127.0.0.1", "-p", str(port), "-b", str(tmp_path))
    first = ServerProcess("geanstalk", argv, port).start()
    try:
        _put_many(port, jobs)
    finally:
        first.stop()
    second = ServerProcess("geanstalk", argv, port).start(timeout=60)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            s.sendall(b"stats\r\n")
            reply = recv_until(s, 1, timeout=60)
            assert reply.startswith(b"OK ")
            s.sendall(b"reserve-with-timeout 0\r\nstats\r\n")
            reply = recv_until(s, 2, timeout=120)
            assert reply.startswith(b"RESERVED 1 3\r\njob\r\n"), reply[:80]
            assert _stat(reply, "current-jobs-ready") == jobs - 1
            assert _stat(reply, "current-jobs-reserved") == 1
    finally:
        second.stop(timeout=60)


def test_restoring_hands_the_jobs_over_a_batch_at_a_time() -> None:
    """What the runner does between batches is answer connections: after
    each step of Server.restoring the facade shows the jobs back so far."""
    from geanstalk.core import READY, Job
    from geanstalk.server import Server

    loop = asyncio.new_event_loop()
    try:
        server = Server(loop)
        jobs = []
        for i in range(2500):
            job = Job(i + 1, priority=5, ttr=60, body=b"x", created_at=time.time())
            job.tube, job.state = b"t", READY
            jobs.append(job)
        steps = server.restoring(iter(jobs), 9000, batch=1000)  # any iterable will do
        seen = []
        for done in steps:
            doc = server.stats_doc()
            seen.append((done, _stat(b"\n" + doc, "current-jobs-ready")))
            assert server.storage.next_id <= 2501  # the ids continue only at the end
        assert seen == [(1000, 1000), (2000, 2000), (2500, 2500)]
        assert server.storage.next_id == 9000
    finally:
        loop.close()
