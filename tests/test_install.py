"""tfvae installed as a user installs it: a wheel of this checkout in a fresh virtualenv, used from an empty folder."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(command, cwd, **kwargs):
    done = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.slow
def test_the_wheel_installs_in_a_fresh_virtualenv_and_trains_from_an_empty_folder(tmp_path, mnist_data_dir):
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", tmp_path / "dist", ROOT],
        cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("tfvae-*.whl")
    run([sys.executable, "-m", "venv", tmp_path / "venv"], cwd=tmp_path)
    python = tmp_path / "venv" / "bin" / "python"
    run([python, "-m", "pip", "install", "--quiet", wheel], cwd=tmp_path)  # pip's cache keeps this near a minute

    empty = tmp_path / "empty"
    empty.mkdir()
    environment = {**os.environ, "PYTHONPATH": ""}
    where = run([python, "-c", "import tfvae, sys; print(tfvae.__file__)"], cwd=empty, env=environment)
    assert Path(where.strip()).is_relative_to(tmp_path / "venv"), where  # the installed copy, not this checkout
    public = ("fit", "evaluate", "open_run", "export", "preset", "override", "VAE", "Encoder", "Decoder", "load",
              "from_arrays", "negative_elbo")
    run([python, "-c", f"import tfvae; [getattr(tfvae, name) for name in {public!r}]"], cwd=empty, env=environment)
    run([tmp_path / "venv" / "bin" / "tfvae", "train", "--preset", "tiny", "--data-dir", mnist_data_dir,
         "--run-dir", "run", "--no-progress"], cwd=empty, env=environment)
    assert {"config.json", "history.csv", "metrics.json"} <= {path.name for path in (empty / "run").iterdir()}
    licenses = list((tmp_path / "venv").glob("lib/python3.*/site-packages/tfvae-*.dist-info/**/LICENSE*"))
    assert licenses and "Apache License" in licenses[0].read_text()
