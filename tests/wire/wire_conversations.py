"""The wire conversations, as data: what a client sends and what beanstalkd 1.12 answers.

Every expectation here was first observed on the reference server; the same
table is then played against geanstalk. See wire_runner for the template
language (`{t}` is this conversation's own tube, `{a}` an id captured from a
reply, `{_}` any number, `{~}` any text to the end of the line).

Conversations on the shared server use their own tubes and never assume ids;
those that need a clean process (ids from 1, global counters, drain mode, a
small -z) say so with `fresh`.
"""

from __future__ import annotations

import signal

from wire_runner import CLOSE, CLOSED, SHUT_WR, Conversation, Step, signal_server

S = Step

STATS_KEYS = [
    "current-jobs-urgent",
    "current-jobs-ready",
    "current-jobs-reserved",
    "current-jobs-delayed",
    "current-jobs-buried",
    "cmd-put",
    "cmd-peek",
    "cmd-peek-ready",
    "cmd-peek-delayed",
    "cmd-peek-buried",
    "cmd-reserve",
    "cmd-reserve-with-timeout",
    "cmd-delete",
    "cmd-release",
    "cmd-use",
    "cmd-watch",
    "cmd-ignore",
    "cmd-bury",
    "cmd-kick",
    "cmd-touch",
    "cmd-stats",
    "cmd-stats-job",
    "cmd-stats-tube",
    "cmd-list-tubes",
    "cmd-list-tube-used",
    "cmd-list-tubes-watched",
    "cmd-pause-tube",
    "job-timeouts",
    "total-jobs",
    "max-job-size",
    "current-tubes",
    "current-connections",
    "current-producers",
    "current-workers",
    "current-waiting",
    "total-connections",
    "pid",
    "version",
    "rusage-utime",
    "rusage-stime",
    "uptime",
    "binlog-oldest-index",
    "binlog-current-index",
    "binlog-records-migrated",
    "binlog-records-written",
    "binlog-max-size",
    "draining",
    "id",
    "hostname",
    "os",
    "platform",
]

STATS_TUBE_KEYS = [
    "name",
    "current-jobs-urgent",
    "current-jobs-ready",
    "current-jobs-reserved",
    "current-jobs-delayed",
    "current-jobs-buried",
    "total-jobs",
    "current-using",
    "current-watching",
    "current-waiting",
    "cmd-delete",
    "cmd-pause-tube",
    "pause",
    "pause-time-left",
]

STATS_JOB_KEYS = [
    "id",
    "tube",
    "state",
    "pri",
    "age",
    "delay",
    "ttr",
    "time-left",
    "file",
    "reserves",
    "timeouts",
    "releases",
    "buries",
    "kicks",
]


def _yaml(keys: list[str], values: dict[str, object]) -> bytes:
    lines = []
    for key in keys:
        value = values.get(key.replace("-", "_"), "{~}")
        lines.append(f"{key}: {value}\n")
    body = ("---\n" + "".join(lines)).encode()
    return b"OK {_}\r\n" + body + b"\r\n"


def stats(**values: object) -> bytes:
    """`stats` reply: every key in the reference's order; unnamed values are free."""
    return _yaml(STATS_KEYS, values)


def stats_tube(name: str = "{t}", **values: object) -> bytes:
    defaults: dict[str, object] = {
        "current_jobs_urgent": 0,
        "current_jobs_ready": 0,
        "current_jobs_reserved": 0,
        "current_jobs_delayed": 0,
        "current_jobs_buried": 0,
        "total_jobs": 0,
        "current_using": 0,
        "current_watching": 0,
        "current_waiting": 0,
        "cmd_delete": 0,
        "cmd_pause_tube": 0,
        "pause": 0,
        "pause_time_left": 0,
    }
    defaults.update(values)
    defaults["name"] = name
    return _yaml(STATS_TUBE_KEYS, defaults)


def stats_job(id: str = "{a}", **values: object) -> bytes:
    defaults: dict[str, object] = {
        "tube": "{t}",
        "state": "ready",
        "pri": 0,
        "age": "{_}",
        "delay": 0,
        "ttr": 60,
        "time_left": "{_}",
        "file": 0,
        "reserves": 0,
        "timeouts": 0,
        "releases": 0,
        "buries": 0,
        "kicks": 0,
    }
    defaults.update(values)
    defaults["id"] = id
    return _yaml(STATS_JOB_KEYS, defaults)


def yaml_list(*names: str) -> bytes:
    body = ("---\n" + "".join(f"- {n}\n" for n in names)).encode()
    return b"OK {_}\r\n" + body + b"\r\n"


def put(body: bytes, pri: int = 0, delay: int = 0, ttr: int = 60) -> bytes:
    return b"put %d %d %d %d\r\n%s\r\n" % (pri, delay, ttr, len(body), body)


def reserved(var: str, body: bytes) -> bytes:
    return b"RESERVED {%s} %d\r\n%s\r\n" % (var.encode(), len(body), body)


def found(var: str, body: bytes) -> bytes:
    return b"FOUND {%s} %d\r\n%s\r\n" % (var.encode(), len(body), body)


def own(conn: str, use: str = "t", *watch: str) -> Step:
    """Use a private tube and watch only private tubes (never `default`)."""
    watched = watch or (use,)
    send = b"use {%s}\r\n" % use.encode()
    expect = b"USING {%s}\r\n" % use.encode()
    for i, tube in enumerate(watched):
        send += b"watch {%s}\r\n" % tube.encode()
        expect += b"WATCHING %d\r\n" % (i + 2)
    send += b"ignore default\r\n"
    expect += b"WATCHING %d\r\n" % len(watched)
    return S(conn, send, expect)


def C(name: str, *steps: Step, fresh: tuple[str, ...] | None = None) -> Conversation:
    return Conversation(name, list(steps), fresh=fresh)


def one(name: str, send: bytes, expect: bytes) -> Conversation:
    """A single exchange on one connection of the shared server."""
    return C(name, S("a", send, expect))


def line_of(total: int) -> bytes:
    """`peek <id>` padded with zeros to exactly `total` bytes including CR LF."""
    digits = b"99999999999"
    return b"peek " + b"0" * (total - 7 - len(digits)) + digits + b"\r\n"


RESERVE0 = b"reserve-with-timeout 0\r\n"
BIG = 2**32
CONVERSATIONS: list[Conversation] = []
add = CONVERSATIONS.append

