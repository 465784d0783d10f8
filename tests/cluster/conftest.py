"""Fixtures for the cluster tests: real etcd members on loopback (see etcd_harness.py).

`etcd1` is one member shared by the whole session (tests keep apart by using
their own `cluster_name`); `etcd3` is a fresh three-member cluster per test, for
tests that kill, pause or restart members. Both skip with a reason when etcd
is not installed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cluster.etcd_harness import ETCD, SKIP_NO_ETCD, EtcdCluster, start_cluster

_serial = itertools.count(1)


def _require_etcd() -> None:
    if ETCD is None:
        pytest.skip(SKIP_NO_ETCD)


@pytest.fixture(scope="session")
def etcd1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One etcd member for the session."""
    _require_etcd()
    cluster = start_cluster(tmp_path_factory.mktemp("etcd1"), size=1)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def etcd3(tmp_path: Path) -> Iterator[EtcdCluster]:
    """A fresh three-member etcd cluster, free to be killed and restarted."""
    _require_etcd()
    cluster = start_cluster(tmp_path, size=3)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def etcd_factory(tmp_path: Path) -> Iterator[Callable[..., EtcdCluster]]:
    """Start clusters of any size (and extra etcd flags); all stopped after the test."""
    _require_etcd()
    started: list[EtcdCluster] = []

    def make(size: int = 1, extra_args: tuple[str, ...] = ()) -> EtcdCluster:
        cluster = start_cluster(tmp_path / f"c{len(started)}", size=size, extra_args=extra_args)
        started.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in started:
            cluster.stop()


@pytest.fixture
def cluster_name(request: pytest.FixtureRequest) -> str:
    """A geanstalk cluster name no other test uses (its keys live under /geanstalk/NAME/)."""
    return f"t{next(_serial)}-{request.node.originalname.replace('_', '-')}"[:60]
