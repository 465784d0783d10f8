"""The fixtures' stand-in for a server someone else runs (--geanstalk-host, or the ini setting).

Tests then talk to that server (beanstalkd itself, say). It cannot be
started, stopped or made to skip time: ``advance`` raises
:class:`AdvanceUnavailable`. Each test still starts clean: at teardown every
job left in a tube (ready, delayed or buried) is deleted and every paused
tube resumed. Jobs that a connection still open holds reserved cannot be
deleted by another connection; close your clients.
"""

from __future__ import annotations

import socket
from typing import Any

DEFAULT_PORT = 11300


class ExternalServerError(RuntimeError):
    """Something the fixtures cannot do to a server this process does not run."""


class AdvanceUnavailable(ExternalServerError):
    """advance() was called on a server this process does not run."""


def parse_host(text: str) -> tuple[str, int]:
    """HOST, HOST:PORT, or [V6]:PORT."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else DEFAULT_PORT
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, int(port)
    return text, DEFAULT_PORT


class ExternalServer:
    """A server at ``host:port`` that this process did not start."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def __repr__(self) -> str:
        return f"<ExternalServer {self.host}:{self.port}>"

    def advance(self, seconds: float) -> None:
        raise AdvanceUnavailable(
            f"advance() needs the in-process server; the fixtures run against the external "
            f"server {self.host}:{self.port} (--geanstalk-host / geanstalk_host), whose clock "
            f"cannot be moved. Mark the test to skip there, or run it without --geanstalk-host."
        )

    def clean(self) -> None:
        """Delete every job left in a tube and resume paused tubes."""
        with socket.create_connection(self.address, timeout=10) as sock:
            reader = sock.makefile("rb")

            def command(line: str) -> tuple[list[bytes], bytes]:
                sock.sendall(line.encode() + b"\r\n")
                head = reader.readline().rstrip(b"\r\n").split()
                body = b""
                if head and head[0] in (b"OK", b"FOUND"):
                    size = int(head[-1])
                    body = reader.read(size + 2)[:-2]
                return head, body

            _, listing = command("list-tubes")
            tubes = [line[2:].decode() for line in listing.splitlines() if line.startswith(b"- ")]
            for tube in tubes:
                command(f"use {tube}")
                command(f"pause-tube {tube} 0")
                for which in ("ready", "delayed", "buried"):
                    while True:
                        head, _ = command(f"peek-{which}")
                        if not head or head[0] != b"FOUND":
                            break
                        done, _ = command(f"delete {head[1].decode()}")
                        if done != [b"DELETED"]:
                            break

    def stop(self) -> None:
        self.clean()


def external_server(config: Any) -> ExternalServer | None:
    """The external server the pytest options name, or None."""
    text = config.getoption("geanstalk_host", None) or config.getini("geanstalk_host")
    if not text:
        return None
    return ExternalServer(*parse_host(str(text)))


def check_no_options(options: dict[str, Any], server: ExternalServer) -> None:
    if options:
        names = ", ".join(sorted(options))
        raise ExternalServerError(
            f"server options ({names}) cannot be applied to the external server "
            f"{server.host}:{server.port} (--geanstalk-host / geanstalk_host)"
        )
