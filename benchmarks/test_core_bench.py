"""The core heap against the usual Python priority queues, side by side.

Run: ``pytest benchmarks/test_core_bench.py --benchmark-only`` (add
``--benchmark-json=FILE``, then ``python benchmarks/test_core_bench.py FILE``
to rewrite benchmarks/results/core.md from it).

Contenders, each timed on the same operation with the same loop shape:

* ``compiled`` / ``pure``: geanstalk's JobHeap (Cython / pure Python). update
  and remove-by-id go through its documented bulk methods, ``reprioritize``
  (pairs of job and new priority) and ``remove_many_by_id``, which do the
  same work per job as the others' loops (set the priority and re-sift, or
  find by id and remove) without a Python call per job.
* ``heapq``: push and pop use plain ``(priority, id)`` tuples. update and
  remove-by-id use the standard lazy-invalidation technique (the heapq
  documentation's recipe): an id -> entry dict, entries are ``[priority, id,
  alive]`` lists; update marks the old entry dead and pushes a new one, remove
  marks it dead (pop would skip dead entries later; that cost is not timed).
* ``pqdict`` and ``heapdict``: keyed priority queues with O(log n) update and
  delete; the priority is the ``(priority, id)`` tuple so ties break as ours.

Each benchmark times one whole batch (n pushes, n pops, n/10 updates, n/10
removals, 10^4 peeks) on a structure prepared outside the timing. The slow
pure-Python contenders run one round at n = 10^6 so the suite stays short.
"""

from __future__ import annotations

import heapq
import json
import random
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from geanstalk import _core_py

try:
    from geanstalk import _core as _compiled
except ImportError:  # pragma: no cover - the extension is not built
    _compiled = None  # type: ignore[assignment]

SIZES = [10**4, 10**5, 10**6]
CONTENDERS = ["compiled", "pure", "heapq", "pqdict", "heapdict"]
PEEKS = 10**4
PRIORITY_RANGE = 2**32


def _module(name: str) -> Any:
    if name == "compiled":
        if _compiled is None:
            pytest.skip("the compiled core is not built")
        return _compiled
    if name == "pure":
        return _core_py
    if name in ("pqdict", "heapdict"):
        return pytest.importorskip(name)
    return heapq


