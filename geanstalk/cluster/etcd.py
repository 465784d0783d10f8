"""A small asyncio client for etcd v3, over its JSON gateway (``/v3/...``).

Why not a gRPC client: the maintained asyncio one brings grpcio and protobuf
(large binary wheels, version pins that fight other packages), while the
gateway is part of every etcd since 3.4 and needs only an HTTP client that
never blocks the loop (aiohttp). The cluster uses a dozen calls; they are
all here, and docs/CLUSTER.md says why in more words.

Keys and values are bytes here and base64 on the wire; 64-bit numbers travel
as JSON strings and fields equal to zero are left out, as proto3 JSON does.

Failures: a request that could not be sent (connection refused) moves on to
the next endpoint at once, as nothing reached etcd. Anything else (a timeout,
a broken connection, an error answer) raises EtcdError and makes the next
request start at the next endpoint; whether to retry is the caller's call,
because a write that timed out may still have been applied.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import aiohttp

_b64 = base64.b64encode
_a2b = binascii.a2b_base64

# gRPC status codes etcd answers with (through the gateway's "code").
CODE_UNAVAILABLE = 14
CODE_DEADLINE = 4
CODE_NOT_FOUND = 5
CODE_OUT_OF_RANGE = 11


class EtcdError(Exception):
    """etcd refused or did not answer; ``code`` is the gRPC status code, if any."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class EtcdUnavailable(EtcdError):
    """No endpoint could be reached, or the one reached has no quorum or timed out."""


class Compacted(EtcdError):
    """A watch or read asked for a revision that compaction has removed."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"revision compacted (oldest kept: {compact_revision})", CODE_OUT_OF_RANGE)
        self.compact_revision = compact_revision


def _enc(data: bytes) -> str:
    return _b64(data).decode("ascii")


def prefix_end(prefix: bytes) -> bytes:
    """The range end that makes [prefix, end) every key starting with prefix."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"  # every key


class KeyValue(NamedTuple):
    """One key as etcd stores it (a tuple: a standby makes one per change it follows)."""

    key: bytes
    value: bytes = b""
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    lease: int = 0

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> KeyValue:
        get = d.get
        return cls(
            _a2b(get("key", "")),
            _a2b(get("value", "")),
            int(get("create_revision", 0)),
            int(get("mod_revision", 0)),
            int(get("version", 0)),
            int(get("lease", 0)),
        )


class Event(NamedTuple):
    """One change seen by a watch: ``deleted`` is False for a put."""

    deleted: bool
    kv: KeyValue


@dataclass(slots=True)
class WatchBatch:
    """The events of one watch message (whole revisions, in order)."""

    revision: int  # the store's revision when the message was sent
    events: list[Event] = field(default_factory=list)


@dataclass(slots=True)
class RangeResult:
    kvs: list[KeyValue]
    revision: int  # the revision the read was served at
    more: bool = False
    count: int = 0


@dataclass(slots=True)
class TxnResult:
    succeeded: bool
    revision: int
    # Per operation of the branch taken: a range's key-values, [] otherwise.
    responses: list[list[KeyValue]]


# --- transaction building blocks (plain dicts, as the gateway takes them) -----------


def compare_create(key: bytes, revision: int, result: str = "EQUAL") -> dict[str, Any]:
    """The key's create_revision compared with revision (0: the key does not exist)."""
    return {"key": _enc(key), "target": "CREATE", "result": result, "create_revision": revision}


def compare_mod(key: bytes, revision: int, result: str = "EQUAL") -> dict[str, Any]:
    return {"key": _enc(key), "target": "MOD", "result": result, "mod_revision": revision}


def compare_value(key: bytes, value: bytes, result: str = "EQUAL") -> dict[str, Any]:
    return {"key": _enc(key), "target": "VALUE", "result": result, "value": _enc(value)}


