"""The one error type for user mistakes, and the interruption a signal turns into.

A :class:`UserError` says what the user gave (a config key, a value, a file) and what was
expected, in one line; :func:`utils.cli.run_cli` prints it as ``error: ...`` and exits with code 2.
Any other exception is a bug (ours or a library's) and keeps its traceback.

The subclasses also derive from the built-in type a caller would catch for that case, so
``except FileNotFoundError`` or ``except KeyError`` still works around code that raises them.
"""
import os
import signal
import sys
import threading


class UserError(ValueError):
    """Bad input from the user: a config value, a path, a data file, a setting of the machine."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named (or that a named run should hold) does not exist."""


class UnknownNameError(UserError, KeyError):
    """A name that is not in a registry or a key that is not allowed."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Interrupted(BaseException):
    """SIGINT (Ctrl-C) or SIGTERM, raised in the main thread by :func:`utils.cli.run_cli`'s handlers.

    A ``BaseException`` that is *not* a ``KeyboardInterrupt``, so no library swallows it on the way
    (Lightning turns a KeyboardInterrupt into ``sys.exit(1)``); every ``except BaseException`` cleanup
    still runs. ``notes`` are what the code it passed through adds (e.g. how to resume), printed on the
    same line; the exit code is ``128 + signum`` (130 for Ctrl-C, 143 for SIGTERM).
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = int(signum)
        self.notes: list = []

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        try:
            name = signal.Signals(self.signum).name
        except ValueError:
            name = str(self.signum)
        return "; ".join([f"interrupted by {name}", *self.notes])


def redeliver_swallowed_interrupts() -> None:
    """Make an :class:`Interrupted` that a signal handler raised inside a C callback reach the job after all.

    A handler runs in whatever Python code the main thread is executing; when that is a callback from C
    (numba compiling through llvmlite, any ``ctypes`` callback) the exception cannot propagate: Python prints
    it as "Exception ignored" and the job carries on as if no signal came. This hook swallows that report
    instead and sends the same signal again a moment later, by when the main thread is back in Python code
    and the handler's exception stops the job as intended. Other unraisable exceptions are reported as before.
    """
    previous = sys.unraisablehook
    if getattr(previous, "redelivers_interrupts", False):
        return

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, Interrupted):
            threading.Timer(0.05, os.kill, (os.getpid(), unraisable.exc_value.signum)).start()
        else:
            previous(unraisable)

    hook.redelivers_interrupts = True
    sys.unraisablehook = hook
