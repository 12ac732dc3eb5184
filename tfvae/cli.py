"""The `tfvae` command: parse, build an Experiment, call the library.

    tfvae train [--preset mnist-bernoulli-20d] [--run-dir DIR] [--epochs N] [--minutes M] [--set model.latent_size=2 ...]
                [--device auto|cpu|gpu] [--distribute default|mirrored|multi_worker] [--precision float32|...]
    tfvae plot RUN_DIR
    tfvae data fetch NAME [--data-dir DIR]
    tfvae evaluate RUN_DIR [--k 5000] [--chunk N] [--limit N] [--samples N [--samplers KIND ...]]
    tfvae evaluate RUN_DIR --disentanglement [--metric-seeds 0 1 2] [--points 10000]
    tfvae sample RUN_DIR [--sampler prior|gmm|two-stage|flow|all] [--n 64] [--temperature T] [--seed S]
    tfvae export RUN_DIR OUT_DIR [--sampler auto|none|KIND]
    tfvae presets

Every error a user can cause ends in one line on stderr and exit status 2.
TensorFlow's start-up lines (written before its logging starts, so
TF_CPP_MIN_LOG_LEVEL cannot hide them: on a machine without a GPU they
include "failed call to cuInit") are held back while TensorFlow loads, and
shown with --verbose or when loading fails.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter is not for users

from tfvae import config as config_lib  # noqa: E402

# tfvae.samplers.KINDS, here so that `tfvae --help` loads no TensorFlow (a test keeps them equal).
_SAMPLERS = ("prior", "gmm", "two-stage", "flow")

# Shortcuts for the fields people change most; anything else goes through --set.
_SHORTCUTS = {
    "epochs": "train.epochs",
    "beta": "train.beta",
    "seed": "train.seed",
    "learning_rate": "train.learning_rate",
    "batch_size": "data.batch_size",
    "dataset": "data.name",
    "binarize": "data.binarize",
    "data_dir": "data.data_dir",
    "latent_size": "model.latent_size",
    "device": "train.device",
    "distribute": "train.distribute",
    "precision": "train.precision",
}
# What --help says beyond "sets FIELD" (see README, "GPU and many machines").
_HELP = {
    "device": "auto (a GPU if TensorFlow sees one) | cpu | gpu",
    "distribute": "default (one device) | mirrored (every local GPU) | multi_worker (every machine TF_CONFIG lists; "
                  "run the same command on each); --batch-size is the global batch, split over the replicas",
    "precision": "float32 | mixed_float16 | mixed_bfloat16: float16/bfloat16 layers with float32 weights and loss, "
                 "for GPUs with tensor cores (slower on a CPU)",
}


def _parse_assignment(text: str) -> tuple[str, Any]:
    try:
        return config_lib.parse_assignment(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfvae", description="Variational autoencoders with TensorFlow, Sonnet and TFP.")
    verbose_help = "also show TensorFlow's start-up lines (held back by default)"
    parser.add_argument("--verbose", action="store_true", help=verbose_help)
    # The same flag after the command (`tfvae train --verbose`); SUPPRESS keeps a flag given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help)
    commands = _SubcommandsWithCommonOptions(parser.add_subparsers(dest="command", required=True), common)

    train = commands.add_parser("train", help="train a VAE, then draw its figures")
    train.add_argument("--preset", default=config_lib.DEFAULT_PRESET, help="named setup (see `tfvae presets`)")
    train.add_argument("--run-dir", type=Path, help="where the run goes (default: runs/PRESET)")
    for option, field in _SHORTCUTS.items():
        described = f"; {_HELP[option]}" if option in _HELP else ""
        train.add_argument(f"--{option.replace('_', '-')}", type=config_lib.parse_value, help=f"sets {field}{described}")
    train.add_argument("--set", dest="changes", action="append", default=[], type=_parse_assignment,
                       metavar="FIELD=VALUE", help="override any config field, e.g. model.hidden_sizes=[400,150]")
    train.add_argument("--minutes", type=float, metavar="M",
                       help="stop, with a checkpoint, once the run has trained M minutes in all (summed over the "
                            "sessions of a continued run; train.epochs still bounds it); run again with a larger M "
                            "to continue")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--no-figures", action="store_true", help="skip drawing figures")
    train.add_argument("--progress-gifs", action="store_true",
                       help="record the latent grid and reconstructions as it trains; GIFs in RUN_DIR/figures")
    # On by default, as cheap: milliseconds a history row, a fraction of a second an epoch (benchmarks/README.md).
    train.add_argument("--no-tensorboard", action="store_true",
                       help="do not write TensorBoard events to RUN_DIR/tensorboard")

    plot = commands.add_parser("plot", help="draw the figures of a run directory (no training)")
    plot.add_argument("run_dir", type=Path)
    plot.add_argument("--figures", nargs="+", metavar="NAME", help="only these figures (default: all that apply)")
    plot.add_argument("--compare", nargs="+", type=Path, default=[], metavar="RUN_DIR",
                      help="other runs on the same data, drawn beside this one in the interpolation figures")

    data = commands.add_parser("data", help="datasets")
    data_commands = _SubcommandsWithCommonOptions(data.add_subparsers(dest="data_command", required=True), common)
    fetch = data_commands.add_parser("fetch", help="prepare an offline copy of a dataset (mnist, fashion_mnist)")
    fetch.add_argument("name")
    fetch.add_argument("--data-dir", help="TFDS data directory (default: TFDS's own)")

    commands.add_parser("presets", help="list the named presets")

    evaluate = commands.add_parser("evaluate", help="test -ELBO and importance-sampled log p(x) of a run -> RUN_DIR/eval.json")
    evaluate.add_argument("run_dir", type=Path)
    evaluate.add_argument("--k", type=int, default=5000, help="importance samples per test image (default 5000)")
    evaluate.add_argument("--chunk", type=int, help="samples per image processed at once (default: from a memory budget)")
    evaluate.add_argument("--batch-size", type=int, default=100, help="test images per batch (default 100)")
    evaluate.add_argument("--limit", type=int, help="only the first N test images (a quick look)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the importance samples (default 0)")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    evaluate.add_argument("--disentanglement", action="store_true",
                          help="instead: the disentanglement metrics of a run on a dataset with factors (MIG, SAP, "
                               "DCI, beta-VAE and FactorVAE scores, ...), into eval.json's \"disentanglement\"")
    evaluate.add_argument("--metric-seeds", type=int, nargs="+", default=[0, 1, 2], metavar="SEED",
                          help="with --disentanglement: the evaluation seeds; each metric's mean and sd over them "
                               "(default 0 1 2)")
    evaluate.add_argument("--points", type=int, default=10_000,
                          help="with --disentanglement: images of the sample-based metrics (default 10000)")
    evaluate.add_argument("--samples", type=int, metavar="N",
                          help="also score N samples per sampler against N test images (classifier Frechet "
                               "distance, precision, recall; mean and sd over seeds 0 1 2) into eval.json")
    evaluate.add_argument("--samplers", nargs="+", choices=_SAMPLERS, default=list(_SAMPLERS), metavar="KIND",
                          help=f"which samplers --samples scores (default: all of {', '.join(_SAMPLERS)})")

    sample = commands.add_parser("sample", help="draw images from a run's prior or a sampler fitted to its codes "
                                                "-> RUN_DIR/figures/samples-KIND.png")
    sample.add_argument("run_dir", type=Path)
    sample.add_argument("--sampler", choices=[*_SAMPLERS, "all"], default="gmm",
                        help="prior (the model's p(z)) or a sampler fitted to the training codes and kept in "
                             "RUN_DIR/samplers (gmm, two-stage, flow); all: every one, side by side (default gmm)")
    sample.add_argument("--n", type=int, default=64, help="images per sampler (default 64)")
    sample.add_argument("--temperature", type=float, default=1.0,
                        help="scales the sampler's standard deviation, > 0 (default 1: the fitted density)")
    sample.add_argument("--seed", type=int, default=0, help="seed of the draws (default 0)")
    sample.add_argument("--refit", action="store_true", help="fit the sampler again even if the run has one")
    sample.add_argument("--out", type=Path, help="the PNG to write (default RUN_DIR/figures/samples-KIND.png)")

    export = commands.add_parser("export", help="write a run's model as a SavedModel (encode, decode, sample, elbo)")
    export.add_argument("run_dir", type=Path)
    export.add_argument("out_dir", type=Path, help="a new (or empty) directory for the SavedModel")
    export.add_argument("--sampler", default="auto", choices=["auto", "none", *_SAMPLERS[1:]],
                        help="the fitted sampler a sample_fitted signature draws from (default auto: the first "
                             "of gmm, flow, two-stage the run has fitted)")
    return parser


class _SubcommandsWithCommonOptions:
    """`add_parser` of an argparse subparsers action, with the common options added to every command."""

    def __init__(self, subparsers, common: argparse.ArgumentParser):
        self._subparsers, self._common = subparsers, common

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        return self._subparsers.add_parser(name, parents=[self._common], **kwargs)


def experiment_from_args(args: argparse.Namespace) -> config_lib.Experiment:
    """The preset with the command line's overrides applied."""
    changes = {field: getattr(args, option) for option, field in _SHORTCUTS.items() if getattr(args, option) is not None}
    changes.update(dict(args.changes))
    return config_lib.override(config_lib.preset(args.preset), changes)


