"""The ``stats`` and ``stats-tube`` figures as metrics, under two naming schemes.

``beanstalkd-exporter`` (the default) keeps the names that
messagebird/beanstalkd_exporter gives the same figures, so its users'
dashboards and alert rules work unchanged: every numeric ``stats`` key with
``-`` turned into ``_`` and no prefix, every ``stats-tube`` key as
``tube_<key>`` with a ``tube`` label, all gauges, with an ``instance`` label.
Where that exporter is wrong we are right: ``draining`` is a real 0/1, and
the keys that are not numbers (``version``, ``os``, ``platform``) are left out
rather than exported as 0 (the version is in ``geanstalk_build_info``). Like
the exporter, ``pid``, ``id`` and ``hostname`` are not exported.

``beanstalkd-rs`` follows Prometheus' naming conventions instead: one
``beanstalkd_current_jobs{state}`` family, counters ending in ``_total``,
units in the names.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from geanstalk.metrics import COUNTER, GAUGE, Family, Labels

if TYPE_CHECKING:
    from geanstalk.server import Server

NAME_SCHEMES = ("beanstalkd-exporter", "beanstalkd-rs")

# Keys the exporter never exports, and keys that are not numbers.
SKIPPED_KEYS = frozenset(("pid", "id", "hostname", "version", "os", "platform"))

SERVER_HELP = {
    "current-jobs-urgent": "Ready jobs with a priority below 1024.",
    "current-jobs-ready": "Jobs ready to be reserved.",
    "current-jobs-reserved": "Jobs reserved by a client.",
    "current-jobs-delayed": "Jobs waiting for their delay to end.",
    "current-jobs-buried": "Jobs buried.",
    "job-timeouts": "Times a reserved job's TTR ran out, since start.",
    "total-jobs": "Jobs put since start.",
    "max-job-size": "The largest job body accepted, in bytes.",
    "current-tubes": "Tubes that exist now.",
    "current-connections": "Open client connections.",
    "current-producers": "Open connections that have put a job.",
    "current-workers": "Open connections that have reserved a job.",
    "current-waiting": "Connections blocked in a reserve.",
    "total-connections": "Connections accepted since start.",
    "rusage-utime": "User CPU time of the server process, in seconds.",
    "rusage-stime": "System CPU time of the server process, in seconds.",
    "uptime": "Seconds since the server started.",
    "binlog-oldest-index": "Number of the oldest binlog file still needed.",
    "binlog-current-index": "Number of the binlog file being written (0 without a binlog).",
    "binlog-records-migrated": "Binlog records copied forward by compaction, since start.",
    "binlog-records-written": "Binlog records written, since start.",
    "binlog-max-size": "Size at which a binlog file is closed and a new one begun, in bytes.",
    "draining": "1 while the server is in drain mode (refusing new jobs), else 0.",
}

TUBE_HELP = {
    "current-jobs-urgent": "Ready jobs with a priority below 1024 in the tube.",
    "current-jobs-ready": "Jobs ready to be reserved in the tube.",
    "current-jobs-reserved": "Jobs of the tube reserved by a client.",
    "current-jobs-delayed": "Jobs of the tube waiting for their delay to end.",
    "current-jobs-buried": "Jobs buried in the tube.",
    "total-jobs": "Jobs put into the tube since it was created.",
    "current-using": "Connections using the tube.",
    "current-watching": "Connections watching the tube.",
    "current-waiting": "Connections blocked in a reserve that watch the tube.",
    "cmd-delete": "delete commands on jobs of the tube.",
    "cmd-pause-tube": "pause-tube commands on the tube.",
    "pause": "Seconds the tube's current pause lasts (0 when not paused).",
    "pause-time-left": "Seconds until the tube's pause ends.",
}


def _help(key: str, table: dict[str, str]) -> str:
    if key in table:
        return table[key]
    if key.startswith("cmd-"):
        return f"{key[4:]} commands since start."
    return key


def _number(value: object) -> float:
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, int):
        return value  # exposition.format_value writes small ints fastest
    return float(value)  # type: ignore[arg-type]


def shown_tubes(server: Server, cap: int) -> tuple[list[dict[str, int | str]], bool]:
    """The first cap tubes' stats in list-tubes order, and whether any were left out."""
    tubes = server.tube_values(cap + 1)
    return tubes[:cap], len(tubes) > cap


# --- messagebird/beanstalkd_exporter's names -------------------------------------


def collect_exporter_names(server: Server) -> Iterator[Family]:
    registry = server.metrics
    assert registry is not None
    inst = registry.instance_labels()
    for key, value in server.stats_values().items():
        if key in SKIPPED_KEYS:
            continue
        name = key.replace("-", "_")
        f = Family(name, GAUGE, _help(key, SERVER_HELP))
        f.add(_number(value), inst)
        yield f
    tubes, _ = shown_tubes(server, registry.tube_cap)
    if not tubes:
        return
    families: dict[str, Family] = {}
    for t in tubes:
        labels: Labels = (*inst, ("tube", str(t["name"])))
        for key, value in t.items():
            if key == "name":
                continue
            f = families.get(key)
            if f is None:
                name = "tube_" + key.replace("-", "_")
                f = families[key] = Family(name, GAUGE, _help(key, TUBE_HELP))
            f.add(_number(value), labels)
    yield from families.values()


