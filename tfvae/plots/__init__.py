"""Pictures of a run: plotnine charts, image grids and GIFs.

    from tfvae import plots
    plots.draw_run("runs/mnist-bernoulli-20d")          # every figure into RUN_DIR/figures/

Chart functions (`charts`) return a `plotnine.ggplot`; grid functions
(`grids`) return a float image array [height, width, channels] in [0, 1];
`animation` writes GIFs and holds `ProgressRecorder`, a training hook.
Each figure is a function of plain inputs (a model, arrays, a history
DataFrame); `save_grid`, `save_gif` and `draw_run` write files. Nothing here
trains: a model comes restored from a run directory, numbers come from
`tfvae.evaluate`.
"""

from tfvae.plots.animation import (
    ProgressRecorder,
    interpolation_frames,
    interpolation_gif,
    save_gif,
    there_and_back,
)
from tfvae.plots.charts import (
    anomaly_histograms,
    kl_per_dimension_chart,
    latent_scatter,
    loss_curves,
    metrics_by_model,
    objective_title,
    rate_distortion_chart,
    tidy_history,
)
from tfvae.plots.grids import (
    decode_means,
    encode_means,
    factor_rows,
    grid_figure,
    interpolation_codes,
    interpolation_grid,
    latent_grid,
    latent_grid_codes,
    linear_coordinates,
    manifold_axes,
    offset_codes,
    offset_grid,
    prior_sample_codes,
    prior_sample_grid,
    quantile_coordinates,
    reconstruction_grid,
    render_grid,
    save_factor_traversal,
    sample_panels,
    save_grid,
    tile,
    traversal_codes,
    traversal_grid,
)
from tfvae.plots.run import (
    DEFAULT_INTERPOLATION_INDICES,
    DEFAULT_OFFSET_CLASSES,
    DEFAULT_RECONSTRUCTION_INDICES,
    FIGURES,
    draw_run,
)
from tfvae.plots.rundata import RunData

__all__ = [
    "DEFAULT_INTERPOLATION_INDICES",
    "DEFAULT_OFFSET_CLASSES",
    "DEFAULT_RECONSTRUCTION_INDICES",
    "FIGURES",
    "ProgressRecorder",
    "RunData",
    "anomaly_histograms",
    "decode_means",
    "draw_run",
    "encode_means",
    "factor_rows",
    "grid_figure",
    "interpolation_codes",
    "interpolation_frames",
    "interpolation_gif",
    "interpolation_grid",
    "kl_per_dimension_chart",
    "latent_grid",
    "latent_grid_codes",
    "latent_scatter",
    "linear_coordinates",
    "loss_curves",
    "manifold_axes",
    "metrics_by_model",
    "objective_title",
    "offset_codes",
    "offset_grid",
    "prior_sample_codes",
    "prior_sample_grid",
    "quantile_coordinates",
    "rate_distortion_chart",
    "reconstruction_grid",
    "render_grid",
    "save_factor_traversal",
    "save_gif",
    "sample_panels",
    "save_grid",
    "there_and_back",
    "tidy_history",
    "tile",
    "traversal_codes",
    "traversal_grid",
]
