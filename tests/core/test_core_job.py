"""Job's attributes and value rules, identical in both implementations."""

from __future__ import annotations

import math
import platform
import sys
import sysconfig
from types import ModuleType

import pytest

from geanstalk import _core_py

U32 = 2**32 - 1
U64 = 2**64 - 1
UINT32_FIELDS = [
    "priority",
    "ttr",
    "delay",
    "tag",
    "reserves",
    "timeouts",
    "releases",
    "buries",
    "kicks",
]
COUNTERS = ["reserves", "timeouts", "releases", "buries", "kicks"]


def test_defaults(impl: ModuleType) -> None:
    job = impl.Job(7)
    assert job.id == 7
    assert job.priority == 0 and job.runnable_at is None and job.ttr == 1
    assert job.body == b"" and job.delay == 0 and job.created_at == 0.0
    assert job.state == impl.READY and job.tube is None and job.reserver is None
    assert all(getattr(job, name) == 0 for name in COUNTERS)
    assert job.file == 0 and job.tag == 0 and job.heap_index == -1


def test_constructor_keywords_and_positions(impl: ModuleType) -> None:
    a = impl.Job(1, 5, 2.5, 30, b"hi", 4, 99.0)
    b = impl.Job(id=1, priority=5, runnable_at=2.5, ttr=30, body=b"hi", delay=4, created_at=99.0)
    for job in (a, b):
        assert (job.id, job.priority, job.runnable_at, job.ttr, job.body, job.delay) == (
            1, 5, 2.5, 30, b"hi", 4,
        )  # fmt: skip
        assert job.created_at == 99.0


def test_every_attribute_is_writable_except_id(impl: ModuleType) -> None:
    job = impl.Job(1)
    values = {
        "priority": U32, "runnable_at": 12.5, "ttr": 60, "delay": 9, "body": b"x" * 10,
        "state": impl.BURIED, "tube": ("any", "object"), "reserver": object(),
        "created_at": 1.5, "reserves": 1, "timeouts": 2, "releases": 3, "buries": 4,
        "kicks": U32, "file": -(2**31), "tag": U32,
    }  # fmt: skip
    for name, value in values.items():
        setattr(job, name, value)
        assert getattr(job, name) == value, name
    with pytest.raises(AttributeError):
        job.id = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        job.heap_index = 3  # type: ignore[misc]


def test_no_instance_dict(impl: ModuleType) -> None:
    job = impl.Job(1)
    assert not hasattr(job, "__dict__")
    with pytest.raises(AttributeError):
        job.colour = "red"  # type: ignore[attr-defined]


def test_state_constants(impl: ModuleType) -> None:
    assert (impl.READY, impl.DELAYED, impl.RESERVED, impl.BURIED) == (0, 1, 2, 3)
    assert impl.STATE_NAMES == ("ready", "delayed", "reserved", "buried")
    assert impl.COMPILED is (impl is not _core_py)


def test_identity_semantics(impl: ModuleType) -> None:
    a, b = impl.Job(1, 3), impl.Job(1, 3)
    assert a != b and a == a
    assert len({a, b}) == 2 and {a: 1}[a] == 1
    assert hash(a) != hash(b)


def test_runnable_at_accepts_ints_and_none(impl: ModuleType) -> None:
    job = impl.Job(1, runnable_at=5)
    assert job.runnable_at == 5.0 and isinstance(job.runnable_at, float)
    job.runnable_at = None
    assert job.runnable_at is None
    job.runnable_at = math.inf
    assert job.runnable_at == math.inf
    job.runnable_at = -0.0
    assert job.runnable_at == 0.0


def test_repr_is_the_same_in_both(impl: ModuleType) -> None:
    job = impl.Job(3, 10, 1.5, 5, b"abc")
    job.state = impl.DELAYED
    expected = (
        "Job(id=3, state=delayed, priority=10, runnable_at=1.5, ttr=5, delay=0, body=<3 bytes>)"
    )
    assert repr(job) == expected


# --- value rules: the same exception type, for the same input, in both -----------

BAD_INTS = [
    (-1, OverflowError),
    (U32 + 1, OverflowError),
    (2**70, OverflowError),
    (1.0, TypeError),
    ("1", TypeError),
    (None, TypeError),
    (True, TypeError),
    (b"1", TypeError),
]