def op_put(key: bytes, value: bytes, lease: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = {"key": _enc(key), "value": _enc(value)}
    if lease:
        body["lease"] = lease
    return {"request_put": body}


def op_delete(key: bytes, prefix: bool = False) -> dict[str, Any]:
    body = {"key": _enc(key)}
    if prefix:
        body["range_end"] = _enc(prefix_end(key))
    return {"request_delete_range": body}


def op_get(key: bytes, prefix: bool = False) -> dict[str, Any]:
    body = {"key": _enc(key)}
    if prefix:
        body["range_end"] = _enc(prefix_end(key))
    return {"request_range": body}


def _revision(reply: dict[str, Any]) -> int:
    return int(reply.get("header", {}).get("revision", 0))


class EtcdClient:
    """Requests to a list of etcd endpoints (``http://host:port``), one at a time each."""

    def __init__(
        self,
        endpoints: str | Sequence[str],
        timeout: float = 5.0,
        connections: int = 32,
    ) -> None:
        if isinstance(endpoints, str):
            endpoints = [e for e in endpoints.split(",") if e.strip()]
        self.endpoints = [e.strip().rstrip("/") for e in endpoints]
        if not self.endpoints:
            raise ValueError("no etcd endpoint given")
        for e in self.endpoints:
            if not e.startswith(("http://", "https://")):
                raise ValueError(f"etcd endpoint must be http://HOST:PORT, got {e!r}")
        self.timeout = timeout
        self._connections = connections
        self._current = 0
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connections, force_close=False)
            self._session = aiohttp.ClientSession(
                connector=connector,
                json_serialize=json.dumps,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> EtcdClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _rotate(self, index: int) -> None:
        if self._current == index:
            self._current = (index + 1) % len(self.endpoints)

    async def request(self, path: str, body: dict[str, Any], timeout: float | None = None) -> Any:
        """POST body to /v3/path on the current endpoint; its JSON answer."""
        limit = self.timeout if timeout is None else timeout
        data = json.dumps(body, separators=(",", ":"))
        session = self._http()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        last: Exception | None = None
        for attempt in range(len(self.endpoints)):
            index = (self._current + attempt) % len(self.endpoints)
            left = deadline - loop.time()
            if left <= 0:
                break
            url = f"{self.endpoints[index]}/v3/{path}"
            try:
                async with session.post(
                    url,
                    data=data,
                    headers={"Content-Type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=left),
                ) as resp:
                    raw = await resp.read()
                    status = resp.status
            except aiohttp.ClientConnectorError as exc:
                # Not connected: nothing was sent, the next endpoint may answer.
                last = exc
                self._rotate(index)
                continue
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                self._rotate(index)
                raise EtcdUnavailable(f"etcd {self.endpoints[index]}: {exc!r}") from exc
            try:
                reply = json.loads(raw) if raw else {}
            except ValueError as exc:
                self._rotate(index)
                raise EtcdError(f"etcd {url}: not JSON: {raw[:200]!r}") from exc
            if status != 200 or "error" in reply:
                self._rotate(index)
                raise _error(reply, status, url)
            self._current = index
            return reply
        raise EtcdUnavailable(f"no etcd endpoint answered ({last!r})")

    # --- keys ---------------------------------------------------------------------

    async def range(
        self,
        key: bytes,
        range_end: bytes | None = None,
        *,
        prefix: bool = False,
        revision: int = 0,
        limit: int = 0,
        count_only: bool = False,
        keys_only: bool = False,
        serializable: bool = False,
    ) -> RangeResult:
        body: dict[str, Any] = {"key": _enc(key)}
        if prefix:
            range_end = prefix_end(key)
        if range_end is not None:
            body["range_end"] = _enc(range_end)
        if revision:
            body["revision"] = revision
        if limit:
            body["limit"] = limit
        if count_only:
            body["count_only"] = True
        if keys_only:
            body["keys_only"] = True
        if serializable:
            body["serializable"] = True
        reply = await self.request("kv/range", body)
        return RangeResult(
            [KeyValue.from_json(kv) for kv in reply.get("kvs", ())],
            _revision(reply),
            bool(reply.get("more", False)),
            int(reply.get("count", 0)),
        )

    async def get(self, key: bytes) -> KeyValue | None:
        found = await self.range(key)
        return found.kvs[0] if found.kvs else None

    async def get_prefix(
        self, prefix: bytes, page: int = 1000, revision: int = 0
    ) -> tuple[list[KeyValue], int]:
        """Every key under prefix as of one revision (read in pages); and that revision."""
        out: list[KeyValue] = []
        async for kvs, rev in self.pages(prefix, page, revision):
            out.extend(kvs)
            revision = rev
        return out, revision

    async def pages(
        self, prefix: bytes, page: int = 1000, revision: int = 0
    ) -> AsyncIterator[tuple[list[KeyValue], int]]:
        """The keys under prefix in pages, all read at the revision of the first page."""
        end = prefix_end(prefix)
        start = prefix
        while True:
            found = await self.range(start, end, revision=revision, limit=page)
            revision = revision or found.revision
            yield found.kvs, revision
            if not found.more or not found.kvs:
                return
            start = found.kvs[-1].key + b"\0"

    async def put(self, key: bytes, value: bytes, lease: int = 0) -> int:
        body: dict[str, Any] = {"key": _enc(key), "value": _enc(value)}
        if lease:
            body["lease"] = lease
        return _revision(await self.request("kv/put", body))

    async def delete(self, key: bytes, *, prefix: bool = False) -> tuple[int, int]:
        """How many keys went, and the revision after."""
        body = {"key": _enc(key)}
        if prefix:
            body["range_end"] = _enc(prefix_end(key))
        reply = await self.request("kv/deleterange", body)
        return int(reply.get("deleted", 0)), _revision(reply)

    async def txn(
        self,
        compare: Iterable[dict[str, Any]],
        success: Iterable[dict[str, Any]] = (),
        failure: Iterable[dict[str, Any]] = (),
        timeout: float | None = None,
    ) -> TxnResult:
        body = {"compare": list(compare), "success": list(success), "failure": list(failure)}
        reply = await self.request("kv/txn", body, timeout)
        responses = []
        for r in reply.get("responses", ()):
            rng = r.get("response_range")
            responses.append(
                [KeyValue.from_json(kv) for kv in rng.get("kvs", ())] if rng is not None else []
            )
        return TxnResult(bool(reply.get("succeeded", False)), _revision(reply), responses)

    # --- leases -------------------------------------------------------------------

    async def lease_grant(self, ttl: int, timeout: float | None = None) -> tuple[int, int]:
        """A new lease: its id and the TTL etcd granted."""
        reply = await self.request("lease/grant", {"TTL": ttl}, timeout)
        if reply.get("error"):
            raise EtcdError(str(reply["error"]))
        return int(reply["ID"]), int(reply.get("TTL", 0))

    async def lease_keepalive(self, lease: int, timeout: float | None = None) -> int:
        """Renew once; the TTL from now, or 0 when the lease no longer exists."""
        reply = await self.request("lease/keepalive", {"ID": lease}, timeout)
        result = reply.get("result", reply)
        return int(result.get("TTL", 0))

    async def lease_revoke(self, lease: int, timeout: float | None = None) -> None:
        try:
            await self.request("lease/revoke", {"ID": lease}, timeout)
        except EtcdError as exc:
            if "not found" not in str(exc):
                raise

    # --- maintenance --------------------------------------------------------------

    async def status(self, endpoint: str | None = None) -> dict[str, Any]:
        """The endpoint's status (version, dbSize, leader, raft index, ...), ints as ints."""
        if endpoint is not None:
            one = EtcdClient([endpoint], self.timeout, 2)
            try:
                reply = await one.request("maintenance/status", {})
            finally:
                await one.close()
        else:
            reply = await self.request("maintenance/status", {})
        out: dict[str, Any] = {"revision": _revision(reply)}
        for k, v in reply.items():
            if k != "header":
                out[k] = int(v) if isinstance(v, str) and v.isdigit() else v
        return out

    async def compact(self, revision: int, physical: bool = False) -> None:
        """Drop history before revision; an older or equal compaction is no error."""
        body: dict[str, Any] = {"revision": revision}
        if physical:
            body["physical"] = True
        try:
            await self.request("kv/compaction", body, timeout=max(self.timeout, 10.0))
        except EtcdError as exc:
            if "compacted" not in str(exc):
                raise

    # --- watching -----------------------------------------------------------------

    async def watch(
        self,
        key: bytes,
        *,
        prefix: bool = False,
        start_revision: int = 0,
        progress_notify: bool = False,
        idle_timeout: float | None = None,
    ) -> AsyncIterator[WatchBatch]:
        """The changes to key (or every key under it) from start_revision on, in order.

        Runs until the caller stops iterating (or cancels); raises Compacted if
        start_revision is gone, EtcdUnavailable if the stream breaks or, with
        idle_timeout, stays silent that long (a hung member keeps its socket
        open), so the caller re-watches from the revision after the last one
        it saw.
        """
        create: dict[str, Any] = {"key": _enc(key)}
        if prefix:
            create["range_end"] = _enc(prefix_end(key))
        if start_revision:
            create["start_revision"] = start_revision
        if progress_notify:
            create["progress_notify"] = True
        body = json.dumps({"create_request": create})
        session = self._http()
        index = self._current
        url = f"{self.endpoints[index]}/v3/watch"
        try:
            resp = await session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.timeout, sock_read=idle_timeout
                ),
            )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            self._rotate(index)
            raise EtcdUnavailable(f"etcd watch {url}: {exc!r}") from exc
        try:
            if resp.status != 200:
                raw = await resp.read()
                self._rotate(index)
                raise _error(_loads(raw), resp.status, url)
            buf = b""
            while True:
                try:
                    chunk = await resp.content.readany()
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                    self._rotate(index)
                    raise EtcdUnavailable(f"etcd watch {url}: {exc!r}") from exc
                if not chunk:
                    self._rotate(index)
                    raise EtcdUnavailable(f"etcd watch {url}: stream ended")
                buf += chunk
                while True:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        break
                    line, buf = buf[:nl], buf[nl + 1 :]
                    if not line.strip():
                        continue
                    batch = _watch_message(_loads(line), url)
                    if batch is not None:
                        yield batch
        finally:
            resp.close()


