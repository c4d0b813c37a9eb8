"""`llm_lit chat`: load a model once, then continue prompts typed at the terminal or piped in.

    llm_lit chat --ckpt_path runs/shakespeare/version_0/checkpoints/last.ckpt
    echo "ROMEO:" | llm_lit chat --ckpt_path hf_folder/ --temperature 0 --max_new_tokens 50

Each line read is a prompt (`\\n` in it stands for a new line); the continuation is printed
token by token as it is generated. The conversation so far (prompts and continuations) is
the context of the next prompt, cut to the model's last `context_length` tokens; `/reset`
forgets it. Lines starting with `/` change the settings between prompts (`/help` lists
them). Ctrl-D (end of input) or `/quit` ends the session; Ctrl-C stops a continuation being
generated, and at the prompt ends the session. Continuations go to stdout; the banner,
settings and errors go to stderr, so piped output holds only the model's text.
"""

from __future__ import annotations

import codecs
import sys
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Optional, TextIO

import torch

from llm_lit.commands.parsing import run_function
from llm_lit.errors import UserError, one_line
from llm_lit.generation.prompts import PromptPolicy
from llm_lit.generation.sampling import SamplingConfig, stream
from llm_lit.model import TransformerLM
from llm_lit.run.loading import load_for_generation, model_source
from tokenizer import AnyTokenizer


HELP = """commands (between prompts):
  /temperature T     sampling temperature (0: greedy)
  /top_k K           sample among the K most likely tokens (none: no limit)
  /top_p P           sample from the smallest set of tokens whose probability reaches P (none: no limit)
  /max_new_tokens N  tokens generated per prompt at most
  /seed S            restart the random stream from seed S (none: unseeded)
  /reset             forget the conversation so far
  /settings          show the current settings
  /help              this list
  /quit              end the session (so do Ctrl-D and Ctrl-C)
any other line is a prompt; \\n in it stands for a new line."""


class ChatError(UserError):
    """A bad command or setting typed during a chat session (printed; the session goes on)."""


@dataclass
class ChatSession:
    """A loaded model and tokenizer, the sampling settings and the conversation so far.

    `history` is the text of earlier prompts and continuations, the context of the next prompt.
    """

    model: TransformerLM
    tokenizer: AnyTokenizer
    sampling: SamplingConfig
    stop_ids: list[int]
    history: str = ""
    generator: Optional[torch.Generator] = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.set_seed(self.sampling.seed)

    # ------------------------------------------------------------------ settings
    def set_seed(self, seed: Optional[int]) -> None:
        """Restart the random stream from `seed` (None: torch's global generator)."""
        self.sampling = replace(self.sampling, seed=seed)
        self.generator = None
        if seed is not None:
            device = self.model.token_embeddings.weight.device
            self.generator = torch.Generator(device=device).manual_seed(seed)

    def command(self, line: str) -> Optional[str]:
        """Apply one `/command [value]` line; returns the text to show, or None for /quit."""
        name, _, value = line[1:].strip().partition(" ")
        value = value.strip()
        if name in ("quit", "exit"):
            return None
        if name == "help":
            return HELP
        if name == "reset":
            self.history = ""
            return "(conversation forgotten)"
        if name == "settings":
            return self.describe()
        if name not in SETTINGS:
            raise ChatError(f"unknown command '/{name}'; type /help for the commands.")
        parse, what = SETTINGS[name]
        if not value:
            raise ChatError(f"/{name} needs a value ({what}), e.g. /{name} {EXAMPLES[name]}.")
        try:
            parsed = parse(value)
        except ValueError:
            raise ChatError(f"/{name} takes {what}, not {value!r}; e.g. /{name} {EXAMPLES[name]}.") from None
        try:
            if name == "seed":
                self.set_seed(parsed)
            else:
                self.sampling = replace(self.sampling, **{name: parsed})
        except UserError as e:
            raise ChatError(f"/{name} {value}: {_problem(e)}; e.g. /{name} {EXAMPLES[name]}.") from None
        return f"({name} = {parsed})"

    def describe(self) -> str:
        """The current settings on one line."""
        s = self.sampling
        return (f"(temperature={s.temperature} top_k={s.top_k} top_p={s.top_p} "
                f"max_new_tokens={s.max_new_tokens} seed={s.seed})")

    # ------------------------------------------------------------------ generating
    def prompt_ids(self, prompt: str) -> list[int]:
        """Ids of the conversation so far plus `prompt`, as the prompt policy encodes them (after the BOS when the
        tokenizer has one), cut to the model's last `context_length` tokens."""
        context = self.model.config.context_length
        try:
            ids = PromptPolicy(self.tokenizer, context, truncate=True).encode(self.history + prompt)
        except UserError:  # (with truncate, only an empty prompt with no BOS or <|endoftext|> to start from)
            raise ChatError("an empty prompt needs a BOS or <|endoftext|> token to start from; type some text.") from None
        return ids[-context:]

    def reply(self, prompt: str) -> Iterator[str]:
        """Yield the continuation of `prompt` as text pieces, as its tokens are generated; the prompt and
        what was generated (also when the caller stops early) join the history."""
        ids = self.prompt_ids(prompt)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        vocab = self.tokenizer.vocab
        pieces: list[str] = []
        try:
            for token in stream(self.model, ids, self.sampling, self.stop_ids, self.generator):
                piece = decoder.decode(vocab.get(token, b"\xef\xbf\xbd"))  # an id beyond the tokenizer: U+FFFD
                if piece:
                    pieces.append(piece)
                    yield piece
            tail = decoder.decode(b"", final=True)
            if tail:
                pieces.append(tail)
                yield tail
        finally:
            self.history += prompt + "".join(pieces)


