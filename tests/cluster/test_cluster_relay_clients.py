"""greenstalk's and pystalk's tests from tests/wire, through a relay, unchanged.

The relay passes bytes, so every real-client test that holds against a
server directly must hold through it. The tests are the wire suite's own
functions (one source of truth); only ``server`` differs: a geanstalk
server as the leader, reached through a relay's port.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from tests.cluster.relay_harness import RelayThread
from tests.servers import ServerProcess, geanstalk_server
from tests.wire import test_clients

# The wire suite's client tests and the fixtures they use, collected here again.
globals().update(
    {
        name: getattr(test_clients, name)
        for name in dir(test_clients)
        if name.startswith(("test_greenstalk_", "test_pystalk_"))
        or name in ("tube", "green", "green_bytes", "stalk")
    }
)


@pytest.fixture(scope="module")
def leader() -> Iterator[ServerProcess]:
    with geanstalk_server().start() as server:
        yield server


@pytest.fixture(scope="module")
def server(leader: ServerProcess) -> Iterator[SimpleNamespace]:
    """What the client tests connect to: the relay, standing in for a standby."""
    with RelayThread(leader.address) as relay:
        yield SimpleNamespace(address=relay.address, relay=relay, leader=leader)


def test_replies_come_from_the_leader(server: SimpleNamespace) -> None:
    import greenstalk

    with greenstalk.Client(server.address) as client:
        assert client.stats()["pid"] == server.leader.pid
    assert server.relay.relay.accepted >= 1
