"""Building a sampler by kind, and saving and loading a fitted one: sampler.json and a TensorFlow checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

from tfvae.samplers.base import FITTED, Sampler
from tfvae.samplers.flow import FlowSampler
from tfvae.samplers.mixture import GaussianMixtureSampler
from tfvae.samplers.two_stage import TwoStageSampler

RUN_SUBDIR = "samplers"
_SPEC_FILE, _WEIGHTS = "sampler.json", "weights"
_CLASSES = {cls.kind: cls for cls in (GaussianMixtureSampler, TwoStageSampler, FlowSampler)}


def build(kind: str, latent_size: int, **options) -> Sampler:
    """A new (unfitted) sampler of `kind` ("gmm", "two-stage", "flow") for codes of `latent_size`.

    Raises:
      ValueError: an unknown kind (naming the known ones; "prior" is not fitted: `PriorSampler(model.prior)`).
    """
    if kind not in _CLASSES:
        raise ValueError(f"unknown sampler {kind!r}; fitted samplers: {', '.join(FITTED)} (and 'prior', the "
                         "model's own p(z))")
    return _CLASSES[kind](latent_size, **options)


def save(sampler: Sampler, directory: str | os.PathLike) -> Path:
    """Writes a fitted sampler to `directory` (replacing what is there): sampler.json and weights.* (a TF
    checkpoint). Written beside it first and renamed into place, so the folder is whole or absent."""
    directory = Path(directory)
    if sampler.fit_record is None:
        raise ValueError(f"the {sampler.kind} sampler is not fitted: call sampler.fit(codes) before saving it")
    spec = {"kind": sampler.kind, "latent_size": sampler.latent_size, "options": sampler.options(),
            "fit": sampler.fit_record}
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        tf.train.Checkpoint(sampler=sampler).write(str(staging / _WEIGHTS))
        (staging / _SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def load(directory: str | os.PathLike) -> Sampler:
    """The sampler that `save` wrote to `directory`.

    Raises:
      ValueError: no sampler.json there, or weights that do not fit what it describes.
    """
    directory = Path(directory)
    path = directory / _SPEC_FILE
    if not path.is_file():
        raise ValueError(f"no fitted sampler in {directory} (no {_SPEC_FILE}): fit one with "
                         "tfvae.run_samplers.fitted_sampler(run_dir, kind) or `tfvae sample RUN_DIR --sampler KIND`")
    spec = json.loads(path.read_text())
    sampler = build(spec["kind"], spec["latent_size"], **spec["options"])
    tf.train.Checkpoint(sampler=sampler).read(str(directory / _WEIGHTS)).assert_existing_objects_matched()
    sampler._fit_json = json.dumps(spec["fit"])
    return sampler


def run_path(run_dir: str | os.PathLike, kind: str) -> Path:
    """Where a run keeps its fitted sampler of `kind`: RUN_DIR/samplers/KIND."""
    return Path(run_dir) / RUN_SUBDIR / kind
