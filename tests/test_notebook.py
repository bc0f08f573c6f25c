"""notebooks/train.ipynb runs top to bottom in its smoke setting (tiny models, synthetic data) under nbclient."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "train.ipynb"


def test_parameters_cell_is_tagged_for_papermill():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and "SMOKE" in tagged[0].source and "NOTEBOOK_SMOKE" in tagged[0].source


def test_notebook_runs_in_the_smoke_setting(tmp_path, monkeypatch):
    # The kernel inherits this environment: smoke setting, output to tmp, one thread (tiny models, shared CPU).
    monkeypatch.setenv("NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("NOTEBOOK_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend must draw the figures into the notebook
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}})
    try:
        client.execute()
    except CellExecutionError as error:
        pytest.fail(f"a notebook cell failed:\n{error}")
    work = tmp_path / "work"
    # What each stage leaves behind: the trained encoder, its metrics, the saved pipeline, the scored evaluation.
    for produced in ("align/final/model.safetensors", "align/metrics.json", "pipeline/model_index.json", "evaluation/metrics.json", "evaluation/grid.png"):
        assert (work / produced).is_file(), produced
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]
    # Figures shown: training curves, the scored image grid, the evaluation's grid.
    assert sum(output.get("output_type") == "display_data" and "image/png" in output.get("data", {}) for output in outputs) >= 3
