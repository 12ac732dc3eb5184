"""Disentangling on procedural dSprites: VAE, beta-VAE, beta-TCVAE, FactorVAE and DIP-VAE-I, three seeds each.

Each arm is a `dsprites-*` preset (tfvae/config.py: `dsprites_small`, the 11,520 32x32 sprites of a CPU-sized
dSprites grid drawn by tfvae.render, loaded by name; an MLP 1024-256-256-10, batch 64, Adam 1e-3, 20 epochs;
beta 4, the TC weighted 6, FactorVAE's gamma 40 with a 3 x 256 discriminator, DIP-VAE-I's lambda_od 10 and
lambda_d 100) with train.seed 1, 2 and 3. Every run is scored with every metric of `tfvae evaluate
--disentanglement` (`tfvae.factor_evaluation`: posterior means, evaluation seeds 0, 1, 2, whose mean is the
run's value), and each model's metrics are reported as mean +- sd over its training seeds: results.json /
experiments/results/disentanglement.json, a plotnine figure (metric by model, one point per seed), a table,
sentences that put the orderings beside those the papers report (made from the numbers, never from one seed:
Locatello et al., 2019, find that rankings move with the seed), and for each model the traversal of its first
seed, rows named by the factor each latent dimension is most informative about.

    python -m experiments.disentanglement                              # the study: 15 runs
    python -m experiments.disentanglement --models vae --seeds 1       # one run, a smoke test of the timing

The images are procedural, not comparable with published dSprites numbers. Running it again resumes
unfinished runs from their checkpoints and reuses finished runs and their scores (eval.json).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

import tfvae
from experiments import common, wording
from tfvae import factor_evaluation, factors, plots, rundir

NAME = "disentanglement"
MODELS = {"vae": "VAE", "beta-vae": "beta-VAE", "tcvae": "beta-TCVAE", "factorvae": "FactorVAE",
          "dipvae": "DIP-VAE-I"}  # preset suffix -> label
SEEDS = (1, 2, 3)  # training seeds
EVAL_SEEDS = (0, 1, 2)  # evaluation seeds of every run (the metric's own noise; their mean is the run's value)
EVALUATION = {"num_points": 10_000, "batch_size": 64, "num_train": 1000, "num_eval": 500}
QUICK_EVALUATION = {"num_points": 2000, "batch_size": 16, "num_train": 100, "num_eval": 100}
METRICS = ("mig", "factor_vae_score", "beta_vae_score", "sap", "disentanglement", "completeness",
           "informativeness", "total_correlation", "active_units")
# What the papers report on dSprites, each model against beta-VAE on its own score.
PAPER_CLAIMS = (("tcvae", "mig", "Chen et al. (2018) report beta-TCVAE above beta-VAE on MIG"),
                ("factorvae", "factor_vae_score", "Kim & Mnih (2018) report FactorVAE above beta-VAE on their score"))


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), help="models to train")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS), help="training seeds (default 1 2 3)")


def arm(model: str, seed: int, quick: bool, data_dir: str | None) -> tfvae.Experiment:
    """The preset dsprites-MODEL with train.seed = seed (one epoch with --quick)."""
    changes = {"name": f"{model}-seed{seed}", "train.seed": seed, **({"train.epochs": 1} if quick else {})}
    return common.with_data_dir(tfvae.override(tfvae.preset(f"dsprites-{model}"), changes), data_dir)


def scores_of(run_dir: Path, evaluation: dict) -> dict:
    """The run's disentanglement metrics (`factor_evaluation.evaluate_disentanglement`), reused from its eval.json
    when they were computed at its latest checkpoint with these settings."""
    path = run_dir / "eval.json"
    kept = json.loads(path.read_text()) if path.is_file() else {}
    earlier = kept.get("disentanglement", {})
    settings = {"seeds": list(EVAL_SEEDS), "evaluation": evaluation}
    if earlier.get("checkpoint") == _latest_checkpoint(run_dir) and earlier.get("settings") == settings:
        return earlier
    results = factor_evaluation.evaluate_disentanglement(run_dir, seeds=EVAL_SEEDS, **evaluation)
    results["settings"] = settings
    rundir.write_atomically(path, json.dumps({**kept, "disentanglement": results}, indent=2) + "\n")
    return results


def _latest_checkpoint(run_dir: Path) -> str | None:
    import tensorflow as tf

    checkpoint = tf.train.latest_checkpoint(run_dir / "checkpoints")
    return Path(checkpoint).name if checkpoint else None


def long_scores(runs: dict[tuple[str, int], dict]) -> pd.DataFrame:
    """(model, seed) -> evaluate_disentanglement results  ->  rows model (label), seed, metric, value."""
    rows = [{"model": MODELS[model], "seed": seed, "metric": metric, "value": results["metrics"][metric]["mean"]}
            for (model, seed), results in runs.items() for metric in METRICS]
    return pd.DataFrame(rows)


def summary_table(scores: pd.DataFrame) -> pd.DataFrame:
    """Rows model x metric: mean and sd (ddof 1; NaN for one seed) over training seeds, and the seeds' values."""
    grouped = scores.groupby(["model", "metric"], sort=False)["value"]
    table = grouped.agg(mean="mean", sd="std", seeds="count").reset_index()
    table["values"] = grouped.agg(list).to_numpy()
    return table


