"""The one way pixels become numbers: uint8 0..255 -> float32 in [0, 1], a division by 255.

Every path that scales pixels calls this (`as_images` below, at the API's boundary, `ArraySource` batches,
`data.binarize_once`), so a NumPy array, a tensor and a dataset batch of the same uint8 image give the same
float32 bits: a correctly rounded float32 division (IEEE 754), the same in NumPy and TensorFlow's eager
kernels. (Multiplying by the float32 constant 1/255 rounds twice and differs from the division in the last
bit for 126 of the 256 values; a test that compared the two paths failed on a CPU with other kernels.)
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

PIXEL_MAX = 255.0  # the largest uint8 value: scaled to 1.0


def scale_pixels(pixels: tf.Tensor) -> tf.Tensor:
    """uint8 pixels (any shape) as float32 in [0, 1]: `float32(pixel) / 255`."""
    return tf.cast(pixels, tf.float32) / tf.constant(PIXEL_MAX, tf.float32)


def scale_pixels_numpy(pixels: np.ndarray) -> np.ndarray:
    """`scale_pixels` for a NumPy uint8 array (any shape): float32, the same bits as the tensor version."""
    return np.asarray(pixels).astype(np.float32) / np.float32(PIXEL_MAX)


# --------------------------------------------------------------------------- the API's boundary
def as_images(images) -> tf.Tensor:
    """Images as a float tensor, converted once at the API's boundary.

    Accepts tensors and array-likes (NumPy arrays, lists). uint8 pixels are
    divided by 255 (`tfvae.pixels.scale_pixels`, as `tfvae.data` does) and booleans become 0/1; other
    floats become float32 (a float32 tensor passes through untouched, so this
    costs nothing inside a compiled step). Other integer types are refused.

    Raises:
      ValueError: images of an integer type other than uint8, or not numeric; NaN or infinite pixels (checked
        when called eagerly, as `tfvae.data.from_arrays` checks its arrays).
    """
    try:
        # NumPy first: it keeps the uint8 of a list of uint8 arrays, where TensorFlow would make int32.
        images = tf.convert_to_tensor(images if tf.is_tensor(images) else np.asarray(images))
    except (TypeError, ValueError) as error:
        raise ValueError(f"images must be a numeric array [batch, height, width, channels]; {error}") from error
    if images.dtype == tf.float32:
        return _finite_when_eager(images)
    if images.dtype == tf.uint8:
        return scale_pixels(images)
    if images.dtype == tf.bool or images.dtype.is_floating:
        return _finite_when_eager(tf.cast(images, tf.float32))
    kind = "integer images must be uint8 (0..255)" if images.dtype.is_integer else "images must be numeric"
    raise ValueError(f"{kind}; got dtype {images.dtype.name}. Pass uint8 or floats in [0, 1]")


def _finite_when_eager(images: tf.Tensor) -> tf.Tensor:
    """`images`, after refusing NaN or infinite pixels when called eagerly (a compiled step skips the check)."""
    if tf.executing_eagerly() and not bool(tf.reduce_all(tf.math.is_finite(images))):
        for label, bad in (("NaN", tf.math.is_nan(images)), ("infinite (Inf)", tf.math.is_inf(images))):
            count = int(tf.reduce_sum(tf.cast(bad, tf.int32)))
            if count:
                raise ValueError(f"images contain {count} {label} values; pixels must be finite, in [0, 1]")
    return images


def as_codes(z) -> tf.Tensor:
    """Latent codes [..., latent] as a float32 tensor (a float32 tensor passes through untouched)."""
    z = tf.convert_to_tensor(z)
    return z if z.dtype == tf.float32 else tf.cast(z, tf.float32)
