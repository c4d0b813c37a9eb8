"""Every shell command in README.md and docs/ is run by a test, or listed here with the reason it cannot be.

The commands are the lines of the fenced ```bash blocks (also `sh`, `shell`, `console`) of README.md and
every page under docs/; a line ending in `\\` continues on the next. Each command must match one of
`RULES` (the first that matches decides): a rule either runs the command or skips it, saying why (it
needs a GPU, the network, or an hour). A command that matches no rule fails `test_every_command_in_the_docs_is_known`
at once, so a new page cannot add an untested command.

Commands are run, in `test_the_commands_of_the_docs_run` (slow), in a scratch copy of a folder holding
`configs/`, a short `llm_lit fit` on the debug config (its checkpoints stand for the docs' run), a Hugging Face
export of it, its tokenizer, and small text files for the file names the docs use. Each command gets its
own copy of that folder, so no command depends on another. A command that trains runs on the debug config
(`configs/shakespeare.yaml` and the GPU presets become `configs/debug.yaml`; the ladder configs stay) with
two steps; evaluation and generation are shortened likewise.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from cli_helpers import REPO, cli_env

from doc_pages import DocCommand, all_commands, shell_commands

# ---------------------------------------------------------------------------------------------------- rules
#: Flags that make a training command take two steps and one validation batch.
SHORT_FIT = ("--trainer.max_steps", "2", "--trainer.val_check_interval", "2", "--model.optimizer.warmup_steps", "1",
             "--trainer.limit_val_batches", "1")
#: The same, for a run that resumes the scratch run (which stopped at step 4).
SHORT_RESUME = ("--trainer.max_steps", "6", "--trainer.val_check_interval", "2", "--trainer.limit_val_batches", "1")
#: Configs whose commands train on the debug config instead (the default run takes 10 minutes; the
#: presets are GPU-sized). Any other config (the ladder's) keeps its own settings, shortened.
TO_DEBUG = re.compile(r"configs/(shakespeare|gpt2-small|llama-small)\.yaml")


@dataclass(frozen=True)
class Rule:
    """What the test does with the commands that match `pattern` (`re.search` on `DocCommand.bare`).

    Args:
        pattern: the regular expression that picks the commands.
        skip: the reason the commands cannot run in a test; None runs them.
        append: flags added to the end of the `llm_lit` command (later flags win).
        stdin: text the command reads (an interactive command gets one line and end of input).
        help_only: run the script with `--help` and check that every flag the command uses is one it documents
            (for benchmarks, which take minutes to an hour at the settings the docs quote).
    """

    pattern: str
    skip: Optional[str] = None
    append: tuple[str, ...] = ()
    stdin: Optional[str] = None
    help_only: bool = False

    def matches(self, command: DocCommand) -> bool:
        return re.search(self.pattern, command.bare) is not None


RULES: list[Rule] = [
    # -- cannot run here
    Rule(r"^python3 -m venv .* pip install -e \.\[plot\] && llm_lit fit --config configs/shakespeare\.yaml$",
         skip="the README's first command: a fresh venv and the 10-minute default run; tests/test_fresh_clone.py "
              "runs it as written, in a fresh clone (slow)"),
    Rule(r"^python3 -m venv .* pip install -e \.\[test\] && python -m pytest -q$",
         skip="the README's second command: a fresh venv and the whole suite; .ci/run runs exactly it, and "
              "tests/test_fresh_clone.py runs it in a fresh clone (slow)"),
    Rule(r"^pip install ", skip="installs packages from the package index (network)"),
    Rule(r"WandbLogger", skip="logs to Weights & Biases: needs the wandb extra and an account (network)"),
    Rule(r"^tensorboard ", skip="a server that runs until it is stopped"),
    Rule(r"^curl ", skip="downloads a file (network)"),
    Rule(r"^llm_lit eval .*--tasks \S*(hellaswag|arc_|lambada|wikitext)", skip="the harness downloads these tasks' data from the Hugging Face Hub (network)"),
    Rule(r"^llm_lit serve ", skip="a server that runs until it is stopped; tests/serving/ start it on a free port and drive it"),
    Rule(r"--trainer\.devices [2-9]|--trainer\.num_nodes [2-9]", skip="needs several GPUs or several machines"),
    Rule(r"--device cuda", skip="needs a GPU"),
    Rule(r"recipe_final\.sh", skip="needs a nanoGPT checkout and about 25 minutes of a quiet machine"),
    Rule(r"^python -m pytest ", skip="a run of the slow tests themselves; the test suite runs them"),
    Rule(r"^llm_lit plot sweep/", skip="draws the runs of a recipe_sweep.py sweep (600 s each); tests/commands/test_plot.py "
                                       "overlays several runs"),
    # -- benchmarks: their flags are checked against their --help
    Rule(r"^python benchmarks/\S+\.py\b", help_only=True),
    # -- llm_lit, on the debug config
    Rule(r"^llm_lit( \w+)? --help$"),
    Rule(r"^llm_lit fit .*--print_config"),
    Rule(r"^llm_lit fit .*--ckpt_path last", append=SHORT_RESUME),
    Rule(r"^llm_lit fit .*--model\.optimizer\.wsd\.", append=(*SHORT_FIT, "--model.optimizer.schedule", "wsd")),  # the
    # debug config's schedule is cosine, shakespeare.yaml's wsd
    Rule(r"^llm_lit fit ", append=SHORT_FIT),
    Rule(r"^llm_lit validate .*--data\.eval_stride", append=("--trainer.limit_val_batches", "2", "--data.eval_stride", "16")),
    Rule(r"^llm_lit validate ", append=("--trainer.limit_val_batches", "1")),
    Rule(r"^llm_lit test ", append=("--trainer.limit_test_batches", "1")),
    Rule(r"^llm_lit eval ", append=("--limit", "4")),
    Rule(r"^llm_lit predict ", append=("--model.sampling.max_new_tokens", "8")),
    Rule(r"^llm_lit chat ", append=("--max_new_tokens", "8"), stdin="ROMEO:\n"),
    Rule(r"^echo .* \| llm_lit chat ", append=("--max_new_tokens", "8")),
    Rule(r"^llm_lit import ", append=("--overwrite", "true")),  # the scratch folder holds an import already
    Rule(r"^llm_lit (export|tokenizer|accounting|plot|prepare)\b"),
    Rule(r"^python -m tokenizer (train|encode) "),
]


def rule_for(command: DocCommand) -> Optional[Rule]:
    """The first rule that matches `command`, or None."""
    return next((rule for rule in RULES if rule.matches(command)), None)


def rewritten(command: DocCommand, rule: Rule) -> str:
    """The command as the test runs it: on the debug config, the scratch run's checkpoints, shortened."""
    segments = []
    for words in command.segments():
        words = [TO_DEBUG.sub("configs/debug.yaml", w) for w in words]
        words = [re.sub(r"^runs/shakespeare(?=/|$)", "runs/debug", w) for w in words]
        if words[:1] == ["llm_lit"]:
            words = [*words, *rule.append]
        segments.append(words)
    return command.joined_with(segments)


