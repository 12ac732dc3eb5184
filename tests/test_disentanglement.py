"""Disentanglement metrics (tfvae.disentanglement, tfvae.estimators) on codes whose answer is known.

The main cases use a grid of 4 factors with 6 values each, every combination once (1296 examples), so the
factors are exactly uniform and exactly uncorrelated, and the expected scores can be worked out:

- identity: codes = the factor indices;
- rotation: standardized factors times H / 2, H the 4x4 Hadamard matrix (orthogonal, every entry +-1/2: each
  dimension holds every factor equally, the worst rotation);
- mixing: standardized factors times I + 0.6 G, G a fixed Gaussian matrix (not orthogonal: correlated codes);
- noise: the identity and 4 dimensions of N(0, 1) noise;
- duplicate: the identity and a copy of factor 0's dimension;
- constant: zeros.
"""

import numpy as np
import pytest

from tfvae import disentanglement as dis
from tfvae import estimators as est
from tfvae import factors

SIZES = (6, 6, 6, 6)
ALPHA = 0.02  # dci's lasso penalty (its default)
HADAMARD = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2
MIXING = np.eye(4) + 0.6 * np.random.default_rng(0).normal(size=(4, 4))


def coded(sizes) -> factors.FactorDataset:
    """A factor dataset whose 'image' [1, F, 1] holds the factor indices as pixel values."""
    values = tuple(np.arange(float(k)) for k in sizes)
    return factors.FactorDataset("coded", tuple(f"f{i}" for i in range(len(sizes))), values, (1, len(sizes), 1),
                                 lambda indices: indices.astype(np.uint8)[:, None, :, None])


DATA = coded(SIZES)
GRID = DATA.index_to_factors(np.arange(DATA.num_images))


def identity(images):
    return images.reshape(len(images), -1) * 255.0  # representation_fn gets pixels / 255


def standardized(images):
    sizes = np.array(SIZES)
    return (identity(images) - (sizes - 1) / 2) / np.sqrt((sizes**2 - 1) / 12)


REPRESENTATIONS = {
    "identity": identity,
    "rotation": lambda images: standardized(images) @ HADAMARD,
    "mixing": lambda images: standardized(images) @ MIXING,
    "noise": lambda images: np.concatenate(
        [identity(images), np.random.default_rng(len(images)).normal(size=(len(images), 4))], 1),
    "duplicate": lambda images: np.concatenate([identity(images), identity(images)[:, :1]], 1),
    "constant": lambda images: np.zeros((len(images), 4)),
}


def codes_of(name, table=GRID):
    return dis.represent(REPRESENTATIONS[name], DATA, table)


def scores(name) -> dict:
    """Every metric of a representation on the grid (DCI trained and tested on the whole grid)."""
    codes = codes_of(name)
    fn = REPRESENTATIONS[name]
    result = {"mig": dis.mig(codes, GRID)["mig"], "sap": dis.sap(codes, GRID)["sap"]}
    dci = dis.dci(codes, GRID, test_codes=codes, test_factors=GRID)
    result.update({key: dci[key] for key in ("disentanglement", "completeness", "informativeness")})
    result["total_correlation"] = dis.gaussian_total_correlation(codes)["total_correlation"]
    result["active_units"] = dis.active_units(codes)["active_units"]
    result["beta_vae_score"] = dis.beta_vae_score(fn, DATA, seed=0)["beta_vae_score"]
    result["factor_vae_score"] = dis.factor_vae_score(fn, DATA, seed=0)["factor_vae_score"]
    return result


@pytest.fixture(scope="module")
def table():
    return {name: scores(name) for name in REPRESENTATIONS}


# --------------------------------------------------------------------------- the estimators, on exact cases
def test_entropy_and_mutual_information_from_counts():
    assert est.entropy([0, 0, 0, 1]) == pytest.approx(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25)), abs=1e-15)
    assert est.mutual_information([0, 0, 1, 1], [5, 5, 7, 7]) == pytest.approx(np.log(2), abs=1e-15)
    assert est.mutual_information([0, 0, 1, 1], [0, 1, 0, 1]) == 0.0
    # The table [[2, 1], [0, 1]] / 4 by hand: sum p(x,y) log(p(x,y) / (p(x) p(y))).
    a, b = [0, 0, 0, 1], [0, 0, 1, 1]
    expected = 0.5 * np.log(0.5 / (0.75 * 0.5)) + 0.25 * np.log(0.25 / (0.75 * 0.5)) + 0.25 * np.log(0.25 / 0.125)
    assert est.mutual_information(a, b) == pytest.approx(expected, abs=1e-15)


