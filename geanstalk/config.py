"""Every option of ``geanstalk serve``, in one object.

cli.py fills it from the flags, the pytest plugin and embedders build it by
keyword, and runner.py reads it; nothing else parses flags. A field keeps
beanstalkd's default where the reference has the same option, so a
``ServerConfig()`` behaves like ``beanstalkd`` with no flags. Each optional
capability adds its own fields here, with a default that leaves it off.

A plain class, not a dataclass: cli.py builds one before the listening
socket is bound, and importing dataclasses (and with it inspect) would
cost tens of milliseconds of start-up.
"""

from __future__ import annotations

DEFAULT_PORT = 11300
DEFAULT_MAX_JOB_SIZE = 65535
JOB_SIZE_MAX = 1073741824  # the reference's cap on -z
DEFAULT_BINLOG_SIZE = 10485760
# Replies a client has not read yet, beyond the transport's high-water mark,
# after which it is disconnected.
DEFAULT_OUTPUT_CAP = 4 * 1024 * 1024


class ServerConfig:
    """The options of one server; defaults are beanstalkd 1.12's.

    ``ServerConfig(port=0, binlog_dir="/var/lib/geanstalk")``: any field by
    keyword; an unknown name is a TypeError, as it would be for a function.
    List-valued fields get a fresh list per instance.
    """

    listen: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    max_job_size: int = DEFAULT_MAX_JOB_SIZE
    binlog_dir: str | None = None
    # fsync at most every fsync_ms milliseconds; None = never (-F).
    fsync_ms: int | None = 50
    binlog_size: int = DEFAULT_BINLOG_SIZE
    user: str | None = None
    verbose: int = 0
    uvloop: bool = True
    output_cap: int = DEFAULT_OUTPUT_CAP
    # Resource bounds (docs/SECURITY.md); 0 leaves each off, as the reference has none.
    # Connections served at once; one more is accepted and reset at once.
    max_connections: int = 0
    # Bytes of job memory (bodies plus a per-job overhead); a put past it
    # answers OUT_OF_MEMORY.
    max_memory: int = 0
    # Seconds a connection may sit with no command, no reservation and no
    # blocked reserve before it is closed.
    idle_timeout: int = 0
    # --http ADDR:PORT: /metrics, /healthz, /readyz, /stats.json (http.py); None = off.
    http: str | None = None
    # --metrics-names: "beanstalkd-exporter" (messagebird's names) or "beanstalkd-rs".
    metrics_names: str = "beanstalkd-exporter"
    # --no-metrics-instance: leave out the instance="<listen address>" label.
    metrics_instance: bool = True
    # --metrics-tube-limit: tubes with per-tube series at most.
    metrics_tube_limit: int = 1000
    # --log-format: "text" (as beanstalkd, -V) or "json" (one object per line).
    log_format: str = "text"
    # High availability on etcd (geanstalk/cluster/): comma-separated client
    # URLs; None = a single node. The rest only matter with etcd set.
    etcd: str | None = None
    cluster: str | None = None
    node_name: str | None = None  # default: the advertised address
    advertise: str | None = None  # host:port clients and relays reach; default listen:port
    lease_ttl: int = 2  # seconds; a dead leader is replaced after about this long
    # TLS listeners and token auth (tls.py, auth.py; docs/SECURITY.md).
    tls_listen: list[str] = []  # noqa: RUF012 (fresh per instance) "ADDR:PORT" per --tls-listen
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None  # set: mutual TLS
    auth_tokens: str | None = None  # set: TLS listeners require `auth <token>` first
    plain: bool = True  # --no-plain: no -l/-p listener
    max_pending_handshakes: int = 1024
    tls_handshake_timeout: int = 10  # seconds
    auth_timeout: int = 10  # seconds
    # With -b: bytes of job bodies kept in memory (the rest are read back from
    # the log); None = an eighth of physical memory, 0 = none.
    body_cache: int | None = None

    def __init__(self, **options: object) -> None:
        cls = type(self)
        for name in _FIELDS:
            default = getattr(cls, name)
            if isinstance(default, list):
                setattr(self, name, list(default))
        for name, value in options.items():
            if name not in _FIELDS:
                raise TypeError(f"ServerConfig has no option {name!r}")
            setattr(self, name, value)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in _FIELDS)
        return f"ServerConfig({fields})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerConfig):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in _FIELDS)

    @property
    def listen_address(self) -> str:
        """The beanstalk listener as people write it: host:port, or unix:PATH."""
        if self.listen.startswith("unix:"):
            return self.listen
        host = self.listen
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.port}"


# The option names: every annotated class attribute above.
_FIELDS = tuple(ServerConfig.__annotations__)
