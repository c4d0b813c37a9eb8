"""A checkpoint whose optimizer state holds NaN or infinity (finite weights, checksums that match) is refused
where it is read, in one line naming the tensor, instead of a resumed run dying at its first step with advice
to lower the learning rate."""

from __future__ import annotations

import pytest
import torch

from cli_helpers import DEBUG_CKPTS, DEBUG_CONFIG, run_cli
from llm_lit.errors import UserError
from llm_lit.run.checkpoint import read_checkpoint, save_checkpoint_file


def _checkpoint(value: float) -> dict:
    return {"global_step": 3, "state_dict": {"model.w": torch.ones(4)},
            "optimizer_states": [{"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(4),
                                                "exp_avg_sq": torch.full((4,), value)}},
                                  "param_groups": [{"lr": 0.01, "params": [0]}]}]}


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_non_finite_optimizer_state_is_refused_on_load_naming_the_tensor(tmp_path, value):
    path = tmp_path / "last.ckpt"
    save_checkpoint_file(_checkpoint(value), path)  # checksums recorded: the file is as written
    with pytest.raises(UserError, match=r"holds NaN or infinite optimizer state in "
                                        r"'optimizer_states/0/state/0/exp_avg_sq', with which a resumed run would fail"):
        read_checkpoint(path)
    save_checkpoint_file(_checkpoint(1.0), path)
    assert read_checkpoint(path)["global_step"] == 3


@pytest.mark.slow
def test_a_resume_from_a_checkpoint_with_nan_in_its_optimizer_state_is_one_line(tmp_path):
    args = ["fit", "--config", str(DEBUG_CONFIG), "--trainer.max_steps", "5", "--trainer.enable_progress_bar", "false",
            "--torch_threads", "1"]
    assert run_cli(args, cwd=tmp_path).returncode == 0
    last = tmp_path / DEBUG_CKPTS / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    state = checkpoint["optimizer_states"][0]["state"]
    first = sorted(state)[0]
    state[first]["exp_avg"][0] = float("nan")
    checkpoint.pop("llm_lit_checksums")
    save_checkpoint_file(checkpoint, last)
    result = run_cli([*args, "--trainer.max_steps", "10", "--ckpt_path", "last"], cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: The checkpoint '{DEBUG_CKPTS / 'last.ckpt'}' holds NaN or infinite optimizer state in "
        f"'optimizer_states/0/state/{first}/exp_avg', with which a resumed run would fail at its first step; "
        "use an earlier checkpoint.")
