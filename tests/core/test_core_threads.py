"""Several threads share one heap; afterwards it is intact and nothing is lost.

Each heap method is atomic, so concurrent push/pop/update/remove calls must
leave a valid heap and a consistent id index. Changing a job's key and then
calling update() is two steps, not one: a thread only changes the key of a
job while that job is outside the heap (here: a job it popped), so the test
exercises update() under contention without racing on a key another thread's
sift is reading.
"""

from __future__ import annotations

import random
import sys
import threading
from types import ModuleType

from heap_checks import check_heap

from geanstalk.errors import EmptyQueue, JobMissing

THREADS = 4
OPS_PER_THREAD = 3000


def test_threads_hammer_one_heap(impl: ModuleType) -> None:
    heap = impl.JobHeap()
    start = threading.Barrier(THREADS)
    pushed: list[list[int]] = [[] for _ in range(THREADS)]
    taken: list[list[int]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        rng = random.Random(n)
        mine: list = []  # jobs this thread pushed and may still be in the heap
        next_id = n * 1_000_000 + 1
        try:
            start.wait()
            for _ in range(OPS_PER_THREAD):
                op = rng.random()
                if op < 0.4 or not mine:
                    job = impl.Job(next_id, priority=rng.randrange(8))
                    next_id += 1
                    heap.push(job)
                    mine.append(job)
                    pushed[n].append(job.id)
                elif op < 0.6:
                    try:
                        job = heap.pop()
                    except EmptyQueue:
                        continue
                    taken[n].append(job.id)
                    if rng.random() < 0.5:  # put it back with a new key
                        job.priority = rng.randrange(8)
                        job.runnable_at = rng.choice([None, 1.0, 2.0])
                        heap.push(job)
                        taken[n].pop()
                elif op < 0.8:
                    job = rng.choice(mine)
                    try:
                        heap.update(job)
                    except JobMissing:
                        mine.remove(job)  # someone popped or removed it
                else:
                    job = mine.pop(rng.randrange(len(mine)))
                    try:
                        if rng.random() < 0.5:
                            heap.remove(job)
                        else:
                            heap.remove_by_id(job.id)
                    except JobMissing:
                        continue
                    taken[n].append(job.id)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        sys.setswitchinterval(old_interval)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []

    remaining = [job.id for job in check_heap(impl, heap)]
    all_pushed = [i for ids in pushed for i in ids]
    all_taken = [i for ids in taken for i in ids]
    assert len(set(all_taken)) == len(all_taken), "a job came out twice"
    assert sorted(all_taken + remaining) == sorted(all_pushed), "a job was lost or invented"
