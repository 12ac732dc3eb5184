"""plotnine charts from tidy DataFrames and plain arrays; each returns a `plotnine.ggplot`.

Nothing here computes a model quantity: losses come from history.csv, KL per
dimension, activity and anomaly scores from `tfvae.evaluate`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotnine as gg

_TERM_LABELS = {"loss": "total loss", "distortion": "distortion, -log p(x|z)", "rate": "rate, KL(q || p)"}
# matplotlib's tab10: ten hues that stay apart (ten digit classes; benchmarks/loglik.py's nine families).
TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
_SCORE_LABELS = {"negative_elbo": "negative ELBO (nats)", "kl": "KL(q(z|x) || p(z)) (nats)"}


def objective_title(beta: float) -> str:
    """The objective a run minimised, in words, e.g. "-ELBO = distortion + rate (beta = 1)"."""
    if beta == 1:
        return "-ELBO = distortion + rate (beta = 1)"
    if beta == 0:
        return "Loss = distortion only (beta = 0: an autoencoder objective)"
    return f"Loss = distortion + {beta:g} x rate (beta-VAE, beta = {beta:g})"


def tidy_history(history: pd.DataFrame) -> pd.DataFrame:
    """history.csv rows -> long rows (step, split, term, value), NaNs dropped."""
    columns = [f"{split}_{term}" for split in ("train", "test") for term in _TERM_LABELS]
    columns = [column for column in columns if column in history.columns]
    long = history.melt(id_vars=["step"], value_vars=columns, var_name="column", value_name="value").dropna()
    long[["split", "term"]] = long["column"].str.split("_", n=1, expand=True)
    long["term"] = pd.Categorical(long["term"].map(_TERM_LABELS), categories=list(_TERM_LABELS.values()))
    long["split"] = pd.Categorical(long["split"], categories=["train", "test"])
    return long.drop(columns="column").reset_index(drop=True)


def loss_curves(history: pd.DataFrame, beta: float = 1.0, log_scale: bool = False) -> gg.ggplot:
    """Each term of the objective against step, train and test, one panel per term.

    Train rows are running means over each logging interval; test rows are
    full passes over the test split at epoch ends (points). `log_scale` puts
    both axes on log10 scales.
    """
    long = tidy_history(history)
    if log_scale:
        long = long[(long["step"] > 0) & (long["value"] > 0)]
    plot = (
        gg.ggplot(long, gg.aes(x="step", y="value", color="split"))
        + gg.geom_line()
        + gg.geom_point(data=long[long["split"] == "test"], size=1.5)
        + gg.facet_wrap("~term", scales="free_y", nrow=1)
        + gg.scale_color_manual(values=["#1f77b4", "#d62728"], drop=False)
        + gg.labs(
            x="training step",
            y="nats per image",
            color="split",
            title=objective_title(beta) + (" (log-log axes)" if log_scale else ""),
        )
        + gg.theme_bw()
        + gg.theme(figure_size=(11, 3.6))
    )
    if log_scale:
        plot = plot + gg.scale_x_log10() + gg.scale_y_log10()
    return plot


def latent_scatter(
    means: np.ndarray,
    labels: np.ndarray | None = None,
    dims: tuple[int, int] = (0, 1),
    *,
    label_name: str = "label",
    kl: Sequence[float] | None = None,
    data_name: str = "test images",
) -> gg.ggplot:
    """Posterior means [n, latent] of a data set, dims[0] against dims[1], coloured by label.

    `kl`: the average KL of each latent dimension; when given it is shown on the axes.
    Labels < 0 (a dataset without labels) draw one colour and no legend.
    """
    means = np.asarray(means)
    x, y = dims
    frame = pd.DataFrame({"x": means[:, x], "y": means[:, y]})
    labelled = labels is not None and np.min(labels) >= 0
    axis = (lambda d: f"z[{d}]  (KL {kl[d]:.2f} nats)") if kl is not None else (lambda d: f"z[{d}]")
    which = ""
    if means.shape[1] > 2:
        top_two = kl is not None and set(np.argsort(-np.asarray(kl))[:2]) == {x, y}
        which = f"\nz[{x}] and z[{y}] of {means.shape[1]}" + (", the 2 with the highest KL" if top_two else "")
    aes = gg.aes(x="x", y="y")
    if labelled:
        frame[label_name] = pd.Categorical(
            np.asarray(labels).astype(int).astype(str),
            categories=[str(v) for v in sorted(set(np.asarray(labels).astype(int)))],
        )
        aes = gg.aes(x="x", y="y", color=label_name)
    plot = (
        gg.ggplot(frame, aes)
        + gg.geom_point(size=1.2, alpha=0.5, stroke=0)
        + gg.labs(x=axis(x), y=axis(y), title=f"Posterior means E[z|x] of {len(frame)} {data_name}{which}")
        + gg.theme_bw()
        + gg.theme(figure_size=(7.5, 6.5))
    )
    if labelled:
        plot += gg.scale_color_manual(values=list(TAB10) * 3)
        plot += gg.guides(color=gg.guide_legend(override_aes={"alpha": 1, "size": 3}))
    return plot


def kl_per_dimension_chart(kl: np.ndarray, activity: np.ndarray, threshold: float = 0.01) -> gg.ggplot:
    """A bar per latent dimension: its average KL(q(z_d|x) || p(z_d)) in nats, filled by activity.

    `activity` is Cov_x(E_q[z_d|x]) per dimension; a unit is active above
    `threshold` (Burda et al., 2015, "Importance Weighted Autoencoders", sec. 5.2).
    """
    kl, activity = np.asarray(kl, float), np.asarray(activity, float)
    active = activity > threshold
    frame = pd.DataFrame(
        {
            "dimension": pd.Categorical([str(d) for d in range(len(kl))], categories=[str(d) for d in range(len(kl))]),
            "kl": kl,
            "unit": pd.Categorical(np.where(active, "active", "inactive"), categories=["active", "inactive"]),
        }
    )
    return (
        gg.ggplot(frame, gg.aes(x="dimension", y="kl", fill="unit"))
        + gg.geom_col()
        + gg.scale_fill_manual(values=["#1f77b4", "#bbbbbb"], drop=False)
        + gg.labs(
            x="latent dimension d",
            y="mean KL(q(z_d|x) || p(z_d)), nats",
            fill=f"active: Cov_x(E[z_d|x]) > {threshold:g}",
            title=f"KL per latent dimension: {int(active.sum())} of {len(kl)} units active, total {kl.sum():.1f} nats",
        )
        + gg.theme_bw()
        + gg.theme(figure_size=(max(7.0, 0.35 * len(kl) + 3), 4), legend_position="bottom")
    )


def anomaly_histograms(
    scores: pd.DataFrame, reference: str | None = None, quantile: float = 0.99, bins: int = 60
) -> gg.ggplot:
    """Histograms of per-example anomaly scores, one panel per score, one colour per source.

    scores: columns `source` (e.g. "test images", "uniform noise"), `kl` and
    `negative_elbo` (nats per example), as `tfvae.evaluation.anomaly_scores`
    returns with a source column added. A dashed line marks the `quantile` of
    the `reference` source (default: the first), a threshold one might flag at.
    Both axes are log10: outliers can score orders of magnitude above the data.
    """
    sources = list(dict.fromkeys(scores["source"]))
    reference = reference or sources[0]
    columns = [column for column in _SCORE_LABELS if column in scores.columns]
    long = scores.melt(id_vars=["source"], value_vars=columns, var_name="score", value_name="value")
    long["value"] = long["value"].clip(lower=1e-3)  # a log axis has no place for a KL of exactly 0
    long["score"] = pd.Categorical(long["score"].map(_SCORE_LABELS), categories=[_SCORE_LABELS[c] for c in columns])
    long["source"] = pd.Categorical(long["source"], categories=sources)
    cut = long[long["source"] == reference].groupby("score", observed=True)["value"].quantile(quantile).reset_index()
    subtitle = f"dashed line: the {quantile:.0%} quantile of {reference}; share of each source above it"
    names = " / ".join(_SCORE_LABELS[column].split(" (")[0] for column in columns)
    for source in [source for source in sources if source != reference]:
        shares = []
        for column in columns:
            limit = np.quantile(scores.loc[scores["source"] == reference, column].clip(lower=1e-3), quantile)
            shares.append(f"{(scores.loc[scores['source'] == source, column] > limit).mean():.0%}")
        subtitle += f"\n  {source}: {' / '.join(shares)} ({names})"
    return (
        gg.ggplot(long, gg.aes(x="value", fill="source"))
        + gg.geom_histogram(bins=bins, alpha=0.75, position="identity")
        + gg.geom_vline(gg.aes(xintercept="value"), data=cut, linetype="dashed", color="black")
        + gg.facet_wrap("~score", scales="free", nrow=1)
        + gg.scale_x_log10()
        + gg.scale_fill_manual(values=["#7f7f7f", *TAB10[3:0:-1], *TAB10[4:]])
        + gg.labs(
            x="score per example (nats, log scale)",
            y="examples",
            fill="",
            title=f"Anomaly scores per example\n{subtitle}",
        )
        + gg.theme_bw()
        + gg.theme(
            figure_size=(11, 4.5 + 0.2 * (len(sources) - 1)),
            legend_position="bottom",
            plot_title=gg.element_text(ha="left"),
        )
    )


def rate_distortion_chart(table: pd.DataFrame, setting: str, title: str | None = None) -> gg.ggplot:
    """Rate (KL) against distortion (reconstruction), one labelled point per setting.

    table: one row per run with columns `setting`, "test_rate" and
    "test_distortion" (nats per image), e.g. `tfvae.sweep.sweep_table`.
    The points are joined in the order of the setting's values. Dotted lines
    of slope -1 pass through the best point: along one, rate + distortion (the
    negative ELBO) is constant (Alemi et al., 2018, "Fixing a Broken ELBO").
    """
    frame = table.sort_values(setting).reset_index(drop=True)
    frame = frame.assign(label=[f"{setting} = {value:g}" for value in frame[setting]])
    best = float((frame["test_rate"] + frame["test_distortion"]).min())
    return (
        gg.ggplot(frame, gg.aes(x="test_rate", y="test_distortion"))
        + gg.geom_abline(intercept=best, slope=-1, linetype="dotted", color="#7f7f7f")
        + gg.geom_path(color="#1f77b4")
        + gg.geom_point(color="#1f77b4", size=2.5)
        + gg.geom_text(gg.aes(label="label"), size=8, ha="left", va="bottom", color="#333333")
        + gg.scale_x_continuous(expand=(0.05, 0, 0.18, 0))  # room for the rightmost label
        + gg.labs(
            x="rate: KL(q(z|x) || p(z)), nats per test image",
            y="distortion: -E_q log p(x|z), nats per test image",
            title=title or f"Rate and distortion over {setting} (dotted: negative ELBO = {best:.1f}, the best run's)",
        )
        + gg.theme_bw()
        + gg.theme(figure_size=(8, 5.5))
    )


def metrics_by_model(scores: pd.DataFrame, title: str = "Disentanglement metrics by model") -> gg.ggplot:
    """A panel per metric: one point per training seed for each model, and the mean +- sd over seeds beside them.

    Args:
      scores: long rows with columns "model", "seed", "metric", "value" (e.g. the disentanglement metrics of
        `tfvae.factor_evaluation` for runs of several models and seeds); models and metrics are drawn in the
        order they first appear.
    """
    scores = scores.assign(
        model=pd.Categorical(scores["model"], categories=list(dict.fromkeys(scores["model"]))),
        metric=pd.Categorical(scores["metric"], categories=list(dict.fromkeys(scores["metric"]))),
        seed=scores["seed"].astype(str),
    )
    summary = scores.groupby(["model", "metric"], observed=True)["value"].agg(["mean", "std"]).reset_index()
    summary["std"] = summary["std"].fillna(0.0)  # one seed: no spread to draw
    summary["low"], summary["high"] = summary["mean"] - summary["std"], summary["mean"] + summary["std"]
    return (
        gg.ggplot(scores, gg.aes("model", "value"))
        + gg.geom_errorbar(gg.aes(y="mean", ymin="low", ymax="high"), data=summary, width=0.3, color="#555555")
        + gg.geom_point(gg.aes(y="mean"), data=summary, shape="_", size=8, color="#555555")
        + gg.geom_point(gg.aes(color="seed"), position=gg.position_dodge(width=0.5), size=2.2, alpha=0.85)
        + gg.facet_wrap("~metric", scales="free_y", ncol=3)
        + gg.scale_color_manual(values=TAB10)
        + gg.labs(x="", y="", color="training seed",
                  title=f"{title}\n(points: one per seed; bar: mean +- sd over seeds)")
        + gg.theme_bw()
        + gg.theme(figure_size=(10, 8), axis_text_x=gg.element_text(rotation=30, ha="right"))
    )
