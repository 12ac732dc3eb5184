"""Configs: presets, overrides, round trips and the errors a user sees."""

import pytest

from tfvae import config


def test_default_preset_is_the_classic_bernoulli_vae():
    experiment = config.preset(config.DEFAULT_PRESET)
    assert experiment.data.name == "mnist" and experiment.data.binarize == "threshold"
    assert experiment.data.batch_size == 128
    assert experiment.model.hidden_sizes == (400,) and experiment.model.latent_size == 20
    assert experiment.model.activation == "relu"
    assert experiment.train.learning_rate == 1e-3 and experiment.train.epochs == 10 and experiment.train.beta == 1.0


def test_dict_round_trip_and_override():
    experiment = config.preset("mnist-bernoulli-2d")
    assert config.Experiment.from_dict(experiment.to_dict()) == experiment
    changed = config.override(experiment, {"train.beta": 0.5, "model.hidden_sizes": [64, 32]})
    assert changed.train.beta == 0.5 and changed.model.hidden_sizes == (64, 32)
    assert config.differences(experiment, changed) == {
        "model.hidden_sizes": ([400, 150], [64, 32]),
        "train.beta": (1.0, 0.5),
    }


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("model.latent_size", 0, "latent_size must be a positive integer"),
        ("model.latent_size", -3, "latent_size must be a positive integer"),
        ("train.beta", -0.1, "beta must be a number >= 0"),
        ("data.batch_size", 0, "batch_size must be a positive integer"),
        ("data.binarize", "sometimes", "binarize must be one of none, threshold, dynamic"),
        ("model.activation", "swishy", "activation must be one of"),
        ("train.learning_rate", 0, "learning_rate must be a positive number"),
        ("model.hidden_sizes", [400, 0], "hidden_sizes must be positive integers"),
        ("train.epochs", 1.5, "epochs must be a positive integer"),
        ("train.lr_schedule", "cosine", "lr_schedule must be one of constant, exponential"),
        ("train.lr_decay_rate", 0, "lr_decay_rate must be a number in"),
        ("train.lr_decay_rate", 1.5, "lr_decay_rate must be a number in"),
        ("train.lr_decay_steps", 0, "lr_decay_steps must be a positive integer"),
        ("train.jit_compile", "yes", "train.jit_compile must be true or false"),
        ("train.threads", -1, r"train.threads must be an integer >= 0 \(0: one per core"),
    ],
)
def test_bad_values_name_the_field(field, value, words):
    with pytest.raises(ValueError, match=words):
        config.override(config.preset("tiny"), {field: value})


def test_unknown_field_and_preset():
    with pytest.raises(ValueError, match="unknown config field 'model.latnet_size'"):
        config.override(config.preset("tiny"), {"model.latnet_size": 3})
    with pytest.raises(ValueError, match="unknown preset 'mnist-huge'.*mnist-bernoulli-20d"):
        config.preset("mnist-huge")


def test_a_setting_from_text_is_json_where_it_parses_and_needs_an_equals_sign():
    # One parser for `tfvae train --set`, benchmarks/loglik.py --set and benchmarks/early_collapse.py --variant.
    assert config.parse_assignment("train.learning_rate=0.0005") == ("train.learning_rate", 0.0005)
    assert config.parse_assignment("model.hidden_sizes=[200, 200]") == ("model.hidden_sizes", [200, 200])
    assert config.parse_assignment("model.activation=tanh") == ("model.activation", "tanh")
    assert config.parse_assignment('model.prior="vamp"') == ("model.prior", "vamp")
    assert config.parse_assignment(" data.data_dir =null") == ("data.data_dir", None)
    for text in ("train.learning_rate", "=3", " =3"):
        with pytest.raises(ValueError, match="FIELD=VALUE"):
            config.parse_assignment(text)


