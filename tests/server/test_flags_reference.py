"""Numeric flags read the way beanstalkd 1.12 reads them, checked on both binaries.

1.12 parses -z, -s and -f with sscanf("%zu%c") and hands -p to getaddrinfo():
a sign is allowed (a minus wraps around), an oversized -z is capped with a
warning, -s lives in an int, and a numeric port is taken modulo 2^16. Each
case starts the real server and compares what it printed, its exit status
and what its stats say.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.servers import (
    BEANSTALKD,
    SKIP_NO_REFERENCE,
    beanstalkd_command,
    free_port,
    geanstalk_command,
    wait_for_port,
)

KINDS = ["geanstalk", pytest.param("beanstalkd", marks=pytest.mark.reference)]


def _command(kind: str, *args: str) -> list[str]:
    if kind == "beanstalkd":
        if BEANSTALKD is None:
            pytest.skip(SKIP_NO_REFERENCE)
        return beanstalkd_command(*args)
    return geanstalk_command(*args)


def _stats_values(port: int, *keys: str) -> dict[str, str]:
    import socket

    from tests.servers import recv_until

    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"stats\r\n")
        doc = recv_until(s, 1).decode()
    pairs = (line.split(": ", 1) for line in doc.splitlines() if ": " in line)
    return {k: v for k, v in pairs if k in keys}


def _run(kind: str, *flags: str) -> tuple[str, dict[str, str]]:
    """Start the server with flags, read its stats, stop it; (stderr, stats)."""
    port = free_port()
    proc = subprocess.Popen(
        _command(kind, "-l", "127.0.0.1", "-p", str(port), *flags),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, 10, proc)  # type: ignore[arg-type]
        values = _stats_values(port, "max-job-size", "binlog-max-size")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    return err.decode().replace("geanstalk:", "SERVER:").replace("beanstalkd:", "SERVER:"), values


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("flags", "job_size", "file_size", "warned"),
    [
        (("-z", "-1"), "1073741824", "10485760", True),
        (("-z", "99999999999999999999999"), "1073741824", "10485760", True),
        (("-z", "+5"), "5", "10485760", False),
        (("-z", " 7"), "7", "10485760", False),
        (("-z", "0"), "0", "10485760", False),
        (("-s", "-1"), "65535", "-1", False),
        (("-s", "4294967396"), "65535", "100", False),
        (("-s", "0"), "65535", "0", False),
        (("-f", "-1"), "65535", "10485760", False),
    ],
)
def test_numeric_flags_as_the_reference_reads_them(
    kind: str, flags: tuple[str, ...], job_size: str, file_size: str, warned: bool
) -> None:
    err, values = _run(kind, *flags)
    assert values == {"max-job-size": job_size, "binlog-max-size": file_size}
    assert ("SERVER: maximum job size was set to 1073741824" in err) == warned


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("value", ["abc", "12abc", "7 ", ""])
def test_a_size_that_is_not_a_number_is_refused(kind: str, value: str) -> None:
    r = subprocess.run(
        _command(kind, "-l", "127.0.0.1", "-p", str(free_port()), "-z", value),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert r.returncode == 5
    assert f"invalid size: {value}\n" in r.stderr


@pytest.mark.parametrize("kind", KINDS)
def test_a_port_beyond_16_bits_wraps_around(kind: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        _command(kind, "-l", "127.0.0.1", "-p", str(port + 65536)),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, 10, proc)  # type: ignore[arg-type]
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("value", ["-1", "no-such-service-here"])
def test_a_port_getaddrinfo_refuses_exits_111(kind: str, value: str) -> None:
    r = subprocess.run(
        _command(kind, "-l", "127.0.0.1", "-p", value),
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert r.returncode == 111
    assert "getaddrinfo(): Servname not supported for ai_socktype" in r.stderr


def test_a_binlog_with_a_non_positive_file_size_uses_the_default(tmp_path) -> None:
    err, values = _run("geanstalk", "-b", str(tmp_path), "-s", "-1")
    assert "binlog file size -1 is not positive; using 10485760" in err
    assert values["binlog-max-size"] == "10485760"