# --- put / reserve / delete -------------------------------------------------
add(
    C(
        "put_reserve_delete",
        own("a"),
        S("a", put(b"hello"), b"INSERTED {a}\r\n"),
        S("a", RESERVE0, reserved("a", b"hello")),
        S("a", b"delete {a}\r\n", b"DELETED\r\n"),
        S("a", b"delete {a}\r\n", b"NOT_FOUND\r\n"),
        S("a", b"peek {a}\r\n", b"NOT_FOUND\r\n"),
    )
)
add(
    C(
        "put_body_with_crlf_and_nul_is_opaque",
        own("a"),
        S("a", put(b"a\r\nb\x00c\r\n"), b"INSERTED {a}\r\n"),
        S("a", b"reserve\r\n", reserved("a", b"a\r\nb\x00c\r\n"), replies=1),
        S("a", b"delete {a}\r\n", b"DELETED\r\n"),
    )
)
add(
    C(
        "put_empty_body",
        own("a"),
        S("a", put(b""), b"INSERTED {a}\r\n"),
        S("a", b"peek {a}\r\n", found("a", b"")),
        S("a", b"reserve\r\n", reserved("a", b"")),
        S("a", b"delete {a}\r\n", b"DELETED\r\n"),
    )
)
add(
    C(
        "put_body_of_exactly_default_max_65535_accepted",
        own("a"),
        S("a", put(b"x" * 65535), b"INSERTED {a}\r\n"),
        S("a", b"delete {a}\r\n", b"DELETED\r\n"),
    )
)
add(
    C(
        "job_too_big_65536_body_skipped",
        own("a"),
        S("a", put(b"x" * 65536), b"JOB_TOO_BIG\r\n"),
        S("a", b"peek-ready\r\nlist-tube-used\r\n", b"NOT_FOUND\r\nUSING {t}\r\n"),
    )
)
add(
    C(
        "job_too_big_decided_before_trailing_garbage",
        own("a"),
        S("a", b"put 0 0 60 70000 junk\r\n" + b"y" * 70000 + b"\r\n", b"JOB_TOO_BIG\r\n"),
        S("a", b"list-tube-used\r\n", b"USING {t}\r\n"),
    )
)
add(
    C(
        "max_job_size_z10_boundary_and_ids",
        S("a", put(b"0123456789"), b"INSERTED 1\r\n"),
        S("a", put(b"01234567890"), b"JOB_TOO_BIG\r\n"),
        S("a", put(b"x"), b"INSERTED 2\r\n"),
        S("a", b"stats\r\n", stats(max_job_size=10, cmd_put=3, total_jobs=2, current_jobs_ready=2)),
        fresh=("-z", "10"),
    )
)
add(
    C(
        "ids_start_at_1_and_increase",
        S("a", put(b"a"), b"INSERTED 1\r\n"),
        S("b", put(b"b"), b"INSERTED 2\r\n"),
        S("a", b"delete 2\r\n", b"DELETED\r\n"),
        S("a", put(b"c"), b"INSERTED 3\r\n"),
        S("a", b"peek 1\r\n", b"FOUND 1 1\r\na\r\n"),
        fresh=(),
    )
)
add(
    C(
        "expected_crlf_consumes_an_id_job_too_big_does_not",
        S("a", put(b"x" * 70), b"JOB_TOO_BIG\r\n"),
        S("a", b"put 0 0 60 2\r\nabcd", b"EXPECTED_CRLF\r\n"),
        S("a", put(b"z"), b"INSERTED 2\r\n"),
        S("a", b"stats\r\n", stats(cmd_put=3, total_jobs=1, current_jobs_ready=1)),
        fresh=("-z", "64"),
    )
)
add(
    C(
        "expected_crlf_body_longer_than_announced",
        own("a"),
        S("a", b"put 0 0 60 2\r\nabcd", b"EXPECTED_CRLF\r\n"),
        S("a", b"list-tube-used\r\n", b"USING {t}\r\n"),
        S("a", b"peek-ready\r\n", b"NOT_FOUND\r\n"),
    )
)
add(
    C(
        "expected_crlf_leftover_bytes_read_as_a_command",
        S("a", b"put 0 0 60 2\r\nabc\r\n", b"EXPECTED_CRLF\r\n"),
        # "abc\r" was the body slot; the lone "\n" starts the next line.
        S("a", b"list-tube-used\r\n", b"UNKNOWN_COMMAND\r\n"),
        S("a", b"list-tube-used\r\n", b"USING default\r\n"),
    )
)
add(
    C(
        "expected_crlf_bare_lf_after_body",
        S("a", b"put 0 0 60 2\r\nab\n\r\n", b"EXPECTED_CRLF\r\n"),
        S("a", b"list-tube-used\r\n", b"UNKNOWN_COMMAND\r\n"),
    )
)
add(
    C(
        "put_body_split_over_writes",
        own("a"),
        S("a", b"put 3 0 60 10\r\n0123"),
        S("a", b"456"),
        S("a", b"789\r", sleep=0.02),
        S("a", b"\n", b"INSERTED {a}\r\n"),
        S("a", b"reserve\r\n", reserved("a", b"0123456789")),
        S("a", b"delete {a}\r\n", b"DELETED\r\n"),
    )
)

# --- ordering --------------------------------------------------------------
add(
    C(
        "reserve_by_priority_then_fifo",
        own("a"),
        S("a", put(b"p5a", pri=5), b"INSERTED {a}\r\n"),
        S("a", put(b"p1b", pri=1), b"INSERTED {b}\r\n"),
        S("a", put(b"p5c", pri=5), b"INSERTED {c}\r\n"),
        S("a", put(b"p1d", pri=1), b"INSERTED {d}\r\n"),
        S("a", b"peek-ready\r\n", found("b", b"p1b")),
        S("a", b"reserve\r\n", reserved("b", b"p1b")),
        S("a", b"reserve\r\n", reserved("d", b"p1d")),
        S("a", b"reserve\r\n", reserved("a", b"p5a")),
        S("a", b"reserve\r\n", reserved("c", b"p5c")),
    )
)
add(
    C(
        "priority_is_unsigned_32_bit_max_last",
        own("a"),
        S("a", put(b"max", pri=BIG - 1), b"INSERTED {a}\r\n"),
        S("a", put(b"zero", pri=0), b"INSERTED {b}\r\n"),
        S("a", put(b"mid", pri=2**31), b"INSERTED {c}\r\n"),
        S("a", b"reserve\r\n", reserved("b", b"zero")),
        S("a", b"reserve\r\n", reserved("c", b"mid")),
        S("a", b"reserve\r\n", reserved("a", b"max")),
        S("a", b"stats-job {a}\r\n", stats_job(state="reserved", pri=BIG - 1, reserves=1)),
    )
)
add(
    C(
        "reserve_across_watched_tubes_priority_then_id",
        own("a", "t", "t", "u", "v"),
        S("a", put(b"t2", pri=2), b"INSERTED {a}\r\n"),
        S("a", b"use {u}\r\n", b"USING {u}\r\n"),
        S("a", put(b"u1", pri=1), b"INSERTED {b}\r\n"),
        S("a", put(b"u2", pri=2), b"INSERTED {c}\r\n"),
        S("a", b"use {v}\r\n", b"USING {v}\r\n"),
        S("a", put(b"v2", pri=2), b"INSERTED {d}\r\n"),
        S("a", put(b"v1", pri=1), b"INSERTED {e}\r\n"),
        S("a", b"reserve\r\n", reserved("b", b"u1")),
        S("a", b"reserve\r\n", reserved("e", b"v1")),
        S("a", b"reserve\r\n", reserved("a", b"t2")),
        S("a", b"reserve\r\n", reserved("c", b"u2")),
        S("a", b"reserve\r\n", reserved("d", b"v2")),
    )
)
add(
    C(
        "reserve_ignores_unwatched_tube",
        own("a", "u", "t"),
        S("a", put(b"in-u"), b"INSERTED {a}\r\n"),
        S("a", RESERVE0, b"TIMED_OUT\r\n"),
        S("a", b"watch {u}\r\n", b"WATCHING 2\r\n"),
        S("a", RESERVE0, reserved("a", b"in-u")),
    )
)
add(
    C(
        "peek_delayed_earliest_deadline_first",
        own("a"),
        S("a", put(b"d100", delay=100), b"INSERTED {a}\r\n"),
        S("a", put(b"d50", delay=50, pri=9), b"INSERTED {b}\r\n"),
        S("a", put(b"d70", delay=70), b"INSERTED {c}\r\n"),
        S("a", b"peek-delayed\r\n", found("b", b"d50")),
        S("a", b"delete {b}\r\n", b"DELETED\r\n"),
        S("a", b"peek-delayed\r\n", found("c", b"d70")),
    )
)
add(
    C(
        "buried_fifo_and_kick_from_head",
        own("a"),
        S("a", put(b"one", pri=7), b"INSERTED {a}\r\n"),
        S("a", put(b"two", pri=3), b"INSERTED {b}\r\n"),
        S("a", b"reserve\r\n", reserved("b", b"two")),
        S("a", b"reserve\r\n", reserved("a", b"one")),
        S("a", b"bury {a} 7\r\nbury {b} 3\r\n", b"BURIED\r\nBURIED\r\n"),
        S("a", b"peek-buried\r\n", found("a", b"one")),
        S("a", b"kick 1\r\n", b"KICKED 1\r\n"),
        S("a", b"peek-buried\r\n", found("b", b"two")),
        S("a", b"peek-ready\r\n", found("a", b"one")),
    )
)