def _train(args: argparse.Namespace) -> None:
    from tfvae import checks, devices, distribute, factors, plots, rundir, tensorboard, train

    experiment = experiment_from_args(args)
    if args.minutes is not None and not checks.is_positive_number(args.minutes):
        raise ValueError(f"--minutes must be a positive number, got {args.minutes}")
    # Both before TensorFlow runs an op: its thread pools, and a multi-worker strategy, are fixed then.
    devices.set_threads(experiment.train.threads)
    strategy = distribute.build_strategy(experiment.train.distribute)

    run_dir = args.run_dir = args.run_dir or Path("runs") / experiment.name  # (named by _tensorflow_error_line)
    chief = distribute.is_chief(strategy)  # the other workers of a multi-worker run write nothing to keep
    with devices.placement(experiment.train.device):  # first: a missing GPU fails before any data is read
        recorders = [plots.ProgressRecorder.for_experiment(experiment)] if args.progress_gifs and chief else []
        writes_events = chief and not args.no_tensorboard
        loggers = [tensorboard.TensorBoardLogger.for_experiment(experiment, run_dir)] if writes_events else []
        result = train.fit(experiment, run_dir, progress=not args.no_progress, hooks=[*recorders, *loggers],
                           time_budget=None if args.minutes is None else args.minutes * 60)
    for logger in loggers:
        logger.close()
    if result.history["test_loss"].isna().all():  # --minutes ran out before the first test pass
        last = result.history.iloc[-1]
        print(f"stopped at step {last['step']:.0f} (epoch {last['epoch']:.2f}) after {last['wall_time']:.0f} s of "
              f"training, before its first test pass: run again with more --minutes to continue\n"
              f"run directory: {run_dir}")
        return
    summary = rundir.run_summary(result.history)
    if not chief:
        print(f"worker {strategy.cluster_resolver.task_id} done: test negative ELBO {summary['test_loss']:.2f}; "
              f"the chief writes the run directory {run_dir}")
        return
    rundir.write_atomically(Path(run_dir) / "metrics.json", json.dumps(summary, indent=2) + "\n")
    print(f"test negative ELBO {summary['test_loss']:.2f} nats per image "
          f"(distortion {summary['test_distortion']:.2f}, rate {summary['test_rate']:.2f}) "
          f"after {summary['epochs']:g} epochs, {summary['seconds_per_epoch']:.1f} s per epoch of training steps "
          f"({summary['wall_time']:.0f} s in all, with start-up and tests)")
    for recorder in recorders:
        for path in recorder.save_gifs(Path(run_dir) / "figures"):
            print(f"wrote {path}")
    if not args.no_figures:
        for path in plots.draw_run(run_dir):
            print(f"wrote {path}")
    if factors.is_factor_dataset(experiment.data.name):  # say where its images come from, beside its numbers
        print(f"data: {factors.load_factor_dataset(experiment.data.name, experiment.data.data_dir).note}")
    print(f"run directory: {run_dir}")


