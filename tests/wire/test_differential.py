"""Differential test: the same random command stream to geanstalk and to beanstalkd.

For each seed a fresh server of each kind is started, three connections are
opened to each, and a seeded random sequence of commands is sent to both on
the chosen connection: mostly one command at a time, sometimes 2 to 4 in one
write, and now and then the connection closes and a new one takes its place. Each pair of replies must be
equal once volatile values are masked: stats values that depend on time, the
process or the machine, and the order of tube lists (the reference lists
tubes in the order of its internal set, with swap-removal, which is not a
documented ordering; clients treat the list as a set).

The stream avoids timing: delays and release delays are 0 or far in the
future, every ttr is large, and reserve is only `reserve-with-timeout 0`,
whose answer is then fully determined by the state.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from wire_runner import STEP_COUNTER, split_replies

from tests.servers import BEANSTALKD, SKIP_NO_REFERENCE, ServerProcess, running

SEEDS = range(1, 41)
STEPS = 300
CONNECTIONS = 3
TUBES = ["default", "alpha", "beta", "gamma.paused"]
# Not a command: the connection closes (its reservations go back, its tubes
# may go) and a new one takes its place.
RECONNECT = b"<reconnect>"
# The share of steps that send 2 to 4 commands in one write.
PIPELINED = 0.15

MASKED_KEYS = {
    # stats
    b"pid",
    b"version",
    b"rusage-utime",
    b"rusage-stime",
    b"uptime",
    b"id",
    b"hostname",
    b"os",
    b"platform",
    b"binlog-oldest-index",
    b"binlog-current-index",
    b"binlog-max-size",
    # stats-job
    b"age",
    b"time-left",
    # stats-tube
    b"pause-time-left",
}


def mask(reply: bytes, command: bytes) -> bytes:
    """The reply with volatile values replaced, so equal behaviour compares equal."""
    head, _, rest = reply.partition(b"\r\n")
    if not head.startswith(b"OK ") or not rest.startswith(b"---\n"):
        return reply
    lines = rest[:-2].split(b"\n")
    body = lines[1:-1]
    if command.startswith(b"stats"):
        masked = []
        for line in body:
            key, sep, value = line.partition(b": ")
            if key == b"id" and command.startswith(b"stats-job"):
                masked.append(line)  # the job id is deterministic
            else:
                masked.append(key + sep + (b"*" if key in MASKED_KEYS else value))
        body = masked
    elif command.startswith(b"list-tubes"):
        body = sorted(body)
    return b"OK *\r\n---\n" + b"\n".join(body) + b"\n\r\n"


@dataclass
class Generator:
    """Seeded random commands, drawing ids and tubes from what the run has seen."""

    rng: random.Random
    ids: list[int]
    held: dict[int, set[int]]  # ids each connection reserved, as the reference said

    def job_id(self, conn: int = -1) -> int:
        held = sorted(self.held.get(conn, ()))
        if held and self.rng.random() < 0.7:
            return self.rng.choice(held)
        r = self.rng.random()
        if self.ids and r < 0.85:
            return self.rng.choice(self.ids)
        if r < 0.95:
            return (max(self.ids) if self.ids else 0) + self.rng.randint(1, 3)
        return self.rng.choice([0, 2**64 - 1, 10**12])

    def tube(self) -> bytes:
        return self.rng.choice(TUBES).encode()

    def pri(self) -> int:
        return self.rng.choice([0, 1, 5, 1023, 1024, 2**31, 2**32 - 1, self.rng.randrange(2**32)])

    def delay(self) -> int:
        return 0 if self.rng.random() < 0.75 else self.rng.choice([5000, 86400, 2**32 - 1])

    def body(self) -> bytes:
        r = self.rng.random()
        if r < 0.02:
            size = 65536  # JOB_TOO_BIG with the default -z
        elif r < 0.1:
            size = self.rng.randint(1000, 20000)
        else:
            size = self.rng.randint(0, 120)
        alphabet = b"abcXYZ019 \r\n\x00\xff"
        return bytes(self.rng.choice(alphabet) for _ in range(size))

    def learn(self, conn: int, command: bytes, reply: bytes) -> None:
        """Track ids and reservations from the reference's reply."""
        if command == RECONNECT:
            self.held.pop(conn, None)  # a closed connection's jobs went back
            return
        words = reply.split(b"\r\n", 1)[0].split(b" ")
        if words[0] == b"INSERTED":
            self.ids.append(int(words[1]))
        elif words[0] == b"RESERVED":
            self.held.setdefault(conn, set()).add(int(words[1]))
        elif words[0] in (b"DELETED", b"RELEASED", b"BURIED"):
            self.held.get(conn, set()).discard(int(command.split()[1]))

    def command(self, conn: int) -> bytes:
        kind = self.rng.choices(
            [
                "put", "reserve", "reserve-job", "delete", "release", "bury", "touch",
                "kick", "kick-job", "peek", "peek-ready", "peek-delayed", "peek-buried",
                "stats-job", "stats-tube", "stats", "use", "watch", "ignore",
                "list-tubes", "list-tube-used", "list-tubes-watched", "pause-tube", "junk",
                "reconnect",
            ],
            weights=[
                22, 10, 3, 6, 5, 4, 2, 3, 2, 3, 3, 2, 2, 4, 3, 1, 5, 4, 3, 1, 1, 1, 1, 2, 1,
            ],
        )[0]  # fmt: skip
        rng = self.rng
        if kind == "reconnect":
            return RECONNECT
        if kind == "put":
            body = self.body()
            ttr = rng.choice([100, 600, 3600, 2**32 - 1])
            return b"put %d %d %d %d\r\n%s\r\n" % (self.pri(), self.delay(), ttr, len(body), body)
        if kind == "reserve":
            return b"reserve-with-timeout 0\r\n"
        if kind in ("delete", "touch"):
            return b"%s %d\r\n" % (kind.encode(), self.job_id(conn))
        if kind in ("reserve-job", "kick-job", "peek", "stats-job"):
            return b"%s %d\r\n" % (kind.encode(), self.job_id())
        if kind == "release":
            return b"release %d %d %d\r\n" % (self.job_id(conn), self.pri(), self.delay())
        if kind == "bury":
            return b"bury %d %d\r\n" % (self.job_id(conn), self.pri())
        if kind == "kick":
            return b"kick %d\r\n" % rng.choice([0, 1, 2, 5, 100])
        if kind in ("use", "watch", "ignore", "stats-tube"):
            return b"%s %s\r\n" % (kind.encode(), self.tube())
        if kind == "pause-tube":
            # Only this tube is ever paused, and for long enough to outlast the run.
            return b"pause-tube gamma.paused 100000\r\n"
        if kind == "junk":
            return rng.choice(
                [b"put 1 2\r\n", b"delete\r\n", b"use -x\r\n", b"hello\r\n", b"peek x\r\n"]
            )
        return kind.encode() + b"\r\n"


