"""The wrapper every entry point runs its job in."""
import logging
import signal
import sys
from pathlib import Path
from typing import Callable, List, Tuple

from utils.errors import Interrupted, UserError, redeliver_swallowed_interrupts
from utils.runs import latest_run


def setup_logging() -> None:
    """INFO-level logging with timestamps on stderr (idempotent)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _raise_interrupted(signum, frame) -> None:
    raise Interrupted(signum)


def install_interrupt_handlers() -> None:
    """SIGINT (Ctrl-C) and SIGTERM raise :class:`utils.errors.Interrupted` in the main thread, so every
    ``except BaseException`` cleanup runs (SIGKILL cannot be caught: atomic writes cover it). One raised
    inside a C callback, where it cannot propagate, is sent again
    (:func:`utils.errors.redeliver_swallowed_interrupts`)."""
    signal.signal(signal.SIGTERM, _raise_interrupted)
    signal.signal(signal.SIGINT, _raise_interrupted)
    redeliver_swallowed_interrupts()


def run_cli(job: Callable[[], Path]) -> int:
    """Run an entry point's ``job``; a :class:`UserError` becomes one ``error: ...`` line on stderr and
    exit code 2, an interruption (Ctrl-C, SIGTERM) one ``interrupted by ...`` line and exit code
    128 + the signal (130 for Ctrl-C). On success the run/result folder is printed (the CLI's only
    stdout) and 0 returned.

    Only user errors and interruptions are caught: a bug (any other exception) keeps its traceback.
    """
    install_interrupt_handlers()
    setup_logging()
    try:
        out = job()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        print(str(stop), file=sys.stderr)
        return stop.exit_code
    print(out)
    return 0


def wants_help(args: List[str]) -> bool:
    return any(a in ("-h", "--help") for a in args)


def config_name(args: List[str], default: str) -> Tuple[str, List[str]]:
    """Split an entry point's arguments into the config to load and its ``key=value`` overrides: the first
    argument when it is a name, else the saved config of a ``resume=RUN`` folder (continue that run as it
    was configured), else ``default``."""
    if args and "=" not in args[0]:
        return args[0], args[1:]
    resume = [a.split("=", 1)[1] for a in args if a.startswith("resume=")]
    if resume and Path(resume[-1]).exists():
        return str(latest_run(Path(resume[-1]))), args
    return default, args
