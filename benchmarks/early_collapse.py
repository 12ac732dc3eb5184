"""Whether a preset leaves the mean-image plateau of its first epochs: seeds x settings, a few epochs each.

    .venv/bin/python benchmarks/early_collapse.py        # the VampPrior preset and lr 5e-4, seeds 1-5, ~12 min here
    .venv/bin/python benchmarks/early_collapse.py --presets mnist-burda-vae --seeds 1 2 3 --variant ""

In its first epochs a VAE on binarized MNIST sits on a plateau: the encoder
gives every image nearly the same code, the decoder draws the mean image
(a training reconstruction of about 206 nats) and the KL is near 0. A model
that leaves it within an epoch or two trains; one that does not may never
leave it (the leaderboard's VampPrior seeds 2 and 3 stayed for all their 252
epochs). Each run trains the preset with one variant's settings for --epochs
in a fresh temporary run directory (no test passes) and records the first
epoch whose training KL passes --escape-nats (empty: it never did), the last
epoch's training reconstruction and KL, and the spread of the encoder's mean
code over 1,000 training images (the standard deviation over images, averaged
over latent dimensions: 0 when every image gets the same code). Training
images only: nothing here looks at the test set.

Writes benchmarks/results/early_collapse.csv (a row per preset, variant and
seed, with the provenance: tools/provenance.py) and prints, per preset and
variant, how many seeds escaped. Run it alone: it is a training job.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tools"))
import provenance  # tools/provenance.py

DEFAULT_VARIANTS = ("", "train.learning_rate=0.0005")
SPREAD_IMAGES = 1000  # training images whose codes give the spread


def escape_epoch(history: pd.DataFrame, nats: float) -> int | None:
    """The first epoch whose training KL (nats per image) exceeds `nats`, or None: history.csv's epoch and
    train_rate columns, epochs in any order."""
    passed = history.sort_values("epoch").query("train_rate > @nats")
    return None if passed.empty else int(round(passed["epoch"].iloc[0]))


def parse_variant(text: str) -> dict[str, object]:
    """'FIELD=VALUE FIELD=VALUE' (`tfvae.config.parse_assignment` each) -> config changes; '' -> {} (the preset)."""
    from tfvae.config import parse_assignment

    return dict(parse_assignment(item) for item in text.split())


def code_spread(model, images: np.ndarray) -> float:
    """Mean over latent dimensions of the standard deviation over `images` [n, H, W, C] of q(z|x)'s mean."""
    means = np.asarray(model.encode(images).mean())
    return float(means.reshape(len(images), -1).std(axis=0).mean())


@functools.lru_cache(maxsize=None)  # read once a dataset, not once a run
def spread_images(name: str, seed: int = 0) -> np.ndarray:
    """SPREAD_IMAGES training images of dataset `name`, binarized once by a Bernoulli draw, [n, H, W, C] float32."""
    from tfvae import data

    images, _ = data.load_arrays(name, "train")
    return data.binarize_once(images[:SPREAD_IMAGES], seed)  # load_arrays gives [N, H, W, C] already


def measure(preset: str, seed: int, epochs: int, changes: Mapping[str, object], escape_nats: float) -> dict:
    """Trains `preset` with `changes` for `epochs` (a fresh temporary run directory); the row this script writes."""
    import tfvae

    settings = {**changes, "train.epochs": epochs, "train.seed": seed, "train.test_every": epochs + 1}
    experiment = tfvae.override(tfvae.preset(preset), settings)
    with tempfile.TemporaryDirectory() as run_root:
        result = tfvae.fit(experiment, Path(run_root) / "run", progress=False)
    history = result.history
    last = history.sort_values("epoch").iloc[-1]
    escaped = escape_epoch(history, escape_nats)
    return {"preset": preset, "settings": tfvae.config.format_assignments(changes),
            "seed": seed, "epochs": epochs, "escape_nats": escape_nats,
            "escape_epoch": escaped if escaped is not None else pd.NA,
            "last_reconstruction": round(float(last["train_distortion"]), 3),
            "last_kl": round(float(last["train_rate"]), 4),
            "code_spread": round(code_spread(result.model, spread_images(experiment.data.name)), 6)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["mnist-burda-vampprior"])
    parser.add_argument("--variant", dest="variants", action="append",
                        help="'FIELD=VALUE ...' changes to every preset ('' is the preset); repeat for more "
                             f"(default: {list(DEFAULT_VARIANTS)})")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--escape-nats", type=float, default=5.0, help="training KL that counts as having left")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "early_collapse.csv")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    try:
        variants = [(text, parse_variant(text)) for text in (args.variants or DEFAULT_VARIANTS)]
    except ValueError as error:
        parser.error(str(error))
    rows = []
    for preset in args.presets:
        for text, changes in variants:
            for seed in args.seeds:
                rows.append(measure(preset, seed, args.epochs, changes, args.escape_nats))
                row = rows[-1]
                left = "never" if pd.isna(row["escape_epoch"]) else f"at epoch {row['escape_epoch']}"
                print(f"{preset} [{text or 'the preset'}] seed {seed}: KL passed {args.escape_nats:g} nats {left}; "
                      f"epoch {args.epochs}: reconstruction {row['last_reconstruction']:.1f}, KL "
                      f"{row['last_kl']:.2f}, code spread {row['code_spread']:.3g}", flush=True)
    table = pd.DataFrame(rows).assign(**provenance.provenance("benchmarks/early_collapse.py", argv))
    provenance.write_csv(args.out, table)
    escaped = table.groupby(["preset", "settings"], sort=False)["escape_epoch"].agg(
        seeds="size", escaped="count", median_epoch="median")
    print(escaped.to_string())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