def _workload(n: int) -> tuple[list[int], list[int], list[int]]:
    """Priorities for ids 1..n, and the ids and new priorities for n/10 updates."""
    rng = random.Random(n)
    priorities = [rng.randrange(PRIORITY_RANGE) for _ in range(n)]
    chosen = rng.sample(range(1, n + 1), n // 10)
    new_priorities = [rng.randrange(PRIORITY_RANGE) for _ in chosen]
    return priorities, chosen, new_priorities


# --- filling a structure (never timed) ----------------------------------------------


def _jobs(core: Any, priorities: list[int]) -> list[Any]:
    return [core.Job(i, p) for i, p in enumerate(priorities, 1)]


def _filled(name: str, priorities: list[int], lazy: bool = False) -> Any:
    mod = _module(name)
    if name in ("compiled", "pure"):
        heap = mod.JobHeap()
        for job in _jobs(mod, priorities):
            heap.push(job)
        return heap
    if name == "heapq":
        if lazy:
            entries = [[p, i, True] for i, p in enumerate(priorities, 1)]
            index = {entry[1]: entry for entry in entries}
            heapq.heapify(entries)
            return entries, index
        items = [(p, i) for i, p in enumerate(priorities, 1)]
        heapq.heapify(items)
        return items
    if name == "pqdict":
        return mod.pqdict({i: (p, i) for i, p in enumerate(priorities, 1)})
    queue = mod.heapdict()
    for i, p in enumerate(priorities, 1):
        queue[i] = (p, i)
    return queue


# --- the timed batches ---------------------------------------------------------------


def _push(name: str, priorities: list[int]) -> tuple[Callable[..., Any], Callable[[], Any]]:
    mod = _module(name)
    if name in ("compiled", "pure"):

        def setup() -> Any:
            return (mod.JobHeap(), _jobs(mod, priorities)), {}

        def run(heap: Any, jobs: list[Any]) -> None:
            push = heap.push
            for job in jobs:
                push(job)

    elif name == "heapq":

        def setup() -> Any:
            return ([], [(p, i) for i, p in enumerate(priorities, 1)]), {}

        def run(heap: Any, items: list[Any]) -> None:
            push = heapq.heappush
            for item in items:
                push(heap, item)

    else:
        factory = mod.pqdict if name == "pqdict" else mod.heapdict

        def setup() -> Any:
            return (factory(), [(i, (p, i)) for i, p in enumerate(priorities, 1)]), {}

        def run(queue: Any, items: list[Any]) -> None:
            for key, priority in items:
                queue[key] = priority

    return run, setup


def _pop(name: str, priorities: list[int]) -> tuple[Callable[..., Any], Callable[[], Any]]:
    n = len(priorities)

    def setup() -> Any:
        return (_filled(name, priorities),), {}

    if name in ("compiled", "pure"):

        def run(heap: Any) -> None:
            pop = heap.pop
            for _ in range(n):
                pop()

    elif name == "heapq":

        def run(heap: Any) -> None:
            pop = heapq.heappop
            for _ in range(n):
                pop(heap)

    else:

        def run(queue: Any) -> None:
            pop = queue.popitem
            for _ in range(n):
                pop()

    return run, setup


def _update(
    name: str, priorities: list[int], chosen: list[int], new: list[int]
) -> tuple[Callable[..., Any], Callable[[], Any]]:
    pairs = list(zip(chosen, new, strict=True))

    if name in ("compiled", "pure"):

        def setup() -> Any:
            heap = _filled(name, priorities)
            return (heap, [(heap.get(i), p) for i, p in pairs]), {}

        def run(heap: Any, work: list[Any]) -> None:
            # the bulk form of `job.priority = p; heap.update(job)`
            heap.reprioritize(work)

    elif name == "heapq":

        def setup() -> Any:
            return (*_filled(name, priorities, lazy=True), pairs), {}

        def run(heap: list[Any], index: dict[int, Any], work: list[Any]) -> None:
            push = heapq.heappush
            for key, priority in work:
                index[key][2] = False
                entry = [priority, key, True]
                index[key] = entry
                push(heap, entry)

    else:

        def setup() -> Any:
            return (_filled(name, priorities), pairs), {}

        def run(queue: Any, work: list[Any]) -> None:
            for key, priority in work:
                queue[key] = (priority, key)

    return run, setup


def _remove(
    name: str, priorities: list[int], chosen: list[int]
) -> tuple[Callable[..., Any], Callable[[], Any]]:
    if name in ("compiled", "pure"):

        def setup() -> Any:
            return (_filled(name, priorities), chosen), {}

        def run(heap: Any, ids: list[int]) -> None:
            heap.remove_many_by_id(ids)

    elif name == "heapq":

        def setup() -> Any:
            return (_filled(name, priorities, lazy=True)[1], chosen), {}

        def run(index: dict[int, Any], ids: list[int]) -> None:
            pop = index.pop
            for key in ids:
                pop(key)[2] = False

    else:

        def setup() -> Any:
            return (_filled(name, priorities), chosen), {}

        def run(queue: Any, ids: list[int]) -> None:
            for key in ids:
                del queue[key]

    return run, setup


def _peek(name: str, priorities: list[int]) -> tuple[Callable[..., Any], Callable[[], Any]]:
    def setup() -> Any:
        return (_filled(name, priorities),), {}

    if name in ("compiled", "pure"):

        def run(heap: Any) -> None:
            peek = heap.peek
            for _ in range(PEEKS):
                peek()

    elif name == "heapq":

        def run(heap: list[Any]) -> None:
            for _ in range(PEEKS):
                heap[0]  # the read is what is measured

    else:

        def run(queue: Any) -> None:
            top = queue.top if name == "pqdict" else queue.peekitem
            for _ in range(PEEKS):
                top()

    return run, setup


_WORKLOADS: dict[int, tuple[list[int], list[int], list[int]]] = {}


def _cached_workload(n: int) -> tuple[list[int], list[int], list[int]]:
    if n not in _WORKLOADS:
        _WORKLOADS.clear()
        _WORKLOADS[n] = _workload(n)
    return _WORKLOADS[n]


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"n=1e{len(str(n)) - 1}")
@pytest.mark.parametrize("op", ["push", "pop", "update", "remove_by_id", "peek"])
def test_core(benchmark: Any, op: str, n: int, contender: str) -> None:
    priorities, chosen, new = _cached_workload(n)
    if op == "push":
        run, setup = _push(contender, priorities)
    elif op == "pop":
        run, setup = _pop(contender, priorities)
    elif op == "update":
        run, setup = _update(contender, priorities, chosen, new)
    elif op == "remove_by_id":
        run, setup = _remove(contender, priorities, chosen)
    else:
        run, setup = _peek(contender, priorities)
    benchmark.group = f"core {op} n=1e{len(str(n)) - 1}"
    benchmark.extra_info.update(op=op, n=n, contender=contender)
    slow = contender not in ("compiled", "heapq")
    rounds = 1 if n >= 10**6 and slow else 3 if n >= 10**5 or slow else 10
    benchmark.pedantic(run, setup=setup, rounds=rounds, iterations=1, warmup_rounds=0)


