"""The binlog through a real server: restarts, crashes (kill -9), SIGTERM, a second server.

Every check sends real protocol bytes over loopback to `geanstalk serve -b DIR`.
"""

from __future__ import annotations

import contextlib
import random
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.servers import ServerProcess, geanstalk_server, recv_until

CRASH_ROUNDS = 20
STRESS_ROUNDS = 300

# Flags every server here starts with: each test runs with the default body
# cache and with none (every body read back from the log when asked for).
CACHE_FLAGS: tuple[str, ...] = ()


@pytest.fixture(
    autouse=True, params=[(), ("--body-cache", "0")], ids=["body-cache-default", "body-cache-0"]
)
def cache_flags(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "CACHE_FLAGS", request.param)


class Client:
    """A blocking client that sends commands and reads whole replies."""

    def __init__(self, server: ServerProcess) -> None:
        self.sock = server.connect(timeout=10)

    def __call__(self, *commands: bytes) -> list[bytes]:
        self.sock.sendall(b"".join(commands))
        return split_replies(recv_until(self.sock, len(commands), timeout=10), len(commands))

    def one(self, command: bytes) -> bytes:
        return self(command)[0]

    def put(self, body: bytes, pri: int = 0, delay: int = 0, ttr: int = 60) -> int:
        reply = self.one(b"put %d %d %d %d\r\n%s\r\n" % (pri, delay, ttr, len(body), body))
        assert reply.startswith(b"INSERTED "), reply
        return int(reply.split()[1])

    def stats_job(self, jid: int) -> dict[str, str] | None:
        reply = self.one(b"stats-job %d\r\n" % jid)
        if reply == b"NOT_FOUND\r\n":
            return None
        return yaml_dict(reply)

    def close(self) -> None:
        self.sock.close()


def split_replies(data: bytes, n: int) -> list[bytes]:
    replies = []
    pos = 0
    for _ in range(n):
        end = data.index(b"\r\n", pos) + 2
        words = data[pos:end].split()
        if words[0] in (b"OK", b"RESERVED", b"FOUND"):
            end += int(words[-1]) + 2
        replies.append(data[pos:end])
        pos = end
    return replies


def yaml_dict(reply: bytes) -> dict[str, str]:
    body = reply.split(b"\r\n", 1)[1]
    lines = body.decode().splitlines()[1:]
    return dict(line.split(": ", 1) for line in lines if ": " in line)


@pytest.fixture
def binlog_dir(tmp_path) -> str:
    return str(tmp_path)


def exit_status(server: ServerProcess) -> int:
    """Start a server that should refuse to run; its exit status.

    The listening socket exists before the binlog is opened, so start() may
    see the port open for a moment before the process gives up.
    """
    with contextlib.suppress(RuntimeError):
        server.start()
    assert server.proc is not None
    return server.proc.wait(20)


def start(directory: str, *flags: str, stderr: str | None = None) -> ServerProcess:
    return geanstalk_server("-b", directory, *CACHE_FLAGS, *flags, stderr_path=stderr).start()


def restart(server: ServerProcess, directory: str, *flags: str, crash: bool) -> ServerProcess:
    if crash:
        server.kill()
    else:
        assert server.stop() == 0
    return start(directory, *flags)


