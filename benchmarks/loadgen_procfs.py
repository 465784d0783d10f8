"""What a server process costs, read from /proc without psutil.

CPU and memory are summed over the server's whole process tree: a server that
moved work into a helper process or thread must not look cheaper for it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Sequence

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """Direct children of pid (from /proc/*/stat, which every Linux has)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(name))
    return found


def process_tree(pid: int) -> list[int]:
    tree = [pid]
    i = 0
    while i < len(tree):
        tree.extend(_children(tree[i]))
        i += 1
    return tree


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of pid and its descendants (10 ms resolution)."""
    user = system = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        user += int(fields[11])  # utime (field 14)
        system += int(fields[12])  # stime (field 15)
    return user / CLOCK_TICKS, system / CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of pid and its descendants."""
    return sum(cpu_split(pid))


def rss_bytes(pid: int) -> int:
    """VmRSS of pid and its descendants."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


def time_to_first_connection(
    argv: Sequence[str], port: int, timeout: float = 10.0
) -> tuple[float, float, subprocess.Popen[bytes]]:
    """Seconds from exec to the first accepted connection, and to the first reply.

    The connection counts as accepted when connect() succeeds (the listening
    socket exists); the first reply (to `list-tube-used`) shows the server's
    loop is actually serving. Returns the still-running process.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(
        list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = start + timeout
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv[0]} exited with {proc.returncode}") from None
            if time.perf_counter() > deadline:
                proc.kill()
                proc.wait()
                raise TimeoutError(f"nothing listening on port {port} after {timeout}s") from None
            time.sleep(0.0005)
    connected = time.perf_counter()
    with sock:
        sock.sendall(b"list-tube-used\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(256)
            if not chunk:
                break
            reply += chunk
    replied = time.perf_counter()
    if not reply.startswith(b"USING "):
        raise RuntimeError(f"unexpected first reply {reply!r}")
    return connected - start, replied - start, proc
