"""The metrics model: families, histograms, and the one registry of collectors.

Nothing here runs unless ``--http`` is given. The values of a scrape are read
at scrape time from the server's own state (the Server facade and its
StatisticsService), so a scrape changes no ``cmd-*`` counter and costs the
command path nothing between scrapes. The only work done on the command
path is in the :class:`Instruments` histograms, which exist only when the
endpoint is on (see instrumented.py for how they are fed).

Adding a metric (other features: resource bounds, cluster, body cache):
write a collector, a function ``collect(server) -> Iterable[Family]``, and
either list it in ``BUILTIN_COLLECTORS`` below or call
``registry.register(collect)`` where the feature starts (the registry is
``server.metrics`` when the endpoint is on, ``None`` otherwise). A collector
reads state; it must never change it.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from geanstalk.server import Server

# Family types, as OpenMetrics names them (exposition.py maps them to the
# Prometheus text format's names).
COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"
INFO = "info"

Labels = tuple[tuple[str, str], ...]


@dataclass
class Family:
    """One metric family: its samples are (sample name, labels, value).

    For a counter the family name has no ``_total`` and its samples do; for
    an info family the samples end in ``_info`` (OpenMetrics' rules).
    """

    name: str
    type: str
    help: str
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)

    def add(self, value: float, labels: Labels = (), suffix: str = "") -> None:
        self.samples.append((self.name + suffix, labels, value))


def gauge(name: str, help: str, value: float, labels: Labels = ()) -> Family:
    f = Family(name, GAUGE, help)
    f.add(value, labels)
    return f


def counter(name: str, help: str, value: float, labels: Labels = ()) -> Family:
    """A counter family named ``name`` whose sample is ``name_total``."""
    f = Family(name, COUNTER, help)
    f.add(value, labels, "_total")
    return f


class Histogram:
    """Fixed buckets, non-cumulative counts, one bisect per observation.

    Observations are in the histogram's own unit (nanoseconds for times
    taken with perf_counter_ns, records for batch sizes); ``scale`` turns
    them into the exposed unit (seconds) when the histogram is read.
    """

    __slots__ = ("bounds", "counts", "scale", "sum")

    def __init__(self, bounds: Sequence[float], scale: float = 1.0) -> None:
        self.bounds = list(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum: float = 0
        self.scale = scale

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def add_to(self, family: Family, labels: Labels = ()) -> None:
        """This histogram's _bucket, _count and _sum samples, under labels."""
        scale = self.scale
        total = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            total += n
            family.add(total, (*labels, ("le", _le(bound * scale))), "_bucket")
        total += self.counts[-1]
        family.add(total, (*labels, ("le", "+Inf")), "_bucket")
        family.add(total, labels, "_count")
        family.add(self.sum * scale, labels, "_sum")


def _le(bound: float) -> str:
    from geanstalk.exposition import format_value

    return format_value(round(bound, 12))


# Bucket bounds. Times are observed in nanoseconds.
_US = 1_000
_MS = 1_000_000
# (Whole numbers: bisect compares ints with ints several times faster than
# ints with floats, and the command histograms are fed once per command.)
COMMAND_BOUNDS_NS = [
    int(v * _US) for v in (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 100000)
]
APPEND_BOUNDS_NS = [int(v * _US) for v in (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000, 100000)]
FSYNC_BOUNDS_NS = [
    int(v * _MS) for v in (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000, 10000)
]
LAG_BOUNDS_NS = [int(v * _MS) for v in (0.1, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000, 10000)]
BATCH_BOUNDS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384]
WAIT_BOUNDS_S = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600]
NS = 1e-9

DEFAULT_TUBE_SERIES = 1000


class Instruments:
    """The histograms the command path, the binlog and the loop feed.

    Created only when the endpoint is on; the connection factory then builds
    instrumented connections (instrumented.py), so a server without
    ``--http`` never looks at this class.
    """

    def __init__(self, op_names: dict[int, str], tube_cap: int = DEFAULT_TUBE_SERIES) -> None:
        self.op_names = op_names
        self.commands = {op: Histogram(COMMAND_BOUNDS_NS, NS) for op in op_names}
        self.binlog_append = Histogram(APPEND_BOUNDS_NS, NS)
        self.binlog_fsync = Histogram(FSYNC_BOUNDS_NS, NS)
        self.group_commit = Histogram(BATCH_BOUNDS)
        self.loop_lag = Histogram(LAG_BOUNDS_NS, NS)
        self.tube_cap = tube_cap
        self.job_wait: dict[bytes, Histogram] = {}
        self.job_wait_dropped = 0  # observations of tubes past the cap

    def wait_histogram(self, tube: bytes) -> Histogram | None:
        h = self.job_wait.get(tube)
        if h is None:
            if len(self.job_wait) >= self.tube_cap:
                self.job_wait_dropped += 1
                return None
            h = self.job_wait[tube] = Histogram(WAIT_BOUNDS_S)
        return h

    # The binlog's observer interface (see Binlog.observer).
    def binlog_written(self, nanoseconds: int) -> None:
        self.binlog_append.observe(nanoseconds)

    def binlog_synced(self, nanoseconds: int, records: int) -> None:
        self.binlog_fsync.observe(nanoseconds)
        if records:
            self.group_commit.observe(records)