@pytest.mark.parametrize("field", UINT32_FIELDS)
@pytest.mark.parametrize(("value", "error"), BAD_INTS)
def test_uint32_fields_reject(impl: ModuleType, field: str, value: object, error: type) -> None:
    job = impl.Job(1)
    with pytest.raises(error):
        setattr(job, field, value)
    assert getattr(job, field) == (1 if field == "ttr" else 0)  # unchanged


@pytest.mark.parametrize("field", UINT32_FIELDS)
def test_uint32_fields_accept_their_range(impl: ModuleType, field: str) -> None:
    job = impl.Job(1)
    for value in (0, 1, U32):
        setattr(job, field, value)
        assert getattr(job, field) == value


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (-1, OverflowError),
        (2**64, OverflowError),
        (1.5, TypeError),
        (False, TypeError),
        ("7", TypeError),
    ],
)
def test_id_rules(impl: ModuleType, value: object, error: type) -> None:
    with pytest.raises(error):
        impl.Job(value)


def test_id_range_ends(impl: ModuleType) -> None:
    assert impl.Job(0).id == 0
    assert impl.Job(U64).id == U64


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (-1, OverflowError),
        (4, OverflowError),
        (2**40, OverflowError),
        (1.0, TypeError),
        (True, TypeError),
    ],
)
def test_state_rules(impl: ModuleType, value: object, error: type) -> None:
    job = impl.Job(1)
    with pytest.raises(error):
        job.state = value  # type: ignore[assignment]
    assert job.state == impl.READY


@pytest.mark.parametrize(
    ("value", "error"),
    [(2**31, OverflowError), (-(2**31) - 1, OverflowError), (0.0, TypeError), (True, TypeError)],
)
def test_file_rules(impl: ModuleType, value: object, error: type) -> None:
    job = impl.Job(1)
    with pytest.raises(error):
        job.file = value  # type: ignore[assignment]
    job.file = 2**31 - 1
    assert job.file == 2**31 - 1


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (math.nan, ValueError),
        ("1.0", TypeError),
        (True, TypeError),
        (10**400, OverflowError),
        ([], TypeError),
    ],
)
def test_runnable_at_rules(impl: ModuleType, value: object, error: type) -> None:
    job = impl.Job(1, runnable_at=3.0)
    with pytest.raises(error):
        job.runnable_at = value  # type: ignore[assignment]
    assert job.runnable_at == 3.0
    with pytest.raises(error):
        impl.Job(2, runnable_at=value)


@pytest.mark.parametrize("value", ["0", None, True, b"0"])
def test_created_at_rules(impl: ModuleType, value: object) -> None:
    with pytest.raises(TypeError):
        impl.Job(1, created_at=value)


@pytest.mark.parametrize("value", ["text", bytearray(b"x"), memoryview(b"x"), None, 3])
def test_body_must_be_bytes(impl: ModuleType, value: object) -> None:
    job = impl.Job(1, body=b"keep")
    with pytest.raises(TypeError):
        job.body = value  # type: ignore[assignment]
    assert job.body == b"keep"


def test_int_subclasses_are_ints(impl: ModuleType) -> None:
    import enum

    class Pri(enum.IntEnum):
        URGENT = 0
        LOW = 4096

    job = impl.Job(1, priority=Pri.LOW)
    assert job.priority == 4096 and type(job.priority) is int


def test_error_messages_match(compiled: ModuleType) -> None:
    """Not only the types: the two implementations word their errors alike."""
    for impl in (compiled, _core_py):
        job = impl.Job(1)
        messages = []
        for name, value in [("priority", -1), ("ttr", "x"), ("state", 9), ("body", 1)]:
            try:
                setattr(job, name, value)
            except (TypeError, OverflowError) as exc:
                messages.append(str(exc))
        if impl is compiled:
            first = messages
    assert messages == first


@pytest.mark.skipif(
    platform.python_implementation() != "CPython"
    or bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
    reason="the 128-byte budget is for CPython with the GIL (free-threaded objects have a bigger header)",
)
def test_compiled_job_fits_in_128_bytes(compiled: ModuleType) -> None:
    job = compiled.Job(2**64 - 1, U32, 1.0, U32, b"x" * 1000)
    job.tube, job.reserver = object(), object()
    assert sys.getsizeof(job) <= 128