# ---------------------------------------------------------------------------------------------------- fast tests
def test_every_command_in_the_docs_is_known() -> None:
    unknown = [str(c) for c in all_commands() if rule_for(c) is None]
    assert not unknown, ("These commands of the docs match no rule of tests/docs/test_doc_commands.py; add one that "
                         "runs them (on the debug config, shortened) or skips them with the reason:\n"
                         + "\n".join(unknown))


def test_every_rule_is_used() -> None:
    commands = all_commands()
    unused = [rule.pattern for rule in RULES if not any(rule_for(c) is rule for c in commands)]
    assert not unused, f"rules that no command of the docs uses any more (remove them): {unused}"


def test_every_command_of_llm_lit_is_shown_by_a_docs_command() -> None:
    """Each `llm_lit` command has a fenced command in the docs: run by the slow test below, or (a server, say) listed
    with the reason it cannot be; and the commands that run cover fit, validate, test and predict."""
    from llm_lit.commands.cli import EXTRA_COMMANDS

    shown, ran = set(), set()
    for command in all_commands():
        words = command.segments()[-1]
        if words[:1] == ["llm_lit"] and len(words) > 1:
            shown.add(words[1])
            if not rule_for(command).skip:
                ran.add(words[1])
    assert {"fit", "validate", "test", "predict"} <= ran, ran
    missing = sorted({"fit", "validate", "test", "predict", *EXTRA_COMMANDS} - shown)
    assert not missing, f"llm_lit commands that no fenced command of README.md or docs/ shows: {missing}"


