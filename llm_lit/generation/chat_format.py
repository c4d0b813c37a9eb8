"""Chat messages to one prompt: the tokenizer's chat template when it has one, else a plain transcript.

    chat = ChatFormat.for_model(tokenizer, template=read_chat_template(hf_folder))
    prompt = chat.render([{"role": "user", "content": "Hello"}])
    stop = chat.stop_strings                     # strings that end the assistant's turn

A chat template is the Jinja template a Hugging Face tokenizer ships (`chat_template` in
`tokenizer_config.json`, or `chat_template.jinja` / `chat_template.json` beside it); it is
rendered in Jinja's sandbox with `messages`, `add_generation_prompt=True`, `bos_token` and
`eos_token`, as `transformers` renders it. A BOS token the template writes at the start is left
out of the text: the prompt policy puts the tokenizer's BOS in front of every prompt itself.

Without a template, the messages become a plain transcript, one line per message, the role with
its first letter upper-cased, then the assistant's turn to continue:

    System: You are terse.
    User: Hello
    Assistant:

and the reply ends where the model starts a new user turn (the stop string `"\\nUser:"`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from llm_lit.errors import UserError
from tokenizer import AnyTokenizer

#: Where the stop of a plain transcript's assistant turn lies: the model begins the user's next line.
TRANSCRIPT_STOP = "\nUser:"


class ChatTemplateError(UserError):
    """The chat template failed on these messages (its own `raise_exception`, or a template bug)."""


@dataclass
class ChatFormat:
    """How messages become a prompt: a Jinja chat `template`, or the plain transcript when it is None.

    `bos_token` / `eos_token` are the tokenizer's BOS and EOS strings, passed to the template.
    """

    template: Optional[str] = None
    bos_token: str = ""
    eos_token: str = ""
    _compiled: Any = field(default=None, init=False, repr=False)

    @classmethod
    def for_model(cls, tokenizer: AnyTokenizer, template: Optional[str] = None) -> "ChatFormat":
        """The format of `tokenizer`'s model: `template` (from `read_chat_template`) or the plain transcript."""
        def role_text(role: str) -> str:
            token = tokenizer.role_id(role)
            return tokenizer.vocab[token].decode("utf-8", errors="replace") if token is not None else ""

        return cls(template, role_text("bos"), role_text("eos"))

    @property
    def stop_strings(self) -> list[str]:
        """Strings that end the assistant's reply besides the stop tokens (the transcript's next user line)."""
        return [] if self.template else [TRANSCRIPT_STOP]

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """The prompt for `messages` (each `{"role": ..., "content": ...}`), ending where the assistant replies."""
        if not self.template:
            lines = [f"{m['role'][:1].upper()}{m['role'][1:]}: {m['content']}" for m in messages]
            return "\n".join([*lines, "Assistant:"])
        try:
            text = self._template().render(messages=list(messages), add_generation_prompt=True,
                                           bos_token=self.bos_token, eos_token=self.eos_token)
        except ChatTemplateError:
            raise
        except Exception as e:  # a template bug or an undefined variable: the messages cannot be rendered
            raise ChatTemplateError(f"The model's chat template failed on these messages ({type(e).__name__}: "
                                    f"{e}); check the roles and their order.") from None
        if self.bos_token and text.startswith(self.bos_token):
            text = text[len(self.bos_token):]
        return text

    def _template(self) -> Any:
        if self._compiled is None:
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            def raise_exception(message: str) -> None:
                raise ChatTemplateError(f"The model's chat template refused these messages: {message}")

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
            env.globals["raise_exception"] = raise_exception
            env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
            env.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
            try:
                self._compiled = env.from_string(self.template)
            except Exception as e:
                raise UserError(f"The chat template does not parse as Jinja ({type(e).__name__}: {e}); "
                                "fix the template or pass another one.") from None
        return self._compiled


def read_chat_template(source: str | Path) -> Optional[str]:
    """The chat template of a Hugging Face model folder (None when it has none, or `source` is not a folder).

    Looked for in `chat_template.jinja`, then `chat_template.json`, then `tokenizer_config.json`'s
    `chat_template` (a string, or a list of named templates of which 'default' is taken).
    """
    folder = Path(source).expanduser()
    if not folder.is_dir():
        return None
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text(encoding="utf-8")
    for name in ("chat_template.json", "tokenizer_config.json"):
        path = folder / name
        if not path.is_file():
            continue
        try:
            template = json.loads(path.read_text(encoding="utf-8")).get("chat_template")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            raise UserError(f"{path} is not a JSON object; restore the file written with the model.") from None
        if isinstance(template, list):
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default") or next(iter(named.values()), None)
        if isinstance(template, str) and template.strip():
            return template
    return None