def _plot(args: argparse.Namespace) -> None:
    from tfvae import plots

    for path in plots.draw_run(args.run_dir, figures=args.figures, compare=args.compare):
        print(f"wrote {path}")


def _fetch(args: argparse.Namespace) -> None:
    from tfvae import data

    prepared = data.fetch(args.name, data_dir=args.data_dir)
    print(f"{args.name} is ready (offline copy in {prepared})")


def _evaluate(args: argparse.Namespace) -> None:
    from tfvae import evaluation, rundir

    if args.disentanglement:
        _evaluate_disentanglement(args)
        return
    if args.samples is not None:  # its bad inputs fail before the long part
        from tfvae import run_samplers

        run_samplers.check_sample_request(args.run_dir, args.samples)
    results = evaluation.evaluate_run(args.run_dir, k=args.k, chunk=args.chunk, batch_size=args.batch_size,
                                    limit=args.limit, seed=args.seed, progress=not args.no_progress)
    if args.samples is not None:
        results["samples"] = run_samplers.score_samplers(args.run_dir, args.samples, kinds=args.samplers,
                                                         progress=None if args.no_progress else print)
    path = Path(args.run_dir) / "eval.json"
    earlier = json.loads(path.read_text()) if path.is_file() else {}
    kept = {key: earlier[key] for key in ("disentanglement",) if key in earlier}  # --disentanglement's, if any
    rundir.write_atomically(path, json.dumps({**results, **kept}, indent=2) + "\n")
    print(f"-log p(x) {results['nll']:.2f} +- {results['nll_standard_error']:.2f} nats per image "
          f"(k = {results['k']}, {results['num_examples']} test images), negative ELBO {results['negative_elbo']:.2f}, "
          f"{results['bits_per_dim']:.4f} bits/dim, {results['active_units']} active units, {results['seconds']:.0f} s")
    print(f"wrote {path}")