Collector = Callable[["Server"], Iterable[Family]]


class Registry:
    """What a scrape renders: the collectors, in registration order, and the
    options every collector may consult."""

    def __init__(
        self,
        names: str = "beanstalkd-exporter",
        instance: str | None = None,
        tube_cap: int = DEFAULT_TUBE_SERIES,
        instruments: Instruments | None = None,
        listeners: dict[str, Any] | None = None,
    ) -> None:
        self.names = names
        self.instance = instance
        self.tube_cap = tube_cap
        self.instruments = instruments
        # listener name -> what it listens on (for the connection gauge).
        self.listeners: dict[str, Any] = listeners if listeners is not None else {}
        self.collectors: list[Collector] = []

    def register(self, collector: Collector) -> None:
        self.collectors.append(collector)

    def collect(self, server: Server) -> Iterator[Family]:
        seen: set[str] = set()
        for collect in self.collectors:
            for family in collect(server):
                if family.name in seen:
                    raise ValueError(f"metric family {family.name} registered twice")
                seen.add(family.name)
                yield family

    def instance_labels(self) -> Labels:
        return (("instance", self.instance),) if self.instance is not None else ()


# --- geanstalk_*: what no peer exposes ---------------------------------------------


def collect_geanstalk(server: Server) -> Iterator[Family]:
    from geanstalk.stats import VERSION

    registry = server.metrics
    assert registry is not None
    inst = registry.instance_labels()
    info = Family("geanstalk_build", INFO, "The server's version.")
    info.add(1, (*inst, ("version", VERSION)), "_info")
    yield info

    conns = Family("geanstalk_connections", GAUGE, "Open client connections, by listener.")
    by_listener = dict.fromkeys(registry.listeners or ("beanstalk",), 0)
    for name in server.connection_listeners():
        by_listener[name] = by_listener.get(name, 0) + 1
    for name, n in by_listener.items():
        conns.add(n, (*inst, ("listener", name)))
    yield conns

    yield from from_figures(server.journal_figures(), inst, BINLOG_FAMILIES)

    tubes = server.tube_count()
    yield gauge(
        "geanstalk_tube_series_limit",
        "At most this many tubes get per-tube series (--metrics-tube-limit).",
        registry.tube_cap,
        inst,
    )
    yield gauge(
        "geanstalk_tube_series_truncated",
        "1 when there are more tubes than the limit and some have no per-tube series.",
        1 if tubes > registry.tube_cap else 0,
        inst,
    )

    ins = registry.instruments
    if ins is None:
        return
    f = Family(
        "geanstalk_command_duration_seconds",
        HISTOGRAM,
        "Time to execute a command once its request has arrived (put: line and body), by command.",
    )
    for op, h in ins.commands.items():
        if h.count:
            h.add_to(f, (*inst, ("cmd", ins.op_names[op])))
    yield f
    for name, h, text in (
        (
            "geanstalk_binlog_write_duration_seconds",
            ins.binlog_append,
            "Time of one write of buffered binlog records to the kernel.",
        ),
        (
            "geanstalk_binlog_fsync_duration_seconds",
            ins.binlog_fsync,
            "Time from asking for an fsync of the binlog to its completion.",
        ),
        (
            "geanstalk_binlog_group_commit_records",
            ins.group_commit,
            "Binlog records made durable by one fsync (group commit).",
        ),
        (
            "geanstalk_event_loop_lag_seconds",
            ins.loop_lag,
            "How late the event loop ran a timer: time spent not serving other work.",
        ),
    ):
        f = Family(name, HISTOGRAM, text)
        h.add_to(f, inst)
        yield f
    f = Family(
        "geanstalk_job_wait_seconds",
        HISTOGRAM,
        "Time from a job becoming ready (put, or its delay ending) to its first reservation, by tube.",
    )
    for tube, h in list(ins.job_wait.items()):
        h.add_to(f, (*inst, ("tube", tube.decode("ascii", "replace"))))
    yield f


# --- geanstalk_*: the resource bounds (docs/SECURITY.md) ---------------------------


def collect_bounds(server: Server) -> Iterator[Family]:
    b = server.bound_figures()
    inst = server.metrics.instance_labels()
    yield gauge(
        "geanstalk_max_connections",
        "--max-connections: connections served at once (0: no bound).",
        b["max-connections"],
        inst,
    )
    yield counter(
        "geanstalk_connections_refused",
        "Connections reset on accept: --max-connections open (or too many TLS handshakes).",
        b["connections_refused"],
        inst,
    )
    yield counter(
        "geanstalk_accept_pauses",
        "Times accepting paused for 100 ms because file descriptors ran out (EMFILE/ENFILE).",
        b["accept_pauses"],
        inst,
    )
    yield counter(
        "geanstalk_idle_connections_closed",
        "Connections closed by --idle-timeout.",
        b["idle_closed"],
        inst,
    )
    yield gauge(
        "geanstalk_max_memory_bytes",
        "--max-memory: the bound on job memory (0: no bound).",
        b["max-memory"],
        inst,
    )
    yield gauge(
        "geanstalk_job_memory_bytes",
        "Job memory counted against --max-memory: bodies plus a per-job overhead (0 without it).",
        b["job-memory"],
        inst,
    )
    yield counter(
        "geanstalk_puts_out_of_memory",
        "Puts answered OUT_OF_MEMORY because of --max-memory.",
        b["puts_out_of_memory"],
        inst,
    )


