"""/metrics of a real server process, read after a scripted workload over a
real beanstalk socket, parsed with prometheus_client's own parsers and
checked against what `stats` and `stats-tube` say."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest
from ophelp import get, say, stats, stats_tube, workload

from tests.servers import BEANSTALKD, SKIP_NO_REFERENCE, ServerProcess, free_port, running

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client.openmetrics.parser import (  # noqa: E402
    text_string_to_metric_families as om_parse,
)
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

FIXTURE = os.path.join(os.path.dirname(__file__), "exporter_names.txt")
# Values that move on their own between a scrape and a stats.
VOLATILE = {"uptime", "rusage-utime", "rusage-stime", "pause-time-left"}
TUBES = ("default", "alpha", "beta", "gamma")


def fixture_lines() -> list[str]:
    with open(FIXTURE) as f:
        return [line for line in f.read().splitlines() if line and not line.startswith("#")]


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def families(text: str) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def scrape(port: int, **kw: object) -> str:
    status, _, body = get(port, "/metrics", **kw)
    assert status == 200
    return body.decode()


class Started:
    def __init__(self, server: ServerProcess, http: int) -> None:
        self.server = server
        self.http = http


def start(*args: str, tmp_path: object = None) -> Started:
    http = free_port()
    from tests.servers import geanstalk_server

    server = geanstalk_server("--http", f"127.0.0.1:{http}", *args).start()
    return Started(server, http)


@pytest.fixture(scope="module")
def worked() -> Iterator[Started]:
    """One server with the default names after the workload."""
    s = start()
    try:
        with s.server.connect() as c:
            workload(c)
        yield s
    finally:
        s.server.stop()


def test_exporter_names_match_stats_after_a_workload(worked: Started) -> None:
    with worked.server.connect() as c:
        before = stats(c)
        text = scrape(worked.http)
        after = stats(c)
        tubes = {t: stats_tube(c, t) for t in TUBES}
    # A scrape goes around the protocol: no command counter moved but the
    # stats commands this test sent itself.
    for key in before:
        if key.startswith("cmd-") and key != "cmd-stats":
            assert before[key] == after[key], key
    assert int(after["cmd-stats"]) == int(before["cmd-stats"]) + 1
    got = samples(text)
    inst = ("instance", f"127.0.0.1:{worked.server.port}")
    for key, value in before.items():
        name = key.replace("-", "_")
        if key in ("pid", "id", "hostname", "version", "os", "platform"):
            assert not any(n == name for n, _ in got), key
            continue
        sample = got[(name, frozenset([inst]))]
        if key == "draining":
            assert sample == 0.0
        elif key == "cmd-stats":
            assert sample == float(before[key])  # taken between the two stats
        elif key not in VOLATILE:
            assert sample == float(value), key
    for tube, st in tubes.items():
        for key, value in st.items():
            if key == "name" or key in VOLATILE:
                continue
            labels = frozenset([inst, ("tube", tube)])
            assert got[("tube_" + key.replace("-", "_"), labels)] == float(value), (tube, key)
    assert got[("geanstalk_build_info", frozenset([inst, ("version", before["version"])]))] == 1


def test_names_are_the_exporters_less_the_non_numeric(worked: Started) -> None:
    expected, non_numeric = set(), set()
    for line in fixture_lines():
        name, *flags = line.split()
        (non_numeric if "non-numeric" in flags else expected).add(name)
    fams = families(scrape(worked.http))
    ours = {n for n in fams if not n.startswith("geanstalk_")}
    assert ours == expected
    assert not ours & non_numeric
    assert all(f.type == "gauge" for n, f in fams.items() if n in expected)  # type: ignore[attr-defined]


@pytest.mark.reference
@pytest.mark.skipif(BEANSTALKD is None, reason=SKIP_NO_REFERENCE)
def test_fixture_is_what_the_exporter_makes_of_beanstalkd_1_12() -> None:
    """The exporter's algorithm (exporter.go) applied to beanstalkd's own
    answers after the same workload gives the fixture's names."""
    with running("beanstalkd") as ref, ref.connect() as c:
        workload(c)
        keys = list(stats(c))
        tube_keys = list(stats_tube(c, "alpha"))
    names = [k.replace("-", "_") for k in keys if k not in ("hostname", "id", "pid")]
    names += ["tube_" + k.replace("-", "_") for k in tube_keys if k != "name"]
    listed = [line.split()[0] for line in fixture_lines()]
    assert names == listed


