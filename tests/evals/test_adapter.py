"""The adapter on hand-written requests: log-likelihoods equal the model's own loss, the harness's
conventions (trailing spaces, empty contexts, rolling windows), and generate_until's stops."""

from __future__ import annotations

import random

import pytest
import torch
from eval_helpers import EOT, TINY, bpe_tokenizer

from llm_lit.evals.requests import rolling_windows
from llm_lit.evals.scoring import reference_scores, score_requests
from llm_lit.model import ModelConfig, TransformerLM

lm_eval = pytest.importorskip("lm_eval")
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window  # noqa: E402

from llm_lit.evals.harness import LlmLitLM  # noqa: E402


@pytest.fixture(scope="module")
def tok():
    return bpe_tokenizer()


@pytest.fixture(scope="module", params=["llama", "gpt2", "alibi-qknorm-softcap"])
def model(request):
    torch.manual_seed(0)
    if request.param == "alibi-qknorm-softcap":  # what export refuses is evaluated all the same
        config = ModelConfig(**TINY, position="alibi", qk_norm=True, logit_softcap=15.0)
    else:
        config = getattr(ModelConfig, request.param)(**TINY)
    return TransformerLM(config).eval()


def _requests(kind: str, args: list[tuple]) -> list[Instance]:
    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


PAIRS = [("ROMEO:\nWhat light", " through yonder window breaks?"), ("JULIET: ", "O Romeo, Romeo"),
         ("", "First Citizen:"), ("To be, or not", " to be"), ("a", "b"), ("KING", " RICHARD III:\n")]


def _own_loss(model, context_ids, continuation_ids) -> float:
    """-(sum of the continuation's token losses) from the model's own `loss` (mean over the kept targets)."""
    ids = torch.tensor([context_ids + continuation_ids[:-1]])
    targets = torch.tensor([[-100] * (len(context_ids) - 1) + continuation_ids])
    return -float(model.loss(ids, targets)) * len(continuation_ids)


def test_loglikelihoods_equal_the_models_own_loss(model, tok):
    lm = LlmLitLM(model, tok, batch_size=4)
    results = lm.loglikelihood(_requests("loglikelihood", PAIRS))
    for (context, continuation), (logprob, _) in zip(PAIRS, results):
        context_ids, continuation_ids = lm.encoder.pair(context, continuation)
        with torch.no_grad():
            assert logprob == pytest.approx(_own_loss(model, context_ids, continuation_ids), abs=1e-4)


def test_conventions_of_the_harness(model, tok):
    lm = LlmLitLM(model, tok)
    context, continuation = lm.encoder.pair("JULIET: ", "O Romeo")  # the trailing space joins the continuation
    assert context == tok.encode("JULIET:") and context + continuation == tok.encode("JULIET: O Romeo")
    eot = tok.token_to_id(EOT)
    assert lm.encoder.pair("", "First") == ([eot], tok.encode("First"))  # the start token for an empty context
    assert lm.encoder.pair("", EOT + "First") == ([eot], tok.encode("First"))


def test_rolling_windows_are_the_harness_windows():
    rng = random.Random(0)
    for _ in range(200):
        tokens = [rng.randrange(100) for _ in range(rng.randrange(1, 60))]
        length = rng.randrange(1, 20)
        theirs = [make_disjoint_window(w) for w in get_rolling_token_windows(tokens, 7, length, 1)]
        assert rolling_windows(tokens, 7, length) == [(list(a), list(b)) for a, b in theirs]


def test_rolling_loglikelihood_is_every_token_once(model, tok):
    text = open(__file__, encoding="utf-8").read()[:600]  # longer than the 48-token context: several windows
    lm = LlmLitLM(model, tok, batch_size=3)
    (total,) = lm.loglikelihood_rolling(_requests("loglikelihood_rolling", [(text,)]))
    windows = lm.encoder.rolling(text)
    assert len(windows) > 2 and sum(len(c) for _, c in windows) == len(tok.encode(text))
    assert total == pytest.approx(sum(s.logprob for s in reference_scores(model, windows)), abs=1e-3)


def test_cached_scores_equal_the_plain_forward_with_truncation(model):
    rng = random.Random(1)
    requests = []
    for _ in range(12):
        context = [rng.randrange(TINY["vocab_size"]) for _ in range(rng.randrange(1, 60))]  # some past the context
        for _ in range(rng.randrange(1, 5)):
            requests.append((context, [rng.randrange(TINY["vocab_size"]) for _ in range(rng.randrange(1, 20))]))
    ours, plain = score_requests(model, requests, batch_size=5), reference_scores(model, requests)
    assert all(a.logprob == pytest.approx(b.logprob, abs=1e-4) and a.greedy == b.greedy for a, b in zip(ours, plain))


def test_generate_until_stops_at_stop_strings_and_at_eos(tok):
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig.llama(**TINY)).eval()
    lm = LlmLitLM(model, tok)

    def generate(until):
        return lm.generate_until(_requests("generate_until", [("ROMEO:", {"until": until, "max_gen_toks": 20})]))[0]

    free = generate([])
    assert free
    stop = next(c for c in free[1:] if c.isalnum())
    assert generate([stop]) == free[:free.index(stop)]
    # make <|endoftext|> (the stop token of a tokenizer without an EOS role) the greedy choice after the prompt:
    # the generation ends there, empty, the stop token left out
    eot = tok.token_to_id(EOT)
    with torch.no_grad():
        hidden = model.hidden_states(torch.tensor([lm.encoder.prompt("ROMEO:")]))[0, -1]
        model.lm_head.weight[eot] = hidden * 1000 / hidden.norm() ** 2
    assert lm.stop_ids == [eot]
    assert generate([]) == ""
