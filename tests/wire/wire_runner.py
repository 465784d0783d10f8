"""Play a wire conversation (data from wire_conversations) against a live server.

A conversation is a list of steps on named connections. Expected replies are
byte templates: literal bytes, except `{name}` placeholders. A placeholder
whose name is already bound (a tube name, or an id captured earlier) must
match that value exactly; an unbound one captures a run of digits and binds
it, so `INSERTED {a}` followed later by `delete {a}` follows the real id.
`{_}` matches any digits without binding, `{~}` any text up to the end of the
line. Everything else is compared byte for byte.

Replies are read by counting complete replies (a body announced by `OK n`,
`RESERVED id n` or `FOUND id n` belongs to its line), never by waiting a
fixed time, so a slow server is only slow, not wrong.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import re
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

PLACEHOLDER = re.compile(rb"\{(\w+|~)\}")
_tube_serial = itertools.count(1)

# Totals reported at the end of the session (see conftest.pytest_terminal_summary).
STEP_COUNTER: collections.Counter[str] = collections.Counter()


@dataclass(frozen=True)
class Action:
    """Something a step does other than sending bytes."""

    kind: str  # "close", "shut_wr", "signal"
    arg: int = 0


CLOSE = Action("close")
SHUT_WR = Action("shut_wr")


def signal_server(signum: int) -> Action:
    return Action("signal", signum)


class _Closed:
    """Expect the server to close the connection (after any earlier replies)."""

    def __repr__(self) -> str:
        return "CLOSED"


CLOSED = _Closed()


@dataclass(frozen=True)
class Step:
    conn: str
    send: bytes | Action = b""
    expect: bytes | _Closed = b""
    sleep: float = 0.0
    replies: int | None = None  # only when a body itself contains CR LF
    bytewise: bool = False  # send one byte per write
    # Resend until the reply matches (at most the player's timeout): for waiting
    # on something another connection caused, such as a client being counted
    # as waiting, without guessing how long the server takes.
    poll: bool = False


@dataclass
class Conversation:
    name: str
    steps: list[Step]
    # None: the shared server of this kind. A tuple: a fresh server started
    # with these extra flags, for conversations that need ids from 1, exact
    # global counters, drain mode or a small max job size.
    fresh: tuple[str, ...] | None = None
    tubes: Sequence[str] = ("t", "u", "v")
    marks: tuple[str, ...] = field(default_factory=tuple)


class ConversationFailed(AssertionError):
    pass


def count_template_replies(template: bytes) -> int:
    """How many replies a template describes: lines, a body counting with its header."""
    segments = template.split(b"\r\n")
    if segments and segments[-1] == b"":
        segments.pop()
    count = 0
    skip = False
    for seg in segments:
        if skip:
            skip = False
            continue
        count += 1
        words = seg.split(b" ")
        if (words[0] == b"OK" and len(words) == 2) or (
            words[0] in (b"RESERVED", b"FOUND") and len(words) == 3
        ):
            skip = True
    return count


def split_replies(buf: bytes) -> tuple[list[bytes], bytes]:
    """Complete replies at the head of buf, and the incomplete rest."""
    out: list[bytes] = []
    pos = 0
    while True:
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return out, buf[pos:]
        words = buf[pos:end].split(b" ")
        size = None
        if words[0] == b"OK" and len(words) == 2 and words[1].isdigit():
            size = int(words[1])
        elif words[0] in (b"RESERVED", b"FOUND") and len(words) == 3 and words[2].isdigit():
            size = int(words[2])
        stop = end + 2
        if size is not None:
            if len(buf) < stop + size + 2:
                return out, buf[pos:]
            stop += size + 2
        out.append(buf[pos:stop])
        pos = stop


def compile_template(
    template: bytes, bound: dict[str, bytes]
) -> tuple[re.Pattern[bytes], list[str]]:
    """A regex for the template and the names it will newly bind."""
    parts: list[bytes] = []
    new: list[str] = []
    pos = 0
    for m in PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[pos : m.start()]))
        name = m.group(1).decode()
        if name == "_":
            parts.append(rb"\d+")
        elif name == "~":
            parts.append(rb"[^\r\n]*")
        elif name in bound:
            parts.append(re.escape(bound[name]))
        elif name in new:
            parts.append(b"(?P=" + name.encode() + b")")
        else:
            new.append(name)
            parts.append(b"(?P<" + name.encode() + rb">\d+)")
        pos = m.end()
    parts.append(re.escape(template[pos:]))
    return re.compile(b"".join(parts), re.DOTALL), new


def substitute(data: bytes, bound: dict[str, bytes]) -> bytes:
    def repl(m: re.Match[bytes]) -> bytes:
        name = m.group(1).decode()
        if name not in bound:
            raise KeyError(f"send uses {{{name}}} before it was captured")
        return bound[name]

    return PLACEHOLDER.sub(repl, data)


def check_body_sizes(replies: list[bytes]) -> None:
    """Every announced body size must equal the body actually sent."""
    for reply in replies:
        head, _, rest = reply.partition(b"\r\n")
        words = head.split(b" ")
        if words[0] in (b"OK", b"RESERVED", b"FOUND") and rest:
            size = int(words[-1])
            assert len(rest) == size + 2 and rest.endswith(b"\r\n"), f"bad body size in {reply!r}"


class Player:
    """Runs one conversation; connections are opened on first use."""

    def __init__(
        self,
        conversation: Conversation,
        connect: Callable[[], socket.socket],
        signal: Callable[[int], None],
        timeout: float = 5.0,
    ) -> None:
        self.conv = conversation
        self.connect = connect
        self.signal = signal
        self.timeout = timeout
        self.socks: dict[str, socket.socket] = {}
        self.pending: dict[str, bytes] = {}
        serial = next(_tube_serial)
        slug = re.sub(r"[^A-Za-z0-9]", "", conversation.name)[:40]
        self.bound: dict[str, bytes] = {
            t: f"{slug}.{t}{serial}".encode() for t in conversation.tubes
        }

    def sock(self, name: str) -> socket.socket:
        if name not in self.socks:
            self.socks[name] = self.connect()
            self.pending[name] = b""
        return self.socks[name]

    def play(self) -> None:
        try:
            for index, step in enumerate(self.conv.steps):
                self.run_step(index, step)
            self.check_quiet()
        finally:
            for s in self.socks.values():
                s.close()

    def fail(self, index: int, step: Step, message: str) -> None:
        raise ConversationFailed(
            f"{self.conv.name}: step {index} on {step.conn!r}\n"
            f"  sent:     {step.send!r}\n  expected: {step.expect!r}\n  {message}"
        )

    def run_step(self, index: int, step: Step) -> None:
        if step.sleep:
            time.sleep(step.sleep)
        if step.poll:
            self.poll_step(index, step)
            return
        if isinstance(step.send, Action):
            self.act(step)
        elif step.send:
            data = substitute(step.send, self.bound)
            s = self.sock(step.conn)
            if step.bytewise:
                for i in range(len(data)):
                    s.sendall(data[i : i + 1])
                    time.sleep(0.001)
            else:
                s.sendall(data)
        if isinstance(step.expect, _Closed):
            self.expect_closed(index, step)
        elif step.expect:
            self.expect_bytes(index, step, step.expect)

    def poll_step(self, index: int, step: Step) -> None:
        assert isinstance(step.send, bytes) and isinstance(step.expect, bytes)
        deadline = time.monotonic() + self.timeout
        pattern, new = compile_template(step.expect, self.bound)
        n = step.replies or count_template_replies(step.expect)
        while True:
            self.sock(step.conn).sendall(substitute(step.send, self.bound))
            replies, _ = self.read_replies(step.conn, n)
            got = b"".join(replies)
            m = pattern.fullmatch(got)
            if m is not None:
                for name in new:
                    self.bound[name] = m.group(name)
                return
            if time.monotonic() > deadline:
                self.fail(index, step, f"never matched; last observed: {got!r}")
            time.sleep(0.02)

    def act(self, step: Step) -> None:
        assert isinstance(step.send, Action)
        if step.send.kind == "close":
            self.socks.pop(step.conn).close()
        elif step.send.kind == "shut_wr":
            self.sock(step.conn).shutdown(socket.SHUT_WR)
        elif step.send.kind == "signal":
            self.signal(step.send.arg)
        else:
            raise ValueError(step.send)

    def read_replies(self, conn: str, n: int) -> tuple[list[bytes], bool]:
        s = self.sock(conn)
        s.settimeout(self.timeout)
        buf = self.pending[conn]
        closed = False
        while True:
            replies, rest = split_replies(buf)
            if len(replies) >= n:
                break
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                closed = True
                break
            buf += chunk
        replies, rest = split_replies(buf)
        self.pending[conn] = b"".join(replies[n:]) + rest
        return replies[:n], closed

    def expect_bytes(self, index: int, step: Step, template: bytes) -> None:
        n = step.replies or count_template_replies(template)
        replies, closed = self.read_replies(step.conn, n)
        got = b"".join(replies)
        pattern, new = compile_template(template, self.bound)
        m = pattern.fullmatch(got)
        if m is None:
            extra = " (connection closed)" if closed else ""
            extra += f" (unparsed: {self.pending[step.conn]!r})" if self.pending[step.conn] else ""
            self.fail(index, step, f"observed: {got!r}{extra}")
        assert m is not None
        for name in new:
            self.bound[name] = m.group(name)
        try:
            check_body_sizes(replies)
        except AssertionError as e:
            self.fail(index, step, str(e))

    def expect_closed(self, index: int, step: Step) -> None:
        s = self.sock(step.conn)
        s.settimeout(self.timeout)
        data = self.pending[step.conn]
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            self.fail(index, step, f"connection still open; observed {data!r}")
        except ConnectionResetError:
            pass
        if data:
            self.fail(index, step, f"unexpected bytes before close: {data!r}")
        self.socks.pop(step.conn).close()

    def check_quiet(self) -> None:
        """No connection may hold a reply that no step expected."""
        for name, s in self.socks.items():
            data = self.pending[name]
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError, ConnectionResetError):
                data += s.recv(65536)
            if data:
                raise ConversationFailed(
                    f"{self.conv.name}: unexpected bytes on {name!r}: {data!r}"
                )
