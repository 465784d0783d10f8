"""High availability on etcd: a fenced journal, leadership, warm standbys.

Imported only when ``geanstalk serve`` is given ``--etcd`` (or by the cluster
tools), so a single-node install needs none of its dependencies (aiohttp,
the ``cluster`` extra). docs/CLUSTER.md describes the design.
"""

from __future__ import annotations

import importlib.util
from typing import Any

# etcd takes requests of at most 1.5 MiB by default (--max-request-bytes): a
# job's record, body included, must fit in one, with room for the rest.
MAX_JOB_SIZE = 1536 * 1024 - 20 * 1024


def config_problem(cfg: Any) -> str | None:
    """Why these serve options cannot make a cluster node, or None."""
    from geanstalk.cluster.keys import check_cluster_name, check_node_name

    if not cfg.cluster:
        return "--etcd needs --cluster NAME"
    try:
        check_cluster_name(cfg.cluster)
        if cfg.node_name:
            check_node_name(cfg.node_name)
    except ValueError as exc:
        return str(exc)
    if cfg.listen.startswith("unix:"):
        return "a cluster node listens on TCP: its address is advertised to the others"
    if cfg.max_job_size > MAX_JOB_SIZE:
        return f"with --etcd the maximum job size (-z) is {MAX_JOB_SIZE} bytes"
    if cfg.lease_ttl < 2:
        return "--lease-ttl must be at least 2 seconds (etcd's own minimum)"
    if cfg.advertise and (
        ":" not in cfg.advertise or not cfg.advertise.rpartition(":")[2].isdigit()
    ):
        return f"--advertise must be HOST:PORT, got {cfg.advertise!r}"
    if importlib.util.find_spec("aiohttp") is None:
        return "cluster support needs aiohttp: pip install 'geanstalk[cluster]'"
    return None