def _loads(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {"error": raw[:200].decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"error": repr(value)[:200]}


def _watch_message(msg: dict[str, Any], url: str) -> WatchBatch | None:
    if "error" in msg:
        err = msg["error"]
        if isinstance(err, dict):
            raise EtcdUnavailable(f"etcd watch {url}: {err.get('message', err)}")
        raise EtcdUnavailable(f"etcd watch {url}: {err}")
    result = msg.get("result", {})
    compact = int(result.get("compact_revision", 0))
    if compact:
        raise Compacted(compact)
    if result.get("canceled"):
        raise EtcdError(f"etcd watch canceled: {result.get('cancel_reason', '')}")
    events = [
        Event(e.get("type") == "DELETE", KeyValue.from_json(e.get("kv", {})))
        for e in result.get("events", ())
    ]
    revision = _revision(result)
    if not events and result.get("created"):
        return WatchBatch(revision, [])
    return WatchBatch(revision, events)


def _error(reply: dict[str, Any], status: int, url: str) -> EtcdError:
    message = str(reply.get("message") or reply.get("error") or f"HTTP {status}")
    code = int(reply.get("code", 0) or 0)
    text = f"etcd {url}: {message}"
    if "required revision has been compacted" in message:
        return EtcdError(text, CODE_OUT_OF_RANGE)
    if code in (CODE_UNAVAILABLE, CODE_DEADLINE) or status in (502, 503, 504):
        return EtcdUnavailable(text, code)
    return EtcdError(text, code)
