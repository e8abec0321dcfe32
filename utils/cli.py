"""The wrapper every entry point runs its job in."""
import logging
import signal
import sys
from pathlib import Path
from typing import Callable

from utils.errors import UserError


def setup_logging() -> None:
    """INFO-level logging with timestamps on stderr (idempotent)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_cli(job: Callable[[], Path]) -> int:
    """Run an entry point's ``job``; a :class:`UserError` becomes one ``error: ...`` line on stderr and
    exit code 2. On success the run/result folder is printed (the CLI's only stdout) and 0 returned.

    Only user errors are caught: a bug (any other exception) still shows its traceback.
    """
    # SIGTERM (e.g. `kill`, a job scheduler) becomes SystemExit, so the cleanup of half-written
    # run/result folders in the entry points runs; SIGKILL cannot be caught (atomic writes cover it).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    setup_logging()
    try:
        out = job()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(out)
    return 0