# --- use / watch / ignore / list ----------------------------------------------
add(one("new_connection_uses_default", b"list-tube-used\r\n", b"USING default\r\n"))
add(
    one(
        "new_connection_watches_default",
        b"list-tubes-watched\r\n",
        b"OK 14\r\n---\n- default\n\r\n",
    )
)
add(C("use_replies_using", S("a", b"use {t}\r\nlist-tube-used\r\n", b"USING {t}\r\nUSING {t}\r\n")))
add(
    C(
        "use_all_legal_name_characters",
        S("a", b"use A-Za-z0-9+/;.$_()\r\n", b"USING A-Za-z0-9+/;.$_()\r\n"),
    )
)
add(
    C(
        "use_name_of_200_bytes_accepted",
        S("a", b"use " + b"n" * 200 + b"\r\n", b"USING " + b"n" * 200 + b"\r\n"),
    )
)
add(
    C(
        "watch_and_list_tubes_watched",
        S("a", b"watch {t}\r\n", b"WATCHING 2\r\n"),
        S("a", b"watch {u}\r\n", b"WATCHING 3\r\n"),
        S("a", b"list-tubes-watched\r\n", yaml_list("default", "{t}", "{u}")),
    )
)
add(
    C(
        "watch_same_tube_twice_count_unchanged",
        S(
            "a",
            b"watch {t}\r\nwatch {t}\r\nwatch default\r\n",
            b"WATCHING 2\r\nWATCHING 2\r\nWATCHING 2\r\n",
        ),
    )
)
add(
    C(
        "ignore_reduces_count_and_list",
        S("a", b"watch {t}\r\nignore default\r\n", b"WATCHING 2\r\nWATCHING 1\r\n"),
        S("a", b"list-tubes-watched\r\n", yaml_list("{t}")),
    )
)
add(one("ignore_unwatched_tube_answers_count", b"ignore {t}\r\n", b"WATCHING 1\r\n"))
add(one("ignore_last_watched_not_ignored", b"ignore default\r\n", b"NOT_IGNORED\r\n"))
add(
    C(
        "ignore_last_after_switching_not_ignored",
        S(
            "a",
            b"watch {t}\r\nignore default\r\nignore {t}\r\n",
            b"WATCHING 2\r\nWATCHING 1\r\nNOT_IGNORED\r\n",
        ),
    )
)
add(
    C(
        "list_tubes_shows_used_and_watched",
        S("a", b"use {t}\r\n", b"USING {t}\r\n"),
        S("b", b"watch {u}\r\n", b"WATCHING 2\r\n"),
        S("c", b"list-tubes\r\n", yaml_list("default", "{t}", "{u}")),
        fresh=(),
    )
)
add(
    C(
        "tube_disappears_from_list_tubes_when_unused",
        S("a", b"use {t}\r\nwatch {u}\r\n", b"USING {t}\r\nWATCHING 2\r\n"),
        S("a", b"list-tubes\r\n", yaml_list("default", "{t}", "{u}")),
        S("a", b"use default\r\nignore {u}\r\n", b"USING default\r\nWATCHING 1\r\n"),
        S("a", b"list-tubes\r\n", yaml_list("default")),
        S("a", b"stats-tube {t}\r\n", b"NOT_FOUND\r\n"),
        fresh=(),
    )
)
add(
    C(
        "tube_with_jobs_outlives_its_connection",
        S("a", b"use {t}\r\n" + put(b"x"), b"USING {t}\r\nINSERTED 1\r\n"),
        S("a", CLOSE),
        S(
            "b",
            b"stats-tube {t}\r\n",
            stats_tube(current_jobs_urgent=1, current_jobs_ready=1, total_jobs=1),
        ),
        S("b", b"delete 1\r\n", b"DELETED\r\n"),
        S("b", b"list-tubes\r\n", yaml_list("default")),
        fresh=(),
    )
)
add(
    C(
        "closing_connection_removes_its_tubes",
        S("a", b"use {t}\r\nwatch {u}\r\n", b"USING {t}\r\nWATCHING 2\r\n"),
        S("a", CLOSE),
        # the close travels on another socket: wait until the server has seen it
        S("b", b"list-tubes\r\n", yaml_list("default"), poll=True),
        S("b", b"stats-tube {t}\r\nstats-tube {u}\r\n", b"NOT_FOUND\r\nNOT_FOUND\r\n"),
        fresh=(),
    )
)

# --- peek family ----------------------------------------------------------------
add(
    C(
        "peek_by_id_any_tube",
        own("a"),
        S("a", put(b"body"), b"INSERTED {a}\r\n"),
        S("b", b"peek {a}\r\n", found("a", b"body")),
        S("a", b"delete {a}\r\n", b"DELETED\r\n"),
    )
)
add(
    C(
        "peek_ready_delayed_buried_use_the_used_tube",
        own("a"),
        S("a", put(b"r"), b"INSERTED {a}\r\n"),
        S("a", put(b"d", delay=100), b"INSERTED {b}\r\n"),
        S("a", put(b"b", pri=1), b"INSERTED {c}\r\n"),
        S("a", b"reserve-job {c}\r\n", reserved("c", b"b")),
        S("a", b"bury {c} 1\r\n", b"BURIED\r\n"),
        S(
            "a",
            b"peek-ready\r\npeek-delayed\r\npeek-buried\r\n",
            found("a", b"r") + found("b", b"d") + found("c", b"b"),
        ),
        S("b", b"use {u}\r\n", b"USING {u}\r\n"),
        S(
            "b",
            b"peek-ready\r\npeek-delayed\r\npeek-buried\r\n",
            b"NOT_FOUND\r\nNOT_FOUND\r\nNOT_FOUND\r\n",
        ),
    )
)
add(one("peek_missing_id_not_found", b"peek 99999999999\r\n", b"NOT_FOUND\r\n"))
add(one("peek_id_zero_not_found", b"peek 0\r\n", b"NOT_FOUND\r\n"))
add(one("peek_max_u64_id_not_found", b"peek 18446744073709551615\r\n", b"NOT_FOUND\r\n"))
add(
    C(
        "peek_ready_empty_tube_not_found",
        S("a", b"use {t}\r\npeek-ready\r\n", b"USING {t}\r\nNOT_FOUND\r\n"),
    )
)
add(
    C(
        "peek_delayed_empty_tube_not_found",
        S("a", b"use {t}\r\npeek-delayed\r\n", b"USING {t}\r\nNOT_FOUND\r\n"),
    )
)
add(
    C(
        "peek_buried_empty_tube_not_found",
        S("a", b"use {t}\r\npeek-buried\r\n", b"USING {t}\r\nNOT_FOUND\r\n"),
    )
)
add(
    C(
        "peek_reserved_job_by_id_found",
        own("a"),
        S("a", put(b"held"), b"INSERTED {a}\r\n"),
        S("a", b"reserve\r\n", reserved("a", b"held")),
        S("b", b"peek {a}\r\n", found("a", b"held")),
    )
)

