"""Fuzz targets: one function per target, taking the fuzzer's bytes.

Each target raises (an AssertionError, or whatever escaped the code under
test) when it finds a bug, and returns None otherwise. The same functions
run under atheris (tests/fuzz/run.py, coverage-guided, millions of inputs)
and under pytest over the checked-in corpus (tests/fuzz/test_corpus.py), so
every input the fuzzer found interesting is replayed in CI without atheris.

The bytes are decoded here, not with atheris' FuzzedDataProvider, so that a
corpus file means the same thing with and without atheris.

- framing: a command stream fed to a Connection whole, and split at cut
  points the input chooses; the reply streams must be identical, and no
  command may end in INTERNAL_ERROR (an exception inside the server).
- binlog: a damaged log directory; recovery either refuses it with a
  BinlogError or recovers jobs that a second recovery of the repaired
  directory finds again unchanged, and that a server can take back.
- tls_auth: the state of a TLS connection before it is the server's:
  bytes thrown at a server-side TLS handshake (only an SSL error may come
  out, and it must be describable for the log), and the first plaintext
  lines fed to the auth gate in pieces, against a model of what the gate
  must decide; a refused or undecided connection must not have touched the
  server's state.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
import struct
import tempfile
import zlib
from collections.abc import Callable
from typing import Any

from geanstalk.protocol import Connection
from geanstalk.server import Server

# --- shared in-process plumbing --------------------------------------------------

_LOOP: asyncio.AbstractEventLoop | None = None


def loop() -> asyncio.AbstractEventLoop:
    """One event loop for every input: made once, never left running."""
    global _LOOP
    if _LOOP is None:
        _LOOP = asyncio.new_event_loop()
    return _LOOP


def run_callbacks() -> None:
    lp = loop()
    lp.call_soon(lp.stop)
    lp.run_forever()


class FrozenClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Transport:
    """What a Connection or the TLS gate needs of a transport; records writes."""

    def __init__(self, on_close: Callable[[], None] | None = None) -> None:
        self.sent = bytearray()
        self.closed = False
        self.protocol: Any = None
        self.on_close = on_close

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.sent += data

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 4242) if name == "peername" else default

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.on_close is not None:
                self.on_close()

    def abort(self) -> None:
        self.close()

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol


def new_server() -> Server:
    server = Server(loop(), clock=FrozenClock())
    # The stats document holds the process's rusage and uptime: freeze it.
    server.stats_doc = lambda: b"---\nfrozen: 1\n"  # type: ignore[method-assign]
    return server


def close_server(server: Server) -> None:
    server.timers.close()
    for conn in list(server.connections):
        server.disconnected(conn)


def open_connection(server: Server) -> tuple[Connection, Transport]:
    conn = Connection(server)
    transport = Transport()
    transport.on_close = lambda: loop().call_soon(conn.connection_lost, None)
    conn.connection_made(transport)
    return conn, transport


def cuts_and_rest(data: bytes) -> tuple[list[int], bytes]:
    """The input's first byte says how many 16-bit cut points follow; the
    rest is the stream. Cuts are taken modulo the stream's length + 1."""
    if not data:
        return [], b""
    k = data[0] % 16
    head = data[1 : 1 + 2 * k]
    rest = data[1 + 2 * k :]
    cuts = []
    for i in range(0, len(head) - 1, 2):
        cuts.append(int.from_bytes(head[i : i + 2], "little") % (len(rest) + 1))
    return sorted(set(cuts)), rest


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    out = []
    last = 0
    for cut in [*cuts, len(data)]:
        out.append(data[last:cut])
        last = cut
    return out


# --- framing ---------------------------------------------------------------------


def run_stream(chunks: list[bytes]) -> tuple[bytes, bool]:
    """Feed chunks to one connection on a fresh server; then other clients
    put jobs (waking a blocked reserve, so input queued behind it runs)."""
    server = new_server()
    try:
        conn, transport = open_connection(server)
        for chunk in chunks:
            if transport.closed:
                break
            conn.data_received(chunk)
        run_callbacks()
        for _ in range(3):
            producer, _ = open_connection(server)
            producer.data_received(b"put 0 0 60 1\r\np\r\nquit\r\n")
            run_callbacks()
        return bytes(transport.sent), transport.closed
    finally:
        close_server(server)
        run_callbacks()


