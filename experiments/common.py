"""What every experiment script shares: its command line, training one arm, and writing report.md.

An experiment trains one or more arms (one run directory each) under
`runs/experiments/NAME/` (or `--out`), draws figures into them and writes
`report.md` beside them, which embeds the figures by relative path, and the
numbers a document quotes to `experiments/results/NAME.json` (`write_results`).
Running it again resumes or reuses the finished runs (`tfvae.fit` continues
from the last checkpoint and returns at once when a run is complete), so a
report can be redone without retraining.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
RESULTS = Path(__file__).resolve().parent / "results"  # the committed results files of full runs

import pandas as pd  # noqa: E402

import tfvae  # noqa: E402
import provenance  # noqa: E402
from tfvae import rundir  # noqa: E402


def parse_args(name: str, description: str, argv: Sequence[str] | None = None,
               extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """The options every experiment takes: --out, --quick, --data-dir, --no-progress (and those `extra` adds)."""
    parser = argparse.ArgumentParser(prog=f"python -m experiments.{name}", description=description)
    if extra is not None:
        extra(parser)
    parser.add_argument("--out", type=Path, default=Path("runs/experiments") / name, help="output folder")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one epoch (or a few steps) per arm")
    parser.add_argument("--data-dir", help="TFDS data directory (default: TFDS's own)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    args.name, args.argv = name, list(sys.argv[1:] if argv is None else argv)
    args.started = time.perf_counter()
    return args


def write_results(args: argparse.Namespace, numbers: dict, whole: bool = True) -> Path:
    """The run's numbers with their provenance (tools/provenance.py), as JSON: experiments/results/NAME.json for
    a full run (committed; the documents quote it), OUT/results.json for a --quick one or one that ran only part
    of the experiment (`whole` False; never committed)."""
    path = args.out / "results.json" if args.quick or not whole else RESULTS / f"{args.name}.json"
    minutes = (time.perf_counter() - args.started) / 60  # training (unless reused), evaluation and figures so far
    return provenance.write_json(path, {"quick": args.quick, "minutes": minutes, **numbers},
                                 f"-m experiments.{args.name}", args.argv)


def with_data_dir(experiment: tfvae.Experiment, data_dir: str | None) -> tfvae.Experiment:
    return tfvae.override(experiment, {"data.data_dir": data_dir}) if data_dir else experiment


def train_arm(experiment: tfvae.Experiment, run_dir: Path, progress: bool = True, **fit_kwargs) -> dict:
    """Trains (or finishes, or reuses) one arm; writes and returns its metrics.json summary (nats per image)."""
    result = tfvae.fit(experiment, run_dir, progress=progress, **fit_kwargs)
    summary = rundir.run_summary(result.history)
    rundir.write_atomically(Path(run_dir) / "metrics.json", json.dumps(summary, indent=2) + "\n")
    return summary


class Report:
    """A Markdown report built section by section; `write` saves it as OUT/report.md.

    Figures are embedded by their path relative to the report, so the folder
    can be moved or zipped whole.
    """

    def __init__(self, folder: Path, title: str):
        self.folder = Path(folder)
        self.lines = [f"# {title}", ""]
        self.started = time.perf_counter()

    def text(self, *paragraphs: str) -> None:
        for paragraph in paragraphs:
            self.lines += [paragraph.strip(), ""]

    def heading(self, title: str) -> None:
        self.lines += [f"## {title}", ""]

    def table(self, frame: pd.DataFrame, floatfmt: str = ".2f") -> None:
        """A DataFrame as a Markdown table (floats with `floatfmt`)."""
        def cell(value) -> str:
            if isinstance(value, float):
                return "" if pd.isna(value) else format(value, floatfmt)
            return str(value)

        self.lines.append("| " + " | ".join(str(c) for c in frame.columns) + " |")
        self.lines.append("|" + " --- |" * len(frame.columns))
        for row in frame.itertuples(index=False):
            self.lines.append("| " + " | ".join(cell(v) for v in row) + " |")
        self.lines.append("")

    def figure(self, path: Path, caption: str) -> None:
        relative = os.path.relpath(Path(path), self.folder)
        self.lines += [f"![{caption}]({relative})", "", f"*{caption}*", ""]

    def figures_side_by_side(self, paths: Sequence[Path], captions: Sequence[str]) -> None:
        """Figures in one table row, each with its caption as the column header."""
        self.lines.append("| " + " | ".join(captions) + " |")
        self.lines.append("|" + " --- |" * len(paths))
        cells = [f"![{c}]({os.path.relpath(Path(p), self.folder)})" for p, c in zip(paths, captions)]
        self.lines += ["| " + " | ".join(cells) + " |", ""]

    def write(self) -> Path:
        minutes = (time.perf_counter() - self.started) / 60
        self.lines += ["---", "", f"This report took {minutes:.1f} minutes to make on this machine (training included "
                       "unless the runs existed already)."]
        path = self.folder / "report.md"
        self.folder.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(self.lines) + "\n")
        print(f"wrote {path}")
        return path