# --- reserve variants -----------------------------------------------------------
add(C("reserve_with_timeout_0_empty_timed_out", own("a"), S("a", RESERVE0, b"TIMED_OUT\r\n")))
add(
    C(
        "reserve_with_timeout_1_empty_timed_out",
        own("a"),
        S("a", b"reserve-with-timeout 1\r\n", b"TIMED_OUT\r\n"),
    )
)
add(
    C(
        "reserve_with_timeout_0_ready_job",
        own("a"),
        S("a", put(b"now"), b"INSERTED {a}\r\n"),
        S("a", RESERVE0, reserved("a", b"now")),
    )
)
add(
    C(
        "reserve_with_timeout_waits_for_put",
        own("a"),
        own("b"),
        S("b", b"reserve-with-timeout 5\r\n"),
        S(
            "c",
            b"stats-tube {t}\r\n",
            stats_tube(current_watching=2, current_using=2, current_waiting=1),
            poll=True,
        ),
        S("a", put(b"late"), b"INSERTED {a}\r\n"),
        S("b", b"", reserved("a", b"late")),
    )
)
add(
    C(
        "blocked_reserve_woken_by_put_on_other_connection",
        own("w"),
        S("w", b"reserve\r\n"),
        own("p"),
        S(
            "p",
            b"stats-tube {t}\r\n",
            stats_tube(current_watching=2, current_using=2, current_waiting=1),
            poll=True,
        ),
        S("p", put(b"wake"), b"INSERTED {a}\r\n"),
        S("w", b"", reserved("a", b"wake")),
        S("p", b"stats-job {a}\r\n", stats_job(state="reserved", reserves=1)),
    )
)
add(
    C(
        "blocked_reserves_served_in_arrival_order",
        own("w1"),
        own("w2"),
        own("w3"),
        S("w1", b"reserve\r\n"),
        S(
            "p",
            b"stats-tube {t}\r\n",
            stats_tube(current_watching=3, current_using=3, current_waiting=1),
            poll=True,
        ),
        S("w2", b"reserve\r\n"),
        S(
            "p",
            b"stats-tube {t}\r\n",
            stats_tube(current_watching=3, current_using=3, current_waiting=2),
            poll=True,
        ),
        S("w3", b"reserve\r\n"),
        S(
            "p",
            b"stats-tube {t}\r\n",
            stats_tube(current_watching=3, current_using=3, current_waiting=3),
            poll=True,
        ),
        S(
            "p",
            b"use {t}\r\n" + put(b"first") + put(b"second") + put(b"third"),
            b"USING {t}\r\nINSERTED {a}\r\nINSERTED {b}\r\nINSERTED {c}\r\n",
        ),
        S("w1", b"", reserved("a", b"first")),
        S("w2", b"", reserved("b", b"second")),
        S("w3", b"", reserved("c", b"third")),
    )
)
add(
    C(
        "waiting_counts_in_stats_tube",
        own("w"),
        S("w", b"reserve\r\n"),
        S(
            "p",
            b"stats-tube {t}\r\n",
            stats_tube(current_watching=1, current_using=1, current_waiting=1),
            poll=True,
        ),
        S("p", b"use {t}\r\n" + put(b"x"), b"USING {t}\r\nINSERTED {a}\r\n"),
        S("w", b"", reserved("a", b"x")),
        S(
            "p",
            b"stats-tube {t}\r\n",
            stats_tube(current_watching=1, current_using=2, current_jobs_reserved=1, total_jobs=1),
        ),
    )
)
add(
    C(
        "reserve_job_ready",
        own("a"),
        S("a", put(b"one") + put(b"two"), b"INSERTED {a}\r\nINSERTED {b}\r\n"),
        S("a", b"reserve-job {b}\r\n", reserved("b", b"two")),
        S("a", b"stats-job {b}\r\n", stats_job("{b}", state="reserved", reserves=1)),
    )
)
add(
    C(
        "reserve_job_delayed",
        own("a"),
        S("a", put(b"later", delay=100), b"INSERTED {a}\r\n"),
        S("a", b"reserve-job {a}\r\n", reserved("a", b"later")),
        S("a", b"stats-job {a}\r\n", stats_job(state="reserved", delay=100, reserves=1)),
    )
)
add(
    C(
        "reserve_job_buried",
        own("a"),
        S("a", put(b"dead"), b"INSERTED {a}\r\n"),
        S("a", b"reserve\r\nbury {a} 0\r\n", reserved("a", b"dead") + b"BURIED\r\n"),
        S("a", b"reserve-job {a}\r\n", reserved("a", b"dead")),
        S("a", b"stats-job {a}\r\n", stats_job(state="reserved", reserves=2, buries=1)),
    )
)
add(
    C(
        "reserve_job_already_reserved_not_found",
        own("a"),
        S("a", put(b"x"), b"INSERTED {a}\r\n"),
        S("a", b"reserve\r\n", reserved("a", b"x")),
        S("a", b"reserve-job {a}\r\n", b"NOT_FOUND\r\n"),
        S("b", b"reserve-job {a}\r\n", b"NOT_FOUND\r\n"),
    )
)
add(one("reserve_job_missing_not_found", b"reserve-job 99999999999\r\n", b"NOT_FOUND\r\n"))
add(
    C(
        "reserve_job_from_unwatched_tube",
        own("a"),
        S("b", b"use {u}\r\n" + put(b"elsewhere"), b"USING {u}\r\nINSERTED {a}\r\n"),
        S("a", b"reserve-job {a}\r\n", reserved("a", b"elsewhere")),
    )
)

# --- release / bury / touch / delete --------------------------------------------
add(
    C(
        "release_back_to_ready_counts_release",
        own("a"),
        S("a", put(b"x", pri=5), b"INSERTED {a}\r\n"),
        S("a", b"reserve\r\n", reserved("a", b"x")),
        S("a", b"release {a} 9 0\r\n", b"RELEASED\r\n"),
        S("a", b"stats-job {a}\r\n", stats_job(pri=9, reserves=1, releases=1)),
        S("a", b"reserve\r\n", reserved("a", b"x")),
    )
)
add(
    C(
        "release_with_delay_makes_job_delayed",
        own("a"),
        S("a", put(b"x"), b"INSERTED {a}\r\n"),
        S("a", b"reserve\r\nrelease {a} 0 100\r\n", reserved("a", b"x") + b"RELEASED\r\n"),
        S("a", b"stats-job {a}\r\n", stats_job(state="delayed", delay=100, reserves=1, releases=1)),
        S("a", b"peek-delayed\r\n", found("a", b"x")),
        S("a", RESERVE0, b"TIMED_OUT\r\n"),
    )
)
add(
    C(
        "release_not_reserved_not_found",
        own("a"),
        S("a", put(b"x"), b"INSERTED {a}\r\n"),
        S("a", b"release {a} 0 0\r\n", b"NOT_FOUND\r\n"),
    )
)
add(
    C(
        "release_job_of_other_connection_not_found",
        own("a"),
        S("a", put(b"x") + b"reserve\r\n", b"INSERTED {a}\r\n" + reserved("a", b"x")),
        S("b", b"release {a} 0 0\r\n", b"NOT_FOUND\r\n"),
        S("a", b"release {a} 0 0\r\n", b"RELEASED\r\n"),
    )
)
add(
    C(
        "bury_sets_priority_and_counts",
        own("a"),
        S("a", put(b"x", pri=5) + b"reserve\r\n", b"INSERTED {a}\r\n" + reserved("a", b"x")),
        S("a", b"bury {a} 77\r\n", b"BURIED\r\n"),
        S("a", b"stats-job {a}\r\n", stats_job(state="buried", pri=77, reserves=1, buries=1)),
        S(
            "a",
            b"stats-tube {t}\r\n",
            stats_tube(current_jobs_buried=1, total_jobs=1, current_using=1, current_watching=1),
        ),
    )
)
add(
    C(
        "bury_not_reserved_not_found",
        own("a"),
        S("a", put(b"x"), b"INSERTED {a}\r\n"),
        S("a", b"bury {a} 0\r\n", b"NOT_FOUND\r\n"),
    )
)
add(
    C(
        "bury_job_of_other_connection_not_found",
        own("a"),
        S("a", put(b"x") + b"reserve\r\n", b"INSERTED {a}\r\n" + reserved("a", b"x")),
        S("b", b"bury {a} 0\r\n", b"NOT_FOUND\r\n"),
    )
)
add(
    C(
        "touch_reserved_job",
        own("a"),
        S("a", put(b"x") + b"reserve\r\n", b"INSERTED {a}\r\n" + reserved("a", b"x")),
        S("a", b"touch {a}\r\n", b"TOUCHED\r\n"),
        S("a", b"stats-job {a}\r\n", stats_job(state="reserved", reserves=1)),
    )
)
add(
    C(
        "touch_not_reserved_not_found",
        own("a"),
        S("a", put(b"x"), b"INSERTED {a}\r\n"),
        S("a", b"touch {a}\r\n", b"NOT_FOUND\r\n"),
    )
)
add(
    C(
        "touch_job_of_other_connection_not_found",
        own("a"),
        S("a", put(b"x") + b"reserve\r\n", b"INSERTED {a}\r\n" + reserved("a", b"x")),
        S("b", b"touch {a}\r\n", b"NOT_FOUND\r\n"),
    )
)
add(
    C(
        "delete_job_reserved_by_other_connection_not_found",
        own("a"),
        S("a", put(b"x") + b"reserve\r\n", b"INSERTED {a}\r\n" + reserved("a", b"x")),
        S("b", b"delete {a}\r\n", b"NOT_FOUND\r\n"),
        S("a", b"delete {a}\r\n", b"DELETED\r\n"),
    )
)
add(
    C(
        "delete_ready_delayed_and_buried_jobs",
        own("a"),
        S(
            "a",
            put(b"r") + put(b"d", delay=100) + put(b"b"),
            b"INSERTED {a}\r\nINSERTED {b}\r\nINSERTED {c}\r\n",
        ),
        S("a", b"reserve-job {c}\r\nbury {c} 0\r\n", reserved("c", b"b") + b"BURIED\r\n"),
        S("b", b"delete {a}\r\ndelete {b}\r\ndelete {c}\r\n", b"DELETED\r\nDELETED\r\nDELETED\r\n"),
        S(
            "a",
            b"stats-tube {t}\r\n",
            stats_tube(current_using=1, current_watching=1, total_jobs=3, cmd_delete=3),
        ),
    )
)
add(one("delete_missing_not_found", b"delete 99999999999\r\n", b"NOT_FOUND\r\n"))

