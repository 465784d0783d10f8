"""A small blocking beanstalk protocol client for the admin commands.

The admin CLI has to work on a plain install and against beanstalkd as well
as geanstalk, so it speaks the protocol itself over one socket: no client
library, no event loop. Replies other than the expected ones raise Refused
(the command was understood and declined: NOT_FOUND, ...); a server that
cannot be reached or goes away raises Unreachable. Both carry the words of
the reply or the reason, for the CLI's exit codes 1 and 3.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable

DEFAULT_ADDRESS = "127.0.0.1:11300"


class AdminError(Exception):
    """Base of the errors the CLI turns into exit codes."""


class Unreachable(AdminError):
    """No connection to the server, or it closed/broke the connection."""


class Refused(AdminError):
    """The server answered with something other than success (its reply is the message)."""

    def __init__(self, reply: str, command: str = "") -> None:
        super().__init__(f"{command}: {reply}" if command else reply)
        self.reply = reply


def parse_address(text: str | None) -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT or HOST (port 11300); default $BEANSTALKD_ADDR, then 127.0.0.1:11300."""
    text = text or os.environ.get("BEANSTALKD_ADDR") or DEFAULT_ADDRESS
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else "11300"
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, "11300"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port in address {text!r}")
    return host or "127.0.0.1", int(port)


# Keys whose values are names even when they look like numbers (a tube "42").
_TEXT_KEYS = frozenset(("name", "tube", "state", "version", "hostname", "os", "platform"))


def parse_yaml(body: bytes) -> dict[str, object]:
    """beanstalk's YAML dictionaries (stats, stats-tube, stats-job).

    Integers become ints, the rusage times floats; everything else (version,
    hostname, draining, ...) stays a string, unquoted.
    """
    out: dict[str, object] = {}
    for line in body.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition(": ")
        if not sep:
            continue
        value = value.strip()
        if len(value) > 1 and value[0] == value[-1] == '"':
            out[key] = value[1:-1]
        elif value.lstrip("-").isdigit() and key not in _TEXT_KEYS:
            out[key] = int(value)
        elif key.startswith("rusage-"):
            try:
                out[key] = float(value)
            except ValueError:
                out[key] = value
        else:
            out[key] = value
    return out


def parse_yaml_list(body: bytes) -> list[str]:
    return [
        line[2:].strip()
        for line in body.decode("utf-8", "replace").splitlines()
        if line.startswith("- ")
    ]


class Job:
    """A job as peek/reserve return it."""

    __slots__ = ("body", "id")

    def __init__(self, job_id: int, body: bytes) -> None:
        self.id = job_id
        self.body = body


