"""Pick k frames of each video for a frame-skipping student (SPEC 5, teacher-student paper).

Strategies (the paper's baselines), for a video with n >= k valid frames, j = 0..k-1:
- uniform (default): floor(j * n / k), equally spaced from the first frame (frames 0, s, 2s, ...)
- random: k distinct frames drawn without replacement, kept in time order (training only)
- first: j;  middle: (n - k) // 2 + j;  last: n - k + j
- first-middle-last: ceil-split k into a + b + c (k=10 -> 4, 3, 3): the first a frames, b frames
  centred in the video (moved right/left so the three parts never overlap) and the last c frames.
A video shorter than k (n < k) keeps all its n frames in order whatever the strategy, followed by
k - n zero frames, and its new num_frames is n: the student sees every frame it has and, like the
readers' padding, the padded frames are zeros that models mask by num_frames.
"""
import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

STRATEGIES = ("uniform", "random", "first", "middle", "last", "first-middle-last")


def _check(k, strategy):
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ValueError(f"number of frames to select must be a positive integer, got {k!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown frame selection strategy {strategy!r}; choose one of: "
                         f"{', '.join(STRATEGIES)}")


def _random_indices(num_frames, k, max_frames, seed):
    """k distinct valid frames per video, sorted; rows with n < k are replaced by the caller."""
    batch_size = tf.shape(num_frames)[0]
    width = tf.maximum(max_frames, k)  # top_k needs at least k columns
    shape = tf.stack([batch_size, width])
    if seed is None:
        keys = tf.random.uniform(shape)
    else:
        keys = tf.random.stateless_uniform(shape, seed=seed)
    # Invalid (padded) positions get a key above every valid one, so they are never among the k.
    positions = tf.range(width)[None, :]
    keys = tf.where(positions < num_frames[:, None], keys, 2.0)
    _, chosen = tf.math.top_k(-keys, k=k)
    return tf.sort(chosen, axis=1)


def frame_indices(num_frames, k, strategy="uniform", max_frames=None, seed=None):
    """Indices [B, k] (int32) of the frames to keep; -1 marks padding (videos shorter than k).

    Args:
      num_frames: int [B] valid frames per video.
      k: frames to select (Python int).
      strategy: one of STRATEGIES.
      max_frames: the padded time length T (only used by "random"); defaults to max(num_frames).
      seed: for "random": None draws from TF's global generator; a shape-[2] int tensor draws
        with `tf.random.stateless_uniform` (same seed, same frames).
    """
    _check(k, strategy)
    n = tf.cast(num_frames, tf.int32)[:, None]  # [B, 1]
    j = tf.range(k, dtype=tf.int32)[None, :]    # [1, k]
    if strategy == "uniform":
        chosen = (j * n) // k
    elif strategy == "first":
        chosen = j + 0 * n
    elif strategy == "middle":
        chosen = (n - k) // 2 + j
    elif strategy == "last":
        chosen = n - k + j
    elif strategy == "first-middle-last":
        first_count = -(-k // 3)
        last_count = k // 3
        middle_count = k - first_count - last_count
        middle_start = tf.clip_by_value((n - middle_count) // 2, first_count,
                                         tf.maximum(first_count, n - last_count - middle_count))
        chosen = tf.where(j < first_count, j,
                          tf.where(j < first_count + middle_count,
                                   middle_start + j - first_count,
                                   n - k + j))
    else:  # random
        if max_frames is None:
            max_frames = tf.reduce_max(tf.cast(num_frames, tf.int32))
        chosen = _random_indices(tf.cast(num_frames, tf.int32), k, max_frames, seed)
    # Short videos: all their frames in order, then -1 (padding).
    short = tf.where(j < n, j, -1)
    return tf.where(n >= k, chosen, short)


def _gather_frames(features, indices):
    gathered = tf.gather(features, tf.maximum(indices, 0), batch_dims=1)
    valid = tf.cast(indices >= 0, features.dtype)
    valid = tf.reshape(valid, tf.concat([tf.shape(indices), tf.ones([tf.rank(features) - 2],
                                                                    tf.int32)], axis=0))
    return gathered * valid


def select_frames(features, num_frames, k, strategy="uniform", seed=None):
    """Keeps k frames of every video.

    Args:
      features: [B, T, D] frames, or a dict name -> [B, T, ...] (every stream gets the same
        frames, e.g. {"rgb": ..., "audio": ...}).
      num_frames: int [B] valid frames per video.
      k, strategy, seed: see `frame_indices`.
    Returns:
      (selected features with the same structure, each [B, k, ...], new num_frames = min(k, n)
      as int32 [B]).
    """
    num_frames = tf.cast(num_frames, tf.int32)
    first = features if not isinstance(features, dict) else next(iter(features.values()))
    max_frames = tf.shape(first)[1]
    indices = frame_indices(num_frames, k, strategy, max_frames=max_frames, seed=seed)
    selected = tf.nest.map_structure(lambda x: _gather_frames(x, indices), features)
    return selected, tf.minimum(num_frames, k)
