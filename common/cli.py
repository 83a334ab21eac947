"""One error behaviour for every command-line tool: exit statuses and messages.

Exit statuses (documented in the README and docs/video.md, the same for every command):

  0  success
  2  bad input: a file or flag the user gave cannot be used. One line `error: <file>: <problem>`,
     no traceback; running the same command again fails the same way until the input is fixed.
     (argparse's own usage errors also exit 2.)
  1  internal failure: not the input's fault (a bug, or the machine: disk full, permission
     denied, out of memory). The message says which; for a bug the traceback is printed above
     it. Files already written are complete (every output is written under a temporary name and
     renamed), so re-running the command after fixing the cause continues where it stopped.
130 interrupted (Ctrl-C), same guarantee as above; a command whose re-run needs a flag to keep
     what was finished says so (common.errors.Interrupted).

Usage in a `main`:

    def main(argv=None) -> int:
        return run_cli(_main, argv, prog="demo.py")
"""
from __future__ import annotations

import argparse
import errno
import sys
import traceback
from typing import Callable, Sequence

from common.errors import InputError, Interrupted

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

# OS errors that come from the machine or the user's folders, not from a bug: one line, no
# traceback, and a re-run after fixing them succeeds.
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EMFILE}


def nonnegative_float(text: str) -> float:
    """argparse `type=` for a finite number >= 0 (a usage error, exit 2, otherwise)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (v >= 0 and v != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return v


def error_line(message) -> str:
    """`error: <message>` (the one format of bad-input messages)."""
    return f"error: {message}"


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the one bad-input format: a wrong flag gives one line
    `<prog>: error: <message> (see --help)` and exit status 2, not argparse's usage block first.
    Every command's parser is one (sub-commands inherit it)."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: {error_line(message)} (see {self.prog} --help)\n")

    def given(self, argv=None) -> set[str]:
        """The destinations `argv` sets itself rather than leaving at their defaults: argparse
        parses it again into a namespace that already holds a marker for every destination (it
        fills in defaults only where nothing is there), so abbreviations and --flag=value count.
        Not for append/count flags (they would add to the marker)."""
        unset = object()
        marked = argparse.Namespace(**{k: unset for k in vars(self.parse_args(argv))})
        return {k for k, v in vars(self.parse_args(argv, marked)).items() if v is not unset}


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows every flag's default, except where the help text already states it (the
    shared flags of common/flags.py say what their default means)."""

    def _get_help_string(self, action):
        text = action.help or ""
        return text if "default" in text else super()._get_help_string(action)


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv=None, *, prog: str,
            bad_input: tuple = (InputError,)) -> int:
    """Run `main(argv)` and turn every way it can end into a documented exit status.

    `bad_input`: exception types that mean bad input (InputError and its subclasses by default;
    a tool may add e.g. ValueError when it raises that only for bad flags).
    """
    try:
        rc = main(argv)
    except bad_input as e:
        print(error_line(e), file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    except Interrupted as e:
        print(f"{prog}: interrupted. {e}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(f"{prog}: interrupted. Every file written so far is complete; running the same "
              "command again continues where it stopped.", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except MemoryError:
        print(f"{prog}: internal failure: out of memory (try fewer --jobs or smaller inputs); files "
              "written so far are complete, re-running continues.", file=sys.stderr, flush=True)
        return EXIT_INTERNAL
    except OSError as e:
        if e.errno not in _ENVIRONMENT_ERRNOS:
            return _internal(prog, e)
        where = f" {e.filename}" if e.filename else ""
        print(f"{prog}: failure of the machine, not of the input:{where}: {e.strerror}. Files written "
              "so far are complete; fix this and run the same command again to continue.",
              file=sys.stderr, flush=True)
        return EXIT_INTERNAL
    except Exception as e:  # noqa: BLE001 - the last resort of a command line: report, exit 1
        return _internal(prog, e)
    return EXIT_OK if rc is None else int(rc)


def _internal(prog: str, e: BaseException) -> int:
    traceback.print_exc()
    print(f"{prog}: internal error ({type(e).__name__}: {e}). This is a bug, not a problem with "
          "your input; please report it with the traceback above.", file=sys.stderr, flush=True)
    return EXIT_INTERNAL
