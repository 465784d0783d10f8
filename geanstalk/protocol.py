"""The wire protocol: framing, parsing, replies. One Connection per client.

Sans-state (rule of the house 2): this module turns bytes into calls on the
Server facade and their results into reply bytes; it never touches a heap.
The parsing helpers at the top are pure functions so the fuzz tests can call
them without a socket.

Framing follows beanstalkd 1.12's buffer exactly, because clients depend on
it: a command line is looked for in a 224-byte window that starts where the
line starts; the line ends at the FIRST CR of the window if an LF follows it
(a lone CR therefore hides any later CR LF in the same window); a window
that fills up without a line end is thrown away whole and the rest of the
line is skipped in further 224-byte windows until a line end, which answers
BAD_FORMAT once. The result depends only on the bytes, never on how TCP
split them.

Performance: all commands found in one data_received run in one batch, and
their replies leave in one transport.write (a very large batch is written
every FLUSH_AT bytes). Dispatch is a dict lookup on the first word, done in
the batch loop itself. With one request in flight per client, the server's
CPU per command is the Python on this path plus one read and one write
system call, so the path counts calls: a put is parsed from a cache of
recent put lines, and a reserve that finds a job ready goes straight to the
storage's reserve_next().
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from geanstalk.errors import (
    BinlogError,
    DeadlineSoon,
    NoJobReady,
    NotFound,
    NotIgnored,
    OutOfMemory,
)
from geanstalk.stats import (
    OP_BURY,
    OP_DELETE,
    OP_IGNORE,
    OP_KICK,
    OP_KICKJOB,
    OP_LIST_TUBE_USED,
    OP_LIST_TUBES,
    OP_LIST_TUBES_WATCHED,
    OP_PAUSE_TUBE,
    OP_PEEK_BURIED,
    OP_PEEK_DELAYED,
    OP_PEEK_READY,
    OP_PEEKJOB,
    OP_PUT,
    OP_QUIT,
    OP_RELEASE,
    OP_RESERVE,
    OP_RESERVE_JOB,
    OP_RESERVE_TIMEOUT,
    OP_STATS,
    OP_STATS_TUBE,
    OP_STATSJOB,
    OP_TOUCH,
    OP_UNKNOWN,
    OP_USE,
    OP_WATCH,
)

if TYPE_CHECKING:
    from geanstalk.core import Job
    from geanstalk.server import Server

log = logging.getLogger("geanstalk")

LINE_MAX = 224  # bytes, CR LF included: the reference's LINE_BUF_SIZE
NAME_MAX = 200
NAME_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-+/;.$_()"
U32 = 0xFFFFFFFF
U64 = 0xFFFFFFFFFFFFFFFF
I64_MIN = -(1 << 63)
I64_MAX = (1 << 63) - 1
_C_SPACE = b" \t\n\v\f\r"

FLUSH_AT = 256 * 1024  # write out a batch's replies once they reach this size
INPUT_HOLD_MAX = 64 * 1024  # stop reading when this much input waits behind a reserve
HIGH_WATER = 64 * 1024  # asyncio's and uvloop's default write-buffer high-water mark

BAD_FORMAT = b"BAD_FORMAT\r\n"
UNKNOWN_COMMAND = b"UNKNOWN_COMMAND\r\n"
NOT_FOUND = b"NOT_FOUND\r\n"
INTERNAL_ERROR = b"INTERNAL_ERROR\r\n"
EXPECTED_CRLF = b"EXPECTED_CRLF\r\n"
JOB_TOO_BIG = b"JOB_TOO_BIG\r\n"
OUT_OF_MEMORY = b"OUT_OF_MEMORY\r\n"
DRAINING = b"DRAINING\r\n"
DEADLINE_SOON = b"DEADLINE_SOON\r\n"
TIMED_OUT = b"TIMED_OUT\r\n"
DELETED = b"DELETED\r\n"
RELEASED = b"RELEASED\r\n"
BURIED = b"BURIED\r\n"
TOUCHED = b"TOUCHED\r\n"
KICKED = b"KICKED\r\n"
PAUSED = b"PAUSED\r\n"
NOT_IGNORED = b"NOT_IGNORED\r\n"

# Connection states.
S_COMMAND = 0  # expecting a command line
S_DATA = 1  # reading a put's body
S_SKIP = 2  # throwing away a too-big body, then one reply
S_ENDLINE = 3  # skipping the rest of a too-long line
S_WAIT = 4  # blocked in reserve
S_CLOSE = 5  # quit, or closing after EOF


# --- pure parsing -------------------------------------------------------------


def read_uint(line: bytes, pos: int, limit: int, whole: bool) -> tuple[int, int] | None:
    """The reference's read_u32/read_u64: spaces, then digits, no sign.

    Returns (value, end) or None for BAD_FORMAT; with whole=True nothing may
    follow the number.
    """
    n = len(line)
    while pos < n and line[pos] == 32:
        pos += 1
    start = pos
    while pos < n and 48 <= line[pos] <= 57:
        pos += 1
    if pos == start or (whole and pos != n):
        return None
    value = int(line[start:pos])
    if value > limit:
        return None
    return value, pos


def _c_integer(line: bytes, pos: int) -> tuple[int, int, bool]:
    """What C's strtoul/strtol see: (signed value, end, any digits)."""
    n = len(line)
    while pos < n and line[pos] in _C_SPACE:
        pos += 1
    neg = False
    if pos < n and line[pos] in b"+-":
        neg = line[pos] == 45
        pos += 1
    start = pos
    while pos < n and 48 <= line[pos] <= 57:
        pos += 1
    if pos == start:
        return 0, pos, False
    value = int(line[start:pos])
    return (-value if neg else value), pos, True