# Keys whose values depend on the server, not on the workload.
SERVER_SPECIFIC = VOLATILE | {"max-job-size", "binlog-max-size", "total-connections"}


@pytest.mark.reference
@pytest.mark.skipif(BEANSTALKD is None, reason=SKIP_NO_REFERENCE)
def test_values_are_what_the_exporter_would_show_for_beanstalkd() -> None:
    """The same workload on beanstalkd 1.12, read the way the exporter reads
    it (stats and stats-tube over the protocol), gives the values geanstalk's
    /metrics shows for the workload's series."""
    with running("beanstalkd") as ref:
        with ref.connect() as c:
            workload(c)
        # As in the fixture, the workload's connection has gone (its
        # reserved job back to ready) before the figures are read.
        with ref.connect() as c:
            ref_stats = stats(c)
            ref_tubes = {t: stats_tube(c, t) for t in TUBES}
    ours = start()
    try:
        with ours.server.connect() as c:
            workload(c)
        got = samples(scrape(ours.http))
    finally:
        ours.server.stop()
    inst = ("instance", f"127.0.0.1:{ours.server.port}")
    compared = 0
    for key, value in ref_stats.items():
        name = key.replace("-", "_")
        if (
            key in SERVER_SPECIFIC
            or key.startswith("cmd-stats")
            or (name, frozenset([inst])) not in got
        ):
            continue
        if key.startswith(("current-connections", "current-producers", "current-workers")):
            continue
        expected = 0.0 if key == "draining" else float(value)
        assert got[(name, frozenset([inst]))] == expected, key
        compared += 1
    for tube, st in ref_tubes.items():
        for key, value in st.items():
            if key in ("name", "current-using", "current-watching") or key in VOLATILE:
                continue
            labels = frozenset([inst, ("tube", tube)])
            assert got[("tube_" + key.replace("-", "_"), labels)] == float(value), (tube, key)
            compared += 1
    assert compared > 60


def test_histograms_after_the_workload(worked: Started) -> None:
    with worked.server.connect() as c:
        puts = int(stats(c)["cmd-put"])
    got = samples(scrape(worked.http))
    inst = ("instance", f"127.0.0.1:{worked.server.port}")
    count = got[("geanstalk_command_duration_seconds_count", frozenset([inst, ("cmd", "put")]))]
    assert count == puts
    # alpha and beta jobs were reserved for the first time: three of them.
    waits = {
        dict(labels)["tube"]: v
        for (name, labels), v in got.items()
        if name == "geanstalk_job_wait_seconds_count"
    }
    assert sum(waits.values()) == 3
    assert set(waits) <= {"alpha", "beta"}
    assert got[("geanstalk_connections", frozenset([inst, ("listener", "beanstalk")]))] >= 0
    assert got[("geanstalk_tube_series_truncated", frozenset([inst]))] == 0


def test_openmetrics_when_asked(worked: Started) -> None:
    status, headers, body = get(
        worked.http,
        "/metrics",
        headers={"Accept": "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"},
    )
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")
    fams = {f.name: f for f in om_parse(body.decode())}
    assert fams["current_jobs_buried"].samples[0].value == 1


def test_stats_json_is_the_stats_documents(worked: Started) -> None:
    import json

    with worked.server.connect() as c:
        say(c, b"list-tube-used\r\n")  # accepted, counted as a connection
        status, headers, body = get(worked.http, "/stats.json")
        assert status == 200 and headers["content-type"] == "application/json"
        doc = json.loads(body)
        st = stats(c)
        tubes = {t: stats_tube(c, t) for t in TUBES}
    for key, value in st.items():
        if key in VOLATILE or key == "cmd-stats":
            continue
        mine = doc["server"][key]
        if isinstance(mine, bool):
            mine = "true" if mine else "false"
        elif isinstance(mine, float):
            mine = f"{mine:.6f}"
        assert str(mine) == value, key
    assert [t["name"] for t in doc["tubes"]] == list(TUBES)
    for t in doc["tubes"]:
        for key, value in tubes[t["name"]].items():
            if key not in VOLATILE:
                assert str(t[key]) == value, (t["name"], key)


