"""The one exception type for problems with the user's input or environment.

Anything raised as `UserError` is a problem the user can fix; its message is one
sentence naming the problem and the fix. The CLI prints it as a single line and exits
non-zero (with the traceback only when `LLM_LIT_DEBUG=1`): `print_error` is that printer.
"""

import os
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
