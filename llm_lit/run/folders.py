"""Where a run's files go: `<out_dir>/<run_name>/version_<N>/`, one version per fresh `fit`.

    runs/shakespeare/version_0/
        checkpoints/last.ckpt, best-step700.ckpt   the checkpoint callbacks' folder
        events.out.tfevents.*, hparams.yaml        TensorBoard logs
        config.yaml                                the fit's full config
        predictions.jsonl                          what `predict` wrote from one of its checkpoints
        predictions-1.jsonl, ...                   what later predicts wrote (none is overwritten)
        curves.png                                 what `llm_lit plot` drew

* `--out_dir` (default `runs`) moves all of it. `--run_name` names it; by default the name
  comes from the first config file and the corpus (`shakespeare` on the bundled corpus,
  `shakespeare-mytext` on mytext.txt), so training on other text never touches the
  bundled run's checkpoints.
* A fresh `fit` starts the next version, so it never overwrites an earlier run's files.
* `fit --ckpt_path last` resumes the newest version of the run that has a `last.ckpt`, and
  `fit --ckpt_path FILE` continues in the version FILE belongs to (`<version>/checkpoints/FILE`):
  a resumed run's logs and checkpoints land in the version it continues.
* `validate`, `test` and `predict` create no version and write no logs (they print their
  metrics); `predict` writes its continuations into the version of its checkpoint (beside a checkpoint
  of no run, e.g. `/tmp/x/last.ckpt`), in a new file each time (`predictions-1.jsonl`, ...).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

from llm_lit.errors import UserError
from llm_lit.training.quiet import silence_resume_noise

DEFAULT_OUT_DIR = "runs"
CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
PREDICTIONS = "predictions.jsonl"
_VERSION = re.compile(r"version_(\d+)")


def add_run_arguments(parser: Any) -> None:
    """Add `--run_name` and `--out_dir` to a LightningCLI parser (top level, next to `--ckpt_path`)."""
    parser.add_argument("--run_name", type=Optional[str], default=None,
                        help="Name of the run: its files go to OUT_DIR/RUN_NAME/version_N/ (default: the first "
                             "config file's name, plus the first training file's when it is not the bundled corpus).")
    parser.add_argument("--out_dir", type=str, default=DEFAULT_OUT_DIR,
                        help="Folder of all runs: checkpoints, TensorBoard logs, the saved config and predictions "
                             "go to OUT_DIR/RUN_NAME/version_N/.")


def default_run_name(config_files: Sequence[str | os.PathLike], train_files: Optional[Sequence[str]]) -> str:
    """`<first config file's stem>[-<first training file's stem>[+<more files>]]`.

    The corpus part is left out for the bundled corpus (no `train_files`); with neither a config
    file nor a corpus of one's own the name is `tinyshakespeare`, the bundled corpus.
    """
    parts = [Path(str(config_files[0])).stem] if config_files else []
    if train_files:
        corpus = Path(train_files[0]).stem
        parts.append(corpus + (f"+{len(train_files) - 1}" if len(train_files) > 1 else ""))
    name = "-".join(parts) or "tinyshakespeare"
    return re.sub(r"[^\w.+-]", "_", name)


def check_run_name(name: str) -> str:
    """`name` if it can name one folder, else `UserError`."""
    if not name or name in (".", "..") or "/" in name or os.sep in name:
        raise UserError(f"--run_name {name!r} cannot name a run folder; pass a name without '/', e.g. my-run.")
    return name


@dataclass(frozen=True)
class Run:
    """A named run: the folder `<out_dir>/<name>`, which holds one `version_<N>` folder per fresh `fit`."""

    out_dir: Path
    name: str

    @classmethod
    def from_config(cls, config: Any) -> "Run":
        """The run that a subcommand's parsed config (`--run_name`, `--out_dir`, config files, corpus) names."""
        name = config.get("run_name") or default_run_name(config.get("config") or [], config.data.get("train_files"))
        return cls(Path(config.get("out_dir") or DEFAULT_OUT_DIR).expanduser(), check_run_name(name))

    @property
    def folder(self) -> Path:
        """`<out_dir>/<name>`."""
        return self.out_dir / self.name

    def versions(self) -> list[Path]:
        """The run's `version_<N>` folders, lowest N first."""
        if not self.folder.is_dir():
            return []
        numbered = [(int(m.group(1)), p) for p in self.folder.iterdir()
                    if p.is_dir() and (m := _VERSION.fullmatch(p.name))]
        return [p for _, p in sorted(numbered)]

    def new_version(self) -> Path:
        """The folder of a fresh `fit`: `version_<N+1>` after the highest existing N (`version_0` at first)."""
        versions = self.versions()
        number = int(_VERSION.fullmatch(versions[-1].name).group(1)) + 1 if versions else 0
        return self.folder / f"version_{number}"

    def last_checkpoint(self) -> Optional[Path]:
        """`checkpoints/last.ckpt` of the newest version that has one (what `--ckpt_path last` resumes)."""
        for version in reversed(self.versions()):
            last = version / CHECKPOINTS / LAST
            if last.is_file():
                return last
        return None