def comparisons(table: pd.DataFrame) -> list[str]:
    """The papers' orderings beside the measured ones, each a sentence made from means and sds over seeds."""
    indexed = table.set_index(["model", "metric"])
    sentences = []
    for model, metric, claim in PAPER_CLAIMS:
        ours, beta = (MODELS[model], metric), ("beta-VAE", metric)
        if ours not in indexed.index or beta not in indexed.index:
            continue
        a, b = indexed.loc[ours], indexed.loc[beta]
        sds = [0.0 if pd.isna(sd) else sd for sd in (a["sd"], b["sd"])]
        margin = float(np.sqrt((sds[0] ** 2 + sds[1] ** 2) / 2))  # within one pooled sd: no ordering
        words = wording.direction(a["mean"], b["mean"], margin)
        verdict = {"higher": "the papers' ordering", "lower": "the opposite ordering",
                   "about the same as": f"within one pooled sd ({margin:.3f}): no ordering at this spread"}[words]
        than = "" if words == "about the same as" else " than"
        sentences.append(
            f"{claim}; here {metric} is {a['mean']:.3f} +- {sds[0]:.3f} for {MODELS[model]}, {words}{than} "
            f"{b['mean']:.3f} +- {sds[1]:.3f} for beta-VAE (mean +- sd over {int(a['seeds'])} seeds): {verdict}.")
    return sentences


def rankings(table: pd.DataFrame) -> list[str]:
    """Per metric, the models from the highest mean to the lowest, with the means."""
    lines = []
    for metric in METRICS:
        rows = table[table["metric"] == metric].sort_values("mean", ascending=False)
        if len(rows):
            lines.append(f"{metric}: " + " > ".join(f"{r.model} {r.mean:.3f}" for r in rows.itertuples()))
    return lines


def traversal(run_dir: Path) -> Path:
    """The run's traversal, rows named by factor (RUN_DIR/figures/factor_traversals.png)."""
    (path,) = plots.draw_run(run_dir, figures=["factor_traversals"])
    return path