@pytest.mark.parametrize("crash", [False, True], ids=["sigterm", "kill-9"])
def test_every_journaled_transition_survives_a_restart(binlog_dir, crash) -> None:
    flags = ("-f", "0")
    server = start(binlog_dir, *flags)
    try:
        c = Client(server)
        ready = c.put(b"ready job", pri=5)
        delayed = c.put(b"delayed job", pri=6, delay=1000)
        deleted = c.put(b"deleted job")
        buried = [c.put(b"buried %d" % i, pri=10 + i) for i in range(3)]
        kicked = c.put(b"kicked job", pri=50)
        kicked_delayed = c.put(b"kicked delayed", pri=51, delay=1000)
        released = c.put(b"released job", pri=52)
        reserved = c.put(b"reserved at the crash", pri=53)
        last = c.put(b"highest id, deleted")
        assert c.one(b"delete %d\r\n" % deleted) == b"DELETED\r\n"
        assert c.one(b"delete %d\r\n" % last) == b"DELETED\r\n"
        # bury in the order 2, 0, 1 (reserve-job picks each one)
        for i in (2, 0, 1):
            assert c.one(b"reserve-job %d\r\n" % buried[i]).startswith(b"RESERVED")
            assert c.one(b"bury %d %d\r\n" % (buried[i], 20 + i)) == b"BURIED\r\n"
        assert c.one(b"reserve-job %d\r\n" % kicked).startswith(b"RESERVED")
        assert c.one(b"bury %d 50\r\n" % kicked) == b"BURIED\r\n"
        assert c.one(b"kick-job %d\r\n" % kicked) == b"KICKED\r\n"
        assert c.one(b"kick-job %d\r\n" % kicked_delayed) == b"KICKED\r\n"
        assert c.one(b"reserve-job %d\r\n" % released).startswith(b"RESERVED")
        assert c.one(b"release %d 7 1000\r\n" % released) == b"RELEASED\r\n"
        assert c.one(b"reserve-job %d\r\n" % reserved).startswith(b"RESERVED")
        c.close()

        server = restart(server, binlog_dir, *flags, crash=crash)
        c = Client(server)
        s = c.stats_job(ready)
        assert s is not None and (s["state"], s["pri"]) == ("ready", "5")
        s = c.stats_job(delayed)
        assert s is not None and (s["state"], s["pri"], s["delay"]) == ("delayed", "6", "1000")
        assert 0 < int(s["time-left"]) <= 1000
        assert c.stats_job(deleted) is None and c.stats_job(last) is None
        for i in range(3):
            s = c.stats_job(buried[i])
            assert s is not None
            assert (s["state"], s["pri"], s["reserves"], s["buries"]) == (
                "buried",
                str(20 + i),
                "1",
                "1",
            )
        s = c.stats_job(kicked)
        assert s is not None and (s["state"], s["buries"], s["kicks"]) == ("ready", "1", "1")
        s = c.stats_job(kicked_delayed)
        assert s is not None and (s["state"], s["kicks"]) == ("ready", "1")
        s = c.stats_job(released)
        assert s is not None
        assert (s["state"], s["pri"], s["delay"], s["releases"]) == ("delayed", "7", "1000", "1")
        s = c.stats_job(reserved)
        assert s is not None and s["state"] == "ready"
        assert c.one(b"peek %d\r\n" % ready) == b"FOUND %d 9\r\nready job\r\n" % ready
        # buried jobs come back in bury order: kick takes them 2, 0, 1
        for i in (2, 0, 1):
            assert c.one(b"peek-buried\r\n").startswith(b"FOUND %d " % buried[i])
            assert c.one(b"kick 1\r\n") == b"KICKED 1\r\n"
        assert c.put(b"after restart") == last + 1
        c.close()
    finally:
        server.stop()


def test_stats_show_the_binlog(binlog_dir) -> None:
    server = start(binlog_dir, "-s", "1000", "-F")  # -F: files go as soon as written
    try:
        c = Client(server)
        ids = [c.put(b"x" * 200) for _ in range(20)]
        stats = yaml_dict(c.one(b"stats\r\n"))
        assert stats["binlog-oldest-index"] == "1"
        assert int(stats["binlog-current-index"]) >= 5
        assert stats["binlog-records-written"] == "20"
        assert stats["binlog-max-size"] == "1000"
        assert c.stats_job(ids[-1])["file"] == stats["binlog-current-index"]  # type: ignore[index]
        for jid in ids:
            assert c.one(b"delete %d\r\n" % jid) == b"DELETED\r\n"
        c.put(b"y")  # a write after the deletes lets the emptied files go
        stats = yaml_dict(c.one(b"stats\r\n"))
        assert int(stats["binlog-oldest-index"]) > 1
        c.close()
    finally:
        server.stop()


def test_sigterm_syncs_and_exits_0(binlog_dir) -> None:
    # -f with a long interval: only the shutdown itself can sync the last records
    server = start(binlog_dir, "-f", "600000")
    c = Client(server)
    ids = [c.put(b"job %d" % i) for i in range(50)]
    c.close()
    assert server.stop() == 0
    server = start(binlog_dir)
    try:
        c = Client(server)
        for jid in ids:
            assert c.one(b"peek %d\r\n" % jid).startswith(b"FOUND %d " % jid)
        c.close()
    finally:
        server.stop()


def test_second_server_on_the_same_directory_is_refused(binlog_dir, tmp_path) -> None:
    first = start(binlog_dir)
    # a reply means the first server holds the lock: the port opens before the log does
    probe = Client(first)
    assert probe.one(b"stats\r\n").startswith(b"OK ")
    probe.close()
    err = str(tmp_path / "second.err")
    second = geanstalk_server("-b", binlog_dir, stderr_path=err)
    try:
        assert exit_status(second) != 0
        message = Path(err).read_text()
        assert "in use by another server" in message
        c = Client(first)  # the first one is unharmed
        assert c.put(b"still here") == 1
        c.close()
    finally:
        second.kill()
        first.stop()


