"""`ChatFormat`: a Hugging Face chat template rendered as transformers renders it, the plain transcript without
one, and a template's refusal as one sentence."""

from __future__ import annotations

import json

import pytest

from llm_lit.errors import UserError
from llm_lit.generation.chat_format import TRANSCRIPT_STOP, ChatFormat, ChatTemplateError, read_chat_template
from tokenizer import Tokenizer

CHATML = ("{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
MESSAGES = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hi"}]


def tokenizer() -> Tokenizer:
    vocab = {b: bytes([b]) for b in range(256)}
    return Tokenizer(vocab, [], ["<s>", "</s>", "<|im_start|>", "<|im_end|>"], {"bos": "<s>", "eos": "</s>"})


def test_plain_transcript_without_a_template():
    chat = ChatFormat.for_model(tokenizer())
    assert chat.render(MESSAGES + [{"role": "assistant", "content": "Hello."}]) == \
        "System: Be terse.\nUser: Hi\nAssistant: Hello.\nAssistant:"
    assert chat.stop_strings == [TRANSCRIPT_STOP] == ["\nUser:"]


def test_template_renders_as_transformers_does_less_the_leading_bos():
    transformers = pytest.importorskip("transformers")
    chat = ChatFormat.for_model(tokenizer(), CHATML)
    ours = chat.render(MESSAGES)
    assert chat.stop_strings == [] and chat.bos_token == "<s>" and chat.eos_token == "</s>"
    from transformers.utils.chat_template_utils import render_jinja_template

    theirs = render_jinja_template([MESSAGES], chat_template=CHATML, add_generation_prompt=True,
                                   bos_token="<s>", eos_token="</s>")[0][0]
    assert "<s>" + ours == theirs
    assert ours.endswith("<|im_start|>assistant\n")
    del transformers


def test_template_refusals_and_bugs_are_one_sentence():
    strict = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversations must start with the user') }}{% endif %}"
    with pytest.raises(ChatTemplateError, match="refused these messages: Conversations must start with the user"):
        ChatFormat(strict).render(MESSAGES)
    with pytest.raises(ChatTemplateError, match="failed on these messages"):
        ChatFormat("{{ messages[5]['content'] + 1 }}").render(MESSAGES)
    with pytest.raises(UserError, match="does not parse as Jinja"):
        ChatFormat("{% for %}").render(MESSAGES)


def test_the_sandbox_keeps_a_template_away_from_python():
    with pytest.raises(ChatTemplateError):
        ChatFormat("{{ ''.__class__.__mro__[1].__subclasses__() }}").render(MESSAGES)


def test_read_chat_template_from_a_folder(tmp_path):
    assert read_chat_template(tmp_path) is None and read_chat_template(tmp_path / "x.ckpt") is None
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": [
        {"name": "tool_use", "template": "T"}, {"name": "default", "template": CHATML}]}))
    assert read_chat_template(tmp_path) == CHATML
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": "J"}))
    assert read_chat_template(tmp_path) == "J"
    (tmp_path / "chat_template.jinja").write_text("F")
    assert read_chat_template(tmp_path) == "F"
    (tmp_path / "chat_template.jinja").unlink()
    (tmp_path / "chat_template.json").write_text("[1, 2")
    with pytest.raises(UserError, match="is not a JSON object"):
        read_chat_template(tmp_path)
