"""Replay every checked-in fuzz input through its target (no atheris needed).

tests/fuzz/corpus/TARGET/ holds the inputs the coverage-guided runs found
interesting (minimised with libFuzzer's -merge=1) plus every input that
once crashed a target: each one is a regression test here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz import targets

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def corpus_files() -> list[tuple[str, str]]:
    found = []
    for name in sorted(targets.TARGETS):
        directory = os.path.join(CORPUS, name)
        for entry in sorted(os.listdir(directory)):
            found.append((name, os.path.join(directory, entry)))
    return found


@pytest.fixture(scope="module", autouse=True)
def _scratch() -> Iterator[None]:
    yield
    targets.remove_scratch()


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_every_target_has_a_corpus(name: str) -> None:
    assert len(os.listdir(os.path.join(CORPUS, name))) >= 5


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_corpus_replays_clean(name: str) -> None:
    """One test per target (not per file): thousands of tiny tests would
    cost more in pytest's bookkeeping than in the targets themselves."""
    target = targets.TARGETS[name]
    directory = os.path.join(CORPUS, name)
    for entry in sorted(os.listdir(directory)):
        with open(os.path.join(directory, entry), "rb") as f:
            data = f.read()
        try:
            target(data)
        except Exception as exc:
            raise AssertionError(f"corpus/{name}/{entry} fails: {exc!r}") from exc


def test_framing_target_catches_a_split_dependent_parser(monkeypatch) -> None:
    """A target that cannot fail is no test: plant a bug, see it caught."""
    from geanstalk.protocol import Connection

    real = Connection.data_received

    def lossy(self, data: bytes) -> None:
        real(self, data[:-1] if len(data) > 1 else data)  # loses a byte per read

    stream = b"put 0 0 60 3\r\nabc\r\nreserve\r\n"
    targets.framing(b"\x01\x05\x00" + stream)
    monkeypatch.setattr(Connection, "data_received", lossy)
    with pytest.raises(AssertionError):
        targets.framing(b"\x01\x05\x00" + stream)


def test_tls_auth_target_catches_a_lax_token_check(monkeypatch) -> None:
    from geanstalk.auth import TokenSet

    data = b"\x00auth s3cret-tokenX\r\n"
    targets.tls_auth(data)
    monkeypatch.setattr(TokenSet, "accepts", lambda self, token: token.startswith(b"s3cret"))
    with pytest.raises(AssertionError):
        targets.tls_auth(data)


def test_binlog_target_catches_an_exception_other_than_binlog_error(monkeypatch) -> None:
    from geanstalk import binlog_format

    good = os.path.join(CORPUS, "binlog")
    inputs = [Path(good, e).read_bytes() for e in sorted(os.listdir(good))]

    def broken(state: int) -> None:
        raise IndexError(state)

    monkeypatch.setattr(binlog_format, "_check_state", broken)
    failures = 0
    for data in inputs:
        try:
            targets.binlog(data)
        except IndexError:
            failures += 1
    assert failures
