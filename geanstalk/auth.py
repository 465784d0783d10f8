"""Token authentication for TLS listeners: the token file and the first-line gate.

The wire form is beanstalkd-rs's, so clients written for it work here: the
first command on the connection is ``auth <token>\\r\\n``; the server answers
``AUTHENTICATED\\r\\n`` and the connection goes on as any other, or
``UNAUTHORIZED\\r\\n`` and closes it. Nothing before a right token reaches
the server's state: the gate below decides on bytes alone, and only then
does tls.py build the connection.

Tokens are kept as SHA-256 digests and every digest is compared with
hmac.compare_digest, all of them every time, so neither which token
matched nor how much of one matched shows in the answer's timing; hashing
first also hides the tokens' lengths. Tokens never reach a log line or a
repr.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
from collections.abc import Iterable

log = logging.getLogger("geanstalk")

AUTHENTICATED = b"AUTHENTICATED\r\n"
UNAUTHORIZED = b"UNAUTHORIZED\r\n"
# The gate reads the first line in the same 224-byte window as every command
# line (protocol.LINE_MAX): a token may be up to 217 bytes.
AUTH_LINE_MAX = 224
AUTH_PREFIX = b"auth "
DEFAULT_AUTH_TIMEOUT = 10.0


class AuthConfigError(Exception):
    """The token file cannot be used (the message says why)."""


class TokenSet:
    """The accepted tokens, held as digests and compared in constant time."""

    __slots__ = ("_digests",)

    def __init__(self, tokens: Iterable[bytes]) -> None:
        self._digests = tuple(hashlib.sha256(t).digest() for t in tokens)

    def __len__(self) -> int:
        return len(self._digests)

    def __repr__(self) -> str:
        return f"<TokenSet of {len(self._digests)} tokens>"

    def accepts(self, token: bytes) -> bool:
        digest = hashlib.sha256(token).digest()
        ok = False
        for known in self._digests:
            # No short cut: every token is compared, whatever matched before.
            ok |= hmac.compare_digest(digest, known)
        return ok


def parse_tokens(text: bytes) -> list[bytes]:
    """One token per line; blank lines and lines starting with # are skipped.

    Surrounding whitespace is not part of a token (an editor's trailing
    space must not lock a client out).
    """
    tokens = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(b"#"):
            tokens.append(line)
    return tokens


def load_tokens(path: str) -> TokenSet:
    """Read the token file; warn when other users can read it."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            text = f.read()
    except OSError as exc:
        raise AuthConfigError(f"cannot read token file {path}: {exc.strerror}") from exc
    if st.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning(
            "token file %s is readable by users other than its owner (mode %o); chmod 600 it",
            path,
            stat.S_IMODE(st.st_mode),
        )
    tokens = parse_tokens(text)
    if not tokens:
        raise AuthConfigError(f"token file {path} holds no token")
    for token in tokens:
        if len(AUTH_PREFIX) + len(token) + 2 > AUTH_LINE_MAX:
            raise AuthConfigError(
                f"token file {path}: a token is longer than "
                f"{AUTH_LINE_MAX - len(AUTH_PREFIX) - 2} bytes"
            )
    return TokenSet(tokens)


class AuthGate:
    """The first line of a connection, decided on bytes alone (sans-IO).

    ``feed(data)`` returns ``(None, b"")`` while the line is incomplete,
    ``(True, rest)`` for ``auth <right token>`` (rest: what followed the
    line, to be run as commands), ``(False, b"")`` for anything else. After
    a verdict the gate takes no more input.
    """

    __slots__ = ("_buf", "_tokens", "verdict")

    def __init__(self, tokens: TokenSet) -> None:
        self._tokens = tokens
        self._buf = b""
        self.verdict: bool | None = None

    def feed(self, data: bytes) -> tuple[bool | None, bytes]:
        if self.verdict is not None:
            raise RuntimeError("the gate has decided already")
        buf = self._buf + data if self._buf else data
        end = buf.find(b"\r\n", 0, AUTH_LINE_MAX)
        if end < 0:
            if len(buf) >= AUTH_LINE_MAX:
                self._buf = b""
                self.verdict = False
                return False, b""
            self._buf = buf
            return None, b""
        self._buf = b""
        line = buf[:end]
        ok = line.startswith(AUTH_PREFIX) and self._tokens.accepts(line[len(AUTH_PREFIX) :])
        self.verdict = ok
        return (True, buf[end + 2 :]) if ok else (False, b"")
