"""`llm_lit accounting`'s memory estimate follows the chosen optimizer: its state bytes against what a
built optimizer allocates, the totals, the largest micro-batch, and the CLI flags and presets."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import llm_lit.commands.accounting as acc
from llm_lit.model import ModelConfig, TransformerLM
from llm_lit.optim.muon import muon_matrices
from llm_lit.optim import MuonSettings, OptimizerConfig, SGDSettings, build_optimizer
from llm_lit.commands.presets import preset_path

CONFIG = ModelConfig.llama(vocab_size=64, context_length=16, d_model=32, n_layers=2, n_heads=2)
OPTIMIZERS = {"adamw": OptimizerConfig(warmup_steps=1), "sgd": OptimizerConfig(name="sgd", warmup_steps=1),
              "sgd-plain": OptimizerConfig(name="sgd", warmup_steps=1, sgd=SGDSettings(momentum=0.0)),
              "muon": OptimizerConfig(name="muon", warmup_steps=1, muon=MuonSettings(ns_dtype="float32"))}


def _allocated_state_bytes(optimizer_config: OptimizerConfig, dtype: torch.dtype) -> int:
    """Bytes of optimizer state after one real step of a model whose weights are `dtype`."""
    model = TransformerLM(CONFIG).to(dtype)
    optimizer, _ = build_optimizer(optimizer_config, model, 10, muon_matrices(model))
    ids = torch.randint(0, 64, (2, 16))
    model.loss(ids, ids).backward()
    optimizer.step()
    return sum(t.numel() * t.element_size() for state in optimizer.state.values() for t in state.values()
               if isinstance(t, torch.Tensor))


@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("precision, dtype", [("32-true", torch.float32), ("bf16-true", torch.bfloat16)])
def test_state_estimate_equals_what_the_optimizer_allocates(name: str, precision: str, dtype: torch.dtype) -> None:
    estimate = acc.estimate_memory(CONFIG, 2, precision=precision, optimizer=OPTIMIZERS[name])
    assert estimate.optimizer == _allocated_state_bytes(OPTIMIZERS[name], dtype)


def test_state_bytes_per_parameter_and_totals() -> None:
    n = acc.count_parameters(CONFIG)
    matrices = sum(p.numel() for p in muon_matrices(TransformerLM(CONFIG)))
    assert acc.muon_matrix_parameters(CONFIG) == matrices and 0 < matrices < n
    by_name = {name: acc.estimate_memory(CONFIG, 2, optimizer=config) for name, config in OPTIMIZERS.items()}
    assert by_name["adamw"].optimizer == 8 * n == acc.estimate_memory(CONFIG, 2).optimizer  # AdamW by default
    assert by_name["sgd"].optimizer == 4 * n and by_name["sgd-plain"].optimizer == 0
    assert by_name["muon"].optimizer == 4 * matrices + 8 * (n - matrices)
    base = by_name["adamw"].total - by_name["adamw"].optimizer
    assert all(m.total - m.optimizer == base for m in by_name.values())  # only the state differs
    assert acc.estimate_memory(CONFIG, 2, precision="bf16-mixed", optimizer=OPTIMIZERS["sgd"]).optimizer == 4 * n


def test_a_smaller_state_fits_a_larger_micro_batch() -> None:
    config = ModelConfig.gpt2(vocab_size=50304)
    budget = acc.estimate_memory(config, 4, chunk_tokens=0).total + 1  # AdamW fits batch 4 and no more
    assert acc.largest_micro_batch(config, budget, chunk_tokens=0) == 4
    assert acc.largest_micro_batch(config, budget, chunk_tokens=0, optimizer=OPTIMIZERS["sgd-plain"]) > 4


def test_cli_counts_the_flagged_optimizer(capsys: pytest.CaptureFixture) -> None:
    assert acc.main(["--preset", "debug", "--optimizer.name", "muon"]) == 0
    out = capsys.readouterr().out
    assert "muon state" in out and "adamw state" not in out
    assert acc.main(["--preset", "debug"]) == 0
    assert "adamw state" in capsys.readouterr().out


def _state_line(out: str) -> str:
    return next(line.strip() for line in out.splitlines() if line.strip().split(" ")[1:2] == ["state"])


def test_cli_takes_the_optimizer_from_the_preset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    preset = yaml.safe_load(preset_path("gpt2-small").read_text())
    preset["model"]["optimizer"].update(name="sgd", sgd={"momentum": 0.0})
    path = tmp_path / "sgd.yaml"
    path.write_text(yaml.safe_dump(preset))
    assert acc.main(["--preset", "gpt2-small"]) == 0
    adamw = _state_line(capsys.readouterr().out)
    assert acc.main(["--preset", str(path)]) == 0
    sgd = _state_line(capsys.readouterr().out)
    assert adamw.startswith("adamw state") and not adamw.endswith(" 0.000 GiB")
    assert sgd.startswith("sgd state") and sgd.endswith(" 0.000 GiB")
    assert acc.main(["--preset", str(path), "--optimizer.sgd.momentum", "0.9"]) == 0  # a flag still wins
    assert not _state_line(capsys.readouterr().out).endswith(" 0.000 GiB")