# --- kick ----------------------------------------------------------------------------
add(
    C(
        "kick_buried_before_delayed",
        own("a"),
        S("a", put(b"d", delay=100), b"INSERTED {d}\r\n"),
        S("a", put(b"b") + b"reserve\r\n", b"INSERTED {b}\r\n" + reserved("b", b"b")),
        S("a", b"bury {b} 0\r\n", b"BURIED\r\n"),
        S("a", b"kick 10\r\n", b"KICKED 1\r\n"),
        S("a", b"stats-job {b}\r\n", stats_job("{b}", reserves=1, buries=1, kicks=1)),
        S("a", b"stats-job {d}\r\n", stats_job("{d}", state="delayed", delay=100)),
        S("a", b"kick 10\r\n", b"KICKED 1\r\n"),
        S("a", b"stats-job {d}\r\n", stats_job("{d}", delay=100, kicks=1)),
        S("a", b"kick 10\r\n", b"KICKED 0\r\n"),
    )
)
add(
    C(
        "kick_bounded_by_count",
        own("a"),
        S(
            "a",
            put(b"1") + put(b"2") + put(b"3"),
            b"INSERTED {a}\r\nINSERTED {b}\r\nINSERTED {c}\r\n",
        ),
        S(
            "a",
            b"reserve\r\nreserve\r\nreserve\r\nbury {a} 0\r\nbury {b} 0\r\nbury {c} 0\r\n",
            reserved("a", b"1") + reserved("b", b"2") + reserved("c", b"3") + b"BURIED\r\n" * 3,
        ),
        S("a", b"kick 2\r\nkick 2\r\nkick 2\r\n", b"KICKED 2\r\nKICKED 1\r\nKICKED 0\r\n"),
    )
)
add(C("kick_zero", own("a"), S("a", b"kick 0\r\n", b"KICKED 0\r\n")))
add(
    C(
        "kick_uses_the_used_tube_only",
        own("a"),
        S("a", put(b"x", delay=100), b"INSERTED {a}\r\n"),
        S("b", b"use {u}\r\nkick 5\r\n", b"USING {u}\r\nKICKED 0\r\n"),
        S("a", b"kick 5\r\n", b"KICKED 1\r\n"),
    )
)
add(
    C(
        "kick_job_buried",
        own("a"),
        S("a", put(b"x") + b"reserve\r\n", b"INSERTED {a}\r\n" + reserved("a", b"x")),
        S("a", b"bury {a} 0\r\n", b"BURIED\r\n"),
        S("b", b"kick-job {a}\r\n", b"KICKED\r\n"),
        S("a", b"stats-job {a}\r\n", stats_job(reserves=1, buries=1, kicks=1)),
    )
)
add(
    C(
        "kick_job_delayed",
        own("a"),
        S("a", put(b"x", delay=100), b"INSERTED {a}\r\n"),
        S("a", b"kick-job {a}\r\n", b"KICKED\r\n"),
        S("a", RESERVE0, reserved("a", b"x")),
    )
)
add(
    C(
        "kick_job_ready_or_reserved_not_found",
        own("a"),
        S("a", put(b"x") + put(b"y"), b"INSERTED {a}\r\nINSERTED {b}\r\n"),
        S("a", b"kick-job {a}\r\n", b"NOT_FOUND\r\n"),
        S("a", b"reserve-job {b}\r\nkick-job {b}\r\n", reserved("b", b"y") + b"NOT_FOUND\r\n"),
    )
)
add(one("kick_job_missing_not_found", b"kick-job 99999999999\r\n", b"NOT_FOUND\r\n"))

# --- stats --------------------------------------------------------------------------
add(
    C(
        "stats_job_keys_order_and_values",
        own("a"),
        S("a", put(b"xyz", pri=1500, ttr=33), b"INSERTED {a}\r\n"),
        S("a", b"stats-job {a}\r\n", stats_job(pri=1500, ttr=33, time_left=0)),
    )
)
add(
    C(
        "stats_job_delayed_time_left",
        own("a"),
        S("a", put(b"x", delay=1000), b"INSERTED {a}\r\n"),
        S("a", b"stats-job {a}\r\n", stats_job(state="delayed", delay=1000)),
    )
)
add(one("stats_job_missing_not_found", b"stats-job 99999999999\r\n", b"NOT_FOUND\r\n"))
add(
    C(
        "ttr_zero_raised_to_one",
        own("a"),
        S("a", put(b"x", ttr=0), b"INSERTED {a}\r\n"),
        S("a", b"stats-job {a}\r\n", stats_job(ttr=1, time_left=0)),
    )
)
add(
    C(
        "stats_tube_counts_every_state",
        own("a"),
        S(
            "a",
            put(b"urgent", pri=1023) + put(b"normal", pri=1024),
            b"INSERTED {a}\r\nINSERTED {b}\r\n",
        ),
        S(
            "a",
            put(b"delayed", delay=100) + put(b"buried", pri=1),
            b"INSERTED {c}\r\nINSERTED {d}\r\n",
        ),
        S("a", b"reserve-job {d}\r\nbury {d} 1\r\n", reserved("d", b"buried") + b"BURIED\r\n"),
        S("a", b"reserve\r\n", reserved("a", b"urgent")),
        S(
            "a",
            b"stats-tube {t}\r\n",
            stats_tube(
                current_jobs_ready=1,
                current_jobs_reserved=1,
                current_jobs_delayed=1,
                current_jobs_buried=1,
                total_jobs=4,
                current_using=1,
                current_watching=1,
            ),
        ),
    )
)
add(one("stats_tube_missing_not_found", b"stats-tube nosuchtube.wire\r\n", b"NOT_FOUND\r\n"))
add(
    C(
        "stats_tube_default_always_exists",
        # Polled: the start-up probe's connection may not be closed yet.
        S(
            "a",
            b"stats-tube default\r\n",
            stats_tube("default", current_using=1, current_watching=1),
            poll=True,
        ),
        fresh=(),
    )
)
add(
    C(
        "stats_fresh_server_keys_and_counters",
        # Wait until the start-up probe's connection is gone from the counts.
        S(
            "a",
            b"stats-tube default\r\n",
            stats_tube("default", current_using=1, current_watching=1),
            poll=True,
        ),
        S(
            "a",
            b"stats\r\n",
            stats(
                current_jobs_ready=0,
                cmd_put=0,
                cmd_stats=1,
                total_jobs=0,
                current_tubes=1,
                current_connections=1,
                max_job_size=65535,
                draining="false",
            ),
        ),
        S(
            "a",
            b"use {t}\r\n" + put(b"x") + b"peek 1\r\nlist-tubes\r\n",
            b"USING {t}\r\nINSERTED 1\r\n" + found("_", b"x") + yaml_list("default", "{t}"),
        ),
        S(
            "a",
            b"stats\r\n",
            stats(
                current_jobs_urgent=1,
                current_jobs_ready=1,
                cmd_put=1,
                cmd_peek=1,
                cmd_use=1,
                cmd_stats=2,
                cmd_list_tubes=1,
                total_jobs=1,
                current_tubes=2,
                current_connections=1,
                current_producers=1,
                current_workers=0,
            ),
        ),
        fresh=(),
    )
)
add(
    C(
        "stats_workers_and_waiting",
        S("w", b"reserve\r\n"),
        S(
            "a",
            b"stats\r\n",
            stats(current_workers=1, current_waiting=1, current_connections=2, cmd_reserve=1),
            poll=True,
        ),
        S("a", put(b"x"), b"INSERTED 1\r\n"),
        S("w", b"", b"RESERVED 1 1\r\nx\r\n"),
        S(
            "a",
            b"stats\r\n",
            stats(current_jobs_reserved=1, current_waiting=0, current_producers=1),
        ),
        fresh=(),
    )
)
add(
    C(
        "reserve_job_counts_a_worker_only_when_it_reserves",
        # 1.12 marks the connection a worker after it found the job, so a
        # reserve-job that answers NOT_FOUND leaves current-workers alone;
        # reserve-with-timeout counts even when it times out.
        S("w", b"reserve-job 7\r\n", b"NOT_FOUND\r\n"),
        S("a", b"stats\r\n", stats(current_workers=0, current_connections=2)),
        S("a", put(b"x"), b"INSERTED 1\r\n"),
        S("w", b"reserve-job 1\r\n", b"RESERVED 1 1\r\nx\r\n"),
        S("a", b"stats\r\n", stats(current_workers=1, current_connections=2)),
        S("a", b"reserve-with-timeout 0\r\n", b"TIMED_OUT\r\n"),
        S("a", b"stats\r\n", stats(current_workers=2, current_connections=2)),
        fresh=(),
    )
)

