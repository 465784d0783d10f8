"""Token auth on TLS listeners, over real sockets."""

from __future__ import annotations

import re
import socket
import ssl
from pathlib import Path

import pytest

from geanstalk.auth import AuthGate, TokenSet, parse_tokens
from tests.servers import recv_until
from tests.tls.conftest import tokens_file
from tests.tls.test_tls_listener import wait_closed

TOKEN = "k7Qy-2c9f0a1b"
OTHER = "second-token"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "SECURITY.md"


@pytest.fixture
def auth_server(tls_server, pki, tmp_path):  # type: ignore[no-untyped-def]
    path = tokens_file(tmp_path, f"# workers\n{TOKEN}\n\n  {OTHER}  \n# old: retired-one\n")
    return tls_server(
        "--tls-cert", pki.server_pem, "--tls-key", pki.server_pem, "--auth-tokens", path,
        "--auth-timeout", "1",
    )  # fmt: skip


def test_a_right_token_authenticates_and_the_rest_of_the_write_runs(auth_server, pki) -> None:
    with auth_server.tls(pki.client_context()) as s:
        s.sendall(f"auth {TOKEN}\r\nuse a\r\nput 0 0 10 2\r\nhi\r\n".encode())
        assert recv_until(s, 3) == b"AUTHENTICATED\r\nUSING a\r\nINSERTED 1\r\n"
        assert auth_server.tls_connections() == (1, 1)
        # auth is not a command of the authenticated connection.
        s.sendall(f"auth {TOKEN}\r\n".encode())
        assert recv_until(s) == b"UNKNOWN_COMMAND\r\n"
    with auth_server.tls(pki.client_context()) as s:
        s.sendall(f"auth {OTHER}\r\n".encode())
        assert recv_until(s) == b"AUTHENTICATED\r\n"
        s.sendall(b"list-tube-used\r\n")
        assert recv_until(s) == b"USING default\r\n"


@pytest.mark.parametrize(
    "first",
    [
        b"auth wrong\r\n",
        b"auth " + TOKEN.encode() + b"x\r\n",
        b"auth " + TOKEN[:-1].encode() + b"\r\n",
        b"auth  " + TOKEN.encode() + b"\r\n",
        b"auth retired-one\r\n",
        b"auth # workers\r\n",
        b"auth\r\n",
        b"AUTH " + TOKEN.encode() + b"\r\n",
        b"put 0 0 10 2\r\nhi\r\n",
        b"use x\r\nauth " + TOKEN.encode() + b"\r\n",
        b"stats\r\n",
        b"x" * 300,
    ],
)
def test_anything_but_a_right_auth_first_is_unauthorized_and_reaches_nothing(
    auth_server, pki, first
) -> None:
    with auth_server.tls(pki.client_context()) as s:
        s.sendall(first)
        assert wait_closed(s) == b"UNAUTHORIZED\r\n"
    stats = auth_server.stats()
    assert stats["total-jobs"] == "0" and stats["cmd-put"] == "0" and stats["cmd-use"] == "0"
    assert stats["current-tubes"] == "1" and stats["cmd-stats"] == str(auth_server.stats_calls)
    assert auth_server.tls_connections() == (0, 0)


def test_no_auth_in_time_closes_the_connection(auth_server, pki) -> None:
    with auth_server.tls(pki.client_context()) as s:
        s.sendall(b"au")  # a start, never finished
        assert wait_closed(s) == b""
    assert "no auth within 1 s" in auth_server.log()
    assert auth_server.tls_connections() == (0, 0)


def test_tokens_are_never_logged(auth_server, pki) -> None:
    for line in (f"auth {TOKEN}\r\n", "auth not-the-token-at-all\r\n"):
        with auth_server.tls(pki.client_context()) as s:
            s.sendall(line.encode())
            wait_closed(s, timeout=0.5) if "not" in line else recv_until(s)
    log = auth_server.log()
    assert "unauthorized" in log
    assert TOKEN not in log and "not-the-token-at-all" not in log and OTHER not in log


def test_auth_is_an_unknown_command_where_tokens_are_not_required(tls_server, pki) -> None:
    srv = tls_server("--tls-cert", pki.server_pem, "--tls-key", pki.server_pem)
    with srv.tls(pki.client_context()) as s:
        s.sendall(b"auth anything\r\n")
        assert recv_until(s) == b"UNKNOWN_COMMAND\r\n"


def test_auth_is_an_unknown_command_on_the_plain_listener(auth_server) -> None:
    with socket.create_connection(("127.0.0.1", auth_server.plain_port), timeout=10) as s:
        s.sendall(f"auth {TOKEN}\r\nlist-tube-used\r\n".encode())
        assert recv_until(s, 2) == b"UNKNOWN_COMMAND\r\nUSING default\r\n"


def test_a_token_file_others_can_read_draws_a_warning(tls_server, pki, tmp_path) -> None:
    loose = tokens_file(tmp_path, f"{TOKEN}\n", mode=0o644)
    srv = tls_server(
        "--tls-cert", pki.server_pem, "--tls-key", pki.server_pem, "--auth-tokens", loose
    )
    with srv.tls(pki.client_context()) as s:
        s.sendall(f"auth {TOKEN}\r\n".encode())
        assert recv_until(s) == b"AUTHENTICATED\r\n"
    assert "is readable by users other than its owner (mode 644)" in srv.log()


