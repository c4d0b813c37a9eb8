"""`llm_lit prepare`: build the tokenizer and every token shard of a fit's data settings, without training.

    llm_lit prepare --config configs/shakespeare.yaml
    llm_lit prepare --config mixture.yaml --data.num_proc 16

It takes the same `--config` and `--data.*` flags as `fit` (the same parser; model and trainer
settings are accepted and ignored, except `model.init_from`, whose tokenizer fit would use), builds
the cache under the same build lock, and prints a table per source: files, documents, MB of text,
tokens, bytes per token, MB/s and time. A `fit` with the same settings then starts warm. This is
what a multi-node job runs once before launching, and how a mixture is checked.
"""

from __future__ import annotations

from typing import Any, Optional

from llm_lit.commands.lightning_cli import LLMLitCLI
from llm_lit.data import TextDataModule
from llm_lit.data.report import format_table, source_stats
from llm_lit.run.init_from import read_initial_weights


class PrepareCLI(LLMLitCLI):
    """fit's parser, with only the DataModule instantiated; `prepare` then builds its token cache."""

    def __init__(self, args: Optional[list[str]] = None) -> None:
        super().__init__(args=args, run=False)

    def setup_parser(self, add_subcommands: bool, main_kwargs: dict[str, Any],
                     subparser_kwargs: dict[str, Any]) -> None:
        """fit's arguments at the top level, under the name `llm_lit prepare`."""
        super().setup_parser(False, {**main_kwargs, "prog": "llm_lit prepare",
                                     "description": (__doc__ or "").splitlines()[0]}, subparser_kwargs)

    def instantiate_classes(self) -> None:
        """Only the DataModule (no model is built, no trainer or run folder made), with the tokenizer of
        model.init_from when one is given."""
        data = self.config["data"]
        settings = data.as_dict() if hasattr(data, "as_dict") else dict(data)
        self.datamodule = TextDataModule(**settings)
        init_from = self.config.get("model", {}).get("init_from") if "model" in self.config else None
        if init_from:
            weights = read_initial_weights(init_from)
            if weights.tokenizer is not None:
                self.datamodule.use_tokenizer(weights.tokenizer)

    def after_instantiate_classes(self) -> None:
        """Nothing to hand over: there is no model."""


def main(argv: Optional[list[str]] = None) -> int:
    """`llm_lit prepare --config X [--data.* ...]`; returns the exit code."""
    cli = PrepareCLI(args=list(argv or []))
    data = cli.datamodule
    data.prepare_data()
    cache = data.cache
    print(f"token cache: {cache.folder}")
    print(format_table(source_stats(cache)))
    print("A fit with the same --config and --data settings starts from this cache.")
    return 0
