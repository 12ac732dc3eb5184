"""Datasets with ground-truth factors (tfvae.factors) and their procedural images (tfvae.render)."""

import time

import numpy as np
import pytest

from tfvae import factors, render


@pytest.fixture(scope="module")
def sprites():
    return factors.dsprites_procedural()


@pytest.fixture(scope="module")
def scenes():
    return factors.shapes_procedural()


def one(dataset, **index):
    """The image of one factor combination given by name (unnamed factors at index 0): uint8 [H, W, C]."""
    row = np.zeros((1, dataset.num_factors), np.int64)
    for name, value in index.items():
        row[0, dataset.factor_names.index(name)] = value
    return dataset.images(row)[0]


def centre_of_mass(mask: np.ndarray) -> np.ndarray:
    """(x, y) pixel coordinates of the centre of a binary [H, W] mask, pixel centres at +0.5."""
    rows, columns = np.nonzero(mask)
    return np.array([columns.mean() + 0.5, rows.mean() + 0.5])


# --------------------------------------------------------------------------- the grids
def test_the_registry_holds_the_published_grids_and_the_small_ones():
    expected = {"dsprites_procedural": ((3, 6, 40, 32, 32), 737_280, (64, 64, 1)),
                "shapes_procedural": ((10, 10, 10, 8, 4, 15), 480_000, (64, 64, 3)),
                "dsprites_small": ((3, 6, 10, 8, 8), 11_520, (32, 32, 1)),
                "shapes_small": ((6, 6, 6, 4, 4, 5), 17_280, (32, 32, 3))}
    for name, (sizes, count, shape) in expected.items():
        data = factors.load_factor_dataset(name)
        assert (data.name, data.factor_sizes, data.num_images, data.image_shape) == (name, sizes, count, shape)
        assert "procedural, not comparable with published dSprites numbers" in data.note
    assert set(factors.FACTOR_DATASETS) == {*expected, "dsprites", "shapes3d"}


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown factor dataset 'dsprite'; known: dsprites_procedural, ") as info:
        factors.load_factor_dataset("dsprite")
    assert "\n" not in str(info.value)


