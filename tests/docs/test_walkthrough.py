"""docs/walkthrough.ipynb runs top to bottom on a fresh kernel (slow), and is kept in git without outputs."""

from __future__ import annotations

import json
import os

import pytest

from cli_helpers import REPO

NOTEBOOK = REPO / "docs" / "walkthrough.ipynb"


def test_the_walkthrough_is_kept_without_outputs() -> None:
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    code = [cell for cell in cells if cell["cell_type"] == "code"]
    assert len(code) >= 8
    assert all(cell["outputs"] == [] and cell["execution_count"] is None for cell in code), (
        "strip the walkthrough's outputs before committing it (e.g. jupyter nbconvert --clear-output --inplace)")


@pytest.mark.slow
def test_the_walkthrough_runs_top_to_bottom(tmp_path, monkeypatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()

    printed = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for output in cell.outputs if output.output_type == "stream" and output.name == "stdout")
    assert "ids:" in printed and "pieces:" in printed
    assert "x: (4, 32)  y: (4, 32)" in printed
    assert "layers.1.attn.q_proj" in printed and "-> (4, 32, 64)" in printed
    assert "logits: (4, 32, 300)" in printed
    assert "q, k, v: (4, 4, 32, 16)" in printed and "joined: (4, 32, 64)" in printed
    before = float(printed.split("loss ", 1)[1].split()[0])
    after = float(printed.split("loss on the same batch after the step: ", 1)[1].split()[0])
    assert after < before
    assert "last.ckpt" in printed
    assert "ROMEO:" in printed and "JULIET:" in printed
    assert list(tmp_path.iterdir()) == []  # it wrote only into its own temporary folder, and removed it
