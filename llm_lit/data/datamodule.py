"""`TextDataModule`: text files in, token windows out, for every Lightning stage.

* `prepare_data` (once per node) finds the token cache, or builds it: trains the tokenizer on
  a sample of the corpus unless one is given, and encodes each file into its own shard, in
  `num_proc` processes (see `llm_lit.data.tokens`). A warm start reads the manifest and
  `stat`s the files; no corpus byte and no token is read.
* `setup` (every rank) reuses what `prepare_data` found, or reads the manifest once, and
  memory-maps the shards read-only: nothing is loaded into RAM.
* training batches are random windows drawn from `(seed, global sample index)` only; the
  number of micro-batches consumed is the DataModule's checkpointed state, so a resumed
  run continues with exactly the batches the uninterrupted run would have used.
* in an epoch run (`train_in_epochs`, which the run plan calls for `trainer.max_epochs`), training
  batches are epochs over fixed windows `stride` tokens apart, each epoch in a shuffled order that is a function of `(seed, epoch)`; the same count
  of consumed micro-batches says where in which epoch a resumed run continues.
* validation and test cover their split once, in non-overlapping windows.
* predict needs no corpus: it serves the prompts as strings; the model encodes them with
  the tokenizer that travels in its checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Optional, Union

import lightning as L
from torch.utils.data import DataLoader

from llm_lit.data.datasets import DataPosition, EpochWindows, MixtureWindows, RandomWindows, SequentialWindows
from llm_lit.data.formats.names import format_of
from llm_lit.data.sources import DataSource, check_sources
from llm_lit.data.token_array import TokenArray
from llm_lit.data.tokens import (
    BUNDLED_CORPUS,
    BUNDLED_MAX_MERGES,
    DEFAULT_TOKENIZER_SAMPLE_BYTES,
    TokenCache,
    check_num_proc,
    prepare_test_cache,
    prepare_token_cache,
    with_roles,
)
from llm_lit.errors import UserError
from tokenizer import END_OF_TEXT, AnyTokenizer, CharTokenizer, load_tokenizer
from tokenizer.errors import TokenizerError
from tokenizer.pretokenize import TextRange

DEFAULT_SPECIAL_TOKENS = [END_OF_TEXT]
#: The sample prompts of the bundled corpus, and how many tokens of another corpus's validation split make its prompt.
BUNDLED_PROMPTS = ("ROMEO:", "JULIET:")
PROMPT_TOKENS = 8

STRIDE_NEEDS_EPOCHS = ("data.stride ({stride}) applies only to epochs of windows; pass --trainer.max_epochs N "
                       "(training windows are random otherwise) or drop data.stride.")


class TextDataModule(L.LightningDataModule):
    """Language-modelling data from text files: tokenizer, token cache, windows and prompts."""

    def __init__(
        self,
        train_files: Union[list[str], str, None] = None,
        val_files: Union[list[str], str, None] = None,
        val_fraction: float = 0.1,
        tokenizer_path: Optional[str] = None,
        vocab_size: int = 4096,
        special_tokens: Optional[list[str]] = None,
        context_length: int = 256,
        batch_size: int = 32,
        val_batch_size: Optional[int] = None,
        seed: int = 1337,
        num_workers: int = 0,
        cache_dir: str = ".llm_lit_cache",
        prompts: Optional[list[str]] = None,
        prompts_file: Optional[str] = None,
        predictions_path: Optional[str] = None,
        predict_batch_size: int = 8,
        utf8_errors: Literal["strict", "replace"] = "strict",
        num_proc: Optional[int] = None,
        tokenizer_sample_bytes: int = DEFAULT_TOKENIZER_SAMPLE_BYTES,
        verify: Literal["stat", "full"] = "stat",
        test_files: Union[list[str], str, None] = None,
        eval_stride: Optional[int] = None,
        bos_token: Optional[str] = None,
        eos_token: Optional[str] = None,
        pad_token: Optional[str] = None,
        unk_token: Optional[str] = None,
        tokenizer_kind: Literal["bpe", "char"] = "bpe",
        stride: Optional[int] = None,
        sources: Optional[list[DataSource]] = None,
        text_field: str = "text",
        token_dtype: Optional[Literal["uint16", "uint32"]] = None,
    ) -> None:
        """Configure the data; nothing is read or written until `prepare_data`.

        Args:
            train_files: Files forming the training corpus (default: the bundled tinyshakespeare): text, .jsonl/.jsonl.gz/.jsonl.zst and .parquet/.arrow files (a document per record), datasets.save_to_disk folders, globs ('data/*.parquet', sorted), s3://, gs://, https:// and hf:// URLs (pip install 'llm_lit[remote]'), and token files (.bin: ours with its sidecar, llm.c's, or headerless with token_dtype) used as they are, with --data.tokenizer_path. See docs/data.md.
            val_files: Files of the validation split, as train_files (default: the last `val_fraction` of the training corpus).
            val_fraction: Share of the corpus held out for validation when no val_files are given (0.1: nanoGPT's split).
            tokenizer_path: A saved tokenizer (JSON) to use instead of training one on the corpus.
            vocab_size: Vocabulary size of the tokenizer trained on the corpus (ignored with tokenizer_path); linked into model.config.vocab_size.
            special_tokens: Special tokens of the trained tokenizer (default: ["<|endoftext|>"]); the first also separates concatenated files.
            context_length: Tokens per window (linked from model.config.context_length).
            batch_size: Training windows per micro-batch on each device.
            val_batch_size: Windows per validation batch (default: batch_size).
            seed: Seed of the training windows (each window is a hash of the seed and its sample index).
            num_workers: DataLoader worker processes for training batches (0: load in the main process, usually fastest here).
            cache_dir: Folder of the token caches (a tokenizer and one token shard per file, found by the settings and the files' paths); on a file system all nodes share, one process in the whole job builds it.
            prompts: Prompts for `predict`, e.g. '["ROMEO:"]'.
            prompts_file: A text file of prompts for `predict`, one per line (or a JSONL file of {"prompt": ...} objects).
            predictions_path: JSONL file `predict` writes its continuations to (default: predictions.jsonl in the checkpoint's run version, or beside a checkpoint of no run, numbered predictions-1.jsonl, ... when taken; see llm_lit.run.folders).
            predict_batch_size: Prompts generated together in one batch by `predict`.
            utf8_errors: 'strict' refuses a corpus that is not UTF-8 (naming the byte offset); 'replace' replaces invalid bytes with U+FFFD.
            num_proc: Processes that count pre-tokens (tokenizer training) and encode the corpus (default: every core).
            tokenizer_sample_bytes: Train the tokenizer on about this many bytes of the training split, evenly spread and cut at exact pre-token boundaries (a smaller split is used whole).
            tokenizer_kind: 'bpe' trains a byte-level BPE tokenizer of vocab_size tokens on the corpus; 'char' gives every character of the corpus (training and validation files) an id, then the special tokens (vocab_size is then the alphabet's size; nanoGPT's shakespeare_char).
            stride: With trainer.max_epochs: tokens between the starts of consecutive training windows (default: context_length, no overlap; smaller overlaps them). Each epoch serves every window once in a shuffled order (a function of seed and epoch). Without max_epochs training windows are random and stride is refused.
            verify: 'stat' trusts a cached file whose size and modification time are unchanged; 'full' re-hashes every corpus file (and re-encodes what changed).
            test_files: Text (or .bin token) files of the test split that `llm_lit test` scores (never seen by fit or validate); without them `test` refuses to run.
            eval_stride: Sliding-window evaluation for validate/test: windows of context_length tokens start every eval_stride tokens and each scores only its targets not scored before, so every token is scored once, with at least context_length - eval_stride tokens of context after the first window (the Hugging Face perplexity guide's method); default: context_length (non-overlapping windows).
            bos_token: Special token that begins each document and each prompt (added to the trained tokenizer's special tokens; must be one of a given tokenizer's).
            eos_token: Special token that ends each document; generating it ends a continuation (default: none, and then <|endoftext|> stops generation when the tokenizer has it).
            pad_token: Special token that pads short evaluation windows (their padded targets are never scored).
            sources: Weighted sources instead of train_files/val_files: a list of {name, files, weight, val_files, val_fraction, text_field}; training windows come from each in proportion to its weight, and validation logs val/<name>/loss and val/<name>/bpb for each (see docs/data.md).
            text_field: Column (Parquet, Arrow) or key (JSONL) that holds each record's text.
            token_dtype: 'uint16' or 'uint32': the ids of headerless token files (nanoGPT's prepare.py writes uint16); llm.c's files say it in their header, ours in their sidecar.
            unk_token: Special token that stands for unknown text. With tokenizer_kind 'char', every character outside the alphabet becomes it (None refuses such characters); a byte-level BPE never needs it (it spells every byte), it is recorded for tools that ask (e.g. the Hugging Face export).
        """
        super().__init__()
        train_files, val_files, test_files = _listed(train_files), _listed(val_files), _listed(test_files)
        num_proc = check_num_proc(num_proc)
        problems = _check_numbers(val_fraction=val_fraction, vocab_size=vocab_size, context_length=context_length,
                                  batch_size=batch_size, val_batch_size=val_batch_size, seed=seed,
                                  num_workers=num_workers, predict_batch_size=predict_batch_size,
                                  tokenizer_sample_bytes=tokenizer_sample_bytes, eval_stride=eval_stride,
                                  stride=stride)
        if eval_stride is not None and eval_stride > context_length:
            problems.append(f"eval_stride must be at most context_length {context_length} (got {eval_stride})")
        problems += _check_kind(tokenizer_kind, unk_token, tokenizer_path, train_files, val_files, sources)
        problems += _empty_lists(train_files=train_files, val_files=val_files, test_files=test_files)
        if sources is not None and (train_files or val_files):
            problems.append("give data.sources or data.train_files / data.val_files, not both")
        if not isinstance(text_field, str) or not text_field:
            problems.append(f"text_field must name a column or key (got {text_field!r})")
        if problems:
            raise UserError("Invalid data settings: " + "; ".join(problems) + "; fix these --data values.")
        self.sources = check_sources(sources) if sources is not None else None
        self.train_files = list(train_files) if train_files is not None else ([] if self.sources else [str(BUNDLED_CORPUS)])
        self.val_files = list(val_files) if val_files else None
        self.text_field = text_field
        self.token_dtype = token_dtype
        self.val_fraction = val_fraction
        self.special_tokens = list(DEFAULT_SPECIAL_TOKENS if special_tokens is None else special_tokens)
        self.context_length = context_length
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or batch_size
        self.seed = seed
        self.num_workers = num_workers
        self.cache_dir = cache_dir
        self.prompts = list(prompts) if prompts else None
        self.prompts_file = prompts_file
        self.predictions_path = predictions_path
        self.predict_batch_size = predict_batch_size
        self.utf8_errors = utf8_errors
        self.num_proc = num_proc
        self.tokenizer_sample_bytes = tokenizer_sample_bytes
        self.verify = verify
        self.test_files = list(test_files) if test_files else None
        self.eval_stride = eval_stride
        self.roles = {role: token for role, token in (("bos", bos_token), ("eos", eos_token), ("pad", pad_token),
                                                       ("unk", unk_token)) if token is not None}
        self.tokenizer_kind = tokenizer_kind
        self.stride = stride
        self.unk_token = unk_token

        self.given_tokenizer = _load_tokenizer(tokenizer_path) if tokenizer_path else None
        if tokenizer_kind == "char" and self.given_tokenizer is not None and not isinstance(self.given_tokenizer, CharTokenizer):
            raise UserError(f"data.tokenizer_kind is 'char' but data.tokenizer_path '{tokenizer_path}' holds a byte-level "
                            "BPE tokenizer; pass a char tokenizer file or drop one of the two settings.")
        self.tokenizer: Optional[AnyTokenizer] = self.given_tokenizer
        self._requested_vocab_size = vocab_size
        self.cache: Optional[TokenCache] = None
        self.train_tokens: Optional[TokenArray] = None
        self.val_tokens: Optional[TokenArray] = None
        self.test_tokens: Optional[TokenArray] = None
        #: With data.sources: each source's name, and its training and validation splits, in order.
        self.source_names: list[str] = []
        self.train_splits: list[TokenArray] = []
        self.val_splits: list[TokenArray] = []
        self.position = DataPosition()
        self.in_epochs = False

    @property
    def train_batches_consumed(self) -> int:
        """Training micro-batches this rank has consumed (the data position checkpoints save)."""
        return self.position.consumed

    @train_batches_consumed.setter
    def train_batches_consumed(self, value: int) -> None:
        self.position.consumed = value

    def train_in_epochs(self, in_epochs: bool = True) -> None:
        """Serve training batches epoch by epoch over fixed windows `stride` apart (else: endless random windows).

        The run plan decides it (`llm_lit.run.plan`: `trainer.max_epochs` given); a Trainer given max_epochs
        without it finds endless random windows, so give such a Trainer trainer.max_steps too.
        """
        self.in_epochs = in_epochs

    def use_tokenizer(self, tokenizer: AnyTokenizer) -> None:
        """Use `tokenizer` (e.g. a checkpoint's, passed in memory) instead of tokenizer_path or training one.

        Call it before `prepare_data`; the token cache is keyed by its fingerprint as for any given tokenizer.
        """
        self.given_tokenizer = self.tokenizer = tokenizer

    @property
    def vocab_size(self) -> int:
        """Vocabulary size: the given tokenizer's (a char tokenizer is built now), else the size the BPE
        tokenizer will be trained to."""
        self._build_char_tokenizer()
        if self.given_tokenizer is not None:
            return self.given_tokenizer.vocab_size
        return self._requested_vocab_size

    def _build_char_tokenizer(self) -> None:
        """With tokenizer_kind 'char' and no tokenizer yet: the alphabet of every training and validation file.

        Every rank builds it (one read of the text, fast for the corpora char models train on), so every
        rank finds the same token cache, keyed by its fingerprint as for a given tokenizer.
        """
        if self.tokenizer_kind != "char" or self.given_tokenizer is not None:
            return
        files = self.train_files + (self.val_files or [])
        if self.sources:
            files = [f for s in self.sources for f in list(s.files) + list(s.val_files or [])]
        unread = next((f for f in files if "://" in str(f) or any(c in str(f) for c in "*?[")
                       or format_of(str(f)) != "txt"), None)
        if unread is not None:
            raise UserError(f"tokenizer_kind char builds its alphabet from plain text files, but '{unread}' is not one; "
                            "pass a char tokenizer with data.tokenizer_path, or use tokenizer_kind bpe.")
        missing = next((f for f in files if not Path(f).expanduser().is_file()), None)
        if missing is not None:
            raise UserError(f"The corpus file '{missing}' does not exist; fix --data.train_files or --data.val_files.")
        ranges = [TextRange.whole(Path(f).expanduser()) for f in files]
        self.use_tokenizer(CharTokenizer.from_ranges(ranges, self.special_tokens, self.unk_token, self.utf8_errors))

    # ------------------------------------------------------------------ preparing and opening
    def _needs_corpus(self) -> bool:
        trainer = self.trainer
        return trainer is None or not trainer.predicting

    def _stage(self) -> Optional[str]:
        """The stage the attached Trainer runs ("fit", "validate", "test"), or None without a Trainer."""
        trainer = self.trainer
        if trainer is None:
            return None
        return "test" if trainer.testing else "validate" if trainer.validating else "fit"

    def prepare_data(self) -> None:
        """Find the token cache, or build it: train the tokenizer (unless given) and encode the corpus (with progress).

        Only what the stage scores is prepared: fit and validate the corpus cache (fit's, found by the tokenizer's
        fingerprint), test with a given tokenizer (a checkpoint's) the test files alone; without a Trainer, all."""
        if self.trainer is not None and self.trainer.testing:
            self._require_test_files()
        if self._needs_corpus():
            self._build_char_tokenizer()
            self._check_bundled_vocab_size()
            self.cache = self._prepare(self._stage())

    def _check_bundled_vocab_size(self) -> None:
        """Refuse, before any tokenizer is trained, a BPE vocabulary larger than the bundled corpus can give (it runs
        out of pairs to merge; `_check_trained_vocab_size` would refuse it only after training and encoding)."""
        if self.given_tokenizer is not None or self.tokenizer_kind != "bpe" or self.train_files != [str(BUNDLED_CORPUS)]:
            return
        _, special_tokens, _ = with_roles(None, self.special_tokens, self.roles)
        most = 256 + BUNDLED_MAX_MERGES + len(special_tokens)
        if self._requested_vocab_size > most:
            raise UserError(f"data.vocab_size {self._requested_vocab_size} is more than the bundled tinyshakespeare "
                            f"corpus can give a BPE tokenizer (at most {most:,} tokens); point --data.train_files at a "
                            f"larger corpus, or pass --data.vocab_size {most} or less.")

    def corpus_prompts(self) -> list[str]:
        """Prompts to sample from at each validation when none are configured: 'ROMEO:' and 'JULIET:' for the
        bundled corpus, else the first few tokens of the validation split (none before `setup`)."""
        if self.train_files == [str(BUNDLED_CORPUS)] and not self.val_files:
            return list(BUNDLED_PROMPTS)
        if self.val_tokens is None or self.tokenizer is None:
            return []
        return [self.tokenizer.decode([int(i) for i in self.val_tokens[:PROMPT_TOKENS]])]

    def _require_test_files(self) -> None:
        if not self.test_files:
            raise UserError("test scores a separate test split; pass --data.test_files FILE, or a list "
                            "'[A, B]' (the validation split is scored by llm_lit validate).")

    def _prepare(self, stage: Optional[str]) -> TokenCache:
        """The cache `stage` scores: with a given tokenizer, test's is the test files' own cache (the corpus is not
        read); otherwise the corpus cache, with the test split when the stage is test (or unknown)."""
        if stage == "test" and self.given_tokenizer is not None:
            return prepare_test_cache(self.test_files, self.given_tokenizer, self.cache_dir, utf8_errors=self.utf8_errors,
                                      num_proc=self.num_proc, verify=self.verify, progress=True, roles=self.roles,
                                      text_field=self.text_field, token_dtype=self.token_dtype)
        return prepare_token_cache(self.train_files or None, self.val_files, self.val_fraction,
                                   self._requested_vocab_size, self.special_tokens, self.cache_dir,
                                   tokenizer=self.given_tokenizer, utf8_errors=self.utf8_errors, num_proc=self.num_proc,
                                   tokenizer_sample_bytes=self.tokenizer_sample_bytes, verify=self.verify, progress=True,
                                   roles=self.roles, test_files=self.test_files if stage in (None, "test") else None,
                                   sources=self.sources, text_field=self.text_field, token_dtype=self.token_dtype)

    def _serves(self, stage: str) -> bool:
        """Whether the cache prepared so far holds what `stage` reads (test: the test split; else the corpus)."""
        if self.cache is None:
            return False
        test_only = set(self.cache.manifest.splits) == {"test"}
        if stage == "test":
            return test_only or self.cache.test is not None
        return not test_only

    @property
    def mixture(self) -> bool:
        """Whether training draws from several weighted sources (data.sources with two or more)."""
        return len(self.source_names) > 1

    def setup(self, stage: str) -> None:
        """Open the cache's tokenizer and memory-map its shards (read-only); predict opens nothing.

        Reuses what `prepare_data` found in this process; other ranks find the cache it built (a manifest read
        and a `stat` per file).
        """
        if stage == "test":
            self._require_test_files()
        if stage == "predict":
            return
        self._build_char_tokenizer()
        if not self._serves(stage):
            self.cache = self._prepare(stage)
        self.tokenizer, _, _ = with_roles(self.given_tokenizer or _load_tokenizer(str(self.cache.tokenizer_path)),
                                          self.special_tokens, self.roles)
        self._check_trained_vocab_size()
        self._check_ids()
        if set(self.cache.manifest.splits) == {"test"}:  # test with a given tokenizer: the test split alone
            self.test_tokens = self.cache.split("test")
            self._check_lengths([("test split", self.test_tokens)])
            return
        names = self.cache.source_names
        self.source_names = [name for name in names if name]
        self.train_splits = [self.cache.source_split("train", name) for name in names]
        self.val_splits = [self.cache.source_split("val", name) for name in names]
        self.train_tokens = self.train_splits[0] if len(names) == 1 else TokenArray(
            [p for split in self.train_splits for p in split.parts])
        self.val_tokens = self.val_splits[0] if len(names) == 1 else TokenArray(
            [p for split in self.val_splits for p in split.parts])
        self.test_tokens = self.cache.split("test") if self.cache.test is not None else None
        splits = [(f"training split{_of(name)}", t) for name, t in zip(names, self.train_splits)]
        splits += [(f"validation split{_of(name)}", t) for name, t in zip(names, self.val_splits)]
        self._check_lengths(splits + [("test split", self.test_tokens)])

    def _check_lengths(self, splits: list[tuple[str, Optional[TokenArray]]]) -> None:
        """Refuse a split shorter than one window, naming it."""
        for what, tokens in splits:
            if tokens is None:
                continue
            if len(tokens) < self.context_length + 1:
                raise UserError(
                    f"The {what} has {len(tokens)} tokens, fewer than one window of {self.context_length + 1}; "
                    "use a longer corpus or a smaller model.config.context_length.")

    def _check_trained_vocab_size(self) -> None:
        """Refuse a trained tokenizer smaller than data.vocab_size: the corpus ran out of pairs to merge, and the
        model (sized by the link from data.vocab_size) would carry embedding rows no token uses."""
        have, asked = self.tokenizer.vocab_size, self._requested_vocab_size
        if self.given_tokenizer is None and have < asked:
            raise UserError(f"The tokenizer trained on this corpus has only {have:,} tokens (its text has no more pairs "
                            f"to merge), fewer than --data.vocab_size {asked}, so {asked - have:,} rows of the model's "
                            f"embedding would never be used; pass --data.vocab_size {have} or less (or more text).")

    def _check_ids(self) -> None:
        """Refuse a token file of the user's holding ids the tokenizer does not have, naming it. (The cache's own
        shards never get here: building or checking the cache re-encodes a shard whose ids are out of range.)"""
        vocab = self.tokenizer.vocab_size
        for cache in (self.cache, self.cache.test):
            if cache is None or cache.manifest.max_id() < vocab:
                continue
            given = [s.source.path for shards in cache.manifest.splits.values() for s in shards
                     if s.max_id >= vocab and s.source.kind == "tokens"]
            if given:
                raise UserError(f"The token file '{given[0]}' holds ids beyond the tokenizer's {vocab}; encode its "
                                "text again with this tokenizer (python -m tokenizer encode --tokenizer ...).")
            raise UserError(f"The token cache '{cache.folder}' holds id {cache.manifest.max_id()}, outside the "
                            f"tokenizer's {vocab} ids; delete that folder so that it is rebuilt.")

    # ------------------------------------------------------------------ loaders
    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        """Training batches continuing after those already consumed (resume): endless random windows, or with
        `train_in_epochs` one epoch of shuffled `stride`-apart windows per iteration."""
        rank, world = self._rank_and_world()
        if self.in_epochs:
            if self.mixture:
                raise UserError("trainer.max_epochs runs epochs over one corpus, but data.sources mixes "
                                f"{len(self.source_names)} by weight; drop trainer.max_epochs (and train for "
                                "trainer.max_steps) or give one source.")
            windows = self._epoch_windows(rank, world)
        else:
            if self.stride is not None:
                raise UserError(STRIDE_NEEDS_EPOCHS.format(stride=self.stride))
            if self.mixture:
                weights = {s.name: s.weight for s in self.sources}
                windows = MixtureWindows(self.train_splits, [weights[n] for n in self.source_names], self.context_length,
                                         self.batch_size, seed=self.seed, rank=rank, world_size=world,
                                         start_batch=self.train_batches_consumed)
            else:
                windows = RandomWindows(self.train_tokens, self.context_length, self.batch_size, seed=self.seed,
                                        rank=rank, world_size=world, start_batch=self.train_batches_consumed)
        # pinned host memory lets Lightning's non_blocking copy to the GPU overlap the step; epoch windows read
        # where each epoch starts when it starts, so their workers are made afresh each epoch
        persistent = self.num_workers > 0 and isinstance(windows, RandomWindows)  # (MixtureWindows too)
        return DataLoader(windows, batch_size=None, num_workers=self.num_workers, persistent_workers=persistent,
                          pin_memory=self._on_cuda())

    def _epoch_windows(self, rank: int, world: int) -> EpochWindows:
        stride = self.stride or self.context_length
        try:
            return EpochWindows(self.train_tokens, self.context_length, self.batch_size, stride, seed=self.seed,
                                rank=rank, world_size=world, position=self.position)
        except ValueError as e:
            raise UserError(f"The training split has too few windows for an epoch: {e} Lower data.stride or "
                            "data.batch_size, or use a longer corpus.") from None

    def _on_cuda(self) -> bool:
        trainer = self.trainer
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def _sequential(self, tokens: TokenArray) -> DataLoader:
        rank, world = self._rank_and_world()
        pad = self.tokenizer.role_id("pad") if self.tokenizer is not None else None
        windows = SequentialWindows(tokens, self.context_length, self.val_batch_size, rank=rank, world_size=world,
                                    pad_id=pad or 0, stride=self.eval_stride)
        return DataLoader(windows, batch_size=None, pin_memory=self._on_cuda())

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        """The validation split once, each target scored once (windows eval_stride apart), shared out across ranks;
        with several sources, one loader per source (in `source_names` order)."""
        if self.mixture:
            return [self._sequential(tokens) for tokens in self.val_splits]
        return self._sequential(self.val_tokens)

    def test_dataloader(self) -> DataLoader:
        """The test split (data.test_files) once, as validation scores its split."""
        return self._sequential(self.test_tokens)

    def predict_dataloader(self) -> DataLoader:
        """Batches of prompt strings (the model encodes them with its checkpoint's tokenizer)."""
        prompts = self.read_prompts()
        return DataLoader(prompts, batch_size=self.predict_batch_size, collate_fn=list)

    def read_prompts(self) -> list[str]:
        """The prompts from `prompts` and `prompts_file`, in that order."""
        prompts = list(self.prompts or [])
        if self.prompts_file:
            prompts.extend(_read_prompts_file(Path(self.prompts_file)))
        if not prompts:
            raise UserError("predict needs prompts; pass --data.prompts '[\"ROMEO:\"]' or --data.prompts_file FILE.")
        return prompts

    # ------------------------------------------------------------------ resumable position
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Count training micro-batches as the loop consumes them (prefetched ones are not counted)."""
        if self.trainer is not None and self.trainer.training:
            self.train_batches_consumed += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        """The data position saved in checkpoints: micro-batches consumed so far."""
        return {"train_batches_consumed": self.train_batches_consumed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the data position from a checkpoint."""
        self.train_batches_consumed = int(state_dict.get("train_batches_consumed", 0))


def _load_tokenizer(path: str) -> AnyTokenizer:
    if not Path(path).expanduser().is_file():
        raise UserError(f"The tokenizer file '{path}' does not exist; pass a tokenizer saved by Tokenizer.save, "
                        "or leave --data.tokenizer_path unset to train one.")
    try:
        return load_tokenizer(Path(path).expanduser())  # BPE or char
    except TokenizerError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"The tokenizer file '{path}' cannot be read ({e}); pass a tokenizer saved by Tokenizer.save.") from e


def _read_prompts_file(path: Path) -> list[str]:
    if not path.exists() or path.is_dir():  # (not is_file(): /dev/stdin, a pipe, is fine)
        raise UserError(f"The prompts file '{path}' does not exist; pass an existing text or JSONL file.")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(f"The prompts file '{path}' is not UTF-8 text (bad byte {data[e.start]:#04x} at byte offset "
                        f"{e.start}, line {line}); convert it to UTF-8 (e.g. iconv -t UTF-8).") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        try:
            return [json.loads(line)["prompt"] for line in lines]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise UserError(f"The prompts file '{path}' is not JSONL of {{\"prompt\": ...}} objects ({e}); "
                            "fix it or pass plain text, one prompt per line.") from e
    return [line.replace("\\n", "\n") for line in lines]


def _listed(files: Union[list[str], str, None]) -> Optional[list[str]]:
    """A `*_files` setting as a list: one path (or glob) given alone is a list of one."""
    return [files] if isinstance(files, str) else files


def _check_kind(kind: str, unk_token: Optional[str], tokenizer_path: Optional[str], train_files: Optional[list[str]],
                val_files: Optional[list[str]], sources: Optional[list[Any]] = None) -> list[str]:
    """Problems of the tokenizer kind settings (a char alphabet is read from text, not from token files)."""
    problems = []
    if unk_token == "":
        problems.append("unk_token must be a non-empty string such as '<|unk|>'")
    listed = (train_files or []) + (val_files or [])
    for source in sources or []:
        entry = source if isinstance(source, dict) else getattr(source, "__dict__", {})
        listed += list(entry.get("files") or []) + list(entry.get("val_files") or [])
    token_files = [f for f in listed if str(f).endswith(".bin")]
    if kind == "char" and token_files and not tokenizer_path:
        problems.append(f"tokenizer_kind char builds its alphabet from text, but '{token_files[0]}' is a token file "
                        "(pass the tokenizer that wrote it with tokenizer_path)")
    return problems


def _empty_lists(**lists: Optional[list[str]]) -> list[str]:
    """A list of files given but empty (e.g. a shell glob that matched nothing) is refused, never taken for unset."""
    return [f"{name} is an empty list (did a file pattern match nothing?); list at least one file, or leave {name} "
            "unset" for name, files in lists.items() if files is not None and len(files) == 0]


def _check_numbers(**values: Any) -> list[str]:
    problems = []
    for name, value in values.items():
        if name == "val_fraction":
            if not 0 < value < 1:
                problems.append(f"val_fraction must be between 0 and 1 (got {value})")
        elif name in ("seed", "num_workers"):
            if value < 0:
                problems.append(f"{name} must be >= 0 (got {value})")
        elif value is not None and value < 1:
            problems.append(f"{name} must be a positive integer (got {value})")
    return problems


def _of(name: str) -> str:
    return f" of source '{name}'" if name else ""