def test_settings_written_as_one_line_are_sorted_json_and_read_back_by_parse_assignment():
    changes = {"train.warmup_steps": 30000, "model.prior": "vamp", "train.learning_rate": 0.0005}
    line = config.format_assignments(changes)
    assert line == 'model.prior="vamp" train.learning_rate=0.0005 train.warmup_steps=30000'
    assert dict(config.parse_assignment(item) for item in line.split()) == changes
    assert config.format_assignments({}) == ""  # the preset's own settings


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"train.factor_weight": -1}, r"train\.factor_weight must be a number >= 0"),
        ({"train.discriminator_hidden_sizes": []}, r"train\.discriminator_hidden_sizes must be a non-empty list"),
        ({"train.discriminator_learning_rate": 0}, r"train\.discriminator_learning_rate must be a positive number"),
        ({"train.dip": "iii"}, r"train\.dip must be one of none, i, ii; got 'iii'"),
        ({"train.dip": "i", "train.dip_lambda_offdiag": -1}, r"train\.dip_lambda_offdiag must be a number >= 0"),
        ({"train.dip": "i", "train.dip_lambda_diag": -1}, r"train\.dip_lambda_diag must be a number >= 0"),
        ({"train.capacity_max": -1}, r"train\.capacity_max must be a number of nats >= 0 \(0 or null: off\), got -1"),
        ({"train.capacity_max": 5, "train.capacity_steps": 0}, r"train\.capacity_steps must be a positive integer"),
        ({"train.capacity_max": 5, "train.capacity_gamma": 0}, r"train\.capacity_gamma must be a positive number"),
        ({"train.capacity_max": 5, "train.beta": 4}, r"train\.capacity_max replaces beta \* rate"),
        ({"train.factor_weight": 10, "data.batch_size": 1}, r"data\.batch_size must be >= 2 with train\.factor_weight"),
        ({"train.factor_weight": 10, "train.distribute": "mirrored"}, r"train\.factor_weight trains its discriminator on one"),
        ({"train.factor_weight": 10, "train.objective": "iwae"}, r"train\.factor_weight changes the ELBO's loss"),
        ({"train.dip": "ii", "train.free_bits": 0.5}, r"train\.dip and train\.free_bits are different rates"),
        ({"train.dip": "i", "train.tc_weight": 6}, r"train\.tc_weight and train\.dip are different disentangling objectives"),
        ({"train.dip": "i", "model.posterior": "iaf"}, r"train\.dip=i needs a diagonal Normal posterior"),
    ],
)
def test_disentangling_settings_out_of_range_are_one_line_naming_the_field(changes, words):
    with pytest.raises(config.ConfigError, match=words) as error:
        config.override(config.preset("tiny"), changes)
    assert "\n" not in str(error.value)


def test_the_disentangling_presets_are_one_objective_each_on_one_network():
    objectives = {"vae": (), "beta-vae": (), "tcvae": ("tc_weight",), "factorvae": ("factor_weight",),
                  "dipvae": ("dip",), "capacity": ("capacity_max",)}
    for family in ("dsprites", "dsprites64"):
        base = config.preset(f"{family}-vae")
        for suffix, chosen in objectives.items():
            experiment = config.preset(f"{family}-{suffix}")
            assert experiment.train.disentangling == chosen
            assert experiment.model == base.model and experiment.data == base.data
            assert config.Experiment.from_dict(experiment.to_dict()) == experiment
    assert config.preset("dsprites-beta-vae").train.beta == 4.0
    paper = config.preset("dsprites64-factorvae")
    assert paper.model.conv_channels == (32, 32, 64, 64) and paper.model.hidden_sizes == (256,)
    assert paper.model.latent_size == 10 and paper.train.discriminator_hidden_sizes == (1000,) * 5
    # Existing presets are untouched: every new field is at its "off" value.
    assert config.preset("mnist-bernoulli-20d").train.disentangling == ()
    assert config.preset("mnist-burda-tcvae").train.disentangling == ("tc_weight",)
