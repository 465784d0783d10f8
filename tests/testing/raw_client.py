"""A few raw beanstalk commands over a socket, for the plugin's tests (no client library)."""

from __future__ import annotations

import socket
from typing import Any


class Wire:
    """One connection; ``send`` writes a command, ``reply`` reads one reply line (and body)."""

    def __init__(self, address: Any) -> None:
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(address)
        self.reader = self.sock.makefile("rb")

    def send(self, line: str, body: bytes | None = None) -> None:
        data = line.encode() + b"\r\n"
        if body is not None:
            data += body + b"\r\n"
        self.sock.sendall(data)

    def reply(self) -> str:
        line = self.reader.readline().decode().rstrip("\r\n")
        words = line.split()
        if words and words[0] in ("OK", "FOUND", "RESERVED"):
            body = self.reader.read(int(words[-1]) + 2)[:-2]
            return f"{line}\n{body.decode()}"
        return line

    def ask(self, line: str, body: bytes | None = None) -> str:
        self.send(line, body)
        return self.reply()

    def stats_job(self, job_id: int) -> dict[str, str]:
        return yaml_dict(self.ask(f"stats-job {job_id}"))

    def stats_tube(self, tube: str) -> dict[str, str]:
        return yaml_dict(self.ask(f"stats-tube {tube}"))

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


def yaml_dict(reply: str) -> dict[str, str]:
    head, _, body = reply.partition("\n")
    assert head.startswith("OK"), reply
    out = {}
    for line in body.splitlines()[1:]:
        key, _, value = line.partition(": ")
        out[key] = value.strip()
    return out