def test_discretize_cuts_equal_width_bins():
    codes = np.array([[0.0, 3.0], [0.49, 3.0], [0.5, 3.0], [1.0, 3.0]])
    np.testing.assert_array_equal(est.discretize(codes, 2), [[0, 0], [0, 0], [1, 0], [1, 0]])
    np.testing.assert_array_equal(est.discretize(np.arange(20.0)[:, None], 20)[:, 0], np.arange(20))


def test_lasso_on_an_orthonormal_design_soft_thresholds():
    x = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    y = x @ np.array([[0.5, 0.01], [-0.3, 0.0]])
    np.testing.assert_allclose(est.lasso(x, y, 0.02), [[0.48, 0.0], [-0.28, 0.0]], atol=1e-12)


def test_softmax_regression_separates_separable_classes_the_same_way_twice():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    x = np.eye(3)[labels] + 0.1 * rng.normal(size=(300, 3))
    first = est.softmax_regression(x, labels, 3)
    np.testing.assert_array_equal(est.predict_class(x, *first), labels)
    for a, b in zip(first, est.softmax_regression(x, labels, 3)):
        np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- identity: what the definitions give
def test_the_identity_scores_the_definitions_maximum(table):
    result = table["identity"]
    # Uncorrelated, uniform factors of 6 values: 20 bins separate the 6 values (MI = H(f)) and every other
    # dimension has MI 0, so MIG = 1; R^2 = 1 on its own factor and 0 elsewhere, so SAP = 1; the lasso weights
    # are diagonal (1 - alpha), so D = C = 1 and the prediction (1 - alpha) y has R^2 = 1 - alpha^2.
    assert result["mig"] == pytest.approx(1.0, abs=1e-12)
    assert result["sap"] == pytest.approx(1.0, abs=1e-12)
    assert result["disentanglement"] == pytest.approx(1.0, abs=1e-12)
    assert result["completeness"] == pytest.approx(1.0, abs=1e-12)
    assert result["informativeness"] == pytest.approx(1 - ALPHA**2, abs=1e-12)
    assert result["total_correlation"] == pytest.approx(0.0, abs=1e-12)  # a diagonal covariance
    assert result["active_units"] == 4  # Var of 0..5 = 35 / 12 > 0.01
    # Fixing factor k zeroes exactly dimension k (its |z1 - z2|, its variance), which no other factor does.
    assert result["beta_vae_score"] == 1.0
    assert result["factor_vae_score"] == 1.0


def test_mig_of_the_identity_when_factors_have_more_values_than_bins():
    # dSprites' orientation (40) and positions (32) cannot reach 1 with 20 bins: binning merges values.
    sizes = (40, 32, 3)
    grid = coded(sizes).index_to_factors(np.arange(np.prod(sizes)))
    result = dis.mig(grid.astype(float), grid, bins=20)
    expected = []
    for k in sizes:
        # Value j of 0..k-1 falls in bin floor(20 j / (k - 1)) (the maximum in bin 19); each bin's share is
        # (values in it) / k, and the other factors carry no information, so per factor H(bins) / H(f).
        bins = np.minimum(np.floor(20 * np.arange(k) / (k - 1)), 19)
        p = np.unique(bins, return_counts=True)[1] / k
        expected.append(-np.sum(p * np.log(p)) / np.log(k))
    np.testing.assert_allclose(result["per_factor"], expected, atol=1e-12)
    assert expected[0] == pytest.approx(np.log(20) / np.log(40))  # 2 values a bin: 0.812
    assert expected[1] == pytest.approx((12 * (2 / 32) * np.log(16) + 8 * (1 / 32) * np.log(32)) / np.log(32))
    assert result["mig"] == pytest.approx(np.mean(expected), abs=1e-12)


# --------------------------------------------------------------------------- constant: the floor
def test_each_dimension_is_named_by_the_factor_it_carries():
    # Codes: factor 2, then factor 0 plus small noise, then noise alone.
    noise = np.random.default_rng(0).normal(size=len(GRID))
    codes = np.stack([GRID[:, 2], GRID[:, 0] + 0.01 * noise, noise], 1).astype(float)
    named = dis.informative_factors(codes, GRID)
    assert named["factor"][:2].tolist() == [2, 0]
    np.testing.assert_allclose(named["share"][:2], 1.0, atol=1e-9)  # all of the factor's entropy
    # Noise carries only the estimator's bias, about (20 - 1)(6 - 1) / (2 N) nats / log 6 = 0.020 for the
    # N = 1296 codes (Miller, 1955); measured 0.023.
    assert named["share"][2] < 0.05
    expected = dis.mig(codes, GRID)
    np.testing.assert_allclose(named["normalized_mutual_information"],
                               expected["mutual_information"] / expected["factor_entropy"])


