"""Presets are found from the package itself, so an installed (non-editable) llm_lit finds them too."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from llm_lit.errors import UserError
from llm_lit.commands.presets import load_preset, preset_names, preset_path, presets_dir

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))
def test_every_shipped_config_is_a_preset():
    assert preset_names() == SHIPPED
    assert presets_dir().resolve() == (REPO / "configs").resolve()
    assert load_preset("debug")[0].d_model == 32
    assert preset_path(str(REPO / "configs" / "debug.yaml")) == REPO / "configs" / "debug.yaml"


def test_an_unknown_preset_names_the_shipped_ones():
    with pytest.raises(UserError, match="No config 'gpt3'.*pass one of debug, enwiki, gpt2-small"):
        load_preset("gpt3")


def _check_installed(site: Path, cwd: Path) -> None:
    """`llm_lit accounting --preset gpt2-small` runs from `site` alone: from `cwd`, with no repository
    (and no configs/ folder) around `site`, only the package's own presets can be found."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)
    result = subprocess.run([sys.executable, "-m", "llm_lit", "accounting", "--preset", "gpt2-small"], cwd=cwd,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "d_model 768" in result.stdout and "(124.5 M)" in result.stdout  # GPT-2 small


def test_a_copy_of_the_package_outside_the_repository_finds_the_presets(tmp_path):
    """The layout a wheel installs: the packages in site-packages, with no repository around them."""
    site = tmp_path / "site"
    for package in ("llm_lit", "tokenizer"):
        shutil.copytree(REPO / package, site / package, ignore=shutil.ignore_patterns("__pycache__"))
    assert not (site / "llm_lit" / "configs").is_symlink()  # copied as files, as the wheel holds them
    _check_installed(site, tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("setuptools") is None, reason="building a wheel needs setuptools")
@pytest.mark.slow
def test_the_built_wheel_carries_the_presets(tmp_path):
    source = tmp_path / "source"
    for name in ("llm_lit", "tokenizer", "configs"):
        shutil.copytree(REPO / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("llm_lit-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        assert sorted(n for n in archive.namelist() if n.startswith("llm_lit/configs/")) == \
            [f"llm_lit/configs/{name}.yaml" for name in SHIPPED]
        archive.extractall(tmp_path / "site")
    _check_installed(tmp_path / "site", tmp_path)