def newest_last_checkpoint(out_dir: str | os.PathLike = DEFAULT_OUT_DIR) -> Path:
    """The most recently written `last.ckpt` of any run under `out_dir` (what `chat`, `serve` and `eval` take
    `--ckpt_path last` to mean: the model trained last); `UserError` when there is none."""
    found = sorted(Path(out_dir).glob(f"*/version_*/{CHECKPOINTS}/{LAST}"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise UserError(f"--ckpt_path last: no run under '{out_dir}' has a {LAST}; train one with llm_lit fit, or "
                        "pass --ckpt_path FILE.")
    return found[-1]


def checkpoint_version(ckpt_path: Optional[str | os.PathLike]) -> Optional[Path]:
    """The version folder a checkpoint file belongs to: `V` for `V/checkpoints/<file>.ckpt`, else None."""
    if not ckpt_path:
        return None
    path = Path(ckpt_path).expanduser()
    return path.parent.parent if path.parent.name == CHECKPOINTS else None


#: `--ckpt_path` names Lightning resolves from the state of its own process (its ModelCheckpoint's best file, a
#: SLURM requeue's hpc file, a model registry), which a new llm_lit process never has.
UNRESOLVED_NAMES = ("best", "hpc", "registry")


def resolve_last(run: Run, subcommand: str, ckpt_path: Optional[str]) -> Optional[str]:
    """`--ckpt_path` with `last` replaced by the run's newest `last.ckpt` (`best`, `hpc` and `registry` refused).

    Without one, `fit` starts a new run (saying so), and validate, test and predict stop with
    one line naming the run folder.
    """
    if ckpt_path in UNRESOLVED_NAMES:
        raise UserError(f"--ckpt_path {ckpt_path} is one of Lightning's special names, which means nothing to a new "
                        f"llm_lit process (it keeps no {ckpt_path} checkpoint of its own); pass --ckpt_path last (the "
                        "newest last.ckpt of the run) or the path of a .ckpt file, e.g. a best-step*.ckpt.")
    if ckpt_path != "last":
        return ckpt_path
    last = run.last_checkpoint()
    if last is not None:
        return str(last)
    if subcommand == "fit":
        rank_zero_info(f"No {LAST} under {run.folder}/version_*/{CHECKPOINTS}/ to resume: starting a new run.")
        return None
    raise UserError(f"--ckpt_path last: no run named '{run.name}' under '{run.out_dir}' has a {LAST}; pass "
                    "--ckpt_path FILE, or the --run_name (and --out_dir) of a trained run.")


def fit_version(run: Run, ckpt_path: Optional[str]) -> Path:
    """The version folder a `fit` writes to: the one its checkpoint belongs to, else a new one."""
    return checkpoint_version(ckpt_path) or run.new_version()


def prediction_path(run: Run, ckpt_path: Optional[str]) -> Path:
    """Where `predict` writes by default: into the checkpoint's version; beside a checkpoint that belongs to no
    version (`/tmp/x/last.ckpt`, an imported model); into the run folder without a checkpoint. The file is the
    first of `predictions.jsonl`, `predictions-1.jsonl`, `predictions-2.jsonl`, ... that does not exist yet, so
    an earlier predict's continuations are never overwritten."""
    if ckpt_path:
        folder = checkpoint_version(ckpt_path) or Path(ckpt_path).expanduser().parent
    else:
        folder = run.folder
    return first_free(folder / PREDICTIONS)


def first_free(path: Path) -> Path:
    """`path` if nothing is there yet, else the first free `<stem>-<N><suffix>` beside it (N = 1, 2, ...)."""
    candidate, number = path, 0
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


def trainer_placement(version: Optional[Path], ckpt_path: Optional[str], trainer_config: Any) -> dict[str, Any]:
    """The Trainer arguments that put a subcommand's files into its version folder (`RunPlan.version`).

    `fit` (and `LLMLitCLI(run=False)`) has a version (`fit_version`): a TensorBoard logger writes into it
    unless `trainer.logger` names another, and it is the `default_root_dir` unless one is set (so Lightning's
    other files land there too). validate, test and predict have none (`version` None) and get no logger
    unless one is set: they print their metrics, and leave no empty version behind.
    """
    logger_unset = trainer_config.get("logger") is None
    if version is None:
        return {"logger": False} if logger_unset else {}
    if ckpt_path:
        silence_resume_noise()  # its checkpoint folder is not empty: it holds the run it continues
    placement: dict[str, Any] = {}
    if logger_unset or trainer_config.get("logger") is True:
        placement["logger"] = run_logger(version)
    if trainer_config.get("default_root_dir") is None:
        placement["default_root_dir"] = str(version)
    return placement


def run_logger(version: Path) -> TensorBoardLogger:
    """A TensorBoard logger writing into `version` itself (`<out_dir>/<name>/<version>`)."""
    return TensorBoardLogger(save_dir=version.parent.parent, name=version.parent.name, version=version.name,
                             default_hp_metric=False)


def place_checkpoints(trainer: L.Trainer, version: Path) -> None:
    """Point every checkpoint callback without its own `dirpath` at `<version>/checkpoints`."""
    folder = os.path.realpath(version / CHECKPOINTS)  # as ModelCheckpoint stores a dirpath it is given
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
            callback.dirpath = folder


def place_logger_files(trainer_config: Any, version: Path) -> None:
    """Point a W&B logger of `trainer_config` (parsed, before instantiation) that names no folder of its own at
    `version`, so its `wandb/` folder lands in the run's version rather than in the current folder."""
    loggers = trainer_config.get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        if not str(getattr(logger, "class_path", "") or "").endswith(".WandbLogger"):
            continue
        init_args = logger.get("init_args")
        if init_args is not None and init_args.get("save_dir") in (None, ".") and init_args.get("dir") is None:
            init_args.save_dir = str(version)


class SaveConfigOfFit(SaveConfigCallback):
    """LightningCLI's config saver (`config.yaml` in the log folder, the run's version), once training starts.

    So validate, test and predict write none, and neither does a fit that stops before its first
    step (bad data, a refused checkpoint): no version folder is left holding only a config.

    It records what was built: `data.vocab_size` is the model's vocabulary, which a given tokenizer
    (`data.tokenizer_path`, a char alphabet, an `init_from` source) sets instead of the number asked for.
    With `version` set (the fit's version folder) the file goes there, whichever logger the run has (Lightning
    would put it in the logger's folder: the current folder for W&B).
    """

    #: The fit's version folder, set by the CLI once the Trainer is built (None: the logger's folder).
    version: Optional[Path] = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Nothing yet: see `on_train_start`."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        built = getattr(getattr(pl_module, "config", None), "vocab_size", None)
        if built is not None and self.config.get("data") is not None and self.config.data.get("vocab_size") != built:
            self.config = self.config.clone()
            self.config.data.vocab_size = built
        if self.version is None:
            super().setup(trainer, pl_module, "fit")
        elif not self.already_saved:
            self._save_into_version(trainer, pl_module)

    def _save_into_version(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write `config.yaml` into the version folder (on rank zero), as Lightning's `setup` writes it into
        the logger's."""
        if trainer.is_global_zero:
            Path(self.version).mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, str(Path(self.version) / self.config_filename), skip_none=False,
                             overwrite=self.overwrite, multifile=self.multifile)
            self.save_config(trainer, pl_module, "fit")
        self.already_saved = trainer.strategy.broadcast(True)


class LeaveNoTrace(L.Callback):
    """Removes what a `fit` that trained nothing added to its version folder, when it fails or is refused.

    Lightning creates the logger's files (an events file, `hparams.yaml`) as soon as the run is set up,
    before the data, the checkpoint or the settings are checked; a refused fit would leave them behind: a
    version folder holding an empty events file, or (a refused resume) one more events file in the version
    it meant to continue. When fit ends by an exception and no optimizer step ran and no checkpoint was
    written in this process, every file that was not in the version folder when the Trainer was built is
    removed, and the folder too when it did not exist then. (A run stopped by a signal writes a checkpoint,
    and a run that trained keeps its logs.)

    Args:
        version: the run's version folder (it may not exist yet).
    """

    def __init__(self, version: Path) -> None:
        self.version = Path(version)
        self.existed = self.version.exists()
        self.before = set(self.version.rglob("*")) if self.existed else set()
        self._start_step: Optional[int] = None
        self._saved = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_step = trainer.global_step

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._saved = True

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        trained = self._start_step is not None and trainer.global_step > self._start_step
        if trained or self._saved or not trainer.is_global_zero or not self.version.exists():
            return
        for logger in trainer.loggers:  # close the files it holds open before they go
            logger.finalize("failed")
        added = sorted(set(self.version.rglob("*")) - self.before, key=lambda p: len(p.parts), reverse=True)
        for path in added:
            if path.is_dir():
                if not any(path.iterdir()):
                    path.rmdir()
            else:
                path.unlink(missing_ok=True)
        if not self.existed and not any(self.version.iterdir()):
            self.version.rmdir()
