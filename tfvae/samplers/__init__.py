"""Samplers fitted after training: distributions over the latent code that stand in for the prior when drawing.

A trained VAE's aggregate posterior q(z) = E_x q(z|x) does not fill its prior: N(0, I) puts mass where no
training image's code lies, and the decoder turns those codes into blurred mixtures of digits. A density fitted
to the training set's codes after training draws z where the decoder was trained (Dai & Wipf, 2019; Ghosh et
al., 2020, "ex-post density estimation"). Every sampler here is fitted to posterior means [N, latent] and gives

    sampler.fit(codes)                       codes float [N, latent] -> a dict of what the fit did (JSON-ready)
    sampler.sample(n, seed, temperature)     -> z float32 [n, latent]   (seed: a stateless [2] int seed, or None)
    sampler.log_prob(z)                      z [n, latent] -> float32 [n], nats (two-stage: a lower bound)

so `vae.sample(n, sampler=...)` (and `tfvae.protocol.sample`) decode its draws instead of the prior's. Kinds:

- "prior" (`PriorSampler`): the model's own p(z), nothing fitted (the baseline).
- "gmm" (`GaussianMixtureSampler`): K full-covariance Gaussians fitted by EM in NumPy float64 (a k-means++
  start with a fixed seed), held as a `tfd.MixtureSameFamily` of `tfd.MultivariateNormalTriL`.
- "two-stage" (`TwoStageSampler`): a second small VAE on the codes (Dai & Wipf, 2019): q(u|z) a diagonal
  Normal, p(z|u) = N(mu(u), gamma^2 I) with a learned gamma, p(u) = N(0, I), u of the codes' size; a draw is
  mu(u) for u ~ p(u). Trained for a fixed number of Adam steps on the negative ELBO.
- "flow" (`FlowSampler`): a masked autoregressive flow (Papamakarios et al., 2017) from `tfp.bijectors`, a
  few `tfb.MaskedAutoregressiveFlow` steps with reversals between them over N(0, I), trained by maximum
  likelihood for a fixed number of Adam steps.

The two-stage and flow samplers see the codes standardised (each dimension's mean and standard deviation over
the fitted codes, kept as variables), so their networks work on unit-scale inputs whatever the encoder's units.

Temperature T > 0 scales the standard deviation of each sampler's Gaussian source: the prior's scale (a
Normal or a mixture of Normals), each mixture component's covariance by T^2, the flow's base N(0, T^2 I), the
two-stage VAE's p(u) = N(0, T^2 I). T = 1 is the fitted density; T < 1 trades variety for typical samples
(Kingma & Dhariwal, 2018). `with_temperature(sampler, T)` is a sampler that always draws at T.

`save(sampler, directory)` writes sampler.json (kind, latent size, options, the fit's record) and a TensorFlow
checkpoint (weights.*) and `load(directory)` reads them back: data formats only. A run keeps its fitted
samplers in RUN_DIR/samplers/KIND (`run_path`; `tfvae.run_samplers` fits and reuses them).

Limits: the fitted samplers see only the codes, so a conditional model's label is not part of what they fit;
"two-stage" and "flow" need N >= 2 codes, "gmm" N >= K; the fits take seconds to a minute for 60,000 20-d codes
on two CPU cores.

References:
    Dai & Wipf (2019), "Diagnosing and enhancing VAE models", ICLR.
    Ghosh et al. (2020), "From variational to deterministic autoencoders", ICLR (a GMM on the codes, sec. 4).
    Papamakarios, Pavlakou & Murray (2017), "Masked autoregressive flow for density estimation", NeurIPS.
    Germain et al. (2015), "MADE: masked autoencoder for distribution estimation", ICML.
    Arthur & Vassilvitskii (2007), "k-means++: the advantages of careful seeding".
    Kingma & Dhariwal (2018), "Glow" (sampling at a reduced temperature).
"""

from __future__ import annotations

from tfvae.samplers.base import FITTED, KINDS, PriorSampler, Sampler, check_temperature, tempered, with_temperature
from tfvae.samplers.flow import FlowSampler
from tfvae.samplers.mixture import GaussianMixtureSampler, MixtureFit, fit_gaussian_mixture, kmeans_plus_plus
from tfvae.samplers.storage import RUN_SUBDIR, build, load, run_path, save
from tfvae.samplers.two_stage import TwoStageSampler

__all__ = [
    "FITTED",
    "KINDS",
    "FlowSampler",
    "GaussianMixtureSampler",
    "MixtureFit",
    "PriorSampler",
    "Sampler",
    "TwoStageSampler",
    "build",
    "RUN_SUBDIR",
    "check_temperature",
    "fit_gaussian_mixture",
    "kmeans_plus_plus",
    "load",
    "run_path",
    "save",
    "tempered",
    "with_temperature",
]