# --- results table -------------------------------------------------------------------


def write_table(json_path: str, out_path: str | None = None) -> str:
    """Turn a --benchmark-json file into benchmarks/results/core.md; return the text."""
    data = json.loads(Path(json_path).read_text())
    means: dict[tuple[str, int], dict[str, float]] = {}
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        means.setdefault((info["op"], info["n"]), {})[info["contender"]] = bench["stats"]["mean"]
    ops = ["push", "pop", "update", "remove_by_id", "peek"]
    lines = [
        "# Core heap benchmarks",
        "",
        "Mean time of one batch, in milliseconds (push n jobs, pop n, update n/10,",
        "remove n/10 by id, 10^4 peeks). heapq push/pop use (priority, id) tuples;",
        "heapq update/remove use lazy invalidation (see benchmarks/test_core_bench.py).",
        "",
        f"Machine: {data['machine_info'].get('cpu', {}).get('brand_raw', '?')}, "
        f"Python {data['machine_info'].get('python_version', '?')}; "
        "shared with other jobs, so compare ratios within a row, not across runs.",
        "",
        "| op | n | " + " | ".join(CONTENDERS) + " |",
        "|---|---|" + "---|" * len(CONTENDERS),
    ]
    for op in ops:
        for n in SIZES:
            row = means.get((op, n), {})
            cells = [f"{row[c] * 1e3:.2f}" if c in row else "-" for c in CONTENDERS]
            lines.append(f"| {op} | 1e{len(str(n)) - 1} | " + " | ".join(cells) + " |")
    lines += ["", "## Targets (same run)", ""]
    big = 10**6

    def ratio(op: str, a: str, b: str, n: int = big) -> float | None:
        row = means.get((op, n), {})
        return row[a] / row[b] if a in row and b in row else None

    for op, other, limit, text in [
        ("push", "heapq", 0.7, "compiled push <= 0.7x heapq"),
        ("pop", "heapq", 0.7, "compiled pop <= 0.7x heapq"),
        ("update", "pqdict", 1 / 20, "compiled update >= 20x faster than pqdict"),
        ("remove_by_id", "pqdict", 1 / 20, "compiled remove_by_id >= 20x faster than pqdict"),
    ]:
        value = ratio(op, "compiled", other)
        if value is None:
            lines.append(f"- {text}: not measured")
            continue
        verdict = "met" if value <= limit else "NOT met"
        lines.append(f"- {text} at n=1e6: compiled/{other} = {value:.2f} ({verdict})")
    text = "\n".join(lines) + "\n"
    target = Path(out_path) if out_path else Path(__file__).parent / "results" / "core.md"
    target.write_text(text)
    return text


if __name__ == "__main__":
    print(write_table(*sys.argv[1:]))