# --- pause-tube -----------------------------------------------------------------------
add(
    C(
        "pause_tube_delays_reserve_until_pause_ends",
        own("a"),
        S("a", put(b"x"), b"INSERTED {a}\r\n"),
        S("a", b"pause-tube {t} 1\r\n", b"PAUSED\r\n"),
        S(
            "a",
            b"stats-tube {t}\r\n",
            stats_tube(
                current_jobs_urgent=1,
                current_jobs_ready=1,
                total_jobs=1,
                current_using=1,
                current_watching=1,
                cmd_pause_tube=1,
                pause=1,
                pause_time_left="{_}",
            ),
        ),
        S("a", RESERVE0, b"TIMED_OUT\r\n"),
        S("a", b"reserve-with-timeout 5\r\n", reserved("a", b"x")),
        S(
            "a",
            b"stats-tube {t}\r\n",
            stats_tube(
                current_jobs_reserved=1,
                total_jobs=1,
                current_using=1,
                current_watching=1,
                cmd_pause_tube=1,
            ),
        ),
    )
)
add(
    C(
        "pause_tube_long_pause_fields",
        S("a", b"use {t}\r\n", b"USING {t}\r\n"),
        S("a", b"pause-tube {t} 1000\r\n", b"PAUSED\r\n"),
        S(
            "a",
            b"stats-tube {t}\r\n",
            stats_tube(current_using=1, cmd_pause_tube=1, pause=1000, pause_time_left="99{_}"),
        ),
    )
)
add(
    C(
        "pause_tube_zero",
        S("a", b"use {t}\r\npause-tube {t} 0\r\n", b"USING {t}\r\nPAUSED\r\n"),
        S("a", b"stats-tube {t}\r\n", stats_tube(current_using=1, cmd_pause_tube=1, pause=0)),
    )
)
add(
    C(
        "pause_tube_does_not_stop_reserve_job",
        own("a"),
        S("a", put(b"x") + b"pause-tube {t} 100\r\n", b"INSERTED {a}\r\nPAUSED\r\n"),
        S("a", RESERVE0, b"TIMED_OUT\r\n"),
        S("a", b"reserve-job {a}\r\n", reserved("a", b"x")),
    )
)
add(one("pause_tube_missing_not_found", b"pause-tube nosuchtube.wire 1\r\n", b"NOT_FOUND\r\n"))

# --- timing: delay, ttr, deadline soon ----------------------------------------
add(
    C(
        "delay_one_second_then_ready",
        own("a"),
        S("a", put(b"soon", delay=1), b"INSERTED {a}\r\n"),
        S("a", b"stats-job {a}\r\n", stats_job(state="delayed", delay=1)),
        S("a", RESERVE0, b"TIMED_OUT\r\n"),
        S("a", b"reserve-with-timeout 5\r\n", reserved("a", b"soon")),
    )
)
add(
    C(
        "ttr_one_second_job_returns_to_ready_and_counts_timeout",
        own("a"),
        own("b"),
        S("a", put(b"slow", ttr=1) + b"reserve\r\n", b"INSERTED {a}\r\n" + reserved("a", b"slow")),
        S("b", b"reserve-with-timeout 5\r\n"),
        # beanstalkd 1.12 can lose a TTR expiry (its timer may fire a few
        # microseconds before the deadline and is then not re-armed) until the
        # holder's connection does something: nudge it once the ttr has passed.
        S("a", b"list-tube-used\r\n", b"USING {t}\r\n", sleep=1.3),
        S("b", b"", reserved("a", b"slow")),
        S("b", b"stats-job {a}\r\n", stats_job(state="reserved", ttr=1, reserves=2, timeouts=1)),
        S("a", b"delete {a}\r\n", b"NOT_FOUND\r\n"),
        S("b", b"delete {a}\r\n", b"DELETED\r\n"),
    )
)
add(
    C(
        "ttr_timeout_counted_in_global_stats",
        S("a", put(b"x", ttr=1) + b"reserve\r\n", b"INSERTED 1\r\nRESERVED 1 1\r\nx\r\n"),
        S("b", b"reserve-with-timeout 5\r\n"),
        S("a", b"list-tube-used\r\n", b"USING default\r\n", sleep=1.3),  # see above
        S("b", b"", b"RESERVED 1 1\r\nx\r\n"),
        S(
            "b",
            b"stats\r\n",
            stats(
                job_timeouts=1, cmd_reserve=1, cmd_reserve_with_timeout=1, current_jobs_reserved=1
            ),
        ),
        fresh=(),
    )
)
add(
    C(
        "deadline_soon_with_ttr_1",
        own("a"),
        S("a", put(b"x", ttr=1) + b"reserve\r\n", b"INSERTED {a}\r\n" + reserved("a", b"x")),
        S("a", b"reserve\r\n", b"DEADLINE_SOON\r\n"),
        S("a", RESERVE0, b"DEADLINE_SOON\r\n"),
        S("a", b"delete {a}\r\n", b"DELETED\r\n"),
    )
)
add(
    C(
        "deadline_soon_wakes_a_waiting_reserve",
        own("a"),
        S("a", put(b"x", ttr=2) + b"reserve\r\n", b"INSERTED {a}\r\n" + reserved("a", b"x")),
        S("a", b"reserve\r\n", b"DEADLINE_SOON\r\n"),
        S("a", b"delete {a}\r\n", b"DELETED\r\n"),
    )
)
add(
    C(
        "deadline_soon_not_given_when_a_job_is_ready",
        own("a"),
        S("a", put(b"x", ttr=1) + b"reserve\r\n", b"INSERTED {a}\r\n" + reserved("a", b"x")),
        S("a", put(b"y"), b"INSERTED {b}\r\n"),
        S("a", b"reserve\r\n", reserved("b", b"y")),
    )
)
add(
    C(
        "reserve_job_never_deadline_soon",
        own("a"),
        S("a", put(b"x", ttr=1) + b"reserve\r\n", b"INSERTED {a}\r\n" + reserved("a", b"x")),
        S("a", put(b"y", delay=100), b"INSERTED {b}\r\n"),
        S("a", b"reserve-job {b}\r\n", reserved("b", b"y")),
    )
)
add(
    C(
        "touch_extends_the_reservation",
        own("a"),
        S("a", put(b"x", ttr=2) + b"reserve\r\n", b"INSERTED {a}\r\n" + reserved("a", b"x")),
        S("a", b"touch {a}\r\n", b"TOUCHED\r\n", sleep=1.4),
        S("a", b"stats-job {a}\r\n", stats_job(state="reserved", ttr=2, reserves=1), sleep=1.0),
    )
)