def _problem(error: Exception) -> str:
    """The first problem named by a `SamplingConfig` error, without its prefix and suffix."""
    text = one_line(error).removeprefix("Invalid SamplingConfig: ")
    return text.split("; ")[0].rstrip(".")


def _optional(parse: Callable[[str], object]) -> Callable[[str], object]:
    return lambda v: None if v.lower() in ("none", "off") else parse(v)


#: `/name` -> (parser of its value, what it takes).
SETTINGS: dict[str, tuple[Callable[[str], object], str]] = {
    "temperature": (float, "a number >= 0"),
    "top_k": (_optional(int), "a positive integer or none"),
    "top_p": (_optional(float), "a number in (0, 1] or none"),
    "max_new_tokens": (int, "a non-negative integer"),
    "seed": (_optional(int), "an integer or none"),
}
EXAMPLES = {"temperature": "0.7", "top_k": "20", "top_p": "0.9", "max_new_tokens": "200", "seed": "1"}


def run_session(session: ChatSession, lines: TextIO, out: TextIO, err: TextIO, interactive: bool,
                echo: bool = False, delimiter: Optional[str] = None) -> int:
    """Read prompts and commands from `lines` until end of input or /quit; returns the exit code (0). With `echo`,
    each prompt is written to `out` (as `> prompt`) before its continuation; with `delimiter`, a line holding it
    follows each continuation, so that a script reading `out` can tell the answers apart."""
    while True:
        try:
            if interactive:
                err.write("> ")
                err.flush()
            line = lines.readline()
        except KeyboardInterrupt:  # Ctrl-C at the prompt ends the session
            err.write("\n")
            return 0
        if not line:  # Ctrl-D / end of piped input
            if interactive:
                err.write("\n")
            return 0
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        try:
            check_utf8(line)
            if line.startswith("/"):
                shown = session.command(line)
                if shown is None:
                    return 0
                err.write(shown + "\n")
                err.flush()
                continue
            if echo:
                out.write(f"> {line}\n")
            _print_reply(session, line.replace("\\n", "\n"), out)
            if delimiter is not None:
                out.write(delimiter + "\n")
                out.flush()
        except ChatError as e:
            err.write(f"error: {one_line(e)}\n")
            err.flush()


