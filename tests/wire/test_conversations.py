"""Every wire conversation of wire_conversations, played on geanstalk and on beanstalkd."""

from __future__ import annotations

import pytest
from wire_conversations import CONVERSATIONS, STATS_JOB_KEYS, STATS_KEYS, STATS_TUBE_KEYS
from wire_runner import Conversation, Player, split_replies

from tests.servers import BEANSTALKD, SKIP_NO_REFERENCE, ServerProcess, running


def play(conversation: Conversation, server: ServerProcess) -> None:
    Player(conversation, server.connect, server.signal).play()


@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=[c.name for c in CONVERSATIONS])
def test_conversation(conversation: Conversation, kind: str, shared_servers) -> None:
    if conversation.fresh is None:
        play(conversation, shared_servers.get(kind))
    else:
        with running(kind, *conversation.fresh) as server:
            play(conversation, server)


def test_conversation_names_are_unique() -> None:
    names = [c.name for c in CONVERSATIONS]
    assert len(names) == len(set(names))


def _keys(server: ServerProcess, setup: bytes, command: bytes) -> list[bytes]:
    """The keys of the YAML document the command answers, after the setup's one reply."""
    want = 2 if setup else 1
    with server.connect() as s:
        s.sendall(setup + command)
        buf = b""
        while len(split_replies(buf)[0]) < want:
            chunk = s.recv(65536)
            assert chunk, "connection closed"
            buf += chunk
    reply = split_replies(buf)[0][-1]
    head, _, body = reply.partition(b"\r\n")
    assert head.startswith(b"OK "), reply
    lines = body[:-2].split(b"\n")
    assert lines[0] == b"---" and lines[-1] == b""
    return [line.split(b":", 1)[0] for line in lines[1:-1]]


@pytest.mark.skipif(BEANSTALKD is None, reason=SKIP_NO_REFERENCE)
@pytest.mark.parametrize(
    ("setup", "command", "expected"),
    [
        (b"", b"stats\r\n", STATS_KEYS),
        (b"", b"stats-tube default\r\n", STATS_TUBE_KEYS),
        (b"put 0 0 60 1\r\nx\r\n", b"stats-job 1\r\n", STATS_JOB_KEYS),
    ],
    ids=["stats", "stats-tube", "stats-job"],
)
def test_stats_keys_same_on_both_servers(setup: bytes, command: bytes, expected: list[str]) -> None:
    """Key names and order compared between the two servers, values ignored."""
    keys = {}
    for kind in ("beanstalkd", "geanstalk"):
        with running(kind) as server:
            keys[kind] = _keys(server, setup, command)
    assert keys["beanstalkd"] == [k.encode() for k in expected]
    assert keys["geanstalk"] == keys["beanstalkd"]