def test_rs_names_and_tube_cap_and_no_instance() -> None:
    s = start("--metrics-names=beanstalkd-rs", "--metrics-tube-limit", "2", "--no-metrics-instance")
    try:
        with s.server.connect() as c:
            workload(c)
            st = stats(c)
            text = scrape(s.http)
        got = samples(text)
        assert not any("instance" in dict(labels) for _, labels in got)
        for key in ("put", "reserve", "delete", "bury", "kick", "pause-tube"):
            assert got[("beanstalkd_commands_total", frozenset([("cmd", key)]))] == float(
                st[f"cmd-{key}"]
            )
        for state in ("urgent", "ready", "reserved", "delayed", "buried"):
            assert got[("beanstalkd_current_jobs", frozenset([("state", state)]))] == float(
                st[f"current-jobs-{state}"]
            )
        assert got[("beanstalkd_jobs_total", frozenset())] == float(st["total-jobs"])
        assert got[("beanstalkd_draining", frozenset())] == 0
        tubes = {dict(labels)["tube"] for (n, labels) in got if n == "beanstalkd_tube_current_jobs"}
        assert tubes == {"default", "alpha"}  # the first two in list-tubes order
        assert got[("geanstalk_tube_series_truncated", frozenset())] == 1
        assert got[("geanstalk_tube_series_limit", frozenset())] == 2
        assert not any(n.startswith("cmd_") or n.startswith("tube_") for n, _ in got)
    finally:
        s.server.stop()


def test_draining_is_one_and_readyz_says_so() -> None:
    s = start()
    try:
        assert get(s.http, "/readyz")[0] == 200
        s.server.signal(signal.SIGUSR1)
        with s.server.connect() as c:
            # The signal has been handled once the server refuses a put.
            for _ in range(1000):
                if say(c, b"put 0 0 1 1\r\nx\r\n") == b"DRAINING\r\n":
                    break
                time.sleep(0.01)
            else:
                pytest.fail("SIGUSR1 never turned drain mode on")
        got = samples(scrape(s.http))
        assert got[("draining", frozenset([("instance", f"127.0.0.1:{s.server.port}")]))] == 1
        status, _, body = get(s.http, "/readyz")
        assert status == 503 and b"draining" in body
        assert get(s.http, "/healthz")[0] == 200
    finally:
        s.server.stop()


def test_binlog_figures_and_fsync_histograms(tmp_path: object) -> None:
    s = start("-b", str(tmp_path), "-f", "0")
    try:
        with s.server.connect() as c:
            for _ in range(5):
                assert say(c, b"put 0 0 60 3\r\nabc\r\n").startswith(b"INSERTED")
        got = samples(scrape(s.http))
        inst = frozenset([("instance", f"127.0.0.1:{s.server.port}")])
        assert got[("geanstalk_binlog_disk_bytes", inst)] > 0
        assert got[("geanstalk_binlog_fsync_duration_seconds_count", inst)] >= 1
        assert got[("geanstalk_binlog_write_duration_seconds_count", inst)] >= 1
        assert got[("geanstalk_binlog_group_commit_records_sum", inst)] >= 5
        assert got[("binlog_records_written", inst)] >= 5
    finally:
        s.server.stop()


def test_restart_with_binlog_recovers_through_the_endpoints_path(tmp_path: object) -> None:
    """With --http the binlog is read on a helper thread (so /healthz answers
    meanwhile); the jobs come back all the same, and then /readyz is 200."""
    s = start("-b", str(tmp_path))
    try:
        with s.server.connect() as c:
            say(c, b"use kept\r\n")
            for i in range(20):
                assert say(c, b"put %d 0 60 4\r\njob%d\r\n" % (i, i % 10)).startswith(b"INSERTED")
            assert say(c, b"bury 0 0\r\n") == b"NOT_FOUND\r\n"
    finally:
        assert s.server.stop() == 0
    again = start("-b", str(tmp_path))
    try:
        # 503 until the replay is done and the listeners accept; then 200.
        for _ in range(2000):
            status, _, body = get(again.http, "/readyz")
            if status == 200:
                break
            assert status == 503 and body.startswith(
                (b"not ready: starting", b"not ready: loading")
            )
            assert get(again.http, "/healthz")[0] == 200
            time.sleep(0.01)
        else:
            pytest.fail("never ready")
        with again.server.connect() as c:
            assert stats_tube(c, "kept")["current-jobs-ready"] == "20"
            assert say(c, b"peek-ready\r\n") == b"NOT_FOUND\r\n"  # default is empty
    finally:
        again.server.stop()
