"""Numpy versions of the TF1 / slim primitives every reference model is built from.

Sources of the constants (checked in the TF1 / tf-slim source):
- tf.nn.l2_normalize(x, axis): x * rsqrt(max(sum(x^2), 1e-12)) (epsilon 1e-12 on the squared norm).
- slim.batch_norm: decay 0.999, epsilon 0.001, center=True; scale=False unless the caller passes
  scale=True (every reference call here does). Inference: (x - moving_mean) / sqrt(moving_var + eps)
  * gamma + beta. Training: the batch moments over every axis but the last (biased variance).
- slim.l2_regularizer(s)(w) = s * tf.nn.l2_loss(w) = s/2 * sum(w^2).
- tf.nn.relu6, tf.nn.softmax (last axis), tf.sigmoid.
- starter utils.Dequantize(q, 2, -2) = q * 4/255 + (4/512 - 2).
- starter model_utils.SampleRandomFrames / SampleRandomSequence index arithmetic.
"""
import numpy as np

L2_NORMALIZE_EPSILON = 1e-12  # tf.nn.l2_normalize default
BN_EPSILON = 1e-3  # slim.batch_norm default
BN_DECAY = 0.999  # slim.batch_norm default (moving-average momentum)


def as_float(x):
    return np.asarray(x, dtype=np.float64)


def l2_normalize(x, axis):
    """tf.nn.l2_normalize(x, axis)."""
    x = as_float(x)
    square_sum = np.sum(x * x, axis=axis, keepdims=True)
    return x / np.sqrt(np.maximum(square_sum, L2_NORMALIZE_EPSILON))


def sigmoid(x):
    x = as_float(x)
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def softmax(x, axis=-1):
    x = as_float(x)
    shifted = x - np.max(x, axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / np.sum(exp, axis=axis, keepdims=True)


def relu6(x):
    return np.clip(as_float(x), 0.0, 6.0)


def relu(x):
    return np.maximum(as_float(x), 0.0)


def batch_norm(x, weights, scope, bn_training=False, epsilon=BN_EPSILON, scale=True):
    """slim.batch_norm(x, center=True, scale=scale, scope=scope) on a [rows, channels] (or any rank,
    channels last) tensor. `weights[scope + '/beta' | '/gamma' | '/moving_mean' |
    '/moving_variance']`; gamma is not read when scale=False."""
    x = as_float(x)
    if bn_training:
        axes = tuple(range(x.ndim - 1))
        mean = np.mean(x, axis=axes)
        variance = np.mean(np.square(x - mean), axis=axes)
    else:
        mean = as_float(weights[scope + "/moving_mean"])
        variance = as_float(weights[scope + "/moving_variance"])
    normalized = (x - mean) / np.sqrt(variance + epsilon)
    if scale:
        normalized = normalized * as_float(weights[scope + "/gamma"])
    return normalized + as_float(weights[scope + "/beta"])


def dense(x, weights, scope, bias=True):
    """slim.fully_connected(x, n, activation_fn=None): x @ <scope>/weights (+ <scope>/biases).
    Inputs of rank > 2 are multiplied along the last axis (slim's tensordot)."""
    out = np.tensordot(as_float(x), as_float(weights[scope + "/weights"]), axes=[[-1], [0]])
    if bias:
        out = out + as_float(weights[scope + "/biases"])
    return out


def slim_l2_loss(weights, scale):
    """slim.l2_regularizer(scale)(weights) = scale * sum(w^2) / 2."""
    w = as_float(weights)
    return scale * 0.5 * float(np.sum(w * w))


def dequantize(quantized, max_quantized_value=2.0, min_quantized_value=-2.0):
    """starter utils.Dequantize: uint8 -> float, q * range/255 + range/512 + min."""
    quantized_range = max_quantized_value - min_quantized_value
    return (as_float(quantized) * (quantized_range / 255.0)
            + (quantized_range / 512.0 + min_quantized_value))


def sequence_mask(num_frames, max_frames):
    """tf.sequence_mask(num_frames, max_frames, float): [B, max_frames], 1 where frame <
    num_frames."""
    num_frames = np.asarray(num_frames).reshape(-1)
    return (np.arange(max_frames)[None, :] < num_frames[:, None]).astype(np.float64)


def random_frames_index(uniform, num_frames):
    """Indices SampleRandomFrames takes for uniform draws `uniform` [B, n] in [0, 1):
    int32(uniform * float(num_frames)), i.e. floor, drawn with replacement from the valid frames."""
    uniform = as_float(uniform)
    num_frames = as_float(num_frames).reshape(-1, 1)
    return np.floor(uniform * num_frames).astype(np.int64)


def random_sequence_index(uniform, num_frames, num_samples):
    """Indices SampleRandomSequence takes for one uniform draw per video `uniform` [B] in [0, 1):
    start = int32(u * (max(num_frames - n, 0) + 1)); index = min(start + [0..n-1], num_frames - 1).
    Videos shorter than n repeat their last frame."""
    uniform = as_float(uniform).reshape(-1, 1)
    num_frames = np.asarray(num_frames).reshape(-1, 1).astype(np.int64)
    max_start = np.maximum(num_frames - num_samples, 0)
    start = np.floor(uniform * (max_start + 1).astype(np.float64)).astype(np.int64)
    return np.minimum(start + np.arange(num_samples)[None, :], num_frames - 1)


def gather_frames(frames, frame_index):
    """frames [B, T, F], frame_index [B, n] -> [B, n, F] (tf.gather_nd with batch indices)."""
    frames = as_float(frames)
    frame_index = np.asarray(frame_index, dtype=np.int64)
    return frames[np.arange(frames.shape[0])[:, None], frame_index]


def maybe_sample(frames, frame_index):
    """The reference's sampled frames, or every given frame when frame_index is None (then the
    reference has no mask: give videos whose num_frames equals T)."""
    return as_float(frames) if frame_index is None else gather_frames(frames, frame_index)
