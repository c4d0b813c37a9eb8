"""Parsing for the commands outside LightningCLI (`export`, `import`, `accounting`, ...): one documented
function each, whose signature jsonargparse turns into options, and whose bad arguments become one line;
and the one line for a class whose optional package is missing."""

from __future__ import annotations

import difflib
import re
from typing import Any, Callable, Optional

from llm_lit.errors import UserError, one_line
from llm_lit.training.lightning_compat import class_path_named, option_keys, reworded, unknown_key


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


# ---------------------------------------------------------------------- one-line errors
#: Packages of optional integrations -> the llm_lit extra that installs them.
EXTRAS = {"wandb": "wandb"}


def missing_package_message(error: BaseException) -> Optional[str]:
    """One sentence for an instantiation error caused by a missing package (None for any other error)."""
    causes, cause = [], error
    while cause is not None and len(causes) < 10:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    missing = next((c for c in causes if isinstance(c, ModuleNotFoundError)), None)
    if missing is None:
        return None
    found = re.search(r"No module named '([\w.]+)'|Requirement '([A-Za-z0-9_.-]+)", str(missing))
    package = (found.group(1) or found.group(2)) if found else getattr(missing, "name", None) or "?"
    package = re.split(r"[<>=!~ ]", package.split(".")[0])[0]
    owner = class_path_named(one_line(error))
    who = f"{owner.rsplit('.', 1)[-1]} needs" if owner else "This configuration needs"
    if package in EXTRAS:
        install = f"pip install 'llm_lit[{EXTRAS[package]}]' (or pip install {package})"
    else:
        install = f"pip install {package}"
    return f"{who} the '{package}' package, which is not installed; {install}, or choose another class."


# ---------------------------------------------------------------------- config files
def config_files(argv: list[str]) -> list[str]:
    """The files given with `--config FILE` or `--config=FILE` in `argv`, in order."""
    files = []
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            files.append(argv[i + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return files


def check_config_sections(files: list[str], defaults: Any, subcommand: Optional[str] = None) -> None:
    """Refuse, in one line naming the file and the key, a config file that gives a section of settings (`trainer`,
    `data`, `model.config`, ...: a group of `defaults`, the parser's default namespace) a value that is not a
    mapping, which the parser would otherwise take for "no settings here" and silently reset the section."""
    import yaml
    from jsonargparse import Namespace

    for file in files:
        try:
            with open(file, encoding="utf-8") as f:
                content = yaml.safe_load(f)
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue  # the parser says what is wrong with the file itself
        if isinstance(content, dict) and subcommand is not None and isinstance(content.get(subcommand), dict):
            content = content[subcommand]  # (a config given before the subcommand holds it as a section)
        if not isinstance(content, dict):
            continue
        problem = _not_a_mapping(content, defaults, "", Namespace)
        if problem is not None:
            key, value = problem
            shown = "null" if value is None else repr(value)
            raise UserError(f"The config file '{file}' sets {key} to {shown}, which is not a section of settings; "
                            f"give {key} as a mapping of its settings (e.g. {key.rsplit('.', 1)[-1]}: {{...}}) or "
                            "remove it.")


def _not_a_mapping(content: dict, defaults: Any, prefix: str, namespace: type) -> Optional[tuple[str, Any]]:
    """The first `(dotted key, value)` of `content` whose default is a section but whose value is not a mapping."""
    for key, value in content.items():
        default = defaults.get(key) if isinstance(key, str) and isinstance(defaults, namespace) else None
        if not isinstance(default, namespace):
            continue
        if not isinstance(value, dict):
            return f"{prefix}{key}", value
        problem = _not_a_mapping(value, default, f"{prefix}{key}.", namespace)
        if problem is not None:
            return problem
    return None
