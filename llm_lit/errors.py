"""The one exception type for problems with the user's input or environment, and the one for a signal.

Anything raised as `UserError` is a problem the user can fix; its message is one
sentence naming the problem and the fix. The CLI prints it as a single line and exits
non-zero (with the traceback only when `LLM_LIT_DEBUG=1`): `print_error` is that printer.
`Interrupted` is Ctrl-C or SIGTERM stopping a command at once (see `llm_lit.run.interrupts`).
"""

import os
import signal
import sys
import traceback


class UserError(Exception):
    """A problem with the user's input (config, files, devices), stated in one sentence."""


def one_line(text: object) -> str:
    """`str(text)` with every run of white space, newlines included, folded into one space."""
    return " ".join(str(text).split())


def print_error(error: BaseException) -> int:
    """Print `error` as one `error: ...` line on stderr (after its traceback when LLM_LIT_DEBUG=1); returns 2,
    the exit code of a user error."""
    if os.environ.get("LLM_LIT_DEBUG") == "1":
        traceback.print_exception(error)
    print(f"error: {one_line(error)}", file=sys.stderr)
    return 2


class Interrupted(BaseException):
    """SIGINT or SIGTERM stopped the command at once.

    Not an `Exception` (no `except Exception` swallows it) and not a `KeyboardInterrupt` (which
    Lightning turns into exit code 1). `done` says what had been finished; whoever finishes
    something on the way out (e.g. writes the continuations generated so far) sets it.
    """

    def __init__(self, signum: int, done: str = "") -> None:
        super().__init__(signum)
        self.signum = signum
        self.done = done

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process the signal ended (130, 143)."""
        return 128 + self.signum

    def message(self) -> str:
        """The line the command ends with."""
        name = signal.Signals(self.signum).name
        return f"Stopped by {name}: {self.done}" if self.done else f"Stopped by {name}."
