"""Where a benchmark's stage jobs run: ``launcher: local`` (worker processes on this machine) or ``ray``.

:func:`job_pool` yields ``submit(kind, fn, *args) -> Future``; ``kind`` names the job's entry of the
benchmark's ``resources`` (a fit stage, ``agent`` or ``eval``). Both launchers run the same functions with
the same arguments and one torch thread per CPU a job holds, so the same seeds give the same figures.

Under ``ray`` every job is a Ray task with ``resources.<kind>.num_cpus`` / ``num_gpus`` (fractions allowed).
``ray.address`` joins a running cluster (``ray start --head``, or Ray started inside a SLURM allocation);
null starts a local one with ``ray.num_cpus`` CPUs. Jobs run in the driver's working directory, with this
checkout first on their ``PYTHONPATH``: on a cluster every node must see both at the same path (shared
storage). Ray is imported only here, and only under ``launcher: ray``.
"""
import contextlib
import logging
import os
import signal
import socket
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Dict, Iterator

from benchmarks.workers import worker_pool
from utils.errors import UserError

log = logging.getLogger(__name__)
REPO_ROOT = str(Path(__file__).resolve().parents[1])
Submit = Callable[..., Future]


@contextlib.contextmanager
def job_pool(bench: Dict[str, Any], workers: int) -> Iterator[Submit]:
    """``submit(kind, fn, *args)`` on the benchmark's launcher; ``workers``: local worker processes."""
    if bench.get("launcher", "local") == "ray":
        with ray_pool(bench["ray"], bench["resources"]) as submit:
            yield submit
        return
    with worker_pool(workers) as local_submit:
        yield lambda kind, fn, *args: local_submit(fn, *args)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("launcher=ray needs the ray package: install it with `pip install -e '.[ray]'` "
                        "(install.sh does)") from None
    return ray


def _in_job(cwd: str, num_cpus: float, fn: Callable[..., Any], *args: Any) -> Any:
    # runs in a Ray worker: the driver's working directory and one torch thread per CPU held
    import torch

    from utils.cli import setup_logging

    if not os.path.isdir(cwd):
        raise UserError(f"working directory '{cwd}' does not exist on node {os.uname().nodename}: "
                        "launcher=ray expects every node to see the checkout at the same path")
    os.chdir(cwd)
    setup_logging()
    torch.set_num_threads(max(1, int(num_cpus)))
    return fn(*args)


def _check_address(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once when nothing answers at a ``host:port`` address (Ray itself retries for minutes)."""
    if address == "auto" or address.startswith(("ray://", "local")):
        return  # found (or refused at once) by Ray itself
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"ray.address={address!r} invalid: expected 'auto' or host:port of `ray start --head`")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise UserError(f"ray.address={address!r} invalid: nothing answers there ({err.strerror or err}); "
                        "start a cluster with `ray start --head` or set ray.address=null for a local Ray") from None


def _check_resources(ray, resources: Dict[str, Dict[str, float]]) -> None:
    """Fail before any work when a job asks for more than one node of the cluster has (it would wait forever)."""
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    for kind, want in resources.items():
        if not any(node.get("CPU", 0) >= want["num_cpus"] and node.get("GPU", 0) >= want["num_gpus"] for node in nodes):
            have = [{k: node.get(k, 0) for k in ("CPU", "GPU")} for node in nodes]
            raise UserError(f"resources.{kind}={want} invalid: no node of the Ray cluster has that much (nodes: {have})")


def _unwrapped(ray, remote: Future) -> Future:
    # a user error raised in a job reaches the user as that error's own line (Ray wraps it with a traceback)
    out: Future = Future()

    def copy(done: Future) -> None:
        try:
            out.set_result(done.result())
        except ray.exceptions.RayTaskError as err:
            cause = getattr(err, "cause", None)
            out.set_exception(cause if isinstance(cause, UserError) else err)
        except BaseException as err:  # noqa: B036 (cancelled, worker died): passed on as it is
            out.set_exception(err)

    remote.add_done_callback(copy)
    return out


def _keeping_signal_handlers(start: Callable[[], Any]) -> None:
    # Ray's core installs its own SIGTERM handler in the driver (it aborts the process): put ours back, so a
    # SIGTERM stops the benchmark like a Ctrl-C (one line, tasks cancelled, exit 143)
    stops = (signal.SIGINT, signal.SIGTERM)
    handlers = {signum: signal.getsignal(signum) for signum in stops}
    start()
    if threading.current_thread() is threading.main_thread():
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def ray_pool(options: Dict[str, Any], resources: Dict[str, Dict[str, float]]) -> Iterator[Submit]:
    """``submit(kind, fn, *args)`` as Ray tasks; on an error or an interruption every task still running is
    cancelled (its process killed) before it propagates. A Ray started here is shut down at the end."""
    ray = _import_ray()
    if options["address"]:
        _check_address(options["address"])
    started = not ray.is_initialized()
    if started:
        path = os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p)
        # address "local": a new Ray of our own even where another one runs or left its address file behind
        kwargs = ({"address": options["address"]} if options["address"] else
                  {"address": "local", "num_cpus": options["num_cpus"]})
        log.warning("launcher ray: %s", f"joining {options['address']}" if options["address"] else
                    f"starting a local Ray ({options['num_cpus'] or 'all'} CPUs)")
        # every job's output reaches the driver's log line by line: progress bars redraw at most every 30 s
        env = {"PYTHONPATH": path, "TQDM_MININTERVAL": "30"}
        _keeping_signal_handlers(lambda: ray.init(**kwargs, include_dashboard=False, runtime_env={"env_vars": env}))
    refs = []
    try:
        _check_resources(ray, resources)
        task = ray.remote(_in_job)

        def submit(kind: str, fn: Callable[..., Any], *args: Any) -> Future:
            want = resources[kind]
            ref = task.options(num_cpus=want["num_cpus"], num_gpus=want["num_gpus"], name=f"{kind}:{fn.__name__}",
                               max_retries=0).remote(os.getcwd(), want["num_cpus"], fn, *args)
            refs.append(ref)
            return _unwrapped(ray, ref.future())

        try:
            yield submit
        except BaseException:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()
