"""Task runner shared by every preprocessing step: `--jobs N` worker processes + tqdm bar.

The original MATLAB scripts (extractFrames.m, generateAlignments.m) loop over frames in one
process; at 300VW scale (~200k frames) that takes days, so every step here is cut into
independent tasks (a chunk of frames, a video) that either run in-process (`jobs=1`, used by
the tests and for debugging: plain tracebacks, no pickling) or in a pool of `jobs` worker
processes started with "spawn" (OpenCV/TensorFlow thread pools do not survive fork safely).
"""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Iterable

from tqdm import tqdm


WORKER_THREADS_ENV = "FACEDEBLUR_WORKER_THREADS"


def _init_worker(threads: int) -> None:
    # Each worker gets cores/jobs threads: N workers each spinning an all-core OpenCV or
    # TensorFlow thread pool would oversubscribe the machine. TensorFlow's pool is created
    # later, by the code that imports it, which reads WORKER_THREADS_ENV.
    import cv2

    cv2.setNumThreads(threads)
    os.environ[WORKER_THREADS_ENV] = str(threads)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def run_tasks(fn: Callable, tasks: Iterable, jobs: int = 1, desc: str = "", unit: str = "task",
              weights: Callable | None = None, disable_bar: bool | None = None) -> list:
    """Run `fn(task)` for every task; return the results in task order.

    jobs   : 1 runs in this process; N > 1 uses N spawned worker processes.
    weights: optional `weights(task) -> int` so the bar counts frames instead of tasks.
    The first exception raised by a task is re-raised here (pending tasks are cancelled), so
    an InputError from a worker reaches the CLI with its message intact.
    """
    tasks = list(tasks)
    w = (lambda t: 1) if weights is None else weights
    total = sum(w(t) for t in tasks)
    results = [None] * len(tasks)
    bar = tqdm(total=total, desc=desc, unit=unit, disable=disable_bar, dynamic_ncols=True)
    try:
        if jobs <= 1 or len(tasks) <= 1:
            for i, t in enumerate(tasks):
                results[i] = fn(t)
                bar.update(w(t))
            return results
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                                 initargs=(max(1, (os.cpu_count() or 1) // jobs),)) as pool:
            futures = {pool.submit(fn, t): i for i, t in enumerate(tasks)}
            try:
                for fut in as_completed(futures):
                    i = futures[fut]
                    results[i] = fut.result()
                    bar.update(w(tasks[i]))
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
        return results
    finally:
        bar.close()


def chunks(seq, size: int) -> list:
    """Split a sequence into consecutive lists of at most `size` items."""
    seq = list(seq)
    return [seq[i:i + size] for i in range(0, len(seq), size)]
