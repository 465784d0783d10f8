"""The least a Python server on uvloop can do per request: answer it unread.

Each read gets one constant reply (`USING default` to `list-tube-used`,
`INSERTED 1` to anything else); nothing is parsed, stored or counted. Its
CPU per request is what the event loop and the two system calls cost, the
floor under any Python server's one-request-per-round-trip figures.

    python benchmarks/floor_server.py PORT
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

try:
    import uvloop
except ImportError:  # pragma: no cover - the bench extra installs it
    uvloop = None


class AnswerEveryRead(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(b"USING default\r\n" if data[:1] == b"l" else b"INSERTED 1\r\n")


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_server(AnswerEveryRead, "127.0.0.1", port)
    await asyncio.Future()


def main() -> None:
    port = int(sys.argv[1])
    if uvloop is not None:
        uvloop.run(serve(port))
    else:
        asyncio.run(serve(port))


if __name__ == "__main__":
    main()
