"""The experiment reports' sentences come from the numbers: made-up numbers one way, then the other, flip the words."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments import (  # noqa: E402
    ae_vs_vae,
    bernoulli_vae,
    disentanglement,
    fashion_mnist_vae,
    sonnet_beta_vae,
    sweep_beta,
    sweep_latent,
    wording,
)


def test_compare_says_higher_lower_or_about_the_same_with_the_numbers():
    assert wording.compare("The error", "SGD", 44.3, "Adam", 33.9) == \
        "The error is 44.3 for SGD, higher than 33.9 for Adam (+10.4)."
    assert wording.compare("The error", "SGD", 30.0, "Adam", 33.9) == \
        "The error is 30.0 for SGD, lower than 33.9 for Adam (-3.9)."
    assert wording.compare("The error", "SGD", 34.0, "Adam", 33.9, margin=0.2) == \
        "The error is 34.0 for SGD, about the same as 33.9 for Adam (+0.1)."


@pytest.mark.parametrize("values, words", [([1, 2, 3], "rises at every step"), ([3, 2, 1], "falls at every step"),
                                           ([1, 3, 2], "does not move one way"), ([1, 1, 2], "does not move one way")])
def test_trend(values, words):
    assert wording.trend(values) == words


def beta_table(log_px, active=(20, 20, 20, 20, 20, 20, 19)) -> pd.DataFrame:
    betas = [0.0, 0.01, 0.1, 0.5, 1.0, 2.0, 4.0]
    return pd.DataFrame({
        "beta": betas,
        "test_distortion": [60.0, 61.0, 62.0, 70.0, 80.0, 95.0, 120.0],
        "test_rate": [450.0, 150.0, 60.0, 30.0, 25.0, 18.0, 10.0],
        "negative_elbo": [510.0, 211.0, 122.0, 100.0, 91.7, 113.0, 130.0],
        "log_px": log_px, "log_px_standard_error": [1.0, 0.6, 0.5, 0.5, 0.4, 0.5, 0.6], "active_units": active,
    })


def test_sweep_beta_sentences_follow_the_table():
    sentences = sweep_beta.conclusions(beta_table([-506.0, -150.0, -95.0, -88.0, -86.8, -90.0, -97.0]))
    assert sentences[0] == ("As beta goes down from 4 to 0, the test reconstruction falls at every step (120.0 to "
                            "60.0 nats) and the KL rises at every step (10.0 to 450.0).")
    assert sentences[1] == ("The reconstruction is 60.0 for beta = 0, lower than 61.0 for beta = 0.01 (-1.0).")
    assert sentences[2] == "The KL of beta = 0, 450.0, is 3.0 times that of beta = 0.01, 150.0."
    assert sentences[3] == ("The lowest negative ELBO, 91.7, is at beta = 1; the highest log p(x), -86.8 (standard "
                            "error 0.4), at beta = 1, and the lowest, -506.0, at beta = 0.")
    assert sentences[4].startswith("Active units: 19 at beta = 4, 20 at beta = 2")
    # Other numbers, other words: the best log p(x) at beta 0.5, a reconstruction that does not fall throughout.
    table = beta_table([-506.0, -150.0, -95.0, -86.0, -86.8, -90.0, -97.0])
    table.loc[table["beta"] == 0.0, "test_distortion"] = 65.0
    flipped = sweep_beta.conclusions(table)
    assert "the test reconstruction does not move one way (120.0 to 65.0 nats)" in flipped[0]
    assert flipped[1] == "The reconstruction is 65.0 for beta = 0, higher than 61.0 for beta = 0.01 (+4.0)."
    assert "the highest log p(x), -86.0 (standard error 0.5), at beta = 0.5" in flipped[3]


def latent_table(log_px_50, elbo_50) -> pd.DataFrame:
    return pd.DataFrame({
        "latent": [2, 5, 10, 20, 50],
        "test_distortion": [140.0, 110.0, 85.0, 62.0, 61.0], "test_rate": [6.0, 12.0, 18.0, 25.0, 26.0],
        "negative_elbo": [146.0, 122.0, 103.0, 87.0, elbo_50],
        "log_px": [-156.2, -123.2, -100.3, -86.8, log_px_50],
        "log_px_standard_error": [0.6, 0.5, 0.4, 0.4, 0.4], "active_units": [2, 5, 10, 20, 50],
    })


def test_sweep_latent_sentences_follow_the_table():
    sentences = sweep_latent.conclusions(latent_table(-85.6, 87.0))
    assert sentences[0] == ("As the latent grows from 2 to 50 dimensions, the test reconstruction falls at every "
                            "step (140.0 to 61.0 nats) and the KL rises at every step (6.0 to 26.0).")
    assert sentences[1] == ("log p(x) changes by +33.0 from 2 to 5, +22.9 from 5 to 10, +13.5 from 10 to 20, "
                            "+1.2 from 20 to 50 nats.")
    assert sentences[2] == ("The log p(x) is -85.6 for 50 dimensions, higher than -86.8 for 20 (+1.2). "
                            "Two standard errors of the difference: 1.1.")
    assert sentences[3] == "The negative ELBO is 87.0 for 50 dimensions, about the same as 87.0 for 20 (+0.0)."
    assert sentences[4] == "Active units: 2 of 2, 5 of 5, 10 of 10, 20 of 20, 50 of 50."
    flipped = sweep_latent.conclusions(latent_table(-86.0, 86.0))
    assert flipped[2].startswith("The log p(x) is -86.0 for 50 dimensions, about the same as -86.8 for 20 (+0.8).")
    assert flipped[3] == "The negative ELBO is 86.0 for 50 dimensions, lower than 87.0 for 20 (-1.0)."


def anomaly_table(kl_auc, elbo_auc) -> pd.DataFrame:
    return pd.DataFrame([
        {"source": "MNIST test", "images": 10000, "median KL": 25.0, "median -ELBO": 87.0},
        {"source": "uniform noise", "images": 10000, "median KL": 60.0, "median -ELBO": 900.0,
         "AUC (KL)": kl_auc, "AUC (-ELBO)": elbo_auc},
    ])


def test_bernoulli_vae_sentences_follow_the_numbers():
    assert bernoulli_vae.anomaly_sentences("m", anomaly_table(0.52, 1.0)) == [
        "m, uniform noise: ROC AUC 0.520 by KL and 1.000 by negative ELBO; the negative ELBO separates it better "
        "(the KL's AUC is near chance, 0.5)."]
    assert bernoulli_vae.anomaly_sentences("m", anomaly_table(0.17, 1.0)) == [
        "m, uniform noise: ROC AUC 0.170 by KL and 1.000 by negative ELBO; the negative ELBO separates it better "
        "(the KL scores it lower than the digits: AUC below 0.5)."]
    assert bernoulli_vae.anomaly_sentences("m", anomaly_table(0.99, 0.90)) == [
        "m, uniform noise: ROC AUC 0.990 by KL and 0.900 by negative ELBO; the KL separates it better."]
    assert bernoulli_vae.anomaly_sentences("m", anomaly_table(0.995, 1.0)) == [
        "m, uniform noise: ROC AUC 0.995 by KL and 1.000 by negative ELBO; the two scores separate it about equally."]
    row = {"model": "mnist-bernoulli-20d", "test -ELBO (nats)": 87.95, "published": 87.65}
    assert bernoulli_vae.published_sentence(row) == (
        "The test negative ELBO is 87.95 for mnist-bernoulli-20d, higher than 87.65 for the walkthrough (+0.30). "
        "It is within the bound required here, <= 88.0.")
    row["test -ELBO (nats)"] = 88.2
    assert "It is over the bound" in bernoulli_vae.published_sentence(row)
    row["test -ELBO (nats)"] = 87.5
    assert "lower than 87.65" in bernoulli_vae.published_sentence(row)


def test_ae_vs_vae_sentences_follow_the_numbers():
    rng = np.random.default_rng(0)
    wide = ae_vs_vae.code_spread(rng.normal(0, 5, (2000, 2)))
    narrow = ae_vs_vae.code_spread(rng.normal(0, 1, (2000, 2)))
    assert wide["area"] > 20 * narrow["area"]
    sentences = ae_vs_vae.latent_sentences({"autoencoder": wide, "vae": narrow})
    assert "for the VAE, lower than" in sentences[0] and "for the VAE, lower than" in sentences[1]
    flipped = ae_vs_vae.latent_sentences({"autoencoder": narrow, "vae": wide})
    assert "for the VAE, higher than" in flipped[0] and "for the VAE, higher than" in flipped[1]
    sse = {"vae-adam": 33.9, "vae-sgd": 44.3, "autoencoder-adam": 31.3, "autoencoder-sgd": 40.8}
    assert ae_vs_vae.sgd_sentences(sse, 20) == [
        "The VAE's test squared error after 20 epochs is 44.3 for SGD, higher than 33.9 for Adam (+10.4).",
        "The autoencoder's test squared error after 20 epochs is 40.8 for SGD, higher than 31.3 for Adam (+9.5).",
        "SGD's squared error is 1.31 times Adam's for the VAE; walkthrough 004 saw about 10 times in its numpy VAE, "
        "so the ratio here is smaller.",
    ]
    sse.update({"vae-sgd": 400.0, "autoencoder-sgd": 20.0})
    flipped = ae_vs_vae.sgd_sentences(sse, 20)
    assert "lower than 31.3 for Adam" in flipped[1] and flipped[2].endswith("so the ratio here is larger.")


def test_sonnet_beta_vae_sentences_follow_the_numbers():
    def table(kl, reconstruction, elbo):
        return pd.DataFrame({"arm": ["published", "beta-0.01-per-image"], "test KL (nats / image)": kl,
                             "test reconstruction (nats / image)": reconstruction, "test -ELBO (nats / image)": elbo})

    sentences = sonnet_beta_vae.arm_sentences(table([20.0, 60.0], [126.0, 95.0], [146.0, 155.0]))
    assert sentences == [
        "The test KL is 60.0 for tfvae beta = 0.01, higher than 20.0 for the published objective (tfvae beta = "
        "0.784) (+40.0).",
        "The test reconstruction is 95.0 for tfvae beta = 0.01, lower than 126.0 for the published objective "
        "(tfvae beta = 0.784) (-31.0).",
        "The test negative ELBO is 155.0 for tfvae beta = 0.01, higher than 146.0 for the published objective "
        "(tfvae beta = 0.784) (+9.0).",
    ]
    flipped = sonnet_beta_vae.arm_sentences(table([60.0, 20.0], [95.0, 126.0], [155.0, 146.0]))
    assert [" lower than" in flipped[0], " higher than" in flipped[1], " lower than" in flipped[2]] == [True] * 3


def test_fashion_mnist_sentences_follow_the_numbers():
    sentences = fashion_mnist_vae.published_sentences(17.2, 8.1, 400.0)
    assert sentences == [
        "The summed squared error per training image is 17.2 for tfvae, lower than 468.0 for the walkthrough "
        "(-450.8).",
        "The KL per training image is 8.1 for tfvae, higher than 7.0 for the walkthrough (+1.1).",
        "The clipping floor on the test images, 400.0 per image, is 85% of the walkthrough's image loss, 467.98.",
    ]
    assert "lower than 7.0" in fashion_mnist_vae.published_sentences(17.2, 5.0, 400.0)[1]


def disentanglement_scores(tcvae_mig, beta_mig) -> pd.DataFrame:
    """Long rows (model, seed, metric, value) of two models on three seeds, MIG only."""
    rows = [{"model": model, "seed": seed, "metric": "mig", "value": value}
            for model, values in (("beta-TCVAE", tcvae_mig), ("beta-VAE", beta_mig))
            for seed, value in zip((1, 2, 3), values)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("tcvae_mig, words, verdict", [
    ((0.30, 0.32, 0.34), "higher than 0.110 +- 0.010 for beta-VAE", "the papers' ordering"),
    ((0.05, 0.06, 0.07), "lower than 0.110 +- 0.010 for beta-VAE", "the opposite ordering"),
    ((0.04, 0.11, 0.17), "about the same as 0.110 +- 0.010 for beta-VAE", "within one pooled sd (0.047)"),
])
def test_the_papers_ordering_is_stated_from_means_and_sds_over_seeds(tcvae_mig, words, verdict):
    table = disentanglement.summary_table(disentanglement_scores(tcvae_mig, (0.10, 0.11, 0.12)))
    mig = table.set_index("model").loc["beta-TCVAE"]
    assert mig["values"] == list(tcvae_mig) and mig["sd"] == pytest.approx(np.std(tcvae_mig, ddof=1))
    (sentence,) = disentanglement.comparisons(table)  # FactorVAE was not trained: no sentence for it
    assert sentence.startswith("Chen et al. (2018) report beta-TCVAE above beta-VAE on MIG; here mig is "
                               f"{np.mean(tcvae_mig):.3f} +- {np.std(tcvae_mig, ddof=1):.3f} for beta-TCVAE, ")
    assert words in sentence and verdict in sentence and "(mean +- sd over 3 seeds)" in sentence
    assert disentanglement.rankings(table)[0].startswith("mig: " + (
        "beta-TCVAE" if np.mean(tcvae_mig) > 0.11 else "beta-VAE"))
