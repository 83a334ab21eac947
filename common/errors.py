"""The one exception type for bad user input (re-exported by common.fileio).

Every command maps it to exit status 2 and prints its message as one line (see common/cli.py).
"""
from __future__ import annotations


class InputError(ValueError):
    """Bad user input: the message names the file (or folder) and what is wrong with it.

    Raise it only for problems the user can fix in their input or flags; a re-run with the same
    input fails the same way. Anything else is an internal failure (exit status 1).
    """


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, re-raised by a command that knows how its work continues: the message says what
    was finished and how to go on (for example which flag keeps the finished files). Every
    command's wrapper (common/cli.py) prints it in place of its general resume sentence."""
