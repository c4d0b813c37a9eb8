"""`BigramLM` (`model.config.architecture bigram`): its logits are the table's rows, its loss is torch's
cross-entropy of them, trained to convergence it reaches the conditional entropy of the pairs, and it trains,
validates, samples and is refused by HF export through the CLI."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from llm_lit.commands.cli import main
from llm_lit.model import BigramLM, ModelConfig, TransformerLM, bigram_entropy, build_model

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, run_cli, scalars


def test_build_model_picks_the_architecture():
    assert isinstance(build_model(ModelConfig(vocab_size=11, architecture="bigram")), BigramLM)
    assert isinstance(build_model(ModelConfig(vocab_size=11, d_model=32, n_heads=2, n_layers=1)), TransformerLM)


def test_logits_are_rows_of_the_table_and_the_loss_is_torchs_cross_entropy():
    torch.manual_seed(0)
    model = BigramLM(ModelConfig(vocab_size=13, architecture="bigram"))
    with torch.no_grad():
        model.token_embeddings.weight.normal_()
    ids, targets = torch.randint(0, 13, (3, 7)), torch.randint(0, 13, (3, 7))
    targets[0, :2] = -100
    logits = model(ids)
    assert logits.shape == (3, 7, 13)
    assert torch.equal(logits, model.token_embeddings.weight[ids])
    expected = F.cross_entropy(logits.reshape(-1, 13), targets.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(model.loss(ids, targets), expected, rtol=1e-6, atol=1e-6)
    assert model.num_parameters() == 169 and model.new_kv_cache(3) is None


def test_trained_to_convergence_it_reaches_the_conditional_entropy_of_the_pairs():
    torch.manual_seed(1)
    vocab = 6
    tokens = torch.randint(0, vocab, (2000,))
    tokens[1::3] = (tokens[0::3][: len(tokens[1::3])] + 1) % vocab  # some structure: a learnable dependence
    counts = torch.zeros(vocab, vocab)
    counts.index_put_((tokens[:-1], tokens[1:]), torch.ones(len(tokens) - 1), accumulate=True)
    model = BigramLM(ModelConfig(vocab_size=vocab, architecture="bigram"))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    ids, targets = tokens[:-1].unsqueeze(0), tokens[1:].unsqueeze(0)
    for _ in range(500):
        optimizer.zero_grad()
        loss = model.loss(ids, targets)
        loss.backward()
        optimizer.step()
    floor = bigram_entropy(counts)
    assert floor < 1.6 < torch.log(torch.tensor(float(vocab)))  # the structure shows
    assert float(model.loss(ids, targets).detach()) == pytest.approx(floor, abs=2e-3)


def test_bigram_trains_validates_and_samples_through_the_cli(tmp_path):
    args = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "20",
            "--trainer.log_every_n_steps", "1", "--model.optimizer.warmup_steps", "2", "--model.optimizer.lr", "0.5",
            "--model.optimizer.min_lr", "0.05", "--torch_threads", "1", "--data.tokenizer_kind", "char",
            "--model.config.architecture", "bigram", "--data.cache_dir", str(tmp_path / "cache")]
    result = run_cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = torch.load(tmp_path / DEBUG_CKPTS / "last.ckpt", map_location="cpu", weights_only=True)
    assert [k for k in checkpoint["state_dict"] if k.startswith("model.")] == ["model.token_embeddings.weight"]
    assert checkpoint["state_dict"]["model.token_embeddings.weight"].shape == (66, 66)
    train = scalars(tmp_path / "runs", "train/loss")
    assert train[-1][1] < train[0][1] - 0.5
    assert scalars(tmp_path / "runs", "val/bpb")
    out = tmp_path / "p.jsonl"
    result = run_cli(["predict", "--ckpt_path", str(tmp_path / DEBUG_CKPTS / "last.ckpt"), "--data.prompts",
                      '["ROMEO:"]', "--data.predictions_path", str(out)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(out.read_text())["num_tokens"] > 0
    result = run_cli(["export", "--ckpt_path", str(tmp_path / DEBUG_CKPTS / "last.ckpt"), "--output",
                      str(tmp_path / "hf")], cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == (
        "error: A bigram model (a table of next-token logits) has no Llama or GPT-2 counterpart in Hugging Face; "
        "export a model with model.config.architecture transformer.")


def test_an_unknown_architecture_is_one_line(capsys, monkeypatch):
    monkeypatch.delenv("LLM_LIT_DEBUG", raising=False)
    assert main(["fit", "--config", str(DEBUG_CONFIG), "--model.config.architecture", "trigram"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "architecture" in err, err