def parse_kick_bound(line: bytes, pos: int) -> int | None:
    """kick's argument as 1.12 reads it: strtoul into a 32-bit unsigned int.

    Trailing garbage is ignored, "-1" wraps to 4294967295, an overflow of
    unsigned long is BAD_FORMAT (None).
    """
    value, _, digits = _c_integer(line, pos)
    if not digits or abs(value) > U64:
        return None
    return (value % (U64 + 1)) & U32


def parse_reserve_timeout(line: bytes, pos: int) -> int | None:
    """reserve-with-timeout's argument as 1.12 reads it: strtol into an int.

    No digits means 0; a negative value (after truncation to 32 bits) means
    no timeout at all; an overflow of long is BAD_FORMAT (None). Returns -1
    for "wait forever".
    """
    value, _, digits = _c_integer(line, pos)
    if not digits:
        return 0
    if value < I64_MIN or value > I64_MAX:
        return None
    value &= U32
    if value >= 1 << 31:
        return -1
    return value


def valid_name(name: bytes) -> bool:
    """1..200 bytes of NAME_CHARS, not starting with '-'."""
    return 0 < len(name) <= NAME_MAX and not name.translate(None, NAME_CHARS) and name[0] != 45


# Producers send the same put line (priority, delay, ttr, size) over and over:
# remember the parse of recent lines. Cleared whole when full, so a stream of
# distinct lines costs one dict insert each and memory stays bounded.
_PUT_CACHE: dict[bytes, tuple[int, int, int, int, bool] | None] = {}
PUT_CACHE_MAX = 1024


def parse_put_cached(line: bytes) -> tuple[int, int, int, int, bool] | None:
    """parse_put, remembered for the lines seen last."""
    try:
        return _PUT_CACHE[line]
    except KeyError:
        pass
    parsed = parse_put(line)
    if len(_PUT_CACHE) >= PUT_CACHE_MAX:
        _PUT_CACHE.clear()
    _PUT_CACHE[line] = parsed
    return parsed


def parse_put(line: bytes) -> tuple[int, int, int, int, bool] | None:
    """put's four numbers and whether the line ends right after them.

    None is BAD_FORMAT. The trailing-garbage flag is separate because the
    reference answers JOB_TOO_BIG before it looks at trailing garbage.
    """
    parts = line.split(b" ")
    if len(parts) == 5:
        _, a, b, c, d = parts
        if a.isdigit() and b.isdigit() and c.isdigit() and d.isdigit():
            pri, delay, ttr, size = int(a), int(b), int(c), int(d)
            if pri <= U32 and delay <= U32 and ttr <= U32 and size <= U32:
                return pri, delay, ttr, size, True
            return None
    r1 = read_uint(line, 4, U32, False)
    if r1 is None:
        return None
    r2 = read_uint(line, r1[1], U32, False)
    if r2 is None:
        return None
    r3 = read_uint(line, r2[1], U32, False)
    if r3 is None:
        return None
    r4 = read_uint(line, r3[1], U32, False)
    if r4 is None:
        return None
    return r1[0], r2[0], r3[0], r4[0], r4[1] == len(line)


# The reference's which_cmd(): prefixes tried in this order.
PREFIXES: tuple[tuple[bytes, int], ...] = (
    (b"put ", OP_PUT),
    (b"peek ", OP_PEEKJOB),
    (b"peek-ready", OP_PEEK_READY),
    (b"peek-delayed", OP_PEEK_DELAYED),
    (b"peek-buried", OP_PEEK_BURIED),
    (b"reserve-with-timeout ", OP_RESERVE_TIMEOUT),
    (b"reserve-job ", OP_RESERVE_JOB),
    (b"reserve", OP_RESERVE),
    (b"delete ", OP_DELETE),
    (b"release ", OP_RELEASE),
    (b"bury ", OP_BURY),
    (b"kick ", OP_KICK),
    (b"kick-job ", OP_KICKJOB),
    (b"touch ", OP_TOUCH),
    (b"stats-job ", OP_STATSJOB),
    (b"stats-tube ", OP_STATS_TUBE),
    (b"stats", OP_STATS),
    (b"use ", OP_USE),
    (b"watch ", OP_WATCH),
    (b"ignore ", OP_IGNORE),
    (b"list-tubes-watched", OP_LIST_TUBES_WATCHED),
    (b"list-tube-used", OP_LIST_TUBE_USED),
    (b"list-tubes", OP_LIST_TUBES),
    (b"quit", OP_QUIT),
    (b"pause-tube", OP_PAUSE_TUBE),
)

