"""contrib/systemd/: the units are valid for systemd, and the service's
ExecStart, expanded from Debian's beanstalkd variables as systemd expands
it, runs the server under socket activation with the names the socket
units give, reaching READY=1."""

from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from ophelp import get, say
from test_systemd import Manager, listening

from geanstalk.systemd import HTTP_NAME
from tests.servers import free_port

UNITS = Path(__file__).resolve().parents[2] / "contrib" / "systemd"


def unit(name: str) -> dict[str, list[str]]:
    """Key -> values (in order) of a unit file, sections flattened."""
    out: dict[str, list[str]] = {}
    for raw in (UNITS / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def expand(command: str, env: dict[str, str]) -> list[str]:
    """systemd's ExecStart rules: ${VAR} is one word, $VAR splits on spaces."""
    words: list[str] = []
    for word in shlex.split(command):
        if word.startswith("${") and word.endswith("}"):
            words.append(env.get(word[2:-1], ""))
        elif word.startswith("$"):
            words += env.get(word[1:], "").split()
        else:
            words.append(word)
    return words


def env_file(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            out[k.strip()] = v.strip().strip('"')
    return out


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    for name in ("geanstalk.service", "geanstalk.socket", "geanstalk-http.socket"):
        text = (
            (UNITS / name)
            .read_text()
            .replace("/usr/local/bin/geanstalk", shutil.which("true") or "/bin/true")
        )
        (tmp_path / name).write_text(text)
    names = [
        str(tmp_path / n)
        for n in ("geanstalk.service", "geanstalk.socket", "geanstalk-http.socket")
    ]
    r = subprocess.run([analyze, "verify", "--man=no", *names], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_service_is_hardened_and_notifies() -> None:
    svc = unit("geanstalk.service")
    assert svc["Type"] == ["notify"]
    assert svc["StateDirectory"] == ["geanstalk"]
    for key in ("ProtectSystem", "NoNewPrivileges", "LimitNOFILE", "DynamicUser", "User"):
        assert key in svc, key
    assert svc["EnvironmentFile"][0] == "-/etc/default/beanstalkd"
    assert unit("geanstalk.socket")["FileDescriptorName"] == ["beanstalk"]
    assert unit("geanstalk-http.socket")["FileDescriptorName"] == [HTTP_NAME]


def test_execstart_with_debian_variables_under_socket_activation(tmp_path: Path) -> None:
    svc = unit("geanstalk.service")
    env: dict[str, str] = {}
    for assignment in svc["Environment"]:
        env.update(env_file("\n".join(shlex.split(assignment))))
    # /etc/default/beanstalkd as Debian ships it, with persistence turned on.
    ignored = free_port()
    binlog = tmp_path / "binlog"
    binlog.mkdir()
    env.update(
        env_file(
            f"BEANSTALKD_LISTEN_ADDR=127.0.0.1\nBEANSTALKD_LISTEN_PORT={ignored}\n"
            f'BEANSTALKD_EXTRA="-b {binlog}"\n'
        )
    )
    argv = expand(svc["ExecStart"][0], env)
    assert argv[:2] == ["/usr/local/bin/geanstalk", "serve"]
    assert argv[2:6] == ["-l", "127.0.0.1", "-p", str(ignored)]
    bs, hs = listening(), listening()
    bport, hport = bs.getsockname()[1], hs.getsockname()[1]
    names = ":".join(
        unit(n)["FileDescriptorName"][0] for n in ("geanstalk.socket", "geanstalk-http.socket")
    )
    m = Manager(tmp_path, [bs, hs], {"LISTEN_FDNAMES": names}, *argv[2:])
    try:
        m.wait_for("READY=1")
        with socket.create_connection(("127.0.0.1", bport), timeout=10) as c:
            assert say(c, b"put 0 0 60 2\r\nhi\r\n") == b"INSERTED 1\r\n"
        assert get(hport, "/readyz")[0] == 200
        assert any(binlog.iterdir())
        assert "ignoring -l 127.0.0.1 -p" in m.stderr()
    finally:
        assert m.stop() == 0