def framing(data: bytes) -> None:
    cuts, stream = cuts_and_rest(data)
    whole = run_stream([stream])
    assert b"INTERNAL_ERROR" not in whole[0], whole[0][-200:]
    split = run_stream(pieces(stream, cuts))
    assert split == whole, (cuts, stream[:300], whole[0][:300], split[0][:300])


# --- binlog ----------------------------------------------------------------------

_BINLOG_DIR: str | None = None


def _scratch_dir() -> str:
    """One scratch directory per process, emptied before every input."""
    global _BINLOG_DIR
    if _BINLOG_DIR is None:
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        _BINLOG_DIR = tempfile.mkdtemp(prefix="geanstalk-fuzz-binlog-", dir=base)
    for name in os.listdir(_BINLOG_DIR):
        os.unlink(os.path.join(_BINLOG_DIR, name))
    return _BINLOG_DIR


def remove_scratch() -> None:
    global _BINLOG_DIR
    if _BINLOG_DIR is not None:
        shutil.rmtree(_BINLOG_DIR, ignore_errors=True)
        _BINLOG_DIR = None


def _sealed(payload: bytes) -> bytes:
    length = len(payload)
    crc = zlib.crc32(payload, zlib.crc32(struct.pack("<I", length)))
    return struct.pack("<II", length, crc) + payload


def binlog_files(data: bytes) -> list[bytes]:
    """The input as the contents of binlog.1, binlog.2, ...

    The first byte picks how: raw bytes; a good header then raw bytes; or a
    good header then records whose length and checksum are right (so the
    fuzzer reaches the field checks behind the checksum), each record's
    payload length given by one byte. A 0xFF byte in the record stream
    starts the next file.
    """
    from geanstalk.binlog_format import encode_header

    if not data:
        return [b""]
    mode = data[0] % 3
    rest = data[1:]
    if mode == 0:
        return [rest]
    if mode == 1:
        return [encode_header(rest[0] if rest else 0) + rest[1:]]
    files = []
    current = bytearray(encode_header(0))
    i = 0
    while i < len(rest):
        n = rest[i]
        i += 1
        if n == 0xFF:
            files.append(bytes(current))
            current = bytearray(encode_header(len(files)))
            continue
        payload = rest[i : i + n]
        i += n
        if n and len(payload) == n:
            current += _sealed(payload)
        else:
            current += payload  # a short tail: a torn record
    files.append(bytes(current))
    return files


def _recover(directory: str) -> tuple[list[tuple[Any, ...]], int]:
    from geanstalk.binlog import Binlog

    lp = loop()
    log = Binlog.open(directory, None, 1 << 20, lp)
    try:
        jobs, next_id = log.recover()
        seen = [
            (
                j.id,
                j.state,
                j.priority,
                j.ttr,
                j.delay,
                j.body,
                j.tube,
                j.reserves,
                j.timeouts,
                j.releases,
                j.buries,
                j.kicks,
            )
            for j in jobs
        ]
        for j in jobs:
            assert j.id < next_id, (j.id, next_id)
        # A server takes them back and can describe every one of them.
        server = new_server()
        try:
            server.restore(jobs, next_id)
            for j in jobs:
                server.stats.stats_job(j)
        finally:
            close_server(server)
    finally:
        lp.run_until_complete(log.close())
    return seen, next_id


def binlog(data: bytes) -> None:
    import logging

    from geanstalk.errors import BinlogError

    logging.getLogger("geanstalk.binlog").disabled = True
    directory = _scratch_dir()
    for number, content in enumerate(binlog_files(data), 1):
        with open(os.path.join(directory, f"binlog.{number}"), "wb") as f:
            f.write(content)
    try:
        first = _recover(directory)
    except BinlogError:
        return
    # Recovery repaired what it could (a torn tail cut off, files with no
    # live job reclaimed): recovering the repaired directory again must find
    # exactly the same jobs. The next id may come out lower only when a
    # reclaimed file held an id above the newest file's header, which a
    # writer never produces (it stamps each new file with the highest id).
    second = _recover(directory)
    assert second[0] == first[0], (first, second)
    assert second[1] <= first[1], (first, second)


# --- TLS and auth before the connection is the server's ----------------------------

TOKEN = b"s3cret-token"
_TLS: dict[str, Any] = {}