# First word -> op, for the fast path. An op whose prefix ends in a space
# only matches when a space follows the word.
_WORDS: dict[bytes, tuple[int, bool]] = {
    p.rstrip(b" "): (op, p.endswith(b" ")) for p, op in PREFIXES
}
_ARG_AT = {op: len(p) for p, op in PREFIXES}


def which_command(line: bytes) -> int:
    """The op a command line names, by the reference's prefix rules."""
    sp = line.find(b" ")
    entry = _WORDS.get(line if sp < 0 else line[:sp])
    if entry is not None and (sp >= 0 or not entry[1]):
        return entry[0]
    for prefix, op in PREFIXES:
        if line.startswith(prefix):
            return op
    return OP_UNKNOWN


def frame_job(word: bytes, job: Job) -> bytes:
    body = job.body
    return b"%b %d %d\r\n%b\r\n" % (word, job.id, len(body), body)


def frame_ok(doc: bytes) -> bytes:
    return b"OK %d\r\n%b\r\n" % (len(doc), doc)


class _Pending:
    """A reply waiting for a body to be read back from the log (-b); it holds
    its place among the connection's held replies until ``data`` is set."""

    __slots__ = ("data",)

    def __init__(self) -> None:
        self.data: bytes | None = None


# --- the connection -------------------------------------------------------------