def test_the_extractor_reads_blocks_continuations_pipelines_and_comments(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("intro\n\n```bash\n# a comment line\nllm_lit fit --config configs/shakespeare.yaml \\\n"
                    "    --trainer.max_steps 200   # trailing comment\necho \"ROMEO:\" | llm_lit chat --ckpt_path x.ckpt\n"
                    "```\n\n```yaml\nmodel: {a: 1}\n```\n\n```console\n$ llm_lit --help\nusage: ...\n```\n")
    fit, chat, help_ = shell_commands(page)
    assert (fit.line, fit.text) == (5, "llm_lit fit --config configs/shakespeare.yaml --trainer.max_steps 200   # trailing comment")
    assert rewritten(fit, rule_for(fit)) == "llm_lit fit --config configs/debug.yaml --trainer.max_steps 200 " + " ".join(SHORT_FIT)
    assert chat.segments() == [["echo", "ROMEO:"], ["llm_lit", "chat", "--ckpt_path", "x.ckpt"]]
    assert rewritten(chat, rule_for(chat)) == "echo ROMEO: | llm_lit chat --ckpt_path x.ckpt --max_new_tokens 8"
    assert help_.text == "llm_lit --help" and rule_for(help_).skip is None


def test_a_block_of_commands_without_a_shell_tag_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("```\nllm_lit fit --config configs/debug.yaml\n```\n")
    with pytest.raises(AssertionError, match="tag it ```bash"):
        shell_commands(page)


# ---------------------------------------------------------------------------------------------------- running them
#: Small text files standing for the file names the docs use (slices of the bundled corpus).
TEXT_FILES = ("my_text.txt", "a.txt", "b.txt", "test.txt", "part.txt", "corpus.txt", "wikitext2_test.txt")
CORPUS = REPO / "llm_lit" / "data" / "corpora" / "tinyshakespeare.txt"


def bash(command: str, cwd: Path, stdin: Optional[str] = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `command` in bash from `cwd`, with `llm_lit` and `python` this interpreter and the repository importable."""
    prelude = (f'python() {{ {shlex.quote(sys.executable)} "$@"; }}\n'
               f'python3() {{ {shlex.quote(sys.executable)} "$@"; }}\n'
               'llm_lit() { python -m llm_lit "$@"; }\n')
    return subprocess.run(["bash", "-c", f"set -eo pipefail\n{prelude}{command}"], cwd=cwd, env=cli_env(),
                          input=stdin if stdin is not None else "", capture_output=True, text=True, timeout=timeout)


def checked(result: subprocess.CompletedProcess, command: str) -> subprocess.CompletedProcess:
    printed = result.stdout + result.stderr
    assert result.returncode == 0 and "Traceback" not in printed, f"{command}\n-> exit {result.returncode}:\n{printed[-4000:]}"
    return result


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder like a user's clone after the default run, on the debug config (see the module docstring)."""
    base = tmp_path_factory.mktemp("docs-scratch")
    shutil.copytree(REPO / "configs", base / "configs")
    text = CORPUS.read_text(encoding="utf-8")
    for i, name in enumerate(TEXT_FILES):
        (base / name).write_text(text[i * 20_000:(i + 1) * 20_000], encoding="utf-8")
    (base / "prompts.txt").write_text("ROMEO:\nJULIET:\n", encoding="utf-8")
    last = "runs/debug/version_0/checkpoints/last.ckpt"
    for command in ("llm_lit fit --config configs/debug.yaml --trainer.max_steps 4 --trainer.val_check_interval 2 "
                    "--model.optimizer.warmup_steps 1 --trainer.limit_val_batches 1",
                    f"llm_lit export --ckpt_path {last} --output path/to/hf_folder",
                    "llm_lit import --hf_dir path/to/hf_folder --output imported/",
                    f"llm_lit tokenizer --ckpt_path {last} --output tok.json",
                    "python -m tokenizer encode --tokenizer tok.json --input part.txt --output part.bin"):
        checked(bash(command, base), command)
    return base


def _ids(commands: list[DocCommand]) -> list[str]:
    return [f"{c.page}:{c.line}" for c in commands]


RUN = [c for c in all_commands() if (r := rule_for(c)) is not None and r.skip is None]


@pytest.mark.slow
@pytest.mark.parametrize("command", RUN, ids=_ids(RUN))
def test_the_commands_of_the_docs_run(command: DocCommand, scratch: Path, tmp_path: Path) -> None:
    rule = rule_for(command)
    if rule.help_only:
        script = command.segments()[0][1]
        printed = checked(bash(f"python {shlex.quote(script)} --help", REPO), script).stdout
        used = {w.split("=")[0] for w in command.segments()[0][2:] if w.startswith("--")}
        undocumented = sorted(flag for flag in used if not re.search(rf"{re.escape(flag)}\b", printed))
        assert not undocumented, f"{command}: {script} --help does not know {undocumented}"
        return
    folder = tmp_path / "clone"
    shutil.copytree(scratch, folder, symlinks=True)
    line = rewritten(command, rule)
    checked(bash(line, folder, stdin=rule.stdin), f"{command}\n(run as: {line})")


def test_what_cannot_run_is_listed_with_its_reason() -> None:
    skipped = {str(c): rule_for(c).skip for c in all_commands() if rule_for(c) is not None and rule_for(c).skip}
    assert all(reason and len(reason) > 10 for reason in skipped.values()), skipped
    # the two commands of the README's quick start are among them, each run elsewhere as written
    assert sum("tests/test_fresh_clone.py" in reason for reason in skipped.values()) == 2, skipped


if __name__ == "__main__":  # python tests/docs/test_doc_commands.py: what runs and what is skipped, for whoever edits the docs
    for _command in all_commands():
        _rule = rule_for(_command)
        print("UNKNOWN" if _rule is None else f"skip ({_rule.skip})" if _rule.skip else "run", _command, sep="  ")
