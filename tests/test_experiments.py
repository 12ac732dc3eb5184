"""Every experiment in experiments/ runs end to end with `--quick` (slow: real MNIST and Fashion-MNIST).

`--quick` trains each arm one epoch (sonnet_beta_vae: 64 steps) on the real data in ~/tensorflow_datasets
(`tfvae data fetch mnist`, `tfvae data fetch fashion_mnist`) and then does everything the full run does:
figures, log p(x), report.md. Each run takes 2 to 6 minutes on a busy 2-core CPU. Checked: the command
ends with status 0; report.md is there, has its tables and embeds only figures that exist; every arm's
run directory holds finite final numbers in metrics.json; the sweeps' sweep.csv has a row per setting.
"""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
# name -> the run directories (below --out) its arms train, and the CSV tables it writes beside report.md
EXPERIMENTS = {
    "ae_vs_vae": (["autoencoder-adam", "vae-adam", "autoencoder-sgd", "vae-sgd"], []),
    "bernoulli_vae": (["mnist-bernoulli-20d", "mnist-bernoulli-2d"], []),
    "disentanglement": ([f"{model}-seed{seed}" for model in ("vae", "beta-vae", "tcvae", "factorvae", "dipvae")
                         for seed in (1, 2, 3)], []),
    "fashion_mnist_vae": (["fashion-mnist-20d"], []),
    "sonnet_beta_vae": (["published", "beta-0.01-per-image"], []),
    "sweep_beta": ([f"beta-{b:g}" for b in (0.0, 0.01, 0.1, 0.5, 1.0, 2.0, 4.0)], ["sweep.csv"]),
    "sweep_latent": ([f"latent-{n}" for n in (2, 5, 10, 20, 50)], ["sweep.csv"]),
}


def test_every_experiment_script_is_listed_here():
    scripts = {path.stem for path in (ROOT / "experiments").glob("*.py")} - {"__init__", "common", "sweeps", "wording"}
    assert scripts == set(EXPERIMENTS)


def run_directories(out: Path) -> list[Path]:
    return sorted(path.parent for path in out.rglob("config.json"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_quick_run_writes_its_report_and_numbers(name, tmp_path):
    out = tmp_path / name
    done = subprocess.run(
        [sys.executable, "-m", f"experiments.{name}", "--quick", "--out", str(out), "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"wrote {out / 'report.md'}" in done.stdout

    report = (out / "report.md").read_text()
    assert report.startswith("# ") and "| --- |" in report  # a title and at least one table
    embedded = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert embedded, "the report embeds no figure"
    missing = [path for path in embedded if not (out / path).is_file()]
    assert not missing, f"report.md embeds figures that do not exist: {missing}"

    arms, tables = EXPERIMENTS[name]
    runs = run_directories(out)
    assert sorted(run.relative_to(out).as_posix() for run in runs) == sorted(arms)
    for run in runs:
        metrics = json.loads((run / "metrics.json").read_text())
        assert all(math.isfinite(metrics[key]) for key in ("test_loss", "test_distortion", "test_rate")), run
        assert metrics["step"] > 0 and (run / "history.csv").is_file()
    for table in tables:
        frame = pd.read_csv(out / table)
        assert len(frame) == len(arms) and frame.notna().all().all(), frame


def run_files(out: Path) -> dict[str, bytes]:
    """Every arm's training record: history.csv, config.json and checkpoint files, by path below `out`."""
    kept = [path for run in run_directories(out) for path in run.rglob("*")
            if path.is_file() and (path.name in ("history.csv", "config.json") or "checkpoints" in path.parts)]
    return {path.relative_to(out).as_posix(): path.read_bytes() for path in kept}


@pytest.mark.slow
def test_a_rerun_reuses_its_finished_runs_and_redoes_the_report(tmp_path):
    """The promise of experiments/common.py: running a finished experiment again retrains nothing (every
    history, config and checkpoint byte for byte the same) and writes report.md again."""
    out = tmp_path / "sweep_latent"
    command = [sys.executable, "-m", "experiments.sweep_latent", "--quick", "--out", str(out), "--no-progress"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg")
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    trained = run_files(out)
    assert len([path for path in trained if path.endswith("history.csv")]) == len(EXPERIMENTS["sweep_latent"][0])
    (out / "report.md").unlink()

    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (out / "report.md").is_file()
    assert run_files(out) == trained


@pytest.mark.slow
def test_the_disentanglement_study_reports_each_metric_over_seeds_and_reuses_its_scores(tmp_path):
    """Two models, two seeds, one epoch each (about 2 minutes): the results file holds every metric as mean, sd
    and the seeds' values, the FactorVAE claim's sentence, a traversal per model named by factor; a second
    run retrains and rescores nothing."""
    out = tmp_path / "disentanglement"
    command = [sys.executable, "-m", "experiments.disentanglement", "--quick", "--models", "beta-vae", "factorvae",
               "--seeds", "1", "2", "--out", str(out), "--no-progress"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg")
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    factor_vae = results["summary"]["FactorVAE"]
    assert set(factor_vae) == {"mig", "factor_vae_score", "beta_vae_score", "sap", "disentanglement",
                               "completeness", "informativeness", "total_correlation", "active_units"}
    for metric in factor_vae.values():
        assert len(metric["values"]) == 2 and metric["mean"] == pytest.approx(sum(metric["values"]) / 2)
        assert metric["sd"] == pytest.approx(abs(metric["values"][0] - metric["values"][1]) / math.sqrt(2))
    (sentence,) = results["comparisons"]
    assert sentence.startswith("Kim & Mnih (2018) report FactorVAE above beta-VAE on their score; here ")
    assert "procedural, not comparable with published dSprites numbers" in results["data"]
    report = (out / "report.md").read_text()
    assert "beta-vae-seed1/figures/factor_traversals.png" in report and (out / "metrics.png").is_file()
    scored = {path: path.read_bytes() for path in sorted(out.glob("*/eval.json"))}
    trained = run_files(out)
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert run_files(out) == trained and {path: path.read_bytes() for path in scored} == scored