class Connection(asyncio.Protocol):
    """One client connection: bytes in, replies out, in order.

    Ten thousand idle connections must fit in a few MiB, so the per-connection
    footprint is kept small: slots rather than a __dict__, the dispatch tables
    built once per class (their handlers are plain functions taking self), the
    peer's address formatted only when something logs it, and the queue of
    replies held behind the log created only when the first one is held.
    """

    __slots__ = (
        "_active",
        "_bodies",
        "_buf",
        "_close_when_flushed",
        "_closed",
        "_durable_wait",
        "_eof",
        "_gated",
        "_held",
        "_job",
        "_max_job_size",
        "_need",
        "_new_job",
        "_ops",
        "_out",
        "_peer",
        "_put_job",
        "_quiet_since",
        "_read_paused",
        "_reserve_next",
        "_resume_pending",
        "_skip_reply",
        "_state",
        "_stopping",
        "_write_paused",
        "client",
        "server",
        "stats",
        "transport",
    )

    def __init__(self, server: Server) -> None:
        self.server = server
        self.stats = server.stats
        self._ops = server.stats.ops  # the cmd-* counters, bumped on every command
        self.transport: Any = None
        self._peer: str | None = None
        self._buf: bytes | bytearray = b""
        self._state = S_COMMAND
        self._job: Job | None = None  # the put whose body is being read
        self._need = 0  # bytes still to read (S_DATA) or to skip (S_SKIP)
        self._skip_reply = b""
        self._out: list[bytes] = []
        # Replies waiting for the log (-b): a deque made by the first one held.
        # ... and, with -b, a reply (a _Pending) until its body is read back.
        self._held: deque[tuple[int, Any]] | None = None
        self._durable_wait = False
        # With -b, the store bodies may have to be read back from.
        self._bodies = server.bodies
        self._eof = False
        self._closed = False
        self._close_when_flushed = False
        self._write_paused = False
        self._read_paused = False
        self._resume_pending = False
        self._stopping = False
        # --idle-timeout: input arrived since the last sweep; when the sweeper
        # first saw this connection quiet (-1: not yet).
        self._active = False
        self._quiet_since = -1.0
        self._new_job = server.new_job
        self._max_job_size = server.max_job_size
        self._put_job = server.store_job
        self._reserve_next = server.reserve_next
        self.client = server.new_client(self)
        # Replies go out at once, or wait for the log to make them durable (-b).
        self._gated = server.gated

    @property
    def peer(self) -> str:
        """The client's address as logs show it (formatted on first use)."""
        peer = self._peer
        if peer is None:
            t = self.transport
            name = t.get_extra_info("peername") if t is not None else None
            peer = self._peer = str(name) if name else ("unix" if t is not None else "?")
        return peer

    # --- asyncio.Protocol ---------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self.server.output_cap < HIGH_WATER:
            transport.set_write_buffer_limits(high=self.server.output_cap)
        self.server.connected(self)
        if self.server.loading:
            # The journal is still loading: commands wait as if behind a
            # blocked reserve (a `stats` at the head is answered: _hold).
            self._state = S_WAIT

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._state = S_CLOSE
        self.server.disconnected(self)

    def _append(self, data: bytes) -> None:
        """Pending input is b"", a bytearray, or a chunk kept whole while a
        reserve blocked (bytes): the first two grow in place."""
        buf = self._buf
        if type(buf) is bytearray:
            buf += data
        else:
            self._buf = bytearray(buf) + data

    def _hold(self, data: bytes) -> None:
        """Input behind a blocked reserve waits (reading pauses past
        INPUT_HOLD_MAX); after a close, quit or stop it is dropped."""
        if self._state != S_WAIT or self._stopping:
            return
        if self._buf:
            self._append(data)
        else:
            self._buf = data
        if self.server.loading and not self.client.waiting:
            self._answer_while_loading()
        if len(self._buf) > INPUT_HOLD_MAX:
            self._update_reading()

    def _answer_while_loading(self) -> None:
        """While the journal loads at start-up, `stats` at the head of the
        input is answered at once (a health check must not wait minutes for
        a big log) and `quit` closes; the first other command waits for
        loaded(), and everything after it waits behind it, so replies stay in
        the order of the commands."""
        buf = self._buf
        pos = 0
        replies = []
        quit_ = False
        while True:
            if buf.startswith(b"stats\r\n", pos):
                replies.append(self._stats(b"stats", 5))
                pos += 7
            elif buf.startswith(b"quit\r\n", pos):
                quit_ = True
                pos = len(buf)
                break
            else:
                break
        if pos:
            self._buf = buf[pos:] if pos < len(buf) else b""
        if replies:
            reply = b"".join(replies)
            if self._gated:
                self._emit(reply)
            else:
                self._write(reply)
        if quit_:
            self._state = S_CLOSE
            self._closed_by_us()
        elif self._eof and not self._buf:
            self._finish_loading_eof()

    def _finish_loading_eof(self) -> None:
        """A half-closed client with nothing held: close now, not after the load."""
        self._state = S_COMMAND
        self._finish_eof()
        self._flush()

    def loaded(self) -> None:
        """The journal is loaded (Server.loaded): run the commands that waited."""
        if self._state != S_WAIT or self.client.waiting or self._closed or self._stopping:
            return
        self._state = S_COMMAND
        self._carry_on()

    def eof_received(self) -> bool:
        self._eof = True
        self.client.halfclosed = True
        if self.server.loading and self._state == S_WAIT and not self.client.waiting:
            if not self._buf:
                self._finish_loading_eof()
        elif self._state == S_WAIT:
            # 1.12 answers a blocked reserve of a half-closed client at once.
            self.server.lock.cancel(self.client)
        else:
            self._finish_eof()
            self._flush()
        return True

    def pause_writing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._update_reading()
        if self._buf and self._state in (S_COMMAND, S_DATA, S_SKIP, S_ENDLINE):
            self._schedule_resume()

    def stop_reading(self) -> None:
        """The server is stopping: execute nothing more from this client.

        Reading goes on (and what arrives is dropped) so that closing the
        socket later sends a FIN, not a reset that would destroy the replies
        the client has not read yet.
        """
        self._stopping = True

    def close_if_idle(self, now: float, timeout: float) -> bool:
        """--idle-timeout: close this connection if it has sent nothing, held
        no reserved job and had no reserve blocked for timeout seconds.

        Called by the idle sweeper every few seconds; the quiet time counts
        from the first sweep that found the connection quiet.
        """
        if self._active or self.client.reserved or self._state != S_COMMAND or self._buf:
            self._active = False
            self._quiet_since = now
            return False
        if self._quiet_since < 0:
            self._quiet_since = now
            return False
        if now - self._quiet_since < timeout or self._closed:
            return False
        t = self.transport
        if t is None or t.is_closing():
            return False
        if log.isEnabledFor(logging.INFO):
            log.info("%s: closed after %g s idle (--idle-timeout)", self.peer, timeout)
        self._state = S_CLOSE
        t.close()
        return True

    def fail_held(self, reply: bytes) -> None:
        """The journal will never make the held replies durable (a cluster
        leader stepped down): nothing more is executed, each held reply is
        sent as ``reply`` instead (what it reported was not acknowledged),
        and the connection closes."""
        self._stopping = True
        held = self._held
        data = reply * len(held)
        held.clear()
        t = self.transport
        if t is not None and not t.is_closing():
            if data:
                t.write(data)
            t.close()

    # --- reading, batching, writing -------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Run every complete command in the input, then send the replies.

        _resume() calls this with b"" to go on with input that waited.
        """
        self._active = True
        if self._state >= S_WAIT or self._stopping:
            self._hold(data)
            return
        # A fresh chunk is parsed as it came (no copy); only a leftover is kept.
        buf = self._buf
        pos = 0
        if not buf:
            buf = self._buf = data
        elif not data:
            pass
        elif self._state == S_DATA and len(buf) + len(data) > self._need:
            # A body split across reads, with more input after it (big
            # pipelined puts split this way at nearly every read): finish the
            # put from the head of this chunk, then parse the chunk where it
            # lies rather than copy all of it behind the leftover.
            pos = self._need - len(buf)
            self._buf = bytes(buf) + data[:pos]
            self.data_received(b"")
            if self._state != S_COMMAND:  # disconnected while replying
                return
            buf = self._buf = data
        else:
            self._append(data)
            buf = self._buf
        n = len(buf)
        out = self._out
        outlen = 0  # bytes in out; out is empty between batches
        state = self._state
        whole = type(buf) is bytes  # slices of bytes are bytes already
        while pos < n:
            if state == S_COMMAND:
                end = pos + LINE_MAX if n - pos > LINE_MAX else n
                cr = buf.find(b"\r", pos, end - 1)
                if cr < 0 or buf[cr + 1] != 10:
                    if end - pos == LINE_MAX:
                        pos = end
                        state = self._state = S_ENDLINE
                        continue
                    break
                line = buf[pos:cr] if whole else bytes(buf[pos:cr])
                pos = cr + 2
                # The command, dispatched here rather than in a method of its
                # own: one call less per command on the hottest path.
                if 0 in line:  # a NUL byte (an int operand: no bytes-to-int attempt)
                    reply = BAD_FORMAT
                else:
                    sp = line.find(b" ")
                    entry = _BARE.get(line) if sp < 0 else _SPACED.get(line[:sp])
                    if entry is None:
                        handler, at = self._by_prefix(line)
                    else:
                        handler, at = entry
                    try:
                        reply = handler(self, line, at)
                    except NotFound:
                        reply = NOT_FOUND
                    except Exception:
                        log.exception("%s: command %r failed", self.peer, line[:40])
                        reply = INTERNAL_ERROR
                # A handler that returns a reply leaves the state as it was.
                if reply is not None:
                    out.append(reply)
                    outlen += len(reply)
                    if outlen >= FLUSH_AT:
                        outlen = 0
                        self._flush()
                        if self._closed:
                            return
                    continue
                state = self._state
                if state >= S_WAIT:  # S_WAIT or S_CLOSE
                    break
            elif state == S_DATA:
                end = pos + self._need
                if end > n:
                    break
                job = self._job
                if buf[end - 2] != 13 or buf[end - 1] != 10:
                    reply = EXPECTED_CRLF
                elif self.stats.draining:
                    reply = DRAINING
                else:
                    job.body = buf[pos : end - 2] if whole else bytes(buf[pos : end - 2])  # type: ignore[union-attr]
                    try:
                        self._put_job(job)
                        reply = b"INSERTED %d\r\n" % job.id  # type: ignore[union-attr]
                    except Exception:
                        log.exception("%s: put failed", self.peer)
                        reply = INTERNAL_ERROR
                pos = end
                state = self._state = S_COMMAND
                out.append(reply)
                outlen += len(reply)
            elif state == S_SKIP:
                take = min(n - pos, self._need)
                pos += take
                self._need -= take
                if self._need:
                    break
                out.append(self._skip_reply)
                outlen += len(self._skip_reply)
                state = self._state = S_COMMAND
            elif state == S_ENDLINE:
                end = pos + LINE_MAX if n - pos > LINE_MAX else n
                cr = buf.find(b"\r", pos, end - 1)
                if cr < 0 or buf[cr + 1] != 10:
                    if end - pos == LINE_MAX:
                        pos = end
                        continue
                    break
                pos = cr + 2
                out.append(BAD_FORMAT)
                outlen += len(BAD_FORMAT)
                state = self._state = S_COMMAND
            else:
                break
        if pos >= n:
            self._buf = b""
        elif type(buf) is bytearray:
            if pos:
                del buf[:pos]
        else:
            self._buf = bytearray(buf[pos:])
        if self._eof and state != S_WAIT:
            self._finish_eof()
        if out:
            reply = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            if self._gated:
                self._emit(reply)
            else:
                self._write(reply)
        if self._close_when_flushed:
            self._flush()
        if self._read_paused or state == S_WAIT:
            self._update_reading()

    def _by_prefix(self, line: bytes) -> tuple[Any, int]:
        """The handler for a line whose first word is not a command as it
        stands (the reference also takes prefixes, e.g. "reservex")."""
        op = which_command(line)
        handler = _HANDLERS.get(op)
        if handler is None:
            return Connection._unknown, 0
        return handler, _ARG_AT[op]

    def _unknown(self, line: bytes, at: int) -> bytes:
        return UNKNOWN_COMMAND

    def _finish_eof(self) -> None:
        """The client sent EOF and nothing it sent is left to answer: close."""
        if self._state == S_WAIT:
            return
        self._state = S_CLOSE
        self._close_when_flushed = True

    def _flush(self) -> None:
        """Send the batch's replies: one write, or held behind the log (-b)."""
        out = self._out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            if self._gated:
                self._emit(data)
            else:
                self._write(data)
        if self._close_when_flushed and not self._held and not self._closed:
            self._closed_by_us()

    def _closed_by_us(self) -> None:
        """Close after the last reply, and let go of the connection's state in
        the same step, as 1.12 does: its reservations are back in their tubes
        before any other client can ask (connection_lost then finds it done)."""
        if not self._closed:
            self._closed = True
            self._state = S_CLOSE
            self.server.disconnected(self)
        t = self.transport
        if t is not None and not t.is_closing():
            t.close()

    def _emit(self, data: bytes) -> None:
        """With -b: write, unless a log record this reply depends on is not durable yet."""
        journal = self.server.journal
        seq = journal.pending()
        held = self._held
        if held:
            held.append((seq, data))
        elif seq > journal.durable():
            if held is None:
                held = self._held = deque()
            held.append((seq, data))
            self._wait_durable(seq)
        else:
            self._write(data)

    def _wait_durable(self, seq: int) -> None:
        if not self._durable_wait:
            self._durable_wait = True
            self.server.journal.wait_durable(seq, self._durable_reached)

    def _durable_reached(self) -> None:
        self._durable_wait = False
        self._release_held()

    def _release_held(self) -> None:
        """Write the held replies that may go: durable, and read if they wait for a body."""
        durable = self.server.journal.durable()
        held = self._held
        assert held is not None
        while held:
            seq, data = held[0]
            if seq > durable:
                self._wait_durable(seq)
                return
            if data.__class__ is _Pending:
                data = data.data
                if data is None:
                    return  # its read calls back
            held.popleft()
            self._write(data)
        if self._close_when_flushed:
            self._closed_by_us()

    # --- bodies read back from the log (-b) -----------------------------------------

    def _job_reply(self, word: bytes, job: Job, reserve: bool = False) -> bytes | None:
        """word, the job's id and body; None when the body must first be read back
        (the reply then takes its place among the held replies)."""
        bodies = self._bodies
        if bodies is None:
            body = job.body
        else:
            try:
                body = bodies.take(job) if reserve else bodies.get(job)
            except BinlogError:
                return self._unreadable(word, job)
            if body is None:
                self._reply_after_read(word, job)
                return None
        return b"%b %d %d\r\n%b\r\n" % (word, job.id, len(body), body)

    def _reply_after_read(self, word: bytes, job: Job) -> None:
        # The replies of this batch so far go first; every later one waits behind this.
        out = self._out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            self._emit(data)
        pending = _Pending()
        journal = self.server.journal
        seq = journal.pending()
        held = self._held
        if held is None:
            held = self._held = deque()
        held.append((seq, pending))
        if len(held) == 1 and seq > journal.durable():
            self._wait_durable(seq)

        def read(body: bytes | None, error: BaseException | None) -> None:
            if body is None:
                pending.data = self._unreadable(word, job)
            else:
                pending.data = b"%b %d %d\r\n%b\r\n" % (word, job.id, len(body), body)
            self._release_held()

        self._bodies.fetch(job, read)

    def _unreadable(self, word: bytes, job: Job) -> bytes:
        """A body that fails its check (logged with file and offset by the store).

        A reserve that got the job buries it, so that it does not come back
        to every reserve and the jobs behind it are served.
        """
        if word == b"RESERVED" and self.client.reserved.get(job.id) is job and not self._closed:
            try:
                self.server.bury(self.client, job.id, job.priority)
                log.error("job %d buried: its body cannot be read back from the log", job.id)
            except Exception:
                log.exception("%s: cannot bury job %d", self.peer, job.id)
        return INTERNAL_ERROR

    def _write(self, data: bytes) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        t.write(data)
        # The transport calls pause_writing() once its buffer passes the
        # high-water mark, which connection_made keeps at or below the cap:
        # until then the buffer cannot be over the cap, and is not asked.
        if self._write_paused and t.get_write_buffer_size() > self.server.output_cap:
            self._over_cap(t)

    def _over_cap(self, t: Any) -> None:
        log.warning(
            "%s: disconnected: %d bytes of replies not read (cap %d)",
            self.peer,
            t.get_write_buffer_size(),
            self.server.output_cap,
        )
        self._closed = True
        self._state = S_CLOSE
        self.server.disconnected(self)
        t.abort()

    def _update_reading(self) -> None:
        t = self.transport
        if t is None or self._closed or t.is_closing():
            return
        want_pause = self._write_paused or (
            self._state == S_WAIT and len(self._buf) > INPUT_HOLD_MAX
        )
        if want_pause != self._read_paused:
            self._read_paused = want_pause
            if want_pause:
                t.pause_reading()
            else:
                t.resume_reading()

    def _schedule_resume(self) -> None:
        if not self._resume_pending:
            self._resume_pending = True
            self.server.loop.call_soon(self._resume)

    def _resume(self) -> None:
        """Carry on with input that waited behind a blocked reserve."""
        self._resume_pending = False
        if self._closed or self._stopping or self._state in (S_WAIT, S_CLOSE):
            return
        self.data_received(b"")
        self._update_reading()

    def _wake(self, job: Job | None, word: bytes) -> None:
        """The lock service ends this connection's blocked reserve."""
        if self._closed or self._stopping:
            return
        self._state = S_COMMAND
        reply = self._job_reply(word, job, True) if job is not None else word + b"\r\n"
        if reply is None:
            pass  # waits for its body among the held replies
        elif self._gated:
            self._emit(reply)
        else:
            self._write(reply)
        self._carry_on()

    def _carry_on(self) -> None:
        """After a wait: go on with the input that came meanwhile."""
        if self._eof and not self._buf:
            # Half-closed with nothing more to answer: close now, not a loop
            # iteration later.
            self._finish_eof()
            self._flush()
        elif self._buf or self._eof:
            self._schedule_resume()
        else:
            self._update_reading()

    # The connection itself is its client's wake callable (client.wake(job,
    # word)): a bound method kept per connection would cost 64 bytes more.
    __call__ = _wake

    # --- commands ---------------------------------------------------------------

    def _put(self, line: bytes, at: int) -> bytes | None:
        parsed = _PUT_CACHE.get(line) or parse_put_cached(line)
        if parsed is None:
            return BAD_FORMAT
        pri, delay, ttr, size, clean = parsed
        self._ops[OP_PUT] += 1
        if size > self._max_job_size:
            self._need = size + 2
            self._skip_reply = JOB_TOO_BIG
            self._state = S_SKIP
            return None
        if not clean:
            return BAD_FORMAT
        client = self.client
        if not client.producer:
            client.producer = True
            self.stats.producers += 1
        self._need = size + 2
        try:
            self._job = self._new_job(pri, delay, ttr or 1, client.use, size)
        except OutOfMemory:
            # As 1.12 when it cannot allocate the job: counted in cmd-put, no
            # id taken, the body read and thrown away, then OUT_OF_MEMORY.
            self._skip_reply = OUT_OF_MEMORY
            self._state = S_SKIP
            return None
        self._state = S_DATA
        return None

    def _peek_which(self, line: bytes, op: int, which: str) -> bytes | None:
        if len(line) != _ARG_AT[op]:
            return BAD_FORMAT
        self._ops[op] += 1
        job = self.server.peek_in_use(self.client, which)
        return NOT_FOUND if job is None else self._job_reply(b"FOUND", job)

    def _peek_ready(self, line: bytes, at: int) -> bytes | None:
        return self._peek_which(line, OP_PEEK_READY, "ready")

    def _peek_delayed(self, line: bytes, at: int) -> bytes | None:
        return self._peek_which(line, OP_PEEK_DELAYED, "delayed")

    def _peek_buried(self, line: bytes, at: int) -> bytes | None:
        return self._peek_which(line, OP_PEEK_BURIED, "buried")

    def _peek(self, line: bytes, at: int) -> bytes | None:
        r = read_uint(line, at, U64, True)
        if r is None:
            return BAD_FORMAT
        self._ops[OP_PEEKJOB] += 1
        return self._job_reply(b"FOUND", self.server.peek(r[0]))

    def _reserve_timeout(self, line: bytes, at: int) -> bytes | None:
        arg = line[at:]
        if arg.isdigit() and len(arg) < 10:  # plain digits below 2**31: as they are
            timeout = int(arg)
        else:
            timeout = parse_reserve_timeout(line, at)
            if timeout is None:
                return BAD_FORMAT
        return self._do_reserve(OP_RESERVE_TIMEOUT, None if timeout < 0 else timeout)

    def _reserve(self, line: bytes, at: int) -> bytes | None:
        if len(line) != at:
            return BAD_FORMAT
        return self._do_reserve(OP_RESERVE, None)

    def _do_reserve(self, op: int, timeout: int | None) -> bytes | None:
        self._ops[op] += 1
        client = self.client
        # A job ready at once is the common case: reserve it straight away.
        job = self._reserve_next(client) if client.worker else None
        if job is None:
            try:
                job = self.server.reserve(client, timeout)
            except DeadlineSoon:
                return DEADLINE_SOON
            except NoJobReady:
                return TIMED_OUT
            if job is None:
                self._state = S_WAIT
                return None
        if self._bodies is not None:
            return self._job_reply(b"RESERVED", job, True)
        body = job.body
        return b"RESERVED %d %d\r\n%b\r\n" % (job.id, len(body), body)

    def _reserve_job(self, line: bytes, at: int) -> bytes | None:
        r = read_uint(line, at, U64, True)
        if r is None:
            return BAD_FORMAT
        self._ops[OP_RESERVE_JOB] += 1
        return self._job_reply(b"RESERVED", self.server.reserve_job(self.client, r[0]), True)

    def _delete(self, line: bytes, at: int) -> bytes:
        rest = line[at:]
        if rest.isdigit():
            jid = int(rest)
            if jid > U64:
                return BAD_FORMAT
        else:
            r = read_uint(line, at, U64, True)
            if r is None:
                return BAD_FORMAT
            jid = r[0]
        self._ops[OP_DELETE] += 1
        self.server.delete(self.client, jid)
        return DELETED

    def _release(self, line: bytes, at: int) -> bytes:
        r1 = read_uint(line, at, U64, False)
        r2 = r1 and read_uint(line, r1[1], U32, False)
        r3 = r2 and read_uint(line, r2[1], U32, True)
        if not r3:
            return BAD_FORMAT
        self._ops[OP_RELEASE] += 1
        self.server.release(self.client, r1[0], r2[0], r3[0])  # type: ignore[index]
        return RELEASED

    def _bury(self, line: bytes, at: int) -> bytes:
        r1 = read_uint(line, at, U64, False)
        r2 = r1 and read_uint(line, r1[1], U32, True)
        if not r2:
            return BAD_FORMAT
        self._ops[OP_BURY] += 1
        self.server.bury(self.client, r1[0], r2[0])  # type: ignore[index]
        return BURIED

    def _kick(self, line: bytes, at: int) -> bytes:
        bound = parse_kick_bound(line, at)
        if bound is None:
            return BAD_FORMAT
        self._ops[OP_KICK] += 1
        return b"KICKED %d\r\n" % self.server.kick(self.client, bound)

    def _kick_job(self, line: bytes, at: int) -> bytes:
        r = read_uint(line, at, U64, True)
        if r is None:
            return BAD_FORMAT
        self._ops[OP_KICKJOB] += 1
        self.server.kick_job(r[0])
        return KICKED

    def _touch(self, line: bytes, at: int) -> bytes:
        r = read_uint(line, at, U64, True)
        if r is None:
            return BAD_FORMAT
        self._ops[OP_TOUCH] += 1
        self.server.touch(self.client, r[0])
        return TOUCHED

    def _stats(self, line: bytes, at: int) -> bytes:
        if len(line) != at:
            return BAD_FORMAT
        self._ops[OP_STATS] += 1
        return frame_ok(self.server.stats_doc())

    def _stats_job(self, line: bytes, at: int) -> bytes:
        r = read_uint(line, at, U64, True)
        if r is None:
            return BAD_FORMAT
        self._ops[OP_STATSJOB] += 1
        return frame_ok(self.server.stats_job(r[0]))

    def _stats_tube(self, line: bytes, at: int) -> bytes:
        name = line[at:]
        if not valid_name(name):
            return BAD_FORMAT
        self._ops[OP_STATS_TUBE] += 1
        return frame_ok(self.server.stats_tube(name))

    def _use(self, line: bytes, at: int) -> bytes:
        name = line[at:]
        if not valid_name(name):
            return BAD_FORMAT
        self._ops[OP_USE] += 1
        self.server.use(self.client, name)
        return b"USING %b\r\n" % name

    def _watch(self, line: bytes, at: int) -> bytes:
        name = line[at:]
        if not valid_name(name):
            return BAD_FORMAT
        self._ops[OP_WATCH] += 1
        return b"WATCHING %d\r\n" % self.server.watch(self.client, name)

    def _ignore(self, line: bytes, at: int) -> bytes:
        name = line[at:]
        if not valid_name(name):
            return BAD_FORMAT
        self._ops[OP_IGNORE] += 1
        try:
            return b"WATCHING %d\r\n" % self.server.ignore(self.client, name)
        except NotIgnored:
            return NOT_IGNORED

    def _list_tubes(self, line: bytes, at: int) -> bytes:
        if len(line) != at:
            return BAD_FORMAT
        self._ops[OP_LIST_TUBES] += 1
        return frame_ok(self.server.list_tubes())

    def _list_tube_used(self, line: bytes, at: int) -> bytes:
        if len(line) != at:
            return BAD_FORMAT
        self._ops[OP_LIST_TUBE_USED] += 1
        return b"USING %b\r\n" % self.client.use.name  # type: ignore[union-attr]

    def _list_tubes_watched(self, line: bytes, at: int) -> bytes:
        if len(line) != at:
            return BAD_FORMAT
        self._ops[OP_LIST_TUBES_WATCHED] += 1
        return frame_ok(self.server.list_tubes_watched(self.client))

    def _quit(self, line: bytes, at: int) -> None:
        self._state = S_CLOSE
        self._close_when_flushed = True
        return None

    def _pause_tube(self, line: bytes, at: int) -> bytes:
        n = len(line)
        pos = at
        while pos < n and line[pos] == 32:
            pos += 1
        start = pos
        while pos < n and line[pos] in NAME_CHARS:
            pos += 1
        if pos == start:
            return BAD_FORMAT
        r = read_uint(line, pos, U32, True)
        if r is None:
            return BAD_FORMAT
        self._ops[OP_PAUSE_TUBE] += 1
        name = line[start:pos]
        if not valid_name(name):
            return BAD_FORMAT
        self.server.pause_tube(name, r[0])
        return PAUSED


