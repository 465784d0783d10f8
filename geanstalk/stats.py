"""StatisticsService: the server's counters and the YAML of the stats commands.

Key order and formats are beanstalkd 1.12's (prot.c's format strings), since
exporters and dashboards parse these documents by key: keys are never
renamed, new ones may only be added at the end. In 1.12 only ``version`` is
quoted; tube names, hostname, os and platform are printed bare.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from geanstalk._version import __version__
from geanstalk.core import DELAYED, RESERVED, STATE_NAMES

if TYPE_CHECKING:
    from geanstalk.core import Job
    from geanstalk.journal import Journal
    from geanstalk.storage import StorageService
    from geanstalk.tube import Tube
    from geanstalk.waiters import LockService

VERSION = __version__

# Command counters, numbered as the reference's OP_* constants.
(
    OP_UNKNOWN,
    OP_PUT,
    OP_PEEKJOB,
    OP_RESERVE,
    OP_DELETE,
    OP_RELEASE,
    OP_BURY,
    OP_KICK,
    OP_STATS,
    OP_STATSJOB,
    OP_PEEK_BURIED,
    OP_USE,
    OP_WATCH,
    OP_IGNORE,
    OP_LIST_TUBES,
    OP_LIST_TUBE_USED,
    OP_LIST_TUBES_WATCHED,
    OP_STATS_TUBE,
    OP_PEEK_READY,
    OP_PEEK_DELAYED,
    OP_RESERVE_TIMEOUT,
    OP_TOUCH,
    OP_QUIT,
    OP_PAUSE_TUBE,
    OP_KICKJOB,
    OP_RESERVE_JOB,
) = range(26)
TOTAL_OPS = 26

# The cmd-* keys of "stats", in the reference's order.
_CMD_KEYS = (
    ("cmd-put", OP_PUT),
    ("cmd-peek", OP_PEEKJOB),
    ("cmd-peek-ready", OP_PEEK_READY),
    ("cmd-peek-delayed", OP_PEEK_DELAYED),
    ("cmd-peek-buried", OP_PEEK_BURIED),
    ("cmd-reserve", OP_RESERVE),
    ("cmd-reserve-with-timeout", OP_RESERVE_TIMEOUT),
    ("cmd-delete", OP_DELETE),
    ("cmd-release", OP_RELEASE),
    ("cmd-use", OP_USE),
    ("cmd-watch", OP_WATCH),
    ("cmd-ignore", OP_IGNORE),
    ("cmd-bury", OP_BURY),
    ("cmd-kick", OP_KICK),
    ("cmd-touch", OP_TOUCH),
    ("cmd-stats", OP_STATS),
    ("cmd-stats-job", OP_STATSJOB),
    ("cmd-stats-tube", OP_STATS_TUBE),
    ("cmd-list-tubes", OP_LIST_TUBES),
    ("cmd-list-tube-used", OP_LIST_TUBE_USED),
    ("cmd-list-tubes-watched", OP_LIST_TUBES_WATCHED),
    ("cmd-pause-tube", OP_PAUSE_TUBE),
)

_BINLOG_KEYS = (
    "binlog-oldest-index",
    "binlog-current-index",
    "binlog-records-migrated",
    "binlog-records-written",
    "binlog-max-size",
)


def _trunc(seconds: float) -> int:
    """Whole seconds, truncated toward zero like the reference's int64 division."""
    return int(seconds)


def _tv(seconds: float) -> str:
    """A rusage time as the reference prints it, %d.%06d."""
    usec = round(seconds * 1_000_000)
    return f"{usec // 1_000_000}.{usec % 1_000_000:06d}"