def check_utf8(line: str) -> None:
    """`ChatError` for a line read with `surrogateescape` whose bytes are not UTF-8 text (naming the first bad byte)."""
    for position, char in enumerate(line):
        if "\udc80" <= char <= "\udcff":
            raise ChatError(f"the line is not UTF-8 text (byte {ord(char) - 0xDC00:#04x} at character {position}), so "
                            "it was skipped; type or pipe UTF-8 text.")


def _print_reply(session: ChatSession, prompt: str, out: TextIO) -> None:
    """Print the continuation of `prompt` as it comes; Ctrl-C stops it (the session goes on)."""
    pieces = session.reply(prompt)
    try:
        for piece in pieces:
            out.write(piece)
            out.flush()
    except KeyboardInterrupt:
        pieces.close()
        out.write(" [stopped]")
    out.write("\n")
    out.flush()


def load_for_chat(ckpt_path: str, device: str) -> tuple[TransformerLM, AnyTokenizer]:
    """The model (eval mode, on `device`) and tokenizer of an llm_lit checkpoint, a folder written by
    `llm_lit import` (its model.ckpt) or a Hugging Face folder (see `llm_lit.run.loading`)."""
    return load_for_generation(ckpt_path, device)


def stop_ids_of(tokenizer: AnyTokenizer, stop_tokens: Optional[list[str]]) -> list[int]:
    """Ids that end a continuation, by the prompt policy (`PromptPolicy.stop_ids`): `stop_tokens` when given, else
    the EOS role, else <|endoftext|>."""
    return PromptPolicy(tokenizer, context_length=0, stop_tokens=stop_tokens, stop_setting="--stop_tokens").stop_ids()


def chat(ckpt_path: str, temperature: float = 0.8, top_k: Optional[int] = 50, top_p: Optional[float] = None,
         max_new_tokens: int = 200, seed: Optional[int] = None, stop_tokens: Optional[list[str]] = None,
         device: str = "auto", echo: bool = False, delimiter: Optional[str] = None) -> int:
    """Chat with a model: load it once, then continue each prompt typed (or piped) in, token by token.

    Args:
        ckpt_path: An llm_lit checkpoint (.ckpt written by fit; `last`: the newest last.ckpt under runs/), a folder written by llm_lit import, or a Hugging Face model folder.
        temperature: Sampling temperature (0: greedy); /temperature changes it.
        top_k: Sample among the k most likely tokens (None: no limit); /top_k changes it.
        top_p: Sample from the smallest set of tokens whose probability reaches top_p (None: no limit); /top_p changes it.
        max_new_tokens: Tokens generated per prompt at most; /max_new_tokens changes it.
        seed: Seed of the random stream, for a reproducible session (None: unseeded); /seed changes it.
        stop_tokens: Special tokens that end a continuation (default: the tokenizer's EOS role, else <|endoftext|>).
        device: 'auto' (a GPU when there is one), 'cpu', 'cuda' or 'cuda:N'.
        echo: Write each prompt to stdout (as '> prompt') before its continuation.
        delimiter: A line written to stdout after each continuation (e.g. '<|end|>'), so that a script piping prompts in can read the answers back one by one.
    """
    sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                              seed=seed)
    model, tokenizer = load_for_chat(ckpt_path, device)
    session = ChatSession(model, tokenizer, sampling, stop_ids_of(tokenizer, stop_tokens))
    if hasattr(sys.stdin, "reconfigure"):  # bytes that are not UTF-8 reach `check_utf8` instead of stopping the session
        sys.stdin.reconfigure(errors="surrogateescape")
    interactive = sys.stdin.isatty()
    params = sum(p.numel() for p in model.parameters())
    print(f"chat: {model_source(ckpt_path)} ({params / 1e6:,.2f}M parameters, context {model.config.context_length} tokens, "
          f"{model.token_embeddings.weight.device}); /help for commands, Ctrl-D to quit", file=sys.stderr, flush=True)
    return run_session(session, sys.stdin, sys.stdout, sys.stderr, interactive, echo, delimiter)


def main(argv: Optional[list[str]] = None) -> int:
    """`llm_lit chat ARGS`; Ctrl-C while the model loads exits with 130, without a traceback."""
    try:
        return run_function("llm_lit chat", chat, argv)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