# The dispatch tables, built once: op -> handler (a function taking the
# connection), and the fast path's first word -> (handler, where its argument
# starts), for a line with a space after the word and for the word alone.
_HANDLERS: dict[int, Any] = {
    OP_PUT: Connection._put,
    OP_PEEKJOB: Connection._peek,
    OP_PEEK_READY: Connection._peek_ready,
    OP_PEEK_DELAYED: Connection._peek_delayed,
    OP_PEEK_BURIED: Connection._peek_buried,
    OP_RESERVE_TIMEOUT: Connection._reserve_timeout,
    OP_RESERVE_JOB: Connection._reserve_job,
    OP_RESERVE: Connection._reserve,
    OP_DELETE: Connection._delete,
    OP_RELEASE: Connection._release,
    OP_BURY: Connection._bury,
    OP_KICK: Connection._kick,
    OP_KICKJOB: Connection._kick_job,
    OP_TOUCH: Connection._touch,
    OP_STATSJOB: Connection._stats_job,
    OP_STATS_TUBE: Connection._stats_tube,
    OP_STATS: Connection._stats,
    OP_USE: Connection._use,
    OP_WATCH: Connection._watch,
    OP_IGNORE: Connection._ignore,
    OP_LIST_TUBES_WATCHED: Connection._list_tubes_watched,
    OP_LIST_TUBE_USED: Connection._list_tube_used,
    OP_LIST_TUBES: Connection._list_tubes,
    OP_QUIT: Connection._quit,
    OP_PAUSE_TUBE: Connection._pause_tube,
}
_SPACED: dict[bytes, tuple[Any, int]] = {
    word: (_HANDLERS[op], _ARG_AT[op]) for word, (op, _) in _WORDS.items()
}
_BARE: dict[bytes, tuple[Any, int]] = {
    word: (_HANDLERS[op], _ARG_AT[op])
    for word, (op, needs_space) in _WORDS.items()
    if not needs_space
}