class Client:
    """One connection to one server, reading exactly one reply per command."""

    def __init__(self, server: ServerProcess) -> None:
        self._open(server)

    def _open(self, server: ServerProcess) -> None:
        self.sock = server.connect()
        self.sock.settimeout(5.0)
        self.buf = b""

    def ask(self, command: bytes) -> bytes:
        return self.ask_many([command])[0]

    def ask_many(self, commands: list[bytes]) -> list[bytes]:
        """Send the commands in one write; one reply each, in order."""
        self.sock.sendall(b"".join(commands))
        replies: list[bytes] = []
        while len(replies) < len(commands):
            done, _ = split_replies(self.buf)
            if done:
                self.buf = self.buf[len(done[0]) :]
                replies.append(done[0])
                continue
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                chunk = None
            if not chunk:
                missing = len(commands) - len(replies)
                why = b"no reply within 5 s" if chunk is None else b"connection closed"
                replies += [b"<%s; buffered %r>" % (why, self.buf)] * missing
                break
            self.buf += chunk
        return replies

    def close(self) -> None:
        self.sock.close()

    def reconnect(self, server: ServerProcess) -> bytes:
        """Close after the server has seen the end (it closes in turn, having
        dropped the connection), then connect anew and wait to be accepted."""
        self.sock.shutdown(socket.SHUT_WR)
        rest = b""
        try:
            while chunk := self.sock.recv(65536):
                rest += chunk
        except TimeoutError:
            return b"<not closed by the server within 5 s>"
        self.sock.close()
        self._open(server)
        return rest + self.ask(b"list-tube-used\r\n")


@pytest.fixture
def pair() -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with running("beanstalkd") as reference, running("geanstalk") as ours:
        yield reference, ours


@pytest.mark.skipif(BEANSTALKD is None, reason=SKIP_NO_REFERENCE)
@pytest.mark.parametrize("seed", SEEDS)
def test_differential(seed: int, pair: tuple[ServerProcess, ServerProcess]) -> None:
    reference, ours = pair
    gen = Generator(random.Random(seed), [], {})
    ref_clients = [Client(reference) for _ in range(CONNECTIONS)]
    our_clients = [Client(ours) for _ in range(CONNECTIONS)]
    # A connection counts in the stats once the server has accepted it, which
    # a client cannot see happen: one reply on each makes sure of it.
    for c in ref_clients + our_clients:
        assert c.ask(b"list-tube-used\r\n") == b"USING default\r\n"
    history: list[str] = []
    try:
        for step in range(STEPS):
            conn = gen.rng.randrange(CONNECTIONS)
            command = gen.command(conn)
            if command == RECONNECT:
                commands = [command]
                expected = [ref_clients[conn].reconnect(reference)]
                got = [our_clients[conn].reconnect(ours)]
            else:
                commands = [command]
                size = gen.rng.randint(2, 4) if gen.rng.random() < PIPELINED else 1
                while len(commands) < size:
                    extra = gen.command(conn)
                    if extra != RECONNECT:
                        commands.append(extra)
                expected = ref_clients[conn].ask_many(commands)
                got = our_clients[conn].ask_many(commands)
            for command, want, have in zip(commands, expected, got, strict=True):
                shown = command if len(command) < 120 else command[:100] + b"..."
                batch = f" ({len(commands)} in one write)" if len(commands) > 1 else ""
                history.append(f"  {step}: conn {conn}{batch} {shown!r} -> {want[:100]!r}")
                if mask(have, command) != mask(want, command):
                    recent = "\n".join(history[-15:])
                    pytest.fail(
                        f"seed {seed}, step {step}, connection {conn}{batch}\n"
                        f"command:    {shown!r}\n"
                        f"beanstalkd: {want!r}\n"
                        f"geanstalk:  {have!r}\n"
                        f"last steps (reference replies):\n{recent}"
                    )
                gen.learn(conn, command, want)
                STEP_COUNTER["differential steps"] += 1
    finally:
        for c in ref_clients + our_clients:
            c.close()
    print(f"differential seed {seed}: {STEPS} steps, replies equal")