# --- the beanstalkd_* family with Prometheus' conventions ---------------------------

# stats key -> (metric name, type); current-jobs-* and cmd-* are labelled families.
RS_SERVER = {
    "job-timeouts": ("beanstalkd_job_timeouts", COUNTER),
    "total-jobs": ("beanstalkd_jobs", COUNTER),
    "max-job-size": ("beanstalkd_max_job_size_bytes", GAUGE),
    "current-tubes": ("beanstalkd_current_tubes", GAUGE),
    "current-connections": ("beanstalkd_current_connections", GAUGE),
    "current-producers": ("beanstalkd_current_producers", GAUGE),
    "current-workers": ("beanstalkd_current_workers", GAUGE),
    "current-waiting": ("beanstalkd_current_waiting", GAUGE),
    "total-connections": ("beanstalkd_connections", COUNTER),
    "uptime": ("beanstalkd_uptime_seconds", GAUGE),
    "binlog-oldest-index": ("beanstalkd_binlog_oldest_index", GAUGE),
    "binlog-current-index": ("beanstalkd_binlog_current_index", GAUGE),
    "binlog-records-migrated": ("beanstalkd_binlog_records_migrated", COUNTER),
    "binlog-records-written": ("beanstalkd_binlog_records_written", COUNTER),
    "binlog-max-size": ("beanstalkd_binlog_max_size_bytes", GAUGE),
    "draining": ("beanstalkd_draining", GAUGE),
}
RS_TUBE = {
    "total-jobs": ("beanstalkd_tube_jobs", COUNTER),
    "current-using": ("beanstalkd_tube_current_using", GAUGE),
    "current-watching": ("beanstalkd_tube_current_watching", GAUGE),
    "current-waiting": ("beanstalkd_tube_current_waiting", GAUGE),
    "pause": ("beanstalkd_tube_pause_seconds", GAUGE),
    "pause-time-left": ("beanstalkd_tube_pause_time_left_seconds", GAUGE),
}


def _suffix(kind: str) -> str:
    return "_total" if kind == COUNTER else ""


def collect_rs_names(server: Server) -> Iterator[Family]:
    registry = server.metrics
    assert registry is not None
    inst = registry.instance_labels()
    values = server.stats_values()
    jobs = Family(
        "beanstalkd_current_jobs", GAUGE, "Jobs by state; urgent jobs are counted in ready too."
    )
    commands = Family("beanstalkd_commands", COUNTER, "Commands since start, by command.")
    cpu = Family("beanstalkd_cpu_seconds", COUNTER, "CPU time of the server process, by mode.")
    others: list[Family] = []
    for key, value in values.items():
        if key.startswith("current-jobs-"):
            jobs.add(_number(value), (*inst, ("state", key[13:])))
        elif key.startswith("cmd-"):
            commands.add(_number(value), (("cmd", key[4:]), *inst), "_total")
        elif key in ("rusage-utime", "rusage-stime"):
            mode = "user" if key == "rusage-utime" else "system"
            cpu.add(_number(value), (*inst, ("mode", mode)), "_total")
        elif key in RS_SERVER:
            name, kind = RS_SERVER[key]
            f = Family(name, kind, _help(key, SERVER_HELP))
            f.add(_number(value), inst, _suffix(kind))
            others.append(f)
    yield jobs
    yield commands
    yield cpu
    yield from others
    tubes, _ = shown_tubes(server, registry.tube_cap)
    if not tubes:
        return
    tjobs = Family("beanstalkd_tube_current_jobs", GAUGE, "Jobs of the tube by state.")
    tcmds = Family("beanstalkd_tube_commands", COUNTER, "Commands on the tube, by command.")
    per_key: dict[str, Family] = {}
    for t in tubes:
        labels: Labels = (*inst, ("tube", str(t["name"])))
        for key, value in t.items():
            if key.startswith("current-jobs-"):
                tjobs.add(_number(value), (*labels, ("state", key[13:])))
            elif key.startswith("cmd-"):
                tcmds.add(_number(value), (*labels, ("cmd", key[4:])), "_total")
            elif key in RS_TUBE:
                name, kind = RS_TUBE[key]
                f = per_key.get(key)
                if f is None:
                    f = per_key[key] = Family(name, kind, _help(key, TUBE_HELP))
                f.add(_number(value), labels, _suffix(kind))
    yield tjobs
    yield tcmds
    yield from per_key.values()


def stats_collector(scheme: str):  # type: ignore[no-untyped-def]
    if scheme == "beanstalkd-rs":
        return collect_rs_names
    if scheme == "beanstalkd-exporter":
        return collect_exporter_names
    raise ValueError(f"unknown metrics names: {scheme} (one of {', '.join(NAME_SCHEMES)})")
