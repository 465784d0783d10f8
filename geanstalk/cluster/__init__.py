"""High availability on etcd: a fenced journal, leadership, warm standbys.

Imported only when ``geanstalk serve`` is given ``--etcd`` (or by the cluster
tools), so a single-node install needs none of its dependencies (aiohttp,
the ``cluster`` extra). docs/CLUSTER.md describes the design.
"""