def _credentials() -> dict[str, Any]:
    """A certificate (made once per process with trustme) and the server context."""
    if not _TLS:
        import trustme

        from geanstalk.tls import Credentials

        directory = tempfile.mkdtemp(prefix="geanstalk-fuzz-tls-")
        ca = trustme.CA()
        ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
            os.path.join(directory, "server.pem")
        )
        ca.cert_pem.write_to_path(os.path.join(directory, "ca.pem"))
        tokens = os.path.join(directory, "tokens")
        with open(tokens, "wb") as f:
            f.write(b"# fuzz\n" + TOKEN + b"\n  other-token  \n")
        os.chmod(tokens, 0o600)
        pem = os.path.join(directory, "server.pem")
        _TLS["credentials"] = Credentials(pem, pem, None, tokens)
        _TLS["mtls"] = Credentials(pem, pem, os.path.join(directory, "ca.pem"))
        _TLS["dir"] = directory
    return _TLS


def client_hello() -> bytes:
    """A real ClientHello, as a seed for the handshake part."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = ctx.wrap_bio(incoming, outgoing, server_side=False)
    with contextlib.suppress(ssl.SSLWantReadError):
        client.do_handshake()
    return outgoing.read()


def handshake_with(data: bytes, context: ssl.SSLContext) -> None:
    from geanstalk.tls import describe_handshake_error

    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    server = context.wrap_bio(incoming, outgoing, server_side=True)
    incoming.write(data)
    incoming.write_eof()
    try:
        server.do_handshake()
    except ssl.SSLError as exc:
        assert describe_handshake_error(exc)
    else:
        raise AssertionError("a handshake finished with bytes no client key signed")


def expected_verdict(stream: bytes) -> tuple[bool | None, bytes]:
    """The model of the auth gate, written apart from it."""
    end = stream.find(b"\r\n")
    if end < 0 or end + 2 > 224:
        return (False, b"") if len(stream) >= 224 or end >= 0 else (None, b"")
    line = stream[:end]
    if line in (b"auth " + TOKEN, b"auth other-token"):
        return True, stream[end + 2 :]
    return False, b""


def gate_run(chunks: list[bytes]) -> tuple[bytes, bool, Server]:
    """Feed chunks to a TLS gate (its handshake done) on a fresh server."""
    import socket

    from geanstalk.tls import TLSConnection, TLSGate, TLSListener

    server = new_server()
    with socket.socket() as sock:
        listener = TLSListener(
            loop(),
            sock,
            lambda: TLSConnection(server),
            credentials=_credentials()["credentials"],
        )
        listener.pending = 1
        gate = TLSGate(listener)
        transport = Transport(on_close=lambda: loop().call_soon(gate.connection_lost, None))
        transport.protocol = gate
        gate.connection_made(transport)
        for chunk in chunks:
            if transport.closed:
                break
            transport.protocol.data_received(chunk)
        run_callbacks()
        undecided = gate in listener.gates
        assert listener.pending == (1 if undecided else 0)
        if undecided:
            gate._finish()  # cancels its auth timer
    return bytes(transport.sent), transport.closed, server


def tls_auth(data: bytes) -> None:
    creds = _credentials()
    if data[:1] == b"\x16":
        # Starts like a TLS record: the bytes go to a server handshake.
        handshake_with(data, creds["credentials"].context)
        handshake_with(data, creds["mtls"].context)
        return
    cuts, stream = cuts_and_rest(data)
    verdict, rest = expected_verdict(stream)
    sent, closed, server = gate_run(pieces(stream, cuts))
    try:
        if verdict is True:
            plain_server = new_server()
            try:
                conn, transport = open_connection(plain_server)
                conn.data_received(rest)
                run_callbacks()
                expected = b"AUTHENTICATED\r\n" + bytes(transport.sent)
            finally:
                close_server(plain_server)
            assert sent == expected, (stream[:300], sent[:300], expected[:300])
            return
        # Refused or undecided: the server never heard of this connection.
        stats = server.stats
        assert stats.cur_conns == 0 and stats.total_conns == 0
        assert not server.connections
        default = server.storage.default
        assert default.using == 0 and default.watching == 0
        assert server.storage.next_id == 1
        if verdict is False:
            assert (sent, closed) == (b"UNAUTHORIZED\r\n", True), (stream[:300], sent)
        else:
            assert (sent, closed) == (b"", False), (stream[:300], sent)
    finally:
        close_server(server)
        run_callbacks()


TARGETS: dict[str, Callable[[bytes], None]] = {
    "framing": framing,
    "binlog": binlog,
    "tls_auth": tls_auth,
}
