"""rundir.run_dir_for: one run folder per setting, the same folder for a continued run."""

import tfvae
from tfvae import rundir


def test_run_dir_for_names_a_folder_per_setting_and_keeps_it_for_a_continued_run():
    base = tfvae.preset("mnist-bernoulli-2d")
    folder = rundir.run_dir_for(base, "runs/quickstart")
    assert folder.parent.as_posix() == "runs/quickstart" and folder.name.startswith("mnist-bernoulli-2d-")
    assert len(folder.name.rsplit("-", 1)[1]) == 8
    assert rundir.run_dir_for(base, "runs/quickstart") == folder  # stable
    for continued in ({"train.epochs": 30}, {"data.data_dir": "/elsewhere"}, {"train.device": "cpu"}):
        assert rundir.run_dir_for(tfvae.override(base, continued), "runs/quickstart") == folder
    others = {rundir.run_dir_for(tfvae.override(base, change), "runs/quickstart")
              for change in ({"model.latent_size": 20}, {"train.beta": 2.0}, {"train.seed": 3},
                             {"model.hidden_sizes": [400]})}
    assert len(others) == 4 and folder not in others
    assert not folder.exists()  # nothing is created
