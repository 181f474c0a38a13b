"""The ceiling the throughput benchmarks compare a Ray pipeline with: the same per-file work in bare processes (no
Ray, no scheduler), started and warmed before the clock starts, each taking its share of the files."""

from __future__ import annotations

import multiprocessing
import time


def timed_processes(target, shares: list[list], args: tuple) -> float:
    """Seconds from the moment every process is warm until all have done their share. ``target(share, *args,
    barrier, results)`` warms up, waits on ``barrier``, does the work and puts the number of items done on
    ``results``; one process per share (spawned: nothing inherited from this process)."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(len(shares) + 1), ctx.Queue()
    procs = [ctx.Process(target=target, args=(share, *args, barrier, results)) for share in shares]
    for proc in procs:
        proc.start()
    barrier.wait()
    t0 = time.time()
    done = sum(results.get() for _ in procs)
    seconds = time.time() - t0
    for proc in procs:
        proc.join()
    assert done == sum(len(s) for s in shares), f"the bare processes did {done} items of {sum(map(len, shares))}"
    return seconds
