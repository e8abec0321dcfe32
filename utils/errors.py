"""The one error type for user mistakes.

A :class:`UserError` says what the user gave (a config key, a value, a file) and what was
expected, in one line; :func:`utils.cli.run_cli` prints it as ``error: ...`` and exits with code 2.
Any other exception is a bug (ours or a library's) and keeps its traceback.

The subclasses also derive from the built-in type a caller would catch for that case, so
``except FileNotFoundError`` or ``except KeyError`` still works around code that raises them.
"""


class UserError(ValueError):
    """Bad input from the user: a config value, a path, a data file, a setting of the machine."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named (or that a named run should hold) does not exist."""


class UnknownNameError(UserError, KeyError):
    """A name that is not in a registry or a key that is not allowed."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
