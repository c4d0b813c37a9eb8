"""Every private Lightning / jsonargparse name llm_lit uses still exists and still means what we rely on.

One test per name in `llm_lit/lightning_compat.py`. When an upgrade renames one, the test fails
with `LightningInternalsChanged: ... update llm_lit/lightning_compat.py`, or with the assertion
message below, before any resumed run or log goes wrong."""

from __future__ import annotations

import argparse

import lightning as L
import pytest
import torch
from jsonargparse import ActionConfigFile, ArgumentParser
from lightning.pytorch.cli import LightningCLI

from llm_lit.training import lightning_compat as compat

UPDATE = "a Lightning/jsonargparse internal changed: update llm_lit/lightning_compat.py"


class _Tiny(L.LightningModule):
    """A one-weight model trained on random data: just enough for the fit loop to run."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch).pow(2).mean()

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(16, 2), batch_size=2)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _trainer(**kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, **kwargs)


class _Recorder(L.Callback):
    def __init__(self) -> None:
        self.rows: list[tuple[int, int, bool]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.rows.append((batch_idx, compat.logger_step(trainer), compat.should_update_logs(trainer)))


def test_logger_step_and_should_update_logs_follow_the_fit_loop():
    """`_batches_that_stepped` counts optimizer steps before this one; `should_update_logs` is true
    every `log_every_n_steps` optimizer steps, counted with accumulation."""
    recorder = _Recorder()
    _trainer(max_steps=4, log_every_n_steps=2, accumulate_grad_batches=2, callbacks=[recorder]).fit(_Tiny())
    assert recorder.rows == [(0, 0, False), (1, 0, False), (2, 1, True), (3, 1, True),
                             (4, 2, False), (5, 2, False), (6, 3, True), (7, 3, True)], UPDATE


def test_set_logger_step_moves_lightnings_own_counter():
    trainer = _trainer(max_steps=1)
    compat.set_logger_step(trainer, 7)
    assert compat.logger_step(trainer) == 7
    assert trainer.fit_loop.epoch_loop.state_dict()["state_dict"]["_batches_that_stepped"] == 7, UPDATE


def test_request_stop_sets_the_flag_lightnings_loops_read():
    trainer = _trainer(max_steps=1)
    assert trainer.received_sigterm is False
    compat.request_stop(trainer)
    assert trainer.received_sigterm is True, UPDATE
    compat.request_stop(trainer, False)
    assert trainer.received_sigterm is False, UPDATE


def test_request_stop_ends_fit_with_sigterm_exception_after_the_step():
    class StopAtStep2(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if trainer.global_step == 2:
                compat.request_stop(trainer)

    trainer = _trainer(max_steps=10, callbacks=[StopAtStep2()])
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    with pytest.raises(SIGTERMException):
        trainer.fit(_Tiny())
    assert trainer.global_step == 2, UPDATE


class _EndRecorder(L.Callback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if compat.ends_the_run(trainer):
            self.steps.append(trainer.global_step)


@pytest.mark.parametrize("limits, last", [(dict(max_steps=5), 5), (dict(max_epochs=2), 16),
                                          (dict(max_epochs=1, limit_train_batches=3), 3),
                                          (dict(max_epochs=3, max_steps=10), 10)],
                         ids=["max_steps", "epochs", "limit_train_batches", "epochs-capped-by-steps"])
def test_ends_the_run_is_true_at_the_last_step_only(limits, last):
    recorder = _EndRecorder()
    _trainer(callbacks=[recorder], **limits).fit(_Tiny())  # 8 batches per epoch
    assert recorder.steps == [last], UPDATE


def test_last_saved_step_is_where_modelcheckpoint_last_wrote(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    every_3 = ModelCheckpoint(dirpath=tmp_path, every_n_train_steps=3, save_top_k=0, save_last=True)
    assert compat.last_saved_step(every_3) is None
    L.Trainer(accelerator="cpu", max_steps=7, logger=False, enable_progress_bar=False, enable_model_summary=False,
              callbacks=[every_3]).fit(_Tiny())
    assert compat.last_saved_step(every_3) == 6, UPDATE


def test_a_vanished_name_says_what_to_update():
    with pytest.raises(compat.LightningInternalsChanged, match=r"object\._signal_connector no longer exists.*"
                                                             r"update llm_lit/lightning_compat\.py"):
        compat.request_stop(object())


def test_attached_trainer_is_none_until_a_trainer_holds_the_module():
    module = _Tiny()
    assert compat.attached_trainer(module) is None
    trainer = _trainer(max_steps=1)
    trainer.fit(module)
    assert compat.attached_trainer(module) is trainer


def test_lightning_cli_still_rereads_the_checkpoint_in_parse_ckpt_path():
    """`NoHyperparametersInCheckpoints` overrides this method; if LightningCLI renamed it, the override
    would silently stop working and `--ckpt_path` would be read twice again
    (tests/run/test_checkpoint_once.py counts the reads end to end)."""
    assert callable(getattr(LightningCLI, "_parse_ckpt_path", None)), UPDATE
    import inspect

    assert "self._parse_ckpt_path()" in inspect.getsource(LightningCLI.__init__), UPDATE


def _parsers() -> tuple[ArgumentParser, ArgumentParser]:
    root = ArgumentParser(exit_on_error=False)
    fit = ArgumentParser(exit_on_error=False)
    model = fit.add_argument_group("model", name="model")
    model.add_argument("--model.depth", type=int, default=2)
    model.add_argument("--model.width", type=int, default=8)
    root.add_subcommands().add_subcommand("fit", fit)
    return root, fit


def test_subcommand_parser_and_option_keys():
    root, fit = _parsers()
    assert compat.subcommand_parser(root, "fit") is fit, UPDATE
    assert compat.subcommand_parser(root, None) is root
    assert compat.subcommand_parser(fit, "fit") is fit  # no subcommands: the parser itself
    assert {"model.depth", "model.width"} <= set(compat.option_keys(fit)), UPDATE


def test_add_listed_subcommand_shows_in_help_and_in_the_invalid_choice_error(capsys):
    root, _ = _parsers()
    compat.add_listed_subcommand(root, "plot", "Plot a run's curves.")
    with pytest.raises(SystemExit):
        root.parse_args(["--help"])
    assert "Plot a run's curves." in capsys.readouterr().out, UPDATE
    assert "'plot'" in _message(root, ["plott"]), UPDATE


def _message(parser: ArgumentParser, argv: list[str]) -> str:
    with pytest.raises(argparse.ArgumentError) as info:
        parser.parse_args(argv)
    return " ".join(str(info.value).split())


def test_unknown_key_reads_each_form_of_jsonargparse_message(tmp_path):
    root, fit = _parsers()
    # "unrecognized arguments: --model.deep 3"
    assert compat.unknown_key(_message(root, ["fit", "--model.deep", "3"])) == "model.deep", UPDATE
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  deep: 3\n")
    fit.add_argument("--config", action=ActionConfigFile)
    # "Subcommand 'fit' does not accept option 'model.deep'"
    assert compat.unknown_key(_message(root, ["fit", "--config", str(config)])) == "model.deep", UPDATE
    # "Group 'model' does not accept option 'deep'" (a parser without subcommands)
    assert compat.unknown_key(_message(fit, ["--config", str(config)])) == "model.deep", UPDATE
    assert compat.unknown_key("something else went wrong") is None


def test_reworded_value_errors():
    _, fit = _parsers()
    message = _message(fit, ["--model.depth", "deep"])
    assert message.startswith('Parser key "model.depth":'), UPDATE
    assert compat.reworded(message).startswith("Invalid value for model.depth:")


@pytest.mark.parametrize("limits, lightnings, ours", [
    ({"max_steps": 2}, "Epoch 0/-2", "Epoch 0"),  # max_epochs -1: a run of steps, no epoch limit
    ({"max_epochs": 3}, "Epoch 0/2", "Epoch 0/2"),
])
def test_rich_train_line_leaves_out_the_count_of_a_run_without_an_epoch_limit(limits, lightnings, ours):
    from lightning.pytorch.callbacks import RichProgressBar

    pytest.importorskip("rich")
    bar = compat.RichTrainLine()
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, limit_train_batches=2, callbacks=[bar], **limits)
    trainer.fit(_Tiny())
    assert RichProgressBar._get_train_description(bar, 0).strip() == lightnings, UPDATE
    assert bar._get_train_description(0).strip() == ours