class StatisticsService:
    """Counters that belong to no job or tube, and the stats documents."""

    def __init__(
        self,
        storage: StorageService,
        lock: LockService,
        journal: Journal,
        max_job_size: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        self.lock = lock
        self.journal = journal
        self.max_job_size = max_job_size
        self.clock = clock
        self.ops = [0] * TOTAL_OPS
        self.cur_conns = 0
        self.total_conns = 0
        self.producers = 0
        self.workers = 0
        self.draining = False
        self.started = clock()
        self.instance_id = os.urandom(8).hex()
        self.uname = os.uname()

    def connected(self) -> None:
        self.cur_conns += 1
        self.total_conns += 1

    def disconnected(self, producer: bool, worker: bool) -> None:
        self.cur_conns -= 1
        if producer:
            self.producers -= 1
        if worker:
            self.workers -= 1

    def stats(self) -> bytes:
        s = self.storage
        ops = self.ops
        ru = resource.getrusage(resource.RUSAGE_SELF)
        binlog = self.journal.stats()
        lines = [
            "---",
            f"current-jobs-urgent: {s.urgent_ct}",
            f"current-jobs-ready: {s.ready_ct}",
            f"current-jobs-reserved: {s.reserved_ct}",
            f"current-jobs-delayed: {s.delayed_ct}",
            f"current-jobs-buried: {s.buried_ct}",
        ]
        lines += [f"{key}: {ops[op]}" for key, op in _CMD_KEYS]
        lines += [
            f"job-timeouts: {s.timeouts}",
            f"total-jobs: {s.total_jobs}",
            f"max-job-size: {self.max_job_size}",
            f"current-tubes: {len(s.tubes)}",
            f"current-connections: {self.cur_conns}",
            f"current-producers: {self.producers}",
            f"current-workers: {self.workers}",
            f"current-waiting: {self.lock.waiting}",
            f"total-connections: {self.total_conns}",
            f"pid: {os.getpid()}",
            f'version: "{VERSION}"',
            f"rusage-utime: {_tv(ru.ru_utime)}",
            f"rusage-stime: {_tv(ru.ru_stime)}",
            f"uptime: {_trunc(self.clock() - self.started)}",
        ]
        lines += [f"{key}: {int(binlog.get(key, 0))}" for key in _BINLOG_KEYS]
        u = self.uname
        lines += [
            f"draining: {'true' if self.draining else 'false'}",
            f"id: {self.instance_id}",
            f"hostname: {u.nodename}",
            f"os: {u.version}",
            f"platform: {u.machine}",
        ]
        return ("\n".join(lines) + "\n").encode("utf-8", "replace")

    def stats_tube(self, t: Tube) -> bytes:
        left = _trunc(t.unpause_at - self.clock()) if t.unpause_at else 0
        return b"".join(
            (
                b"---\nname: %b\n" % t.name,
                (
                    f"current-jobs-urgent: {t.urgent}\n"
                    f"current-jobs-ready: {len(t.ready)}\n"
                    f"current-jobs-reserved: {t.reserved}\n"
                    f"current-jobs-delayed: {len(t.delay)}\n"
                    f"current-jobs-buried: {len(t.buried)}\n"
                    f"total-jobs: {t.total_jobs}\n"
                    f"current-using: {t.using}\n"
                    f"current-watching: {t.watching}\n"
                    f"current-waiting: {len(t.waiters)}\n"
                    f"cmd-delete: {t.cmd_delete}\n"
                    f"cmd-pause-tube: {t.cmd_pause}\n"
                    f"pause: {t.pause if t.unpause_at else 0}\n"
                    f"pause-time-left: {left}\n"
                ).encode(),
            )
        )

    def stats_job(self, job: Job) -> bytes:
        now = self.clock()
        state = job.state
        left = _trunc(job.runnable_at - now) if state in (RESERVED, DELAYED) else 0
        return b"".join(
            (
                b"---\nid: %d\ntube: %b\n" % (job.id, job.tube.name),
                (
                    f"state: {STATE_NAMES[state]}\n"
                    f"pri: {job.priority}\n"
                    f"age: {_trunc(now - job.created_at)}\n"
                    f"delay: {job.delay}\n"
                    f"ttr: {job.ttr}\n"
                    f"time-left: {left}\n"
                    f"file: {job.file}\n"
                    f"reserves: {job.reserves}\n"
                    f"timeouts: {job.timeouts}\n"
                    f"releases: {job.releases}\n"
                    f"buries: {job.buries}\n"
                    f"kicks: {job.kicks}\n"
                ).encode(),
            )
        )

    @staticmethod
    def list_tubes(tubes: Iterable[Tube]) -> bytes:
        return b"---\n" + b"".join(b"- %b\n" % t.name for t in tubes)

    # --- the same figures as values, for the HTTP endpoint ----------------------

    def server_values(self) -> dict[str, int | float | str | bool]:
        """Every ``stats`` key with its value as a number (rusage in float
        seconds, draining a bool, identity keys as strings), in the
        document's order. tests/http checks that it agrees with stats()."""
        s = self.storage
        ops = self.ops
        ru = resource.getrusage(resource.RUSAGE_SELF)
        binlog = self.journal.stats()
        values: dict[str, int | float | str | bool] = {
            "current-jobs-urgent": s.urgent_ct,
            "current-jobs-ready": s.ready_ct,
            "current-jobs-reserved": s.reserved_ct,
            "current-jobs-delayed": s.delayed_ct,
            "current-jobs-buried": s.buried_ct,
        }
        for key, op in _CMD_KEYS:
            values[key] = ops[op]
        u = self.uname
        values.update(
            {
                "job-timeouts": s.timeouts,
                "total-jobs": s.total_jobs,
                "max-job-size": self.max_job_size,
                "current-tubes": len(s.tubes),
                "current-connections": self.cur_conns,
                "current-producers": self.producers,
                "current-workers": self.workers,
                "current-waiting": self.lock.waiting,
                "total-connections": self.total_conns,
                "pid": os.getpid(),
                "version": VERSION,
                "rusage-utime": round(ru.ru_utime, 6),
                "rusage-stime": round(ru.ru_stime, 6),
                "uptime": _trunc(self.clock() - self.started),
            }
        )
        for key in _BINLOG_KEYS:
            values[key] = int(binlog.get(key, 0))
        values.update(
            {
                "draining": self.draining,
                "id": self.instance_id,
                "hostname": u.nodename,
                "os": u.version,
                "platform": u.machine,
            }
        )
        return values

    def tube_values(self, t: Tube) -> dict[str, int | str]:
        """Every ``stats-tube`` key of t with its value, in the document's order."""
        left = _trunc(t.unpause_at - self.clock()) if t.unpause_at else 0
        return {
            "name": t.name.decode("ascii", "replace"),
            "current-jobs-urgent": t.urgent,
            "current-jobs-ready": len(t.ready),
            "current-jobs-reserved": t.reserved,
            "current-jobs-delayed": len(t.delay),
            "current-jobs-buried": len(t.buried),
            "total-jobs": t.total_jobs,
            "current-using": t.using,
            "current-watching": t.watching,
            "current-waiting": len(t.waiters),
            "cmd-delete": t.cmd_delete,
            "cmd-pause-tube": t.cmd_pause,
            "pause": t.pause if t.unpause_at else 0,
            "pause-time-left": left,
        }