def report_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per model, one column per metric: "mean +- sd"."""
    cells = table.assign(cell=[f"{m:.3f} +- {0.0 if pd.isna(s) else s:.3f}" for m, s in zip(table["mean"], table["sd"])])
    wide = cells.pivot(index="model", columns="metric", values="cell")
    return wide.loc[list(dict.fromkeys(table["model"])), [m for m in METRICS if m in wide.columns]].reset_index()


def train_and_score(args: argparse.Namespace, evaluation: dict) -> tuple[dict, dict]:
    """Trains (or resumes, or reuses) each arm and scores it: ({(model, seed): results}, {(model, seed): seconds})."""
    runs, seconds = {}, {}
    for model in args.models:
        for seed in args.seeds:
            experiment = arm(model, seed, args.quick, args.data_dir)
            run_dir = args.out / experiment.name
            started = time.perf_counter()
            common.train_arm(experiment, run_dir, progress=not args.no_progress)
            runs[(model, seed)] = scores_of(run_dir, evaluation)
            seconds[(model, seed)] = time.perf_counter() - started
            print(f"{experiment.name}: trained and scored in {seconds[(model, seed)]:.0f} s this session")
    return runs, seconds


def main(argv: Sequence[str] | None = None) -> Path:
    args = common.parse_args(NAME, "Disentangling on procedural dSprites", argv, extra=add_options)
    report = common.Report(args.out, "Disentangling on procedural dSprites")  # its clock starts with the runs
    evaluation = QUICK_EVALUATION if args.quick else EVALUATION
    runs, seconds = train_and_score(args, evaluation)
    scores = long_scores(runs)
    table = summary_table(scores)
    chart = args.out / "metrics.png"
    plots.metrics_by_model(scores, "Disentanglement metrics on procedural dSprites (dsprites_small)").save(
        chart, dpi=100, verbose=False)
    traversals = {model: traversal(args.out / arm(model, args.seeds[0], args.quick, None).name)
                  for model in args.models}
    sentences, ranked = comparisons(table), rankings(table)
    note = factors.load_factor_dataset("dsprites_small").note
    write_report(report, args, table, chart, traversals, sentences, ranked, note, evaluation)
    histories = {key: rundir.read_history(args.out / arm(*key, args.quick, None).name) for key in runs}
    common.write_results(args, {
        "data": note, "models": {m: MODELS[m] for m in args.models}, "seeds": list(args.seeds),
        "evaluation_seeds": list(EVAL_SEEDS), "evaluation": evaluation,
        "choices": factor_evaluation.metric_choices(**evaluation),
        "summary": {MODELS[m]: {row.metric: {"mean": row.mean, "sd": None if pd.isna(row.sd) else row.sd,
                                             "values": row.values}
                                for row in table[table["model"] == MODELS[m]].itertuples()} for m in args.models},
        "comparisons": sentences, "rankings": ranked,
        "seconds_per_run": {f"{m}-seed{s}": round(v, 1) for (m, s), v in seconds.items()},
        "training_seconds_per_run": {f"{m}-seed{s}": float(h["wall_time"].iloc[-1]) for (m, s), h in histories.items()},
    }, whole=list(args.models) == list(MODELS) and list(args.seeds) == list(SEEDS))  # a smoke run: OUT/results.json
    return args.out / "report.md"


def write_report(report: common.Report, args, table, chart, traversals, sentences, ranked, note, evaluation) -> Path:
    seeds = ", ".join(map(str, args.seeds))
    report.text(
        f"Data: dsprites_small, {note}. Models: {', '.join(MODELS[m] for m in args.models)} (the `dsprites-*` "
        f"presets{', one epoch each (--quick)' if args.quick else ''}), training seeds {seeds}. Each run's "
        f"metrics are the mean over evaluation seeds {', '.join(map(str, EVAL_SEEDS))} of the posterior means' "
        f"scores ({evaluation['num_points']:,} images for the sample-based metrics; {evaluation['num_train']} and "
        f"{evaluation['num_eval']} points of {evaluation['batch_size']} images for the beta-VAE and FactorVAE "
        "scores); the table gives mean +- sd over training seeds. Every metric's choices are in the results file "
        "(`choices`).")
    report.heading("Metrics, mean +- sd over training seeds")
    report.table(report_table(table))
    report.figure(chart, "Each metric by model: one point per training seed, bar at mean +- sd")
    report.heading("Against the papers")
    report.text(" ".join(sentences) or "(beta-VAE or the compared model was not trained in this run.)",
                "Rankings by mean (Locatello et al., 2019, find such rankings move with the random seed; the sds "
                "above say how far): " + "; ".join(ranked) + ".")
    report.heading("Traversals named by factor")
    for model, path in traversals.items():
        report.figure(path, f"{MODELS[model]}, seed {args.seeds[0]}: rows by KL, each named by the factor the "
                            "dimension is most informative about (I / H of that factor)")
    return report.write()


if __name__ == "__main__":
    main()
