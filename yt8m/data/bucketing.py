"""Length bucketing for frame-level batches: videos of similar length batched together.

The frame reader pads every video to `max_frames`; on 60-300-frame data about 40% of the frame
work of a model is then spent on padding. Bucketing groups videos by `num_frames` into buckets
with upper bounds `boundaries` (e.g. 60,120,180,240,300), batches each bucket on its own and cuts
the frame axis of each batch to its bucket's bound. Every model masks frames past `num_frames`,
so a video gets the same prediction in a bucketed batch as in a padded one; only the order of the
videos (and, in training, which videos share a batch) changes. The cut is to the bucket bound,
not to the batch's longest video, so a step function sees at most len(boundaries) frame counts.
"""
import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

from yt8m.core.option_groups import FRAME_BUCKET_ITEMS
from yt8m.core import errors

NUM_FRAMES = "num_frames"


def parse_boundaries(values, max_frames, flag_name="--frame_buckets"):
    """Bucket upper bounds from a flag value (list of ints or strings, or a 'a,b,c' string).

    Returns a sorted tuple whose last entry is `max_frames` (appended when missing); () when
    `values` is empty (bucketing off). Errors name the flag.
    """
    if isinstance(values, str):
        values = [value for value in values.split(",") if value.strip()]
    if not len(values):
        return ()
    bounds = []
    for bound in FRAME_BUCKET_ITEMS(values, flag_name):
        if bound <= 0:
            raise errors.InvalidInputError(
                f"{flag_name}: bucket bounds must be positive, got {bound}")
        if bound > max_frames:
            raise errors.InvalidInputError(
                f"{flag_name}: bucket bound {bound} is above --max_frames="
                f"{max_frames} (videos are cut to max_frames before bucketing)")
        bounds.append(bound)
    if sorted(set(bounds)) != bounds:
        raise errors.InvalidInputError(
            f"{flag_name}={','.join(map(str, values))!r}: bounds must be strictly "
            "increasing")
    if bounds[-1] != max_frames:
        bounds.append(max_frames)
    return tuple(bounds)


def even_boundaries(max_frames, num_buckets):
    """`num_buckets` equal-width bucket bounds up to max_frames: (60, 120, ..., 300) for 300, 5."""
    if num_buckets < 1:
        raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
    return tuple(sorted({max(1, round(max_frames * (i + 1) / num_buckets))
                         for i in range(num_buckets)}))


def bucket_batches(batches, batch_size, boundaries, frame_keys, drop_remainder=False):
    """Re-batches a frame-level dataset so that every batch holds one bucket's videos.

    Args:
      batches: dataset of batch dicts with `num_frames` [B] and, for every key of `frame_keys`,
        a [B, T, size] tensor (T >= boundaries[-1]); other keys are carried along per video.
      batch_size: videos per output batch.
      boundaries: increasing bucket upper bounds (parse_boundaries); the last one >= every
        video's num_frames.
      frame_keys: the frame feature keys to cut to the bucket bound.
      drop_remainder: drop each bucket's last partial batch (training); else every video is
        yielded exactly once (evaluation, inference).
    Returns:
      A dataset of the same dicts whose frame features are [b, bound, size].
    """
    bounds = tf.constant(boundaries, tf.int32)

    def bucket_of(video):
        # First bound >= num_frames; side="left" puts a video of exactly `bound` frames there.
        return tf.cast(tf.searchsorted(bounds, video[NUM_FRAMES][None], side="left")[0],
                       tf.int64)

    def cut(video):
        bound = tf.gather(bounds, bucket_of(video))
        return {key: (value[:bound] if key in frame_keys else value)
                for key, value in video.items()}

    return (batches.unbatch()
            .map(cut, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .group_by_window(key_func=bucket_of,
                             reduce_func=lambda _, window: window.batch(
                                 batch_size, drop_remainder=drop_remainder),
                             window_size=batch_size)
            .prefetch(tf.data.AUTOTUNE))