def test_factor_values_follow_dsprites(sprites):
    names = ("shape", "scale", "orientation", "x_position", "y_position")
    assert sprites.factor_names == names
    shape, scale, orientation, x, y = sprites.factor_values
    np.testing.assert_allclose(scale, [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    np.testing.assert_allclose(orientation, np.arange(40) * 2 * np.pi / 40)
    assert orientation.max() < 2 * np.pi
    np.testing.assert_allclose(x, np.arange(32) / 31)
    np.testing.assert_allclose(y, x)
    np.testing.assert_array_equal(shape, [0, 1, 2])


def test_index_and_factors_round_trip(sprites):
    index = np.random.default_rng(0).integers(0, sprites.num_images, 1000)
    table = sprites.index_to_factors(index)
    np.testing.assert_array_equal(sprites.factors_to_index(table), index)
    assert table.dtype == np.int64 and table.shape == (1000, 5)
    # The last factor varies fastest, as in the dSprites file; the last image is every factor's last value.
    np.testing.assert_array_equal(sprites.index_to_factors([0, 1, 32, sprites.num_images - 1]),
                                  [[0, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 1, 0], [2, 5, 39, 31, 31]])


def test_sample_is_a_fixed_function_of_the_seed(sprites):
    images, table = sprites.sample(64, seed=3)
    again, table_again = sprites.sample(64, seed=3)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(table, table_again)
    assert not np.array_equal(sprites.sample(64, seed=4)[1], table)
    assert images.dtype == np.uint8 and images.shape == (64, 64, 64, 1)
    assert set(np.unique(images)) == {0, 255}
    np.testing.assert_array_equal(images, sprites.images(table))  # made on demand, the same each time


def test_bad_factor_indices_name_the_argument(sprites):
    with pytest.raises(ValueError, match=r"factor_indices must have shape \[N, 5\]"):
        sprites.images(np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match="indices of factor 'orientation' must lie in 0..39; got 40"):
        sprites.images([[0, 0, 40, 0, 0]])
    with pytest.raises(ValueError, match="index must lie in 0..737279"):
        sprites.index_to_factors([737_280])


def test_a_factor_with_one_value_is_refused():
    with pytest.raises(ValueError, match="factor_values of 'b' must list at least 2 values"):
        factors.FactorDataset("x", ("a", "b"), (np.arange(3.0), np.zeros(1)), (1, 2, 1), lambda f: f)


def test_rendering_ten_thousand_images_takes_well_under_a_few_seconds(sprites, scenes):
    table = sprites.sample_factors(10_000, np.random.default_rng(0))
    start = time.perf_counter()
    sprites.images(table)
    sprite_seconds = time.perf_counter() - start
    start = time.perf_counter()
    scenes.images(scenes.sample_factors(10_000, np.random.default_rng(0)))
    scene_seconds = time.perf_counter() - start
    # Measured on 2 busy cores: 0.2-0.6 s (sprites), 1.5-3 s (scenes, RGB); the bounds leave room for a slow CI.
    assert sprite_seconds < 3 and scene_seconds < 8, (sprite_seconds, scene_seconds)


# --------------------------------------------------------------------------- what the sprites show
def test_the_three_shapes_differ(sprites):
    masks = [one(sprites, shape=s, scale=5)[..., 0] > 0 for s in range(3)]
    for a in range(3):
        for b in range(a + 1, 3):
            overlap = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
            assert overlap < 0.8, (render.SPRITE_SHAPES[a], render.SPRITE_SHAPES[b], overlap)


@pytest.mark.parametrize("shape", [0, 1, 2])
@pytest.mark.parametrize("orientation", [0, 7])
def test_each_scale_step_adds_pixels(sprites, shape, orientation):
    counts = [int((one(sprites, shape=shape, scale=s, orientation=orientation) > 0).sum()) for s in range(6)]
    assert all(later > earlier for earlier, later in zip(counts, counts[1:])), counts
    # Area grows as the scale squared: from 0.5 to 1, four times (within the rasterisation's error).
    assert 3.4 < counts[-1] / counts[0] < 4.6, counts


@pytest.mark.parametrize("orientation", [0, 3, 10, 17, 25, 33])
def test_the_orientation_turns_an_ellipse(sprites, orientation):
    mask = one(sprites, shape=1, scale=5, orientation=orientation, x_position=16, y_position=16)[..., 0] > 0
    rows, columns = np.nonzero(mask)
    x, up = columns - columns.mean(), -(rows - rows.mean())  # y upwards: counterclockwise is positive
    axis = 0.5 * np.arctan2(2 * np.mean(x * up), np.mean(x * x) - np.mean(up * up))  # long axis, mod pi
    expected = sprites.factor_values[2][orientation]
    turn = (axis - expected + np.pi / 2) % np.pi - np.pi / 2
    assert abs(np.degrees(turn)) < 2.0, (np.degrees(axis), np.degrees(expected))


def test_the_position_moves_the_centre_of_mass_by_the_expected_pixels(sprites):
    size = sprites.image_shape[0]
    margin = render.sprite_margin(size)
    assert margin == 15.0  # ceil(1.07 * 0.2 * 64) + 1: the largest sprite stays inside at every orientation
    step = (size - 2 * margin) / 31  # pixels per position index
    for x_index, y_index in ((0, 0), (31, 0), (10, 20), (31, 31)):
        mask = one(sprites, shape=0, scale=5, x_position=x_index, y_position=y_index)[..., 0] > 0
        expected = margin + step * np.array([x_index, y_index])
        np.testing.assert_allclose(centre_of_mass(mask), expected, atol=0.5)
    moved = [centre_of_mass(one(sprites, shape=0, scale=3, x_position=i)[..., 0] > 0)[0] for i in (4, 12)]
    assert abs(moved[1] - moved[0] - 8 * step) < 0.5


def test_every_sprite_stays_inside_the_image(sprites):
    # The extreme positions at the largest scale, every orientation: no shape touches the border.
    table = np.array([[s, 5, o, x, y] for s in range(3) for o in range(40) for x in (0, 31) for y in (0, 31)])
    images = sprites.images(table)[..., 0]
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1)
    assert not border.any()


def test_the_small_sprites():
    small = factors.dsprites_small()
    images = small.images(small.index_to_factors(np.arange(small.num_images)))
    assert images.shape == (11_520, 32, 32, 1)
    assert (images > 0).sum(axis=(1, 2, 3)).min() >= 8  # the smallest sprite still shows
    assert len({image.tobytes() for image in images[::7]}) > 0.95 * len(images[::7])


# --------------------------------------------------------------------------- what the scenes show
def test_each_colour_factor_changes_its_own_region_only(scenes):
    base = one(scenes, orientation=7).astype(int)  # orientation 0 degrees: a level boundary
    changed = {name: np.any(one(scenes, orientation=7, **{name: 5}).astype(int) != base, axis=-1)
               for name in ("floor_hue", "wall_hue", "object_hue")}
    height = scenes.image_shape[0]
    horizon = int(render.HORIZON * height)
    floor, wall, obj = changed["floor_hue"], changed["wall_hue"], changed["object_hue"]
    assert not (floor & wall).any() and not (floor & obj).any() and not (wall & obj).any()
    assert floor[horizon + 2:, 0].all() and not floor[:horizon - 2].any()  # the floor is the bottom band
    assert wall[: horizon - 2, 0].all() and not wall[horizon + 2:].any()
    assert obj[horizon, height // 2] and not obj[:, 0].any()  # the object sits on the boundary, in the middle


def test_scene_shapes_differ_and_scale_grows_the_object(scenes):
    other_object_hue = {"object_hue": 5}
    masks = []
    for shape in range(4):
        a = one(scenes, shape=shape)
        b = one(scenes, shape=shape, **other_object_hue)
        masks.append(np.any(a != b, axis=-1))
    for i in range(4):
        for j in range(i + 1, 4):
            assert (masks[i] ^ masks[j]).sum() > 40, (render.SCENE_SHAPES[i], render.SCENE_SHAPES[j])
    sizes = [np.any(one(scenes, scale=s) != one(scenes, scale=s, object_hue=5), -1).sum() for s in range(8)]
    assert all(later > earlier for earlier, later in zip(sizes, sizes[1:])), sizes
    turned = [one(scenes, orientation=o) for o in (0, 7, 14)]
    assert not np.array_equal(turned[0], turned[1]) and not np.array_equal(turned[1], turned[2])


def test_scenes_are_rgb_uint8():
    small = factors.shapes_small()
    images, table = small.sample(50, seed=0)
    assert images.dtype == np.uint8 and images.shape == (50, 32, 32, 3) and table.shape == (50, 6)
    assert len(np.unique(images.reshape(-1, 3), axis=0)) > 20


# --------------------------------------------------------------------------- training sources
def test_as_source_gives_a_sample_or_the_whole_small_grid():
    small = factors.dsprites_small()
    source = small.as_source(100, seed=1, batch_size=32)
    assert source.num_examples == 100 and source.image_shape == (32, 32, 1)
    np.testing.assert_array_equal(source.images, small.sample(100, seed=1)[0])
    whole = small.as_source(batch_size=512)
    assert whole.num_examples == 11_520
    first = next(iter(whole.as_dataset()))
    assert first.shape == (512, 32, 32, 1) and float(first.numpy().max()) == 1.0


def test_as_source_refuses_to_hold_the_full_grid(sprites):
    with pytest.raises(ValueError, match=r"n=None would hold all 737280 images of dsprites_procedural \(2.8 GB\)"):
        sprites.as_source(batch_size=64)


# --------------------------------------------------------------------------- TFDS's dsprites and shapes3d
def fake_tfds_batch(name, n, seed):
    """A batch as TFDS yields it (tensors), with made-up images and factors."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    names, sizes = factors.TFDS_FACTORS[name], {"dsprites": (3, 6, 40, 32, 32),
                                                "shapes3d": (10, 10, 10, 8, 4, 15)}[name]
    channels = 1 if name == "dsprites" else 3
    high = 2 if name == "dsprites" else 256  # TFDS's dsprites stores pixels as 0 and 1
    batch = {"image": tf.constant(rng.integers(0, high, (n, 64, 64, channels)).astype(np.uint8)),
             "id": tf.constant([f"{i:06d}" for i in range(n)])}
    labels = np.stack([rng.integers(0, k, n) for k in sizes], -1)
    for f, factor in enumerate(names):
        batch[f"label_{factor}"] = tf.constant(labels[:, f], tf.int64)
        batch[f"value_{factor}"] = tf.constant(labels[:, f] * 0.5 + f, tf.float32)
    return batch, labels


@pytest.mark.parametrize("name", ["dsprites", "shapes3d"])
def test_the_tfds_features_map_to_images_and_factors(name):
    batch, labels = fake_tfds_batch(name, 5, seed=0)
    images, table, values = factors.tfds_to_factors(name, batch)
    np.testing.assert_array_equal(table, labels)
    np.testing.assert_allclose(values, labels * 0.5 + np.arange(labels.shape[1]))
    raw = batch["image"].numpy()
    np.testing.assert_array_equal(images, raw * 255 if name == "dsprites" else raw)
    assert images.dtype == np.uint8 and table.dtype == np.int64
    assert factors.TFDS_FACTORS[name] == factors.load_factor_dataset(
        "dsprites_small" if name == "dsprites" else "shapes_small").factor_names


def test_a_tfds_batch_without_a_factor_is_refused():
    batch, _ = fake_tfds_batch("shapes3d", 2, seed=0)
    del batch["label_wall_hue"]
    with pytest.raises(ValueError, match="features of shapes3d lack label_wall_hue"):
        factors.tfds_to_factors("shapes3d", batch)
    with pytest.raises(ValueError, match="name must be one of dsprites, shapes3d"):
        factors.tfds_to_factors("mnist", batch)


@pytest.mark.parametrize("channels", [1, 3])
def test_a_grid_in_memory_gives_each_combination_its_image(channels):
    rng = np.random.default_rng(0)
    table = np.stack(np.unravel_index(np.arange(12), (2, 3, 2)), -1)
    order = rng.permutation(12)  # stored in any order
    if channels == 1:
        images = (rng.random((12, 5, 7, 1)) < 0.5).astype(np.uint8) * 255  # binary: kept bit-packed
    else:
        images = rng.integers(0, 256, (12, 5, 7, 3)).astype(np.uint8)
    values = table * 0.25
    data = factors.from_grid("grid", ("a", "b", "c"), images[order], table[order], values[order])
    assert data.factor_sizes == (2, 3, 2) and data.image_shape == (5, 7, channels)
    np.testing.assert_array_equal(data.images(table[[4, 0, 11]]), images[[4, 0, 11]])
    np.testing.assert_allclose(data.factor_values[1], [0.0, 0.25, 0.5])
    with pytest.raises(ValueError, match="must hold every combination of factor indices once: 12 images"):
        factors.from_grid("grid", ("a", "b", "c"), images, np.concatenate([table[:11], table[:1]]), values)


def test_no_scene_object_is_cut_by_the_box_it_is_drawn_in(scenes):
    # The object's pixels (those that change with its hue) equal its shape tested over the whole image.
    size = scenes.image_shape[0]
    for shape in range(4):
        for orientation in (0, 4, 14):
            drawn = np.any(one(scenes, scale=7, shape=shape, orientation=orientation)
                           != one(scenes, scale=7, shape=shape, orientation=orientation, object_hue=5), -1)
            angle = np.deg2rad(scenes.factor_values[5][orientation])
            u, v = render.canonical_coordinates([size / 2], [render.HORIZON * size],
                                                [1.25 * render.SCENE_HALF_SIZE * size], [angle], size)
            np.testing.assert_array_equal(drawn, render.scene_mask(np.array([shape]), u, v)[0])


# --------------------------------------------------------------------------- by name, as any dataset
def test_the_splits_are_the_whole_grid_and_a_fixed_sample_of_it():
    small = factors.dsprites_small()
    train = factors.split_factors(small, "train")
    np.testing.assert_array_equal(small.factors_to_index(train), np.arange(small.num_images))
    test = factors.split_factors(small, "test")
    positions = small.factors_to_index(test)
    assert test.shape == (2048, 5) and len(np.unique(positions)) == 2048  # drawn without replacement
    np.testing.assert_array_equal(factors.split_factors(small, "test"), test)  # fixed
    assert not np.all(np.diff(positions) > 0)  # in the order drawn, not the grid's: the first images vary


def test_validation_splits_cut_one_fixed_order_of_the_grid_in_two():
    small = factors.dsprites_small()
    kept = small.factors_to_index(factors.split_factors(small, "train[:-1000]"))
    held_out = small.factors_to_index(factors.split_factors(small, "train[-1000:]"))
    assert len(kept) == small.num_images - 1000 and len(held_out) == 1000
    assert not set(kept) & set(held_out)
    assert sorted([*kept, *held_out]) == list(range(small.num_images))


@pytest.mark.parametrize("split, message", [
    ("validation", r"split of dsprites_small must be train, test, train\[:-K\] or train\[-K:\] \(data.validation\); "
                   "got 'validation'"),
    ("train[:-11520]", "data.validation must lie in 1..11519 for the 11520 images of dsprites_small; got 11520"),
])
def test_an_unknown_split_is_one_line(split, message):
    with pytest.raises(ValueError, match=message) as info:
        factors.split_factors(factors.dsprites_small(), split)
    assert "\n" not in str(info.value)


def test_a_factor_dataset_loads_by_name_and_other_names_go_on_to_tfds(mnist_data_dir):
    images, labels = factors.load_arrays("dsprites_small", "test")
    small = factors.dsprites_small()
    np.testing.assert_array_equal(images, small.images(factors.split_factors(small, "test")))
    assert images.dtype == np.uint8 and (labels == -1).all()  # no classes
    source = factors.load("dsprites_small", "train", 512, shuffle=True, seed=3)
    assert source.num_examples == 11_520 and source.image_shape == (32, 32, 1) and source.shuffle
    assert next(iter(source)).shape == (512, 32, 32, 1)
    mnist = factors.load("mnist", "test", 8, data_dir=mnist_data_dir, with_labels=True)
    assert mnist.num_examples == 40 and mnist.labels is not None


def test_a_run_of_a_dsprites_preset_reads_its_splits_by_name():
    from tfvae import config, rundir

    experiment = config.preset("dsprites-tcvae")
    train = rundir.load_split(experiment, "train")
    assert train.num_examples == 11_520 and train.shuffle and train.batch_size == 64
    validated = config.override(experiment, {"data.validation": 520})
    assert rundir.load_split(validated, "test").num_examples == 520
    assert rundir.load_split(validated, "train").num_examples == 11_000
