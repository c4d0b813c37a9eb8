"""The shipped configs (`configs/*.yaml`) as named presets, found wherever llm_lit is installed.

The YAML files live in the repository's `configs/`, which users pass to `llm_lit fit --config`.
They also ship inside the package as `llm_lit/configs/` (package data; in a clone that folder
is a link to `configs/`), so `llm_lit accounting --preset gpt2-small` and the benchmarks find
them from a wheel installed anywhere, not only from an editable install next to the repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llm_lit.errors import UserError
from llm_lit.model import ModelConfig

_PACKAGED = Path(__file__).parents[1] / "configs"
_REPOSITORY = Path(__file__).resolve().parents[2] / "configs"


def presets_dir() -> Path:
    """The folder of the shipped configs: the package's `configs/`, else the repository's (a checkout
    where the link was not created, e.g. on a file system without symbolic links)."""
    return _PACKAGED if _PACKAGED.is_dir() else _REPOSITORY


def preset_names() -> list[str]:
    """The names of the shipped configs, e.g. `['debug', 'gpt2-small', 'llama-small', 'shakespeare']`."""
    folder = presets_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def preset_path(name_or_path: str) -> Path:
    """The YAML of a preset name (`gpt2-small`) or a path (`my.yaml`); `UserError` when there is none."""
    path = Path(name_or_path)
    if not path.suffix:
        path = presets_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        raise UserError(f"No config '{name_or_path}' ({path} does not exist); pass one of "
                        f"{', '.join(preset_names()) or 'the configs/ files'} or the path of an llm_lit fit YAML.")
    return path


def load_preset(name_or_path: str) -> tuple[ModelConfig, int, str]:
    """`(model config, batch_size, precision)` of an `llm_lit fit` YAML: a preset name or a path.

    The vocabulary comes from `data.vocab_size` (which `llm_lit fit` links into the model).
    """
    import yaml

    data = yaml.safe_load(preset_path(name_or_path).read_text()) or {}
    config = ModelConfig.from_dict(preset_model_fields(name_or_path))
    data_section = data.get("data") or {}
    batch_size = int(data_section.get("batch_size", 32))
    precision = str((data.get("trainer") or {}).get("precision", "32-true"))
    return config, batch_size, precision


def preset_model_fields(name_or_path: str) -> dict[str, Any]:
    """The model settings a preset states (`model.config`, and `data.vocab_size` as vocab_size), as written: the
    settings it leaves out (n_kv_heads, d_ff) are resolved from the others once a command line has changed them."""
    import yaml

    data = yaml.safe_load(preset_path(name_or_path).read_text()) or {}
    fields = dict((data.get("model") or {}).get("config") or {})
    if "vocab_size" in (data.get("data") or {}):
        fields["vocab_size"] = data["data"]["vocab_size"]
    return fields


def preset_optimizer_defaults(name_or_path: str) -> dict[str, Any]:
    """The `model.optimizer` section of a preset (see `load_preset`) as `{"optimizer.KEY": value}` defaults
    for `accounting`'s parser (nested sections flattened: `optimizer.sgd.momentum`)."""
    import yaml

    data = yaml.safe_load(preset_path(name_or_path).read_text()) or {}
    section = (data.get("model") or {}).get("optimizer") or {}

    def flat(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in values.items():
            out.update(flat(f"{prefix}.{key}", value) if isinstance(value, dict) else {f"{prefix}.{key}": value})
        return out

    return flat("optimizer", section)
