"""Compact bilinear pooling (Gao et al. 2016), used by the representation graph of graph
distillation to fuse two teachers' features (SPEC 5).

The bilinear feature x (outer) y has d1 * d2 entries. Its count sketch into e bins with the hash
H(i, j) = (h1[i] + h2[j]) mod e and sign S(i, j) = s1[i] * s2[j] equals the circular convolution of
the two vectors' own count sketches, computed as irfft(rfft(sketch(x)) * rfft(sketch(y))): the outer
product is never built. Then signed square root and L2 normalisation.
"""
import numpy as np

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf
import tf_keras as keras


def count_sketch_parameters(input_dim, output_dim, rng):
    """Random hash h in [0, output_dim) and sign s in {-1, +1} for each of input_dim entries."""
    hashes = rng.randint(0, output_dim, size=input_dim).astype(np.int64)
    signs = (2 * rng.randint(0, 2, size=input_dim) - 1).astype(np.float32)
    return hashes, signs


@tf.custom_gradient
def signed_sqrt(x):
    """sign(x) * sqrt(|x|); the gradient 1 / (2 sqrt(|x|)) is capped near 0 (where it is infinite)."""
    root = tf.sqrt(tf.abs(x))

    def grad(upstream):
        return upstream * 0.5 / tf.maximum(root, 1e-6)

    return tf.sign(x) * root, grad


class CompactBilinearPooling(keras.layers.Layer):
    """[x [B, d1], y [B, d2]] -> [B, output_dim] compact bilinear feature.

    Inputs of rank 3 ([B, S, d], e.g. S frames or spatial positions) give the sum over S of the
    per-position bilinear features (sum pooling, as Gao et al. do over spatial positions).

    The hashes and signs are drawn from numpy's RandomState(seed) when the layer is built, so a layer
    rebuilt from its config (same seed, same input sizes) computes the same function; they are not
    trainable and not stored in checkpoints.

    Args:
      output_dim: e, the sketch size.
      seed: int seed of the hashes/signs (x's drawn first, then y's).
      signed_sqrt: apply sign(z) * sqrt(|z|).
      l2_normalize: divide by the L2 norm.
    """

    def __init__(self, output_dim, seed=0, signed_sqrt=True, l2_normalize=True, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(output_dim, int) or output_dim <= 0:
            raise ValueError(f"CompactBilinearPooling output_dim must be a positive integer, "
                             f"got {output_dim!r}")
        self.output_dim = output_dim
        self.seed = int(seed)
        self.use_signed_sqrt = signed_sqrt
        self.use_l2_normalize = l2_normalize

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError("CompactBilinearPooling takes a list of two inputs [x, y]")
        rng = np.random.RandomState(self.seed)
        parameters = [count_sketch_parameters(int(tf.TensorShape(shape)[-1]), self.output_dim, rng)
                      for shape in input_shape]
        # Plain tuples of numpy arrays: constants made from them in `call` belong to whichever
        # graph traces the layer.
        self.hashes = tuple(hashes for hashes, _ in parameters)
        self.signs = tuple(signs for _, signs in parameters)
        super().build(input_shape)

    def _sketch(self, x, index):
        """Count sketch of the last axis of x: [..., d] -> [..., output_dim]."""
        hashes, signs = self.hashes[index], self.signs[index]
        # A sparse [d, output_dim] matrix with one signed 1 per row.
        matrix = tf.SparseTensor(indices=np.stack([np.arange(hashes.size), hashes], axis=1),
                                 values=signs, dense_shape=[hashes.size, self.output_dim])
        flat = tf.reshape(x, [-1, tf.shape(x)[-1]])
        sketched = tf.sparse.sparse_dense_matmul(flat, matrix)
        return tf.reshape(sketched, tf.concat([tf.shape(x)[:-1], [self.output_dim]], axis=0))

    def call(self, inputs):
        x, y = (tf.cast(t, tf.float32) for t in inputs)
        if x.shape.rank != y.shape.rank or x.shape.rank not in (2, 3):
            raise ValueError(f"CompactBilinearPooling inputs must both be [B, d] or both [B, S, d], "
                             f"got shapes {x.shape} and {y.shape}")
        # The convolution runs in float64: float32 FFT round-off (~1e-7) left in bins that should be
        # exactly 0 would become ~1e-4 after the signed square root.
        fx = tf.signal.rfft(tf.cast(self._sketch(x, 0), tf.float64))
        fy = tf.signal.rfft(tf.cast(self._sketch(y, 1), tf.float64))
        pooled = tf.cast(tf.signal.irfft(fx * fy, fft_length=[self.output_dim]), tf.float32)
        if x.shape.rank == 3:
            pooled = tf.reduce_sum(pooled, axis=1)
        if self.use_signed_sqrt:
            pooled = signed_sqrt(pooled)
        if self.use_l2_normalize:
            pooled = tf.math.l2_normalize(pooled, axis=-1)
        return pooled

    def compute_output_shape(self, input_shape):
        return tf.TensorShape([input_shape[0][0], self.output_dim])

    def get_config(self):
        config = super().get_config()
        config.update(output_dim=self.output_dim, seed=self.seed,
                      signed_sqrt=self.use_signed_sqrt, l2_normalize=self.use_l2_normalize)
        return config
