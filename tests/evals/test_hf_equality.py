"""The adapter's log-likelihoods equal those of the harness's own `--model hf` on the exported model."""

from __future__ import annotations

import pytest
from eval_helpers import MC_TASK, PPL_TASK, TINY, bpe_tokenizer, evaluate, responses, trained_model

from llm_lit.evals.harness import LlmLitLM
from llm_lit.interop import export_hf
from llm_lit.model import ModelConfig

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.slow  # two trained models, each scored by both adapters (minutes on a busy CPU)

LIMIT = 60  # questions (x4 requests) and passages per task


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def both_models(request, tmp_path_factory):
    from lm_eval.models.huggingface import HFLM

    tok = bpe_tokenizer()
    model = trained_model(getattr(ModelConfig, request.param)(**TINY), tok)
    folder = export_hf(model, tok, tmp_path_factory.mktemp(request.param) / "hf")
    ours = evaluate(LlmLitLM(model, tok, batch_size=16), [MC_TASK, PPL_TASK], limit=LIMIT)
    theirs = evaluate(HFLM(pretrained=str(folder), batch_size=16, device="cpu", dtype="float32"),
                      [MC_TASK, PPL_TASK], limit=LIMIT)
    return ours, theirs


@pytest.mark.parametrize("task", [MC_TASK, PPL_TASK])
def test_every_loglikelihood_equals_hflm(both_models, task):
    ours, theirs = both_models
    a, b = responses(ours, task), responses(theirs, task)
    assert len(a) == len(b) > 0
    # 1e-4, or float32's resolution of a whole passage's sum (a 300-token text sums to about -1500, where one
    # float32 step is 1.2e-4): two float32 implementations cannot agree closer than that
    assert all(x == pytest.approx(y, abs=1e-4, rel=1e-6) for x, y in zip(a, b))
    assert max(abs(x - y) / max(abs(y), 1.0) for x, y in zip(a, b)) < 1e-6


def test_accuracies_are_identical(both_models):
    ours, theirs = both_models
    for metric in ("acc,none", "acc_norm,none"):
        assert ours["results"][MC_TASK][metric] == theirs["results"][MC_TASK][metric]
    assert 0 < ours["results"][MC_TASK]["acc,none"] < 1  # (a 40-step model is near chance: 60 questions, 4 endings)
    assert ours["results"][PPL_TASK]["bits_per_byte,none"] == pytest.approx(
        theirs["results"][PPL_TASK]["bits_per_byte,none"], rel=1e-6)
