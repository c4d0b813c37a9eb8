"""`torch.compile` where asked and where it can run: on a machine without a working compiler (no C++
compiler on a CPU, no Triton on a GPU) the model and the optimizer run eagerly, with one line saying so.

Whether compiling pays is the config's choice (`model.compile`, `model.optimizer.compile`): on GPUs it
does; for the small models of the CPU configs the measured gain did not repay the compile time.
"""

from __future__ import annotations

import dataclasses

from llm_lit.model import TransformerLM
from llm_lit.optim import OptimizerConfig
from llm_lit.optim.compiled_update import compile_failure
from llm_lit.training.reporting import say_once


def compile_model(model: TransformerLM, device_type: str) -> None:
    """Compile `model`'s forward and loss for `device_type`, or say why it stays eager."""
    failure = compile_failure(device_type)
    if failure is None:
        model.compile()
    else:
        say_once(f"torch.compile cannot run here ({failure}); the model trains eagerly: the same math, slower.")


def runnable_optimizer(config: OptimizerConfig, device_type: str) -> OptimizerConfig:
    """`config`, with its compiled update turned off (and one line saying why) when nothing compiles here."""
    failure = compile_failure(device_type) if config.compile else None
    if failure is None:
        return config
    say_once(f"torch.compile cannot run here ({failure}); the optimizer updates eagerly: the same math, slower.")
    return dataclasses.replace(config, compile=False)