def test_a_constant_code_scores_the_floor(table):
    result = table["constant"]
    for key in ("mig", "sap", "disentanglement", "completeness", "informativeness", "total_correlation",
                "active_units", "factor_vae_score"):
        assert result[key] == 0, key
    # The beta-VAE classifier sees all-zero features and can only guess one factor: chance, 1 / 4.
    assert abs(result["beta_vae_score"] - 0.25) < 3 * np.sqrt(0.25 * 0.75 / 500)


# --------------------------------------------------------------------------- rotation and mixing: clearly lower
def test_the_worst_rotation_scores_the_floor_on_the_factor_metrics(table):
    result = table["rotation"]
    # Every dimension correlates +-1/2 with every factor: R^2 = 1/4 everywhere, so SAP's gaps are exactly 0;
    # the lasso weights are all +-(1/2 - alpha), so D = C = 0 and the prediction (1 - 2 alpha) y has
    # R^2 = 1 - 4 alpha^2 (a rotation keeps the information); the covariance stays the identity, so TC = 0.
    assert result["sap"] == pytest.approx(0.0, abs=1e-12)
    assert result["disentanglement"] == pytest.approx(0.0, abs=1e-9)
    assert result["completeness"] == pytest.approx(0.0, abs=1e-9)
    assert result["informativeness"] == pytest.approx(1 - 4 * ALPHA**2, abs=1e-12)
    assert result["total_correlation"] == pytest.approx(0.0, abs=1e-12)
    assert result["mig"] < 0.02  # each factor is as informative about every dimension: gaps of ties at bin edges
    # Fixing a factor shrinks every dimension alike: both intervention scores near chance (0.25).
    assert result["beta_vae_score"] < 0.4 and result["factor_vae_score"] < 0.4


def test_a_mixing_scores_clearly_lower_and_correlates_the_codes(table):
    mixing, identity = table["mixing"], table["identity"]
    for key in ("mig", "sap", "disentanglement", "completeness", "factor_vae_score"):
        assert mixing[key] < identity[key] - 0.4, key  # margin 0.4 (measured drops: 0.43 to 0.93)
    assert mixing["informativeness"] > 0.99  # an invertible linear map keeps the information
    assert mixing["total_correlation"] > 0.5  # 0.705 nats
    # The beta-VAE score's linear classifier sees through a linear mixing (a known weakness of the score).
    assert mixing["beta_vae_score"] > 0.9


# --------------------------------------------------------------------------- noise and copies: lower what they should
def test_noise_dimensions_change_nothing_beyond_the_estimators_bias(table):
    noise, identity = table["noise"], table["identity"]
    # MIG: the binned MI of noise with a factor is biased up by about (bins - 1)(K - 1) / 2N nats
    # (Miller-Madow), 19 * 5 / 2592 = 0.037 nats = 0.020 of H(f); twice that bounds the largest of 4.
    assert noise["mig"] > identity["mig"] - 2 * 19 * 5 / (2 * 1296) / np.log(6)
    assert noise["sap"] > identity["sap"] - 0.01  # R^2 of noise: about 1 / N
    assert noise["disentanglement"] > 0.97 and noise["completeness"] > 0.97  # the lasso zeroes (nearly) all noise
    assert noise["informativeness"] == pytest.approx(identity["informativeness"], abs=5e-3)
    assert noise["beta_vae_score"] == 1.0 and noise["factor_vae_score"] == 1.0
    assert noise["total_correlation"] < 0.02
    assert noise["active_units"] == 8  # noise varies: active units count it, as they should


def test_a_copied_dimension_costs_its_factor_the_gap(table):
    copy = table["duplicate"]
    # Factor 0 has two dimensions with the same (maximal) information: its MIG and SAP gaps are 0, the rest 1.
    assert copy["mig"] == pytest.approx(0.75, abs=1e-12)
    assert copy["sap"] == pytest.approx(0.75, abs=1e-12)
    # The lasso gives the first copy all the weight, so DCI does not see a copy (MIG and SAP do).
    assert copy["disentanglement"] == pytest.approx(1.0, abs=1e-12)
    assert copy["completeness"] == pytest.approx(1.0, abs=1e-12)
    assert copy["total_correlation"] == np.inf  # a singular covariance
    assert copy["beta_vae_score"] == 1.0 and copy["factor_vae_score"] == 1.0