def test_missing_directory_is_refused(tmp_path) -> None:
    err = str(tmp_path / "err")
    server = geanstalk_server("-b", str(tmp_path / "missing"), stderr_path=err)
    assert exit_status(server) != 0
    assert "does not exist" in Path(err).read_text()


def test_corrupt_log_is_refused_with_file_and_offset(binlog_dir, tmp_path) -> None:
    server = start(binlog_dir, "-s", "400")
    c = Client(server)
    for _ in range(10):
        c.put(b"z" * 100)
    c.close()
    assert server.stop() == 0
    path = Path(binlog_dir, "binlog.1")
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF
    path.write_bytes(bytes(data))
    err = str(tmp_path / "err")
    server = geanstalk_server("-b", binlog_dir, stderr_path=err)
    assert exit_status(server) != 0
    assert "binlog.1: corrupt record at offset 24" in Path(err).read_text()


# --- crash test ---------------------------------------------------------------------


class Ledger:
    """What clients were told: the jobs that must survive, and those that must not."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: dict[int, bytes] = {}  # INSERTED reached the client
        self.deleting: set[int] = set()  # a delete was sent (its reply may not have come)
        self.deleted: set[int] = set()  # DELETED reached the client
        self.highest = 0


def load(
    server: ServerProcess, ledger: Ledger, worker: int, rounds: int, stop: threading.Event
) -> None:
    rng = random.Random(worker * 7919 + rounds)
    try:
        sock = server.connect(timeout=10)
    except OSError:
        return
    try:
        for n in range(2000):
            if stop.is_set():
                return
            body = b"w%d r%d n%d %s" % (worker, rounds, n, b"." * rng.randrange(0, 300))
            sock.sendall(b"put 0 0 60 %d\r\n%s\r\n" % (len(body), body))
            reply = recv_until(sock, 1, timeout=10)
            if not reply.startswith(b"INSERTED "):
                return
            jid = int(reply.split()[1])
            with ledger.lock:
                ledger.bodies[jid] = body
                ledger.highest = max(ledger.highest, jid)
                candidates = [j for j in ledger.bodies if j not in ledger.deleting]
                victim = rng.choice(candidates) if rng.random() < 0.6 and candidates else None
                if victim is not None:
                    ledger.deleting.add(victim)
            if victim is None:
                continue
            sock.sendall(b"delete %d\r\n" % victim)
            reply = recv_until(sock, 1, timeout=10)
            if reply != b"DELETED\r\n":
                return
            with ledger.lock:
                ledger.deleted.add(victim)
    except OSError:
        return  # the server was killed under us
    finally:
        sock.close()


def check(server: ServerProcess, ledger: Ledger) -> None:
    must_live = [j for j in ledger.bodies if j not in ledger.deleting]
    c = Client(server)
    try:
        for start_at in range(0, len(must_live), 200):
            chunk = must_live[start_at : start_at + 200]
            replies = c(*(b"peek %d\r\n" % j for j in chunk))
            for jid, reply in zip(chunk, replies, strict=True):
                body = ledger.bodies[jid]
                assert reply == b"FOUND %d %d\r\n%s\r\n" % (jid, len(body), body), (jid, reply)
        gone = sorted(ledger.deleted)
        for start_at in range(0, len(gone), 200):
            chunk = gone[start_at : start_at + 200]
            replies = c(*(b"peek %d\r\n" % j for j in chunk))
            assert all(r == b"NOT_FOUND\r\n" for r in replies), "a deleted job came back"
        # an unacknowledged delete may or may not have happened: finish it now
        for jid in ledger.deleting - ledger.deleted:
            assert c.one(b"delete %d\r\n" % jid) in (b"DELETED\r\n", b"NOT_FOUND\r\n")
            ledger.deleted.add(jid)
        probe = c.put(b"probe")
        assert probe > ledger.highest  # ids continue after every id a client saw
        assert c.one(b"delete %d\r\n" % probe) == b"DELETED\r\n"
    finally:
        c.close()


def crash_rounds(directory: str, rounds: int) -> Ledger:
    ledger = Ledger()
    flags = ("-f", "0", "-s", "65536")
    server = start(directory, *flags)
    try:
        for r in range(rounds):
            stop = threading.Event()
            workers = [
                threading.Thread(target=load, args=(server, ledger, w, r, stop), daemon=True)
                for w in range(3)
            ]
            for w in workers:
                w.start()
            time.sleep(0.05 + (r % 5) * 0.03)  # vary where in the stream the kill lands
            server.kill()
            stop.set()
            for w in workers:
                w.join(10)
            server = start(directory, *flags)
            check(server, ledger)
    finally:
        server.stop()
    return ledger


def test_kill_9_under_load_loses_nothing_acknowledged(binlog_dir) -> None:
    ledger = crash_rounds(binlog_dir, CRASH_ROUNDS)
    assert len(ledger.bodies) > CRASH_ROUNDS  # the load really ran between the kills
    assert ledger.deleted


@pytest.mark.parametrize("cache_flags", [None], ids=["body-cache-8K"])
def test_kill_9_under_load_with_a_small_cache(binlog_dir, cache_flags, monkeypatch) -> None:
    """Most bodies are read back from the log (8 KiB of cache, read-ahead on)."""
    monkeypatch.setattr(sys.modules[__name__], "CACHE_FLAGS", ("--body-cache", "8K"))
    ledger = crash_rounds(binlog_dir, CRASH_ROUNDS // 2)
    assert len(ledger.bodies) > CRASH_ROUNDS // 2
    assert ledger.deleted


@pytest.mark.stress
def test_kill_9_stress(binlog_dir) -> None:
    crash_rounds(binlog_dir, STRESS_ROUNDS)


def test_sigkill_leaves_a_directory_the_next_server_can_use(binlog_dir) -> None:
    server = start(binlog_dir, "-F")
    c = Client(server)
    jid = c.put(b"x")
    c.close()
    server.signal(signal.SIGKILL)
    server.proc.wait(10)  # type: ignore[union-attr]
    server = start(binlog_dir, "-F")  # the lock died with the process
    try:
        c = Client(server)
        assert c.one(b"peek %d\r\n" % jid) == b"FOUND %d 1\r\nx\r\n" % jid
        c.close()
    finally:
        server.stop()


def test_kick_n_and_tubes_survive_a_restart(binlog_dir) -> None:
    server = start(binlog_dir, "-f", "0")
    try:
        c = Client(server)
        assert c.one(b"use mail\r\n") == b"USING mail\r\n"
        buried = [c.put(b"b%d" % i) for i in range(3)]
        for jid in buried:
            assert c.one(b"reserve-job %d\r\n" % jid).startswith(b"RESERVED")
            assert c.one(b"bury %d 0\r\n" % jid) == b"BURIED\r\n"
        assert c.one(b"kick 2\r\n") == b"KICKED 2\r\n"
        assert c.one(b"use sms\r\n") == b"USING sms\r\n"
        delayed = [c.put(b"d%d" % i, delay=1000) for i in range(3)]
        assert c.one(b"kick 1\r\n") == b"KICKED 1\r\n"
        c.close()
        server = restart(server, binlog_dir, "-f", "0", crash=True)
        c = Client(server)
        states = {jid: c.stats_job(jid) for jid in buried + delayed}
        assert [(s["tube"], s["state"], s["kicks"]) for s in states.values()] == [  # type: ignore[index]
            ("mail", "ready", "1"),
            ("mail", "ready", "1"),
            ("mail", "buried", "0"),
            ("sms", "ready", "1"),
            ("sms", "delayed", "0"),
            ("sms", "delayed", "0"),
        ]
        tubes = c.one(b"list-tubes\r\n")
        assert b"- mail\n" in tubes and b"- sms\n" in tubes
        c.close()
    finally:
        server.stop()


def test_torn_tail_is_cut_with_a_warning_and_the_rest_served(binlog_dir, tmp_path) -> None:
    server = start(binlog_dir, "-f", "0")
    c = Client(server)
    kept = [c.put(b"kept %d" % i) for i in range(3)]
    c.close()
    assert server.stop() == 0
    path = Path(binlog_dir, "binlog.1")
    whole = path.stat().st_size
    server = start(binlog_dir, "-f", "0")
    c = Client(server)
    torn = c.put(b"this record is torn by the crash")
    c.close()
    server.kill()
    with path.open("r+b") as f:
        f.truncate(whole + 10)  # the crash landed inside the last record
    err = str(tmp_path / "err")
    server = start(binlog_dir, "-f", "0", stderr=err)
    try:
        c = Client(server)
        for jid in kept:
            assert c.one(b"peek %d\r\n" % jid).startswith(b"FOUND %d " % jid)
        assert c.one(b"peek %d\r\n" % torn) == b"NOT_FOUND\r\n"
        c.close()
    finally:
        server.stop()
    assert "torn last record" in Path(err).read_text()
    assert path.stat().st_size >= whole
