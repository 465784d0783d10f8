"""The hand-written exposition against prometheus_client's own writers and parsers.

A server's real families (after a workload, with every histogram fed) are
handed both to our renderer and, as prometheus_client Metric objects, to
prometheus_client's generate_latest: the bytes must be the same, in both
the text format and OpenMetrics, and parse back to the same values.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from geanstalk.exposition import (
    format_value,
    render_openmetrics,
    render_text,
    wants_openmetrics,
)
from geanstalk.instrumented import OP_NAMES, connection_class, instrument_storage
from geanstalk.metrics import Family, Instruments, build_registry
from geanstalk.server import Server

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.core import Metric  # noqa: E402
from prometheus_client.openmetrics import exposition as om_exposition  # noqa: E402
from prometheus_client.openmetrics.parser import (  # noqa: E402
    text_string_to_metric_families as om_parse,
)
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from prometheus_client.utils import floatToGoString  # noqa: E402


class Transport:
    def __init__(self) -> None:
        self.sent = bytearray()

    def write(self, data: bytes) -> None:
        self.sent += data

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 1) if name == "peername" else default

    def get_write_buffer_size(self) -> int:
        return 0

    def set_write_buffer_limits(self, high: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


def _server(names: str, instance: str | None = "127.0.0.1:11300") -> Server:
    loop = asyncio.new_event_loop()
    server = Server(loop)
    ins = Instruments(OP_NAMES)
    build_registry(server, names=names, instance=instance, instruments=ins)
    instrument_storage(server, ins)
    conn = connection_class(ins)(server)
    conn.connection_made(Transport())
    conn.data_received(
        b"use a-b\r\nput 0 0 60 2\r\nhi\r\nput 2000 0 60 2\r\nho\r\nwatch a-b\r\n"
        b"reserve\r\ndelete 1\r\nreserve\r\nbury 2 0\r\nstats\r\nuse c\r\nput 1 0 1 1\r\nx\r\n"
        b"pause-tube c 5\r\n"
    )
    # Some binlog-like observations, so every histogram has samples.
    ins.binlog_written(12_345)
    ins.binlog_synced(3_456_789, 17)
    ins.loop_lag.observe(250_000)
    return server


def _as_client_metric(f: Family) -> Metric:
    m = Metric(f.name, f.help, f.type)
    for name, labels, value in f.samples:
        m.add_sample(name, dict(labels), value)
    return m


class _Collected:
    def __init__(self, families: list[Family]) -> None:
        self.families = families

    def collect(self):  # type: ignore[no-untyped-def]
        return [_as_client_metric(f) for f in self.families]


@pytest.mark.parametrize("names", ["beanstalkd-exporter", "beanstalkd-rs"])
def test_text_format_is_byte_for_byte_prometheus_clients(names: str) -> None:
    server = _server(names)
    families = list(server.metrics.collect(server))
    ours = render_text(families)
    theirs = prometheus_client.generate_latest(_Collected(families))  # type: ignore[arg-type]
    assert ours == theirs
    parsed = {f.name: f for f in text_string_to_metric_families(ours.decode())}
    assert "geanstalk_command_duration_seconds" in parsed
    assert len(ours.splitlines()) > 100


@pytest.mark.parametrize("names", ["beanstalkd-exporter", "beanstalkd-rs"])
def test_openmetrics_is_byte_for_byte_prometheus_clients(names: str) -> None:
    server = _server(names)
    families = list(server.metrics.collect(server))
    ours = render_openmetrics(families)
    theirs = om_exposition.generate_latest(_Collected(families))
    assert ours == theirs
    # The strict OpenMetrics parser accepts it (histogram rules, EOF, names).
    parsed = {f.name: f for f in om_parse(ours.decode())}
    assert parsed["geanstalk_build"].type == "info"
    hist = parsed["geanstalk_job_wait_seconds"]
    tubes = {s.labels["tube"] for s in hist.samples}
    assert tubes == {"a-b"}


def test_histogram_buckets_are_cumulative_and_count_every_command() -> None:
    server = _server("beanstalkd-exporter")
    fams = {f.name: f for f in server.metrics.collect(server)}
    samples = fams["geanstalk_command_duration_seconds"].samples
    puts = [s for s in samples if dict(s[1]).get("cmd") == "put"]
    buckets = [v for name, _, v in puts if name.endswith("_bucket")]
    assert buckets == sorted(buckets)
    count = next(v for name, _, v in puts if name.endswith("_count"))
    assert count == buckets[-1] == 3  # three puts
    waits = [s for s in fams["geanstalk_job_wait_seconds"].samples if s[0].endswith("_count")]
    assert waits == [
        ("geanstalk_job_wait_seconds_count", (("instance", "127.0.0.1:11300"), ("tube", "a-b")), 2)
    ]


@pytest.mark.parametrize(
    "value",
    [0, 1, 7, 0.5, 1e-06, 2.5e-05, 123456789, 1e21, 10**7, 1234567.0, -3, math.inf, -math.inf],
)
def test_values_as_go_prints_them(value: float) -> None:
    assert format_value(value) == floatToGoString(value)


def test_nan() -> None:
    assert format_value(math.nan) == "NaN"


@pytest.mark.parametrize(
    ("accept", "om"),
    [
        ("", False),
        ("text/plain", False),
        ("*/*", False),
        ("application/openmetrics-text", True),
        (
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
            "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            True,
        ),
        ("text/plain;q=1, application/openmetrics-text;q=0.5", False),
        ("application/openmetrics-text;q=0", False),
    ],
)
def test_accept_negotiation(accept: str, om: bool) -> None:
    assert wants_openmetrics(accept) is om