# --------------------------------------------------------------------------- seeds
def test_fixed_seeds_give_identical_numbers_and_other_seeds_other_ones():
    fn = REPRESENTATIONS["mixing"]
    for metric in (dis.beta_vae_score, dis.factor_vae_score):
        first = metric(fn, DATA, seed=5, num_train=200, num_eval=100)
        assert metric(fn, DATA, seed=5, num_train=200, num_eval=100) == first
        assert metric(fn, DATA, seed=6, num_train=200, num_eval=100) != first
    codes = codes_of("mixing")
    first = dis.dci(codes, GRID, seed=1)
    np.testing.assert_array_equal(dis.dci(codes, GRID, seed=1)["importance"], first["importance"])
    assert dis.dci(codes, GRID, seed=2)["disentanglement"] != first["disentanglement"]


def test_metric_spread_reports_mean_and_sd_over_seeds():
    fn = REPRESENTATIONS["mixing"]
    spread = dis.metric_spread(dis.factor_vae_score, fn, DATA, seeds=(0, 1, 2), num_train=200, num_eval=100)
    values = [dis.factor_vae_score(fn, DATA, seed=s, num_train=200, num_eval=100)["factor_vae_score"]
              for s in (0, 1, 2)]
    assert spread["factor_vae_score"]["values"] == values
    assert spread["factor_vae_score"]["mean"] == pytest.approx(np.mean(values))
    assert spread["factor_vae_score"]["sd"] == pytest.approx(np.std(values, ddof=1))
    assert spread["num_active_dims"] == {"mean": 4.0, "sd": 0.0, "values": [4.0, 4.0, 4.0]}


def test_evaluate_representation_gives_every_metric():
    result = dis.evaluate_representation(identity, DATA, seed=0, num_points=2000, num_train=100, num_eval=50)
    assert set(result) == {"mig", "sap", "disentanglement", "completeness", "informativeness",
                           "total_correlation", "active_units", "beta_vae_score", "factor_vae_score"}
    assert result["mig"] > 0.95 and result["factor_vae_score"] == 1.0


def test_a_representation_read_off_the_sprites_is_scored_on_the_factors_it_sees():
    # Rendered dsprites_small, codes = each image's centre of mass: MIG of x and y near 1, nothing for shape.
    small = factors.dsprites_small()

    def centre(images):
        mask = images[..., 0] > 0.5
        grid = np.arange(images.shape[1]) + 0.5
        total = mask.sum((1, 2))
        return np.stack([(mask * grid[None, None, :]).sum((1, 2)) / total,
                         (mask * grid[None, :, None]).sum((1, 2)) / total], 1)

    codes, table_ = dis.encode(centre, small, 3000, seed=0)
    per_factor = dict(zip(small.factor_names, dis.mig(codes, table_)["per_factor"]))
    assert per_factor["x_position"] > 0.9 and per_factor["y_position"] > 0.9
    # Measured 0.051 and 0.012: a heart's centre of mass sits a little off its centre.
    assert per_factor["shape"] < 0.1 and per_factor["orientation"] < 0.1


# --------------------------------------------------------------------------- bad input: one line naming the argument
@pytest.mark.parametrize("call, message", [
    (lambda: dis.mig(np.zeros((100, 3)), GRID[:99]), "factors has 99 rows but the codes have 100"),
    (lambda: dis.sap(GRID[:10].astype(float), np.stack([GRID[:10, 3], np.zeros(10, int)], 1)),
     "factors column 1 is constant"),
    (lambda: dis.dci(np.where(np.eye(6)[GRID[:, 0]] > 0, np.nan, 0.0), GRID), "codes contain 1296 NaN values"),
    (lambda: dis.mig(np.array([[0.0, np.nan], [1.0, 2.0]]), GRID[:2]), "codes contain 1 NaN values"),
    (lambda: dis.mig(np.zeros(5), GRID[:5]), r"codes must have shape \[N, D\]"),
    (lambda: dis.sap(np.zeros((4, 2)), GRID[:4].astype(float)), "factors must be integer factor indices"),
    (lambda: dis.gaussian_total_correlation(np.zeros((4, 2)), np.full((4, 2), np.inf)), "scales contain 8 infinite"),
    (lambda: dis.dci(np.zeros((4, 2)), GRID[:4], test_codes=np.zeros((4, 2))), "test_codes and test_factors go"),
    (lambda: dis.factor_vae_score(identity, DATA, seed=0, batch_size=1), "batch_size must be at least 2"),
    (lambda: dis.beta_vae_score(identity, DATA, seed=0, num_train=0), "num_train must be a positive integer"),
    (lambda: dis.beta_vae_score(lambda x: x[:1, 0, :, 0], DATA, seed=0), "representation_fn must return codes"),
])
def test_bad_input_raises_one_line_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message) as info:
        call()
    assert "\n" not in str(info.value)