# --- connections ------------------------------------------------------------------
add(
    Conversation(
        "closing_connection_destroys_its_tubes_in_the_reference_order",
        [
            S("a", b"watch {t}\r\nwatch {u}\r\n", b"WATCHING 2\r\nWATCHING 3\r\n"),
            S("b", b"watch {v}\r\nwatch {w}\r\n", b"WATCHING 2\r\nWATCHING 3\r\n"),
            S("a", CLOSE),
            # 1.12 takes out default, then moves {u} first and destroys it
            # (moving {w} into its place in the tube list), then {t}.
            S("c", b"list-tubes\r\n", yaml_list("default", "{v}", "{w}"), poll=True),
        ],
        fresh=(),
        tubes=("t", "u", "v", "w"),
    )
)
add(
    Conversation(
        "closing_connection_destroys_tubes_around_kept_ones_in_the_reference_order",
        [
            S("a", b"watch {t}\r\n", b"WATCHING 2\r\n"),
            S("b", b"watch {k1}\r\n", b"WATCHING 2\r\n"),
            S("a", b"watch {u}\r\n", b"WATCHING 3\r\n"),
            S("b", b"watch {k2}\r\n", b"WATCHING 3\r\n"),
            S("a", b"watch {v}\r\n", b"WATCHING 4\r\n"),
            S("b", b"watch {k3}\r\n", b"WATCHING 4\r\n"),
            S("a", CLOSE),
            S("c", b"list-tubes\r\n", yaml_list("default", "{k2}", "{k1}", "{k3}"), poll=True),
        ],
        fresh=(),
        tubes=("t", "u", "v", "k1", "k2", "k3"),
    )
)
add(
    C(
        "disconnect_releases_reserved_job",
        own("a"),
        own("b"),
        S("a", put(b"x") + b"reserve\r\n", b"INSERTED {a}\r\n" + reserved("a", b"x")),
        S("a", CLOSE),
        S("b", b"reserve-with-timeout 5\r\n", reserved("a", b"x")),
        S("b", b"stats-job {a}\r\n", stats_job(state="reserved", reserves=2)),
    )
)
add(
    C(
        "half_closed_client_in_reserve_gets_timed_out",
        own("a"),
        S("a", b"reserve\r\n"),
        S("a", SHUT_WR, b"TIMED_OUT\r\n", sleep=0.1),
        S("a", b"", CLOSED),
    )
)


def _half_close_in_reserve_releases_at_once(rounds: int) -> Conversation:
    """1.12 closes a half-closed client blocked in reserve in the step that
    answers TIMED_OUT: its reservation is back before anyone can look."""
    steps: list[Step] = []
    for i in range(rounds):
        a = f"a{i}"
        steps += [
            own(a),
            S(a, put(b"x") + b"reserve\r\n", b"INSERTED {j%d}\r\n" % i + reserved(f"j{i}", b"x")),
            S(a, b"reserve\r\n"),
            S(a, SHUT_WR, b"TIMED_OUT\r\n"),
            S("b", b"stats-job {j%d}\r\n" % i, stats_job(f"{{j{i}}}", state="ready", reserves=1)),
            S("b", b"delete {j%d}\r\n" % i, b"DELETED\r\n"),
        ]
    return C("half_closed_client_in_reserve_releases_its_jobs_with_the_reply", *steps)


add(_half_close_in_reserve_releases_at_once(5))
add(one("quit_closes_connection", b"quit\r\n", CLOSED))
add(C("quit_ignores_pipelined_rest", S("a", b"quit\r\nlist-tube-used\r\n", CLOSED)))
add(
    C(
        "pipelined_commands_in_one_write",
        S(
            "a",
            b"use {t}\r\nwatch {t}\r\nignore default\r\n"
            + put(b"a", pri=2)
            + put(b"b", pri=1)
            + b"peek-ready\r\nreserve\r\nreserve\r\ndelete 0\r\n"
            + b"list-tube-used\r\nstats-tube {t}\r\n",
            b"USING {t}\r\nWATCHING 2\r\nWATCHING 1\r\nINSERTED {a}\r\nINSERTED {b}\r\n"
            + found("b", b"b")
            + reserved("b", b"b")
            + reserved("a", b"a")
            + b"NOT_FOUND\r\nUSING {t}\r\n"
            + stats_tube(
                current_jobs_reserved=2, total_jobs=2, current_using=1, current_watching=1
            ),
        ),
    )
)
add(
    C(
        "pipelined_hundred_puts",
        S("a", b"use {t}\r\n" + put(b"job") * 100, b"USING {t}\r\n" + b"INSERTED {_}\r\n" * 100),
        S(
            "a",
            b"stats-tube {t}\r\n",
            stats_tube(
                current_jobs_urgent=100, current_jobs_ready=100, total_jobs=100, current_using=1
            ),
        ),
    )
)
add(
    C(
        "commands_split_at_every_byte",
        S(
            "a",
            b"use {t}\r\nwatch {t}\r\nignore default\r\n",
            b"USING {t}\r\nWATCHING 2\r\nWATCHING 1\r\n",
            bytewise=True,
        ),
        S("a", put(b"split\r\nme", pri=3), b"INSERTED {a}\r\n", bytewise=True),
        S("a", b"reserve\r\n", reserved("a", b"split\r\nme"), replies=1, bytewise=True),
        S("a", b"stats-job {a}\r\n", stats_job(state="reserved", pri=3, reserves=1), bytewise=True),
        S(
            "a",
            b"bury {a} 4\r\nkick 1\r\ndelete {a}\r\n",
            b"BURIED\r\nKICKED 1\r\nDELETED\r\n",
            bytewise=True,
        ),
    )
)
add(
    C(
        "draining_mode_refuses_puts",
        S("a", put(b"before"), b"INSERTED 1\r\n"),
        S("a", signal_server(signal.SIGUSR1)),
        S("b", b"stats\r\n", stats(draining="true"), poll=True),
        S("a", put(b"during") + b"list-tube-used\r\n", b"DRAINING\r\nUSING default\r\n"),
        S("a", b"reserve\r\n", b"RESERVED 1 6\r\nbefore\r\n"),
        S(
            "a",
            b"stats\r\n",
            stats(draining="true", cmd_put=2, total_jobs=1, current_jobs_reserved=1),
        ),
        fresh=(),
    )
)