# (kind, key in the figures, family name, help): families read from a dict
# of figures (Server.journal_figures, Server.body_cache_stats), 0 when absent.
FigureFamily = tuple[str, str, str, str]

BINLOG_FAMILIES: tuple[FigureFamily, ...] = (
    (
        GAUGE,
        "disk-bytes",
        "geanstalk_binlog_disk_bytes",
        "Bytes the binlog's files take on disk (0 without a binlog).",
    ),
    (
        GAUGE,
        "live-bytes",
        "geanstalk_binlog_live_bytes",
        "Bytes of the live jobs' records: the floor compaction works towards.",
    ),
    (
        COUNTER,
        "compaction-steps",
        "geanstalk_binlog_compaction_steps",
        "Compaction steps run (each copies a bounded batch of live jobs forward).",
    ),
    (
        COUNTER,
        "files-removed",
        "geanstalk_binlog_files_removed",
        "Binlog files deleted once no live job needed them.",
    ),
)

BODY_CACHE_FAMILIES: tuple[FigureFamily, ...] = (
    (
        GAUGE,
        "body-cache-limit-bytes",
        "geanstalk_body_cache_limit_bytes",
        "--body-cache: bytes of job bodies kept in memory at most with -b (0 without -b).",
    ),
    (
        GAUGE,
        "body-cache-bytes",
        "geanstalk_body_cache_bytes",
        "Bytes the cached bodies take (each charged its length plus its bookkeeping).",
    ),
    (
        GAUGE,
        "body-cache-bodies",
        "geanstalk_body_cache_bodies",
        "Job bodies in memory; the others are read back from the binlog when asked for.",
    ),
    (
        COUNTER,
        "body-cache-hits",
        "geanstalk_body_cache_hits",
        "Bodies asked for and found in memory.",
    ),
    (
        COUNTER,
        "body-cache-misses",
        "geanstalk_body_cache_misses",
        "Bodies asked for that had to be read back from the binlog.",
    ),
    (
        COUNTER,
        "body-cache-evictions",
        "geanstalk_body_cache_evictions",
        "Bodies dropped from memory to keep the cache within its limit.",
    ),
    (
        COUNTER,
        "body-reads",
        "geanstalk_body_reads",
        "Reads of the binlog for bodies (one brings many).",
    ),
    (
        COUNTER,
        "body-reads-inline",
        "geanstalk_body_reads_inline",
        "Of those, reads the page cache served on the event loop (RWF_NOWAIT).",
    ),
    (COUNTER, "body-read-bytes", "geanstalk_body_read_bytes", "Bytes read back for bodies."),
    (
        COUNTER,
        "body-read-ahead",
        "geanstalk_body_read_ahead",
        "Bodies brought into memory by read-ahead before a command asked for them.",
    ),
    (
        COUNTER,
        "body-read-errors",
        "geanstalk_body_read_errors",
        "Bodies that failed their checksum or could not be read (answered INTERNAL_ERROR).",
    ),
)


def from_figures(
    figures: dict[str, int], labels: Labels, families: tuple[FigureFamily, ...]
) -> Iterator[Family]:
    for kind, key, name, text in families:
        make = counter if kind == COUNTER else gauge
        yield make(name, text, figures.get(key, 0), labels)


def collect_body_cache(server: Server) -> Iterator[Family]:
    """The -b body cache (geanstalk/bodystore.py); zeros without -b."""
    inst = server.metrics.instance_labels()  # type: ignore[union-attr]
    yield from from_figures(server.body_cache_stats(), inst, BODY_CACHE_FAMILIES)


def build_registry(
    server: Server,
    names: str = "beanstalkd-exporter",
    instance: str | None = None,
    tube_cap: int = DEFAULT_TUBE_SERIES,
    instruments: Instruments | None = None,
    listeners: dict[str, Any] | None = None,
) -> Registry:
    """The registry of a server with the endpoint on: stats under the chosen
    names, then geanstalk_*; installed as ``server.metrics``."""
    from geanstalk.metrics_stats import stats_collector

    registry = Registry(names, instance, tube_cap, instruments, listeners)
    registry.register(stats_collector(names))
    for collect in BUILTIN_COLLECTORS:
        registry.register(collect)
    server.metrics = registry
    return registry


# Collectors every endpoint has, after the stats ones. Add yours here or
# register it at start-up (see the module's docstring).
BUILTIN_COLLECTORS: list[Collector] = [collect_geanstalk, collect_bounds, collect_body_cache]
