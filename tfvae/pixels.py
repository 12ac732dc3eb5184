"""The one way pixels become numbers: uint8 0..255 -> float32 in [0, 1], a division by 255.

Every path that scales pixels calls this (`nets.as_images` at the API's boundary, `ArraySource` batches,
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
