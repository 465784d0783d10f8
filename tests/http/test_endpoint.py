"""The HTTP side's routes and bounds, over real sockets: it answers what it
should, refuses what it should, and a slow or hostile HTTP client costs the
beanstalk port nothing."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest
from ophelp import get, http_request, say

from geanstalk.config import ServerConfig
from geanstalk.http import MAX_HEAD, HttpEndpoint, parse_address
from geanstalk.runner import Runner
from tests.servers import ServerProcess, free_port, geanstalk_server


@pytest.fixture(scope="module")
def srv() -> Iterator[tuple[ServerProcess, int]]:
    http = free_port()
    server = geanstalk_server("--http", f"127.0.0.1:{http}").start()
    try:
        yield server, http
    finally:
        server.stop()


def test_healthz_readyz(srv: tuple[ServerProcess, int]) -> None:
    _, http = srv
    status, headers, body = get(http, "/healthz")
    assert (status, body) == (200, b"ok\n")
    assert headers["connection"] == "close"
    assert headers["content-length"] == "3"
    assert get(http, "/readyz")[:3:2] == (200, b"ready\n")


def test_unknown_path_and_method(srv: tuple[ServerProcess, int]) -> None:
    _, http = srv
    assert get(http, "/nope")[0] == 404
    status, headers, _ = http_request(http, "/metrics", method="POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert get(http, "/healthz?probe=1")[0] == 200


def test_head_has_no_body(srv: tuple[ServerProcess, int]) -> None:
    _, http = srv
    status, headers, body = http_request(http, "/metrics", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 1000


def test_garbage_and_oversized_requests(srv: tuple[ServerProcess, int]) -> None:
    server, http = srv
    with socket.create_connection(("127.0.0.1", http), timeout=10) as s:
        s.sendall(b"HELLO\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 400 ")
    with socket.create_connection(("127.0.0.1", http), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD + 10))
        assert s.recv(100).startswith(b"HTTP/1.1 431 ")
    with server.connect() as c:
        assert say(c, b"list-tube-used\r\n") == b"USING default\r\n"


def test_idle_http_clients_cost_the_beanstalk_port_nothing(
    srv: tuple[ServerProcess, int],
) -> None:
    """Fill every HTTP slot with clients that send half a request and never
    read: the next HTTP client is turned away, the beanstalk port answers."""
    server, http = srv
    hogs = []
    try:
        for _ in range(40):  # more than DEFAULT_MAX_CONNECTIONS
            s = socket.create_connection(("127.0.0.1", http), timeout=10)
            s.sendall(b"GET /metr")
            hogs.append(s)
        with server.connect() as c:
            for i in range(50):
                assert say(c, b"put 0 0 60 2\r\nhi\r\n").startswith(b"INSERTED")
                assert say(c, b"reserve\r\n").startswith(b"RESERVED")
                assert say(c, b"delete %d\r\n" % (i + 1)) == b"DELETED\r\n"
        # The slots are full: a newcomer is closed without an answer.
        refused = 0
        with socket.create_connection(("127.0.0.1", http), timeout=10) as s:
            try:
                s.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
                refused = s.recv(100) == b""
            except ConnectionResetError:
                refused = True
        assert refused
    finally:
        for s in hogs:
            s.close()
    # Once they went, the endpoint serves again (the slots were released).
    for _ in range(500):
        try:
            if get(http, "/healthz")[0] == 200:
                break
        except (ConnectionResetError, IndexError, ValueError):
            time.sleep(0.02)
    else:
        pytest.fail("the endpoint never served again")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9100", ("127.0.0.1", 9100)),
        (":9100", ("127.0.0.1", 9100)),
        ("[::1]:9100", ("::1", 9100)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["9100", "host:", "host:99999", "host:x"])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


async def _fetch(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    return data


def test_readyz_is_503_until_started_and_after_stop_and_follows_checks() -> None:
    """The endpoint runs from before the journal's replay to after the stop:
    /readyz follows the Runner, and the hook list (cluster leadership)."""

    async def main() -> None:
        port = free_port()
        runner = Runner(
            ServerConfig(listen="127.0.0.1", port=0, http=f"127.0.0.1:{port}"),
            install_signals=False,
        )
        seen: list[bytes] = []

        async def on_ready(r: Runner) -> None:
            seen.append(await _fetch(port, "/readyz"))

        runner.on_ready.append(on_ready)
        await runner.start()
        assert runner.http is not None
        leader = {"ok": False}
        runner.http.readiness.append(lambda: None if leader["ok"] else "not the leader")
        # on_ready hooks ran with ready already true.
        assert seen[0].startswith(b"HTTP/1.1 200 ")
        reply = await _fetch(port, "/readyz")
        assert reply.startswith(b"HTTP/1.1 503 ") and reply.endswith(b"not ready: not the leader\n")
        leader["ok"] = True
        assert (await _fetch(port, "/readyz")).startswith(b"HTTP/1.1 200 ")
        runner.ready = False  # as during replay
        reply = await _fetch(port, "/readyz")
        assert reply.startswith(b"HTTP/1.1 503 ") and b"starting" in reply
        assert (await _fetch(port, "/healthz")).startswith(b"HTTP/1.1 200 ")
        await runner.stop()

    asyncio.run(main())


def test_endpoint_without_metrics_registry_says_so() -> None:
    async def main() -> None:
        from geanstalk.server import Server

        server = Server(asyncio.get_running_loop())
        ep = HttpEndpoint(server, ready=lambda: True)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        await ep.start(sock)
        reply = await _fetch(sock.getsockname()[1], "/metrics")
        assert reply.startswith(b"HTTP/1.1 404 ")
        await ep.stop()
        sock.close()

    asyncio.run(main())


def test_a_replaced_server_gets_the_metrics_too() -> None:
    """A cluster node replaces the runner's server when leadership changes,
    and hands the endpoint the new one: it is measured and scraped as well."""

    async def main() -> None:
        from geanstalk.server import Server

        port = free_port()
        runner = Runner(
            ServerConfig(listen="127.0.0.1", port=0, http=f"127.0.0.1:{port}"),
            install_signals=False,
        )
        await runner.start()
        assert runner.http is not None
        old = runner.server
        new = Server(asyncio.get_running_loop())
        runner.http.server = new
        assert new.metrics is old.metrics is not None
        assert runner.connection_factory is new.connection_factory
        conn = runner.connection_factory(new)
        from test_exposition import Transport

        conn.connection_made(Transport())
        conn.data_received(b"put 0 0 60 1\r\nx\r\nreserve\r\n")
        reply = await _fetch(port, "/metrics")
        assert b'geanstalk_command_duration_seconds_count{cmd="put",instance=' in reply
        assert b"cmd_put{" in reply and b"} 1.0\n" in reply
        waits = [
            line
            for line in reply.split(b"\n")
            if line.startswith(b"geanstalk_job_wait_seconds_count")
        ]
        assert len(waits) == 1 and waits[0].endswith(b" 1.0")
        runner.server = new
        await runner.stop()

    asyncio.run(main())
