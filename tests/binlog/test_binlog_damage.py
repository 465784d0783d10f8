"""Damaged logs and unusable directories: what is repaired, what is refused."""

from __future__ import annotations

import logging
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import pytest

from geanstalk.binlog import Binlog
from geanstalk.binlog_format import HEADER_SIZE, VERSION
from geanstalk.errors import BinlogCorrupt, BinlogError
from tests.binlog.binlog_helpers import make_job, settle


def write_log(loop, directory: str, ids: range, file_size: int = 10485760) -> None:
    log = Binlog.open(directory, None, file_size, loop)
    log.recover()
    for i in ids:
        log.put(make_job(i, body=b"job %d" % i))
    settle(loop, log)
    loop.run_until_complete(log.close())


def recover(loop, directory: str, file_size: int = 10485760) -> tuple[list[int], int]:
    log = Binlog.open(directory, None, file_size, loop)
    try:
        jobs, next_id = log.recover()
    finally:
        loop.run_until_complete(log.close())
    return [j.id for j in jobs], next_id


def test_torn_last_record_is_cut_at_every_byte_offset(loop, tmp_path, caplog) -> None:
    write_log(loop, str(tmp_path), range(1, 4))
    path = tmp_path / "binlog.1"
    whole = path.read_bytes()
    log = Binlog.open(str(tmp_path), None, 10485760, loop)
    log.recover()
    log.put(make_job(4, body=b"the last one"))
    settle(loop, log)
    loop.run_until_complete(log.close())
    with_last = path.read_bytes()
    assert with_last.startswith(whole) and len(with_last) > len(whole)
    for cut in range(len(whole), len(with_last)):
        path.write_bytes(with_last[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="geanstalk.binlog"):
            ids, next_id = recover(loop, str(tmp_path))
        assert (ids, next_id) == ([1, 2, 3], 4), cut
        assert path.read_bytes() == whole, cut
        if cut > len(whole):
            assert "torn last record" in caplog.text, cut
    # the log is still appendable after the cut
    write_log(loop, str(tmp_path), range(4, 6))
    assert recover(loop, str(tmp_path)) == ([1, 2, 3, 4, 5], 6)


def test_zero_filled_tail_is_cut(loop, tmp_path) -> None:
    write_log(loop, str(tmp_path), range(1, 3))
    path = tmp_path / "binlog.1"
    whole = path.read_bytes()
    path.write_bytes(whole + bytes(4096))
    assert recover(loop, str(tmp_path)) == ([1, 2], 3)
    assert path.read_bytes() == whole


def test_torn_header_of_the_newest_file_is_dropped(loop, tmp_path) -> None:
    write_log(loop, str(tmp_path), range(1, 3))
    (tmp_path / "binlog.2").write_bytes(b"GSTK")
    assert recover(loop, str(tmp_path)) == ([1, 2], 3)
    assert not (tmp_path / "binlog.2").exists()


def test_flipped_byte_in_an_earlier_file_is_refused_with_file_and_offset(loop, tmp_path) -> None:
    write_log(loop, str(tmp_path), range(1, 30), file_size=300)
    assert (tmp_path / "binlog.3").exists()
    path = tmp_path / "binlog.1"
    data = bytearray(path.read_bytes())
    first_len = struct.unpack_from("<I", data, HEADER_SIZE)[0]
    second = HEADER_SIZE + 8 + first_len  # the second record of the file
    data[second + 20] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BinlogCorrupt) as info:
        recover(loop, str(tmp_path), file_size=300)
    assert info.value.path == str(path) and info.value.offset == second
    assert f"binlog.1: corrupt record at offset {second}" in str(info.value)


def test_damage_before_the_tail_of_the_newest_file_is_refused(loop, tmp_path) -> None:
    write_log(loop, str(tmp_path), range(1, 5))
    path = tmp_path / "binlog.1"
    data = bytearray(path.read_bytes())
    data[HEADER_SIZE + 30] ^= 0xFF  # inside the first record; three more follow it
    path.write_bytes(bytes(data))
    with pytest.raises(BinlogCorrupt, match=f"offset {HEADER_SIZE}"):
        recover(loop, str(tmp_path))


def test_damaged_header_of_an_earlier_file_is_refused(loop, tmp_path) -> None:
    write_log(loop, str(tmp_path), range(1, 30), file_size=300)
    path = tmp_path / "binlog.2"
    path.write_bytes(b"JUNKJUNK" + path.read_bytes()[8:])
    with pytest.raises(BinlogCorrupt, match=r"binlog\.2: corrupt record at offset 0: .*magic"):
        recover(loop, str(tmp_path), file_size=300)


def test_newer_format_version_is_refused(loop, tmp_path) -> None:
    write_log(loop, str(tmp_path), range(1, 3))
    path = tmp_path / "binlog.1"
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 8, VERSION + 1)
    path.write_bytes(bytes(data))
    with pytest.raises(BinlogError, match=f"newer geanstalk.*version {VERSION + 1}"):
        recover(loop, str(tmp_path))
    assert path.read_bytes() == bytes(data)  # refused, not "repaired"


def test_second_open_of_the_same_directory_is_refused(loop, tmp_path) -> None:
    first = Binlog.open(str(tmp_path), None, 4096, loop)
    with pytest.raises(BinlogError, match="in use by another server"):
        Binlog.open(str(tmp_path), None, 4096, loop)
    loop.run_until_complete(first.close())
    again = Binlog.open(str(tmp_path), None, 4096, loop)  # the lock went with close()
    loop.run_until_complete(again.close())


def test_missing_directory_is_refused(loop, tmp_path) -> None:
    with pytest.raises(BinlogError, match="does not exist"):
        Binlog.open(str(tmp_path / "nope"), None, 4096, loop)
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(BinlogError, match="is not a directory"):
        Binlog.open(str(tmp_path / "file"), None, 4096, loop)


READ_ONLY_CHILD = """
import asyncio, os, sys
from geanstalk.binlog import Binlog
from geanstalk.errors import BinlogError
loop = asyncio.new_event_loop()
if os.geteuid() == 0:
    os.setgid(65534); os.setuid(65534)  # root writes anywhere: become nobody
try:
    Binlog.open(sys.argv[1], None, 4096, loop)
except BinlogError as exc:
    print(exc)
    sys.exit(3)
"""


def test_read_only_directory_is_refused() -> None:
    # pytest's tmp_path is private to its owner; the child may run as nobody
    parent = tempfile.mkdtemp(prefix="binlog-ro-")
    os.chmod(parent, 0o755)
    directory = os.path.join(parent, "ro")
    os.mkdir(directory, 0o555)
    os.chmod(directory, 0o555)
    try:
        child = subprocess.run(
            [sys.executable, "-c", READ_ONLY_CHILD, directory],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        )
    finally:
        os.chmod(directory, 0o755)
        shutil.rmtree(parent)
    assert child.returncode == 3, child.stderr
    assert "not readable and writable" in child.stdout
