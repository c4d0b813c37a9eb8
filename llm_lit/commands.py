"""The extra `llm_lit` subcommands (`export`, `import`, `accounting`): one documented function
each, whose signature jsonargparse turns into options, and whose bad arguments become one line."""

from __future__ import annotations

import difflib
from typing import Any, Callable, Optional

from llm_lit.errors import UserError, one_line
from llm_lit.lightning_compat import option_keys, reworded, unknown_key


def function_parser(prog: str, function: Callable[..., Any], skip: Optional[set[str]] = None) -> Any:
    """A jsonargparse parser whose options are `function`'s parameters (help from its docstring), less `skip`."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(prog=prog, description=(function.__doc__ or "").splitlines()[0], exit_on_error=False,
                            allow_abbrev=False)  # a prefix of an option is an unknown option, not that option
    parser.add_function_arguments(function, skip=skip)
    return parser


def parse(parser: Any, argv: Optional[list[str]]) -> Any:
    """Parse `argv`; any parsing error becomes a one-line `UserError` (`--help` exits by itself)."""
    try:
        return parser.parse_args(argv)
    except UserError:
        raise
    except Exception as e:  # jsonargparse's ArgumentError, or a config error raised while parsing
        message = one_line(e)
        key = unknown_key(message)
        if key is not None:
            raise UserError(unknown_key_message(key, option_keys(parser))) from None
        raise UserError(f"{reworded(message).rstrip('.')}; see {parser.prog} --help.") from None


def unknown_key_message(key: str, keys: list[str]) -> str:
    """The one line for an unknown option `key`, naming the nearest of the valid `keys` when one is close."""
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'?" if close else "see --help for the valid keys."
    return f"Unknown config key '{key}'; {hint}"


def run_function(prog: str, function: Callable[..., Any], argv: Optional[list[str]]) -> int:
    """Parse `argv` into `function`'s arguments and call it; returns the exit code (0)."""
    parser = function_parser(prog, function)
    function(**parse(parser, argv).as_dict())
    return 0