def _evaluate_disentanglement(args: argparse.Namespace) -> None:
    """`tfvae evaluate RUN_DIR --disentanglement`: the metrics into eval.json's "disentanglement" (the rest kept)."""
    from tfvae import factor_evaluation, rundir

    results = factor_evaluation.evaluate_disentanglement(args.run_dir, seeds=args.metric_seeds,
                                                         num_points=args.points)
    path = Path(args.run_dir) / "eval.json"
    kept = json.loads(path.read_text()) if path.is_file() else {}
    rundir.write_atomically(path, json.dumps({**kept, "disentanglement": results}, indent=2) + "\n")
    seeds = ", ".join(map(str, results["seeds"]))
    print(f"{results['dataset']['name']}: {results['dataset']['note']}")
    print(f"{results['representation']}; mean +- sd over evaluation seeds {seeds}:")
    for key, metric in results["metrics"].items():
        print(f"  {key:18s} {metric['mean']:.3f} +- {metric['sd']:.3f}")
    print(f"wrote {path} ({results['seconds']:.0f} s)")
def _sample(args: argparse.Namespace) -> None:
    from tfvae import plots, rundir, run_samplers, samplers

    samplers.check_temperature(args.temperature)
    if args.n < 1:
        raise ValueError(f"--n must be a positive number of images, got {args.n}")
    model = rundir.restore_model(args.run_dir)
    kinds = _SAMPLERS if args.sampler == "all" else (args.sampler,)
    panels = {}
    for kind in kinds:
        sampler = run_samplers.fitted_sampler(args.run_dir, kind, model=model, refit=args.refit)
        if sampler.fit_record:
            print(f"{kind} sampler: fitted to {sampler.fit_record['codes']} training codes in "
                  f"{sampler.fit_record['seconds']:.0f} s, kept in {samplers.run_path(args.run_dir, kind)}")
        panels[kind] = run_samplers.sample_images(model, sampler, args.n, seed=args.seed, temperature=args.temperature)
    suffix = "" if args.temperature == 1 else f"-t{args.temperature:g}"
    path = args.out or Path(args.run_dir) / "figures" / f"samples-{args.sampler}{suffix}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    what = "per sampler" if len(kinds) > 1 else f"from the {args.sampler} sampler"
    title = (f"{rundir.load_experiment(args.run_dir).name}: {args.n} samples {what} "
             f"(temperature {args.temperature:g}, seed {args.seed})")
    plots.save_grid(plots.sample_panels(panels), path, title, xticks=list(kinds) if len(kinds) > 1 else None)
    print(f"wrote {path}")