class Client:
    """One connection to a beanstalk server; every method is one request and its reply."""

    def __init__(self, address: str | None = None, timeout: float | None = 10.0) -> None:
        text = address or os.environ.get("BEANSTALKD_ADDR") or DEFAULT_ADDRESS
        self.timeout = timeout
        self._buf = b""
        if text.startswith("unix:"):  # a server started with -l unix:PATH
            self.address = text
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.settimeout(timeout)
            try:
                self._sock.connect(text[5:])
            except OSError as exc:
                self._sock.close()
                raise Unreachable(f"cannot connect to {text}: {exc.strerror or exc}") from exc
        else:
            host, port = parse_address(text)
            self.address = f"{host}:{port}"
            try:
                self._sock = socket.create_connection((host, port), timeout=timeout)
            except OSError as exc:
                raise Unreachable(
                    f"cannot connect to {self.address}: {exc.strerror or exc}"
                ) from exc
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.using = "default"
        self.watching = ["default"]

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the wire -------------------------------------------------------------

    def send(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise Unreachable(f"connection to {self.address} lost: {exc}") from exc

    def _fill(self) -> None:
        try:
            chunk = self._sock.recv(65536)
        except TimeoutError as exc:
            raise Unreachable(f"{self.address} did not answer in {self.timeout}s") from exc
        except OSError as exc:
            raise Unreachable(f"connection to {self.address} lost: {exc}") from exc
        if not chunk:
            raise Unreachable(f"{self.address} closed the connection")
        self._buf += chunk

    def read_line(self) -> list[str]:
        while True:
            end = self._buf.find(b"\r\n")
            if end >= 0:
                line, self._buf = self._buf[:end], self._buf[end + 2 :]
                return line.decode("ascii", "replace").split(" ")
            self._fill()

    def read_body(self, size: int) -> bytes:
        while len(self._buf) < size + 2:
            self._fill()
        body, self._buf = self._buf[:size], self._buf[size + 2 :]
        return body

    def request(self, line: str, expect: Iterable[str], body: bytes | None = None) -> list[str]:
        """Send one command; its reply's words if the first is expected, else Refused."""
        data = line.encode("ascii") + b"\r\n"
        if body is not None:
            data += body + b"\r\n"
        self.send(data)
        return self.reply(line, expect)

    def reply(self, line: str, expect: Iterable[str]) -> list[str]:
        words = self.read_line()
        if words[0] not in expect:
            raise Refused(" ".join(words), line.split(" ")[0])
        return words

    # --- commands -------------------------------------------------------------

    def _yaml(self, line: str) -> bytes:
        words = self.request(line, ("OK",))
        return self.read_body(int(words[1]))

    def stats(self) -> dict[str, object]:
        return parse_yaml(self._yaml("stats"))

    def stats_tube(self, tube: str) -> dict[str, object]:
        return parse_yaml(self._yaml(f"stats-tube {tube}"))

    def stats_job(self, job_id: int) -> dict[str, object]:
        return parse_yaml(self._yaml(f"stats-job {job_id}"))

    def list_tubes(self) -> list[str]:
        return parse_yaml_list(self._yaml("list-tubes"))

    def use(self, tube: str) -> None:
        if tube != self.using:
            self.request(f"use {tube}", ("USING",))
            self.using = tube

    def watch_only(self, tube: str) -> None:
        """Watch tube and nothing else (reserve then takes only its jobs)."""
        if self.watching == [tube]:
            return
        self.request(f"watch {tube}", ("WATCHING",))
        for other in self.watching:
            if other != tube:
                self.request(f"ignore {other}", ("WATCHING",))
        self.watching = [tube]

    def put(self, body: bytes, pri: int = 1024, delay: int = 0, ttr: int = 60) -> int:
        words = self.request(f"put {pri} {delay} {ttr} {len(body)}", ("INSERTED",), body)
        return int(words[1])

    def _job(self, line: str, expect: str) -> Job:
        words = self.request(line, (expect,))
        return Job(int(words[1]), self.read_body(int(words[2])))

    def peek(self, job_id: int) -> Job:
        return self._job(f"peek {job_id}", "FOUND")

    def peek_state(self, state: str) -> Job | None:
        """The next job in state (ready, delayed or buried) of the used tube, if any."""
        try:
            return self._job(f"peek-{state}", "FOUND")
        except Refused as exc:
            if exc.reply == "NOT_FOUND":
                return None
            raise

    def reserve(self, timeout: int | None = None) -> Job | None:
        """A job from the watched tubes; None when the timeout passes first."""
        line = "reserve" if timeout is None else f"reserve-with-timeout {timeout}"
        try:
            return self._job(line, "RESERVED")
        except Refused as exc:
            if exc.reply == "TIMED_OUT":
                return None
            raise

    def reserve_job(self, job_id: int) -> Job:
        return self._job(f"reserve-job {job_id}", "RESERVED")

    def delete(self, job_id: int) -> None:
        self.request(f"delete {job_id}", ("DELETED",))

    def release(self, job_id: int, pri: int, delay: int = 0) -> None:
        self.request(f"release {job_id} {pri} {delay}", ("RELEASED",))

    def bury(self, job_id: int, pri: int) -> None:
        self.request(f"bury {job_id} {pri}", ("BURIED",))

    def kick(self, bound: int) -> int:
        return int(self.request(f"kick {bound}", ("KICKED",))[1])

    def kick_job(self, job_id: int) -> None:
        self.request(f"kick-job {job_id}", ("KICKED",))

    def pause_tube(self, tube: str, seconds: int) -> None:
        self.request(f"pause-tube {tube} {seconds}", ("PAUSED",))
