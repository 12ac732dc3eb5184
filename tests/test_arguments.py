"""Arguments checked at the door (issue 39, item 7): one line naming the argument, never a raw TF error."""

import numpy as np
import pytest
import tensorflow as tf

from tfvae import config, data, evaluation, model, objectives

IMAGE_SHAPE = (28, 28, 1)


def small_vae(conditional=False):
    tf.random.set_seed(0)
    return model.build(config.ModelConfig(hidden_sizes=(8,), latent_size=2, conditional=conditional,
                                          num_classes=3), IMAGE_SHAPE)  # fmt: skip


@pytest.mark.parametrize("n", [-1, 0, 2.5, "3", True])
def test_sample_refuses_a_count_that_is_not_a_positive_integer(n):
    with pytest.raises(ValueError, match=r"^n must be a positive integer, got "):
        small_vae().sample(n)
    with pytest.raises(ValueError, match=r"^n must be a positive integer, got "):
        small_vae(conditional=True).sample(n, labels=1)


def test_sample_takes_python_numpy_and_eager_tensor_counts():
    vae = small_vae()
    for n in (2, np.int64(2), tf.constant(2)):
        assert vae.sample(n).shape == [2, *IMAGE_SHAPE]


def test_conditional_labels_must_be_whole_class_indices_one_per_image_or_one_for_all():
    vae = small_vae(conditional=True)
    with pytest.raises(ValueError, match=r"^labels must be integer class indices in \[0, 3\); got 0\.5"):
        vae.sample(2, labels=[0.5, 1.5])
    images = np.zeros([4, *IMAGE_SHAPE], np.float32)
    with pytest.raises(ValueError, match=r"^labels has 3 entries for 4 images: give one label per image"):
        vae.given([0, 1, 2]).encode(images)
    with pytest.raises(ValueError, match=r"^labels has 3 entries for 4 images"):
        vae.given([0, 1, 2]).decode(np.zeros([4, 2], np.float32))
    assert vae.given(1).encode(images).mean().shape == [4, 2]  # one label for all
    assert vae.given([0, 1, 2, 1]).encode(images).mean().shape == [4, 2]
    assert vae.sample(2, labels=[1.0, 2.0]).shape == [2, *IMAGE_SHAPE]  # whole numbers in floats are indices


def test_evaluate_on_images_of_another_shape_says_so_in_one_line():
    vae = small_vae()
    vae.encode(np.zeros([1, *IMAGE_SHAPE], np.float32))  # built for 28 x 28 x 1
    with pytest.raises(ValueError) as raised:
        evaluation.evaluate(vae, np.zeros([4, 32, 32, 3], np.uint8), k=2)
    message = str(raised.value)
    assert message.startswith("this encoder was built for images of shape (28, 28, 1); got") and "\n" not in message


@pytest.mark.parametrize("bad, label", [(np.nan, "NaN"), (np.inf, "infinite")])
def test_a_nan_or_infinite_pixel_is_named_where_it_enters(bad, label):
    images = np.full([2, *IMAGE_SHAPE], 0.5, np.float32)
    images[1, 3, 4, 0] = bad
    vae = small_vae()
    with pytest.raises(ValueError, match=rf"^images contain 1 {label}"):
        objectives.negative_elbo(vae, images)
    with pytest.raises(ValueError, match=rf"^images contain 1 {label}"):
        vae.encode(images)
    with pytest.raises(ValueError, match=rf"^images contain 1 {label}"):
        data.from_arrays(images, batch_size=2)
