"""The PyTorch reference of benchmarks/train_speed.py: the classic 784-400-20 Bernoulli VAE, one epoch per command.

A worker process: it reads commands on stdin and answers each with one JSON
line on stdout. "epoch" trains one pass over the training images (batch
128, Adam 1e-3, a fresh random order) and scores the test images (summed
binary cross-entropy plus the analytic KL, nats per image); "quit" ends.
Only numpy and torch are needed, in a virtualenv of their own (torch is not
a tfvae dependency); benchmarks/requirements.txt pins the CPU wheel:

    python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install -r benchmarks/requirements.txt
    /tmp/torchenv/bin/python benchmarks/torch_reference.py DATA_DIR SEED   # DATA_DIR: train.npy, test.npy (uint8)

benchmarks/train_speed.py starts it (--torch-python /tmp/torchenv/bin/python)
with the same seeds as tfvae (`torch.manual_seed(SEED)`: the initial weights,
the order of the images and the draws of z).
"""

import json
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

BATCH = 128


class BernoulliVAE(nn.Module):
    """q(z|x) = N(mu(x), exp(log_var(x))), p(x|z) = Bernoulli(logits(z)); hidden layers of 400 ReLU units."""

    def __init__(self, pixels: int = 784, hidden: int = 400, latent: int = 20):
        super().__init__()
        self.encoder = nn.Linear(pixels, hidden)
        self.posterior = nn.Linear(hidden, 2 * latent)
        self.decoder_hidden = nn.Linear(latent, hidden)
        self.decoder_logits = nn.Linear(hidden, pixels)

    def negative_elbo(self, x: torch.Tensor) -> torch.Tensor:
        """Summed over the batch, nats."""
        mean, log_var = self.posterior(F.relu(self.encoder(x))).chunk(2, dim=-1)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var)
        logits = self.decoder_logits(F.relu(self.decoder_hidden(z)))
        distortion = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        rate = -0.5 * torch.sum(1 + log_var - mean.square() - log_var.exp())
        return distortion + rate


def binarized(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy((images.reshape(len(images), -1) >= 128).astype(np.float32))


def main() -> None:
    data_dir, seed = sys.argv[1], int(sys.argv[2])
    torch.manual_seed(seed)
    train, test = binarized(np.load(f"{data_dir}/train.npy")), binarized(np.load(f"{data_dir}/test.npy"))
    model = BernoulliVAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for command in sys.stdin:
        if command.strip() != "epoch":
            break
        started = time.perf_counter()
        order = torch.randperm(len(train))
        for start in range(0, len(train), BATCH):
            x = train[order[start : start + BATCH]]
            optimizer.zero_grad()
            (model.negative_elbo(x) / len(x)).backward()
            optimizer.step()
        train_seconds = time.perf_counter() - started
        with torch.no_grad():
            test_loss = sum(float(model.negative_elbo(x)) for x in test.split(BATCH)) / len(test)
        print(json.dumps({"seconds": time.perf_counter() - started, "train_seconds": train_seconds,
                          "test_loss": test_loss, "torch_version": torch.__version__}), flush=True)


if __name__ == "__main__":
    main()
