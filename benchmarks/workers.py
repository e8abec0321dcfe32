"""Worker processes that never outlive the benchmark that started them.

:func:`run_in_workers` runs jobs in a spawn ``ProcessPoolExecutor`` whose workers

- start with SIGINT and SIGTERM blocked (the mask is inherited), then ignore SIGINT: a Ctrl-C in the
  terminal reaches the whole process group, but only the parent decides what happens;
- turn SIGTERM into :class:`utils.errors.Interrupted` while a job runs, so the job's own cleanup runs
  (an ``rl.train`` run without a finished epoch removes its folder, one with a ``train_state.pt`` is kept
  to resume), and then end; a SIGTERM that lands in a C callback (numba compiling) is sent again;
- watch their parent: when it is gone (``kill -9``), a worker sends itself SIGTERM and exits for good
  :data:`GRACE_S` seconds later (a finished worker would otherwise wait forever for its next job).

When the parent stops (an error, Ctrl-C, SIGTERM) it terminates the workers and waits for them.
"""
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Callable, Dict, Iterator, Tuple

import tqdm

from utils.errors import Interrupted, redeliver_swallowed_interrupts

log = logging.getLogger(__name__)
GRACE_S = 10.0  # after SIGTERM, seconds a worker (or the parent, waiting for one) allows the cleanup
POLL_S = 0.25  # how often a worker checks that its parent is alive
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_busy = False  # in a worker: whether a job is running (SIGTERM then interrupts it, else ends the worker)


def _on_sigterm(signum, frame) -> None:
    if _busy:
        raise Interrupted(signum)
    os._exit(128 + signum)


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    # runs in a worker: a stopped job cleans up (its own except/finally blocks), then the worker ends,
    # since nobody waits for its result any more
    global _busy
    _busy = True
    try:
        return fn(*args)
    except Interrupted as stop:
        os._exit(stop.exit_code)
    finally:
        _busy = False


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)  # the job's cleanup runs in the main thread
    time.sleep(GRACE_S)
    os._exit(128 + signal.SIGTERM)


def _init_worker(parent_pid: int) -> None:
    # tqdm's default lock is a named multiprocessing semaphore; a worker that ends by os._exit would leak it
    # and the resource tracker would warn about it after the parent's last line. A thread lock does here.
    tqdm.tqdm.set_lock(threading.RLock())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    redeliver_swallowed_interrupts()  # numba (tianshou's returns) compiles through C callbacks
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    threading.Thread(target=_watch_parent, args=(parent_pid,), name="watch-parent", daemon=True).start()
    if os.getppid() != parent_pid:  # died while this worker started
        os.kill(os.getpid(), signal.SIGTERM)


def _stop(pool: ProcessPoolExecutor) -> None:
    processes = list((getattr(pool, "_processes", None) or {}).values())  # the executor has no public handle
    for process in processes:
        if process.is_alive():
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    deadline = time.time() + GRACE_S
    for process in processes:
        process.join(max(0.0, deadline - time.time()))
        if process.is_alive():
            log.warning("worker %d did not stop within %.0f s of SIGTERM: killing it", process.pid, GRACE_S)
            process.kill()
            process.join()


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[Callable[..., Future]]:
    """``with worker_pool(n) as submit:`` ``submit(fn, *args)`` runs ``fn(*args)`` in one of ``n`` fresh (spawned)
    worker processes and returns its ``Future``. A failure or an interruption inside the block stops every
    worker before it propagates; a normal exit waits for the jobs still running."""
    context = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch thread pools
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                               initargs=(os.getpid(),))

    def submit(fn: Callable[..., Any], *args: Any) -> Future:
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)  # inherited by workers started here
        try:
            return pool.submit(_call, fn, *args)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)

    try:
        yield submit
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown(wait=True)


def run_in_workers(fn: Callable[..., Any], jobs: Dict[str, Tuple], workers: int) -> Dict[str, Any]:
    """``{key: fn(*args)}`` for ``jobs`` (key -> args), ``workers`` at a time in fresh (spawned) processes.

    The first failure, or an interruption of this process, stops every worker before it propagates.
    """
    with worker_pool(min(workers, len(jobs))) as submit:
        futures = {key: submit(fn, *args) for key, args in jobs.items()}
        return {key: future.result() for key, future in futures.items()}
