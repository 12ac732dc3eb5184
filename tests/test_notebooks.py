"""The notebooks run top to bottom without an error, with tiny sizes on the fake MNIST of conftest.py.

Each notebook's cell tagged "parameters" holds its sizes; the test puts a cell of
overrides right after it (what papermill does) and executes the whole notebook
in a fresh kernel with nbclient.
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def run_notebook(name: str, overrides: dict, workdir: Path) -> nbformat.NotebookNode:
    """Executes notebooks/NAME with `overrides` (parameter name -> value) in `workdir`; returns it executed."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    index = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    source = "\n".join(f"{key} = {value!r}" for key, value in overrides.items())
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
    resources = {"metadata": {"path": str(workdir)}}
    client = NotebookClient(notebook, timeout=300, kernel_name="python3", resources=resources)
    client.execute()
    return notebook


def outputs_of(notebook, kind: str) -> list:
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs if kind in o.get("data", {})]


@pytest.mark.parametrize("name", ["quickstart.ipynb", "latent_explorer.ipynb"])
def test_each_notebook_has_one_parameters_cell_and_a_colab_install_cell(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and "EPOCHS" in tagged[0].source
    assert any("google.colab" in cell.source and "pip" in cell.source for cell in notebook.cells)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # stored clean


def test_quickstart_runs_and_shows_its_figures(mnist_data_dir, tmp_path):
    overrides = {"EPOCHS": 1, "HIDDEN_SIZES": [16], "DATA_DIR": mnist_data_dir, "RUN_DIR": "run", "GRID_SIZE": 4}
    notebook = run_notebook("quickstart.ipynb", overrides, tmp_path)
    assert len(outputs_of(notebook, "image/png")) >= 4  # loss curves, reconstructions, manifold, samples, scatter
    assert (tmp_path / "run" / "figures" / "latent_grid.png").exists()


def test_latent_explorer_slider_redraws(mnist_data_dir, tmp_path):
    overrides = {"DATASET": "mnist", "EPOCHS": 1, "LATENT_SIZE": 3, "HIDDEN_SIZES": [16], "DATA_DIR": mnist_data_dir,
                 "RUN_DIR": "run"}
    notebook = run_notebook("latent_explorer.ipynb", overrides, tmp_path)
    assert outputs_of(notebook, "application/vnd.jupyter.widget-view+json")  # the slider and its picture
    assert (tmp_path / "run" / "figures" / "latent_strip.png").exists()