def _export(args: argparse.Namespace) -> None:
    from tfvae import savedmodel

    path = savedmodel.export(args.run_dir, args.out_dir, sampler=args.sampler)
    kind = savedmodel.sampler_kind(args.run_dir, args.sampler)
    signatures = [*savedmodel.SIGNATURES, *([f"sample_fitted (its {kind} sampler)"] if kind else [])]
    print(f"wrote a SavedModel with signatures {', '.join(signatures)} to {path}; "
          f"load it with tf.saved_model.load({str(path)!r})")


def _presets(args: argparse.Namespace) -> None:
    for name, experiment in config_lib.PRESETS.items():
        model, data, train = experiment.model, experiment.data, experiment.train
        print(f"{name:22s} {data.name}, hidden {list(model.hidden_sizes)}, latent {model.latent_size}, "
              f"batch {data.batch_size}, {train.epochs} epochs, beta {train.beta:g}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"train": _train, "plot": _plot, "data": _fetch, "presets": _presets, "evaluate": _evaluate,
                "export": _export, "sample": _sample}
    if args.command != "presets":  # every other command runs TensorFlow
        _import_tensorflow_quietly(verbose=args.verbose)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            handlers[args.command](args)
    except KeyboardInterrupt:
        print("tfvae: interrupted; the run continues from its last checkpoint when run again", file=sys.stderr)
        return 130
    except (ValueError, FloatingPointError, OSError) as error:
        full = isinstance(error, OSError) and error.errno == errno.ENOSPC
        print(f"tfvae: error: {_disk_full_line(error, _written_dir(args)) if full else error}", file=sys.stderr)
        return 2
    except Exception as error:
        message = _tensorflow_error_line(error, _written_dir(args))
        if message is None:
            raise  # a bug in tfvae: the traceback is what a bug report needs
        print(f"tfvae: error: {message}", file=sys.stderr)
        return 1
    return 0


def _import_tensorflow_quietly(verbose: bool = False) -> None:
    """Imports TensorFlow and lists its devices with stderr (file descriptor 2) held back, then shows
    what was held back only if `verbose` or if the import failed.

    TensorFlow's C++ start-up lines (oneDNN, CUDA stubs, and on a machine
    without a GPU an "E0000 ... failed call to cuInit" line, written when the
    devices are first listed) come before its logging is set up, so
    TF_CPP_MIN_LOG_LEVEL cannot silence them. Does nothing if TensorFlow is
    loaded already.
    """
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = True
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if verbose or failed:
                held.seek(0)
                sys.stderr.write(held.read().decode(errors="replace"))
                sys.stderr.flush()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """tfvae's own warnings (a damaged checkpoint skipped, ...) as one line; others as Python shows them."""
    if category.__module__.startswith("tfvae"):
        print(f"tfvae: warning: {message}", file=sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line), end="", file=sys.stderr)


def _written_dir(args: argparse.Namespace) -> Path | None:
    """The directory a command writes to (export: OUT_DIR; train, evaluate: RUN_DIR), if any."""
    return getattr(args, "out_dir", None) or getattr(args, "run_dir", None)


def _disk_full_line(error: Exception, written_dir=None) -> str:
    where = f"the disk holding {written_dir}" if written_dir else "the disk"
    return f"{where} is full; free space and run the same command again ({str(error).strip().splitlines()[0][:200]})"


def _tensorflow_error_line(error: Exception, run_dir=None) -> str | None:
    """One line for a TensorFlow runtime error (out of memory, a full disk, unreadable files, ...); None for
    anything else. `run_dir` is named when the disk is full (TensorFlow raises ResourceExhaustedError for
    both a full disk and a full memory)."""
    tensorflow = sys.modules.get("tensorflow")
    if tensorflow is None or not isinstance(error, tensorflow.errors.OpError):
        return None
    detail = (error.message or "").strip().splitlines()
    if "No space left on device" in (error.message or ""):
        return _disk_full_line(error, run_dir)
    line = f"TensorFlow {type(error).__name__}: {detail[0][:300] if detail else ''}"
    if isinstance(error, tensorflow.errors.ResourceExhaustedError):
        line += " (out of memory: lower data.batch_size, or --chunk / --batch-size for evaluate)"
    return line


if __name__ == "__main__":
    sys.exit(main())
