"""`llm_lit --help`: every command with a whole sentence, printed at once (neither torch nor Lightning loaded)."""

from __future__ import annotations

import re
import subprocess
import sys

from llm_lit.commands.command_list import LIGHTNING_COMMANDS, command_descriptions, help_text

from cli_helpers import cli_env


def _listed(text: str) -> dict[str, str]:
    """Command -> its description (wrapped lines joined) as `help_text` lists them."""
    listed, name = {}, None
    for line in text.split("commands:\n", 1)[1].splitlines():
        first = re.match(r"^  (\S+)\s+(.*)$", line)
        if first:
            name = first.group(1)
            listed[name] = first.group(2)
        else:
            listed[name] += " " + line.strip()
    return listed


def test_every_command_is_listed_with_a_whole_sentence():
    listed = _listed(help_text(width=80))
    assert listed == command_descriptions()
    for name, description in listed.items():
        assert description[0].isupper() and description.endswith("."), (name, description)


def test_the_lightning_commands_are_the_ones_lightning_cli_runs():
    from lightning.pytorch.cli import LightningCLI

    assert list(LIGHTNING_COMMANDS) == list(LightningCLI.subcommands())


def test_help_loads_neither_torch_nor_lightning():
    code = ("import sys; from llm_lit.commands.cli import main; code = main(['--help']); "
            "print(code, sorted(m for m in ('torch', 'lightning', 'jsonargparse') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0 []"


def test_a_lightning_command_describes_itself_in_a_whole_sentence(capsys):
    from llm_lit.commands.cli import main

    try:
        main(["test", "--help"])
    except SystemExit:
        pass
    out = " ".join(capsys.readouterr().out.split())
    assert LIGHTNING_COMMANDS["test"] in out