def test_a_token_file_with_no_token_stops_the_start(pki, tmp_path) -> None:
    from tests.tls.test_tls_listener import run_cli

    empty = tokens_file(tmp_path, "# nothing yet\n\n")
    done = run_cli(
        "--tls-listen", "127.0.0.1:0", "--tls-cert", pki.server_pem, "--tls-key", pki.server_pem,
        "--auth-tokens", empty,
    )  # fmt: skip
    assert done.returncode == 1 and "holds no token" in done.stderr


def test_token_file_format() -> None:
    text = b"# comment\n  a-token \n\nb\tc\n#not-a-token\r\nlast"
    assert parse_tokens(text) == [b"a-token", b"b\tc", b"last"]
    tokens = TokenSet(parse_tokens(text))
    assert tokens.accepts(b"a-token") and tokens.accepts(b"last")
    assert not tokens.accepts(b"a-toke") and not tokens.accepts(b"#not-a-token")
    assert "a-token" not in repr(tokens)


def test_the_gate_decides_on_the_first_line_however_it_is_split() -> None:
    stream = b"auth a-token\r\nstats\r\n"
    for cut in range(len(stream) + 1):
        gate = AuthGate(TokenSet([b"a-token"]))
        verdict, rest = gate.feed(stream[:cut])
        if verdict is None:
            verdict, rest = gate.feed(stream[cut:])
        else:
            rest += stream[cut:]  # after the verdict, input goes to the connection
        assert (verdict, rest) == (True, b"stats\r\n"), cut
    gate = AuthGate(TokenSet([b"a-token"]))
    assert gate.feed(b"x" * 223) == (None, b"")
    assert gate.feed(b"x") == (False, b"")


# --- the client snippets in docs/SECURITY.md, run exactly as written ------------------


def snippet(name: str) -> str:
    if not DOCS.exists():
        # The installed-package runs (.ci/test-installed) copy tests/ alone.
        pytest.skip("docs/SECURITY.md is not beside the tests (a run against an installed package)")
    text = DOCS.read_text()
    match = re.search(rf"<!-- snippet: {name} -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"docs/SECURITY.md has no snippet {name}"
    return match.group(1)


@pytest.mark.parametrize("mutual", [False, True])
def test_the_documented_greenstalk_lines_work(tls_server, pki, tmp_path, mutual) -> None:
    path = tokens_file(tmp_path, f"{TOKEN}\n")
    flags = ["--tls-client-ca", pki.ca_pem] if mutual else []
    srv = tls_server(
        "--tls-cert", pki.server_pem, "--tls-key", pki.server_pem, "--auth-tokens", path, *flags
    )
    ns = {
        "HOST": "127.0.0.1",
        "PORT": srv.tls_port,
        "CA_FILE": pki.ca_pem,
        "CLIENT_CERT": pki.client_pem if mutual else None,
        "TOKEN": TOKEN,
    }
    exec(snippet("greenstalk-auth"), ns)
    client = ns["client"]
    jid = client.put("from the docs")
    job = client.reserve(timeout=5)
    assert (job.id, job.body) == (jid, "from the docs")
    client.delete(job)
    client.close()


@pytest.mark.parametrize("mutual", [False, True])
def test_the_documented_pystalk_lines_work(tls_server, pki, tmp_path, mutual) -> None:
    path = tokens_file(tmp_path, f"{TOKEN}\n")
    flags = ["--tls-client-ca", pki.ca_pem] if mutual else []
    srv = tls_server(
        "--tls-cert", pki.server_pem, "--tls-key", pki.server_pem, "--auth-tokens", path, *flags
    )
    ns = {
        "HOST": "127.0.0.1",
        "PORT": srv.tls_port,
        "CA_FILE": pki.ca_pem,
        "CLIENT_CERT": pki.client_pem if mutual else None,
        "TOKEN": TOKEN,
    }
    exec(snippet("pystalk-auth"), ns)
    client = ns["client"]
    _, jid = client.put_job("from the docs")
    job = client.reserve_job(timeout=5)
    assert (job.job_id, job.job_data) == (jid, b"from the docs")
    client.delete_job(job.job_id)
    # pystalk reconnects by itself after a close: the subclass authenticates again.
    client.close()
    assert client.stats()["current-jobs-ready"] == 0
    client.close()


def test_a_wrong_token_in_the_documented_lines_fails_loudly(tls_server, pki, tmp_path) -> None:
    path = tokens_file(tmp_path, f"{TOKEN}\n")
    srv = tls_server(
        "--tls-cert", pki.server_pem, "--tls-key", pki.server_pem, "--auth-tokens", path
    )
    for name in ("greenstalk-auth", "pystalk-auth"):
        ns = {
            "HOST": "127.0.0.1",
            "PORT": srv.tls_port,
            "CA_FILE": pki.ca_pem,
            "CLIENT_CERT": None,
            "TOKEN": "wrong",
        }
        with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
            exec(snippet(name), ns)
            if name == "pystalk-auth":
                ns["client"].stats()
