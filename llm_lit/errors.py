"""The one exception type for problems with the user's input or environment.

Anything raised as `UserError` is a problem the user can fix; its message is one
sentence naming the problem and the fix. The CLI prints it as a single line and exits
non-zero (with the traceback only when `LLM_LIT_DEBUG=1`).
"""


class UserError(Exception):
    """A problem with the user's input (config, files, devices), stated in one sentence."""