# --- BAD_FORMAT -------------------------------------------------------------------------
add(one("line_of_224_bytes_accepted", line_of(224), b"NOT_FOUND\r\n"))
add(
    C(
        "line_of_226_bytes_bad_format_then_next_command",
        S("a", line_of(226), b"BAD_FORMAT\r\n"),
        S("a", b"list-tube-used\r\n", b"USING default\r\n"),
    )
)
add(
    C(
        "line_of_300_bytes_bad_format_then_next_command",
        S("a", line_of(300) + b"list-tube-used\r\n", b"BAD_FORMAT\r\nUSING default\r\n"),
    )
)
add(
    C(
        # The reference reads 224 bytes, gives up on the line with its CR as the
        # last byte, and then never sees a CR LF pair for it: the next line is
        # swallowed into the same BAD_FORMAT.
        "line_of_225_bytes_swallows_the_next_line",
        S("a", line_of(225) + b"list-tube-used\r\n", b"BAD_FORMAT\r\n"),
        S("a", b"list-tube-used\r\n", b"USING default\r\n"),
    )
)
add(one("nul_byte_in_command_bad_format", b"use a\x00b\r\n", b"BAD_FORMAT\r\n"))
add(
    C(
        "nul_byte_in_put_line_bad_format_body_read_as_command",
        S("a", b"put 0 0 60 1\x00\r\nx\r\n", b"BAD_FORMAT\r\nUNKNOWN_COMMAND\r\n"),
    )
)
add(
    one(
        "lf_only_line_end_is_not_a_line_end",
        b"list-tube-used\nlist-tube-used\r\n",
        b"BAD_FORMAT\r\n",
    )
)
add(one("pri_2_pow_32_bad_format", b"put 4294967296 0 60 1\r\n", b"BAD_FORMAT\r\n"))
add(one("delay_2_pow_32_bad_format", b"put 0 4294967296 60 1\r\n", b"BAD_FORMAT\r\n"))
add(one("ttr_2_pow_32_bad_format", b"put 0 0 4294967296 1\r\n", b"BAD_FORMAT\r\n"))
add(one("size_2_pow_32_bad_format", b"put 0 0 60 4294967296\r\n", b"BAD_FORMAT\r\n"))
add(one("negative_pri_bad_format", b"put -1 0 60 1\r\n", b"BAD_FORMAT\r\n"))
add(one("negative_delay_bad_format", b"put 0 -1 60 1\r\n", b"BAD_FORMAT\r\n"))
add(one("plus_sign_number_bad_format", b"put +1 0 60 1\r\n", b"BAD_FORMAT\r\n"))
add(one("non_digit_size_bad_format", b"put 0 0 60 abc\r\n", b"BAD_FORMAT\r\n"))
add(one("put_missing_size_bad_format", b"put 0 0 60\r\n", b"BAD_FORMAT\r\n"))
add(one("put_empty_size_bad_format", b"put 0 0 60 \r\n", b"BAD_FORMAT\r\n"))
add(
    one(
        "put_trailing_garbage_bad_format_body_read_as_command",
        b"put 0 0 60 1 extra\r\nx\r\n",
        b"BAD_FORMAT\r\nUNKNOWN_COMMAND\r\n",
    )
)
add(
    C(
        "put_extra_spaces_between_args_accepted",
        S("a", b"use {t}\r\nput  7  0  60  2\r\nhi\r\n", b"USING {t}\r\nINSERTED {a}\r\n"),
        S("a", b"stats-job {a}\r\n", stats_job(pri=7, time_left=0, tube="{t}")),
    )
)
add(
    C(
        "delete_extra_space_before_id_accepted",
        S("a", b"use {t}\r\n" + put(b"x"), b"USING {t}\r\nINSERTED {a}\r\n"),
        S("a", b"delete  {a}\r\n", b"DELETED\r\n"),
    )
)
add(one("delete_trailing_space_bad_format", b"delete 99999999999 \r\n", b"BAD_FORMAT\r\n"))
add(one("id_2_pow_64_bad_format", b"peek 18446744073709551616\r\n", b"BAD_FORMAT\r\n"))
add(one("negative_id_bad_format", b"peek -1\r\n", b"BAD_FORMAT\r\n"))
add(one("id_with_trailing_letter_bad_format", b"delete 1x\r\n", b"BAD_FORMAT\r\n"))
add(one("delete_two_ids_bad_format", b"delete 1 2\r\n", b"BAD_FORMAT\r\n"))
add(one("touch_two_ids_bad_format", b"touch 1 2\r\n", b"BAD_FORMAT\r\n"))
add(one("stats_job_two_ids_bad_format", b"stats-job 1 2\r\n", b"BAD_FORMAT\r\n"))
add(one("release_missing_delay_bad_format", b"release 1 0\r\n", b"BAD_FORMAT\r\n"))
add(one("release_delay_2_pow_32_bad_format", b"release 1 0 4294967296\r\n", b"BAD_FORMAT\r\n"))
add(one("bury_missing_pri_bad_format", b"bury 1\r\n", b"BAD_FORMAT\r\n"))
add(one("bury_non_numeric_pri_bad_format", b"bury 1 x\r\n", b"BAD_FORMAT\r\n"))
add(one("kick_non_numeric_bad_format", b"kick x\r\n", b"BAD_FORMAT\r\n"))
add(one("tube_name_starting_with_dash_bad_format", b"use -foo\r\n", b"BAD_FORMAT\r\n"))
add(one("watch_name_starting_with_dash_bad_format", b"watch -foo\r\n", b"BAD_FORMAT\r\n"))
add(one("ignore_name_starting_with_dash_bad_format", b"ignore -foo\r\n", b"BAD_FORMAT\r\n"))
add(one("tube_name_of_201_bytes_bad_format", b"use " + b"n" * 201 + b"\r\n", b"BAD_FORMAT\r\n"))
add(one("watch_name_of_201_bytes_bad_format", b"watch " + b"n" * 201 + b"\r\n", b"BAD_FORMAT\r\n"))
add(one("tube_name_with_illegal_char_bad_format", b"use a#b\r\n", b"BAD_FORMAT\r\n"))
add(one("tube_name_with_space_bad_format", b"use a b\r\n", b"BAD_FORMAT\r\n"))
add(one("tube_name_with_trailing_space_bad_format", b"watch a \r\n", b"BAD_FORMAT\r\n"))
add(one("tube_name_empty_bad_format", b"use \r\n", b"BAD_FORMAT\r\n"))
add(one("stats_tube_bad_name_bad_format", b"stats-tube -x\r\n", b"BAD_FORMAT\r\n"))
add(one("stats_job_without_argument_bad_format", b"stats-job\r\n", b"BAD_FORMAT\r\n"))
add(one("reserve_job_without_argument_bad_format", b"reserve-job\r\n", b"BAD_FORMAT\r\n"))
add(one("pause_tube_without_argument_bad_format", b"pause-tube\r\n", b"BAD_FORMAT\r\n"))
add(one("pause_tube_without_delay_bad_format", b"pause-tube default\r\n", b"BAD_FORMAT\r\n"))
add(
    one(
        "pause_tube_delay_2_pow_32_bad_format",
        b"pause-tube default 4294967296\r\n",
        b"BAD_FORMAT\r\n",
    )
)
add(one("stats_tube_without_argument_bad_format", b"stats-tube\r\n", b"BAD_FORMAT\r\n"))
add(
    one(
        "reserve_with_timeout_without_argument_bad_format",
        b"reserve-with-timeout\r\n",
        b"BAD_FORMAT\r\n",
    )
)
add(one("reserve_trailing_space_bad_format", b"reserve \r\n", b"BAD_FORMAT\r\n"))
add(one("reserve_with_suffix_bad_format", b"reservex\r\n", b"BAD_FORMAT\r\n"))
add(one("stats_with_suffix_bad_format", b"statsx\r\n", b"BAD_FORMAT\r\n"))
add(one("stats_trailing_space_bad_format", b"stats \r\n", b"BAD_FORMAT\r\n"))
add(one("peek_ready_with_argument_bad_format", b"peek-ready 1\r\n", b"BAD_FORMAT\r\n"))
add(one("peek_delayed_with_argument_bad_format", b"peek-delayed x\r\n", b"BAD_FORMAT\r\n"))
add(one("peek_buried_trailing_space_bad_format", b"peek-buried \r\n", b"BAD_FORMAT\r\n"))
add(one("list_tubes_with_argument_bad_format", b"list-tubes x\r\n", b"BAD_FORMAT\r\n"))
add(one("list_tube_used_with_argument_bad_format", b"list-tube-used x\r\n", b"BAD_FORMAT\r\n"))
add(
    one(
        "list_tubes_watched_with_argument_bad_format",
        b"list-tubes-watched x\r\n",
        b"BAD_FORMAT\r\n",
    )
)

# --- UNKNOWN_COMMAND --------------------------------------------------------------------
add(one("delete_without_space_unknown_command", b"delete\r\n", b"UNKNOWN_COMMAND\r\n"))
add(one("peek_without_space_unknown_command", b"peek\r\n", b"UNKNOWN_COMMAND\r\n"))
add(one("put_without_arguments_unknown_command", b"put\r\n", b"UNKNOWN_COMMAND\r\n"))
add(one("kick_without_argument_unknown_command", b"kick\r\n", b"UNKNOWN_COMMAND\r\n"))
add(one("kick_job_without_argument_unknown_command", b"kick-job\r\n", b"UNKNOWN_COMMAND\r\n"))
add(one("touch_without_argument_unknown_command", b"touch\r\n", b"UNKNOWN_COMMAND\r\n"))
add(one("release_without_arguments_unknown_command", b"release\r\n", b"UNKNOWN_COMMAND\r\n"))
add(one("bury_without_arguments_unknown_command", b"bury\r\n", b"UNKNOWN_COMMAND\r\n"))
add(one("use_without_name_unknown_command", b"use\r\n", b"UNKNOWN_COMMAND\r\n"))
add(one("watch_without_name_unknown_command", b"watch\r\n", b"UNKNOWN_COMMAND\r\n"))
add(one("ignore_without_name_unknown_command", b"ignore\r\n", b"UNKNOWN_COMMAND\r\n"))
add(one("uppercase_command_unknown_command", b"PUT 0 0 60 1\r\n", b"UNKNOWN_COMMAND\r\n"))
add(one("empty_line_unknown_command", b"\r\n", b"UNKNOWN_COMMAND\r\n"))
add(one("made_up_command_unknown_command", b"frobnicate 1 2 3\r\n", b"UNKNOWN_COMMAND\r\n"))
add(
    C(
        "unknown_command_keeps_connection_usable",
        S("a", b"nope\r\nlist-tube-used\r\n", b"UNKNOWN_COMMAND\r\nUSING default\r\n"),
    )
)
