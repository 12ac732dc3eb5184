"""Class conditioning (Sohn et al., 2015): an encoder and a decoder that also take the image's class y.

    q(z | x, y) = encoder(x + B[y])          p(x | z, y) = decoder([z, onehot(y)])

`LabelledEncoder` wraps any image encoder (an MLP, a convolutional one, a
flow) and adds a learned image B[y] of the class, [H, W, C], to its input;
`LabelledDecoder` wraps any decoder that takes its code size from its first
input and appends the one-hot class to each code. For an encoder whose first
layer is linear, adding B[y] to x is the same model as appending onehot(y)
to x (W (x + B[y]) = W x + (W B)[y], and W B is any matrix of that shape when
W has full row rank), without widening the input layer; B starts at zero, so
a fresh conditional model computes what its unconditional parts would.
`tfvae.model.ConditionalVAE` puts the two together.

Labels are integer class indices in [0, num_classes): [b] for a batch, or
one scalar for every image (`vae.given(3)`). They broadcast over the draws
of z: codes [..., b, d] take labels [b].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import sonnet as snt
import tensorflow as tf
import tensorflow_probability as tfp

from tfvae import checks, nets

tfd = tfp.distributions


def one_hot(labels, num_classes: int) -> tf.Tensor:
    """Integer labels [...] -> float32 one-hot vectors [..., num_classes] (out-of-range labels give zeros)."""
    return tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=tf.float32)


def check_labels(labels, num_classes: int, count: int | None = None) -> None:
    """Raises a ValueError naming the first label that is not a class index in [0, num_classes), or labels [b']
    that do not match `count` images (eager values only; a scalar label serves every image)."""
    values = tf.get_static_value(tf.convert_to_tensor(labels))
    if values is None:
        return
    flat = np.ravel(values)
    fractional = flat[np.asarray(flat, dtype=np.float64) != np.round(np.asarray(flat, dtype=np.float64))]
    if fractional.size:
        raise ValueError(f"labels must be integer class indices in [0, {num_classes}); got {float(fractional[0]):g}")
    if count is not None and np.ndim(values) == 1 and len(flat) not in (1, count):
        raise ValueError(f"labels has {len(flat)} entries for {count} images: give one label per image, or one "
                         "for all")
    bad = flat[(flat < 0) | (flat >= num_classes)]
    if bad.size:
        raise ValueError(f"labels must be class indices in [0, {num_classes}); got {int(bad[0])}")


def _leading_size(values: tf.Tensor, axis: int) -> int | None:
    """The static size of `axis` of `values` (the batch of images [b, H, W, C] or codes [..., b, d]), or None."""
    shape = values.shape
    return shape[axis] if shape.rank is not None and shape.rank >= -axis else None


class LabelledEncoder(snt.Module):
    """q(z | x, y): `encoder` applied to x + B[y], with B a learned image per class, [num_classes, H, W, C]."""

    def __init__(self, encoder: snt.Module, num_classes: int, image_shape: Sequence[int],
                 name: str = "labelled_encoder"):
        super().__init__(name=name)
        self.encoder = encoder
        self.num_classes = checks.positive_int(num_classes, "num_classes")
        self.latent_size = encoder.latent_size
        self.image_shape = tuple(int(size) for size in image_shape)
        self.class_images = tf.Variable(tf.zeros([self.num_classes, math.prod(self.image_shape)]), name="class_images")

    def __call__(self, images, labels) -> tfd.Distribution:
        """images [b, H, W, C] in [0, 1] (or uint8), labels [b] or a scalar -> q(z|x, y), batch [b]."""
        images = nets.as_images(images)
        check_labels(labels, self.num_classes, _leading_size(images, -4))
        offsets = tf.tensordot(one_hot(labels, self.num_classes), self.class_images, axes=1)  # [b, H*W*C] or [H*W*C]
        return self.encoder(images + tf.reshape(offsets, tf.concat([tf.shape(offsets)[:-1], self.image_shape], 0)))


class LabelledDecoder(snt.Module):
    """p(x | z, y): `decoder` applied to [z, onehot(y)], codes [..., latent + num_classes]."""

    def __init__(self, decoder: snt.Module, num_classes: int, name: str = "labelled_decoder"):
        super().__init__(name=name)
        self.decoder = decoder
        self.num_classes = checks.positive_int(num_classes, "num_classes")
        self.output_shape = getattr(decoder, "output_shape", None)

    def __call__(self, z, labels) -> tfd.Distribution:
        """z [..., b, latent], labels [b] (or one label for every code) -> p(x|z, y), batch [..., b]."""
        z = nets.as_codes(z)
        check_labels(labels, self.num_classes, _leading_size(z, -2))
        classes = one_hot(labels, self.num_classes)
        classes = tf.broadcast_to(classes, tf.concat([tf.shape(z)[:-1], [self.num_classes]], axis=0))
        return self.decoder(tf.concat([z, classes], axis=-1))



def conditional_parts(config, image_shape: Sequence[int], parts: dict) -> dict:
    """The conditional family's builder (`tfvae.families`): encoder and decoder that take the class, and the
    number of classes (what makes `tfvae.model.build` a `ConditionalVAE`)."""
    return {**parts, "encoder": LabelledEncoder(parts["encoder"], config.num_classes, image_shape),
            "decoder": LabelledDecoder(parts["decoder"], config.num_classes), "num_classes": config.num_classes}


__all__ = ["LabelledDecoder", "LabelledEncoder", "check_labels", "conditional_parts", "one_hot"]
