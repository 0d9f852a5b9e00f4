"""Frames fed to the ensemble outside serving: validation batches (tuning, GAP) and the batch the
export is verified on."""
import yt8m  # noqa: F401
import numpy as np
import tensorflow as tf

from yt8m.data import readers
from yt8m.data import records
from yt8m.export import serving
from yt8m.training import inputs


def frame_batches(pattern, flag_name, batch_size, max_examples, num_classes, max_frames):
    """Reader batches (rgb, audio, num_frames, labels, id) of the first `max_examples` videos of
    the frame-level files `pattern` (errors name `flag_name`)."""
    files = inputs.require_files(pattern, flag_name)
    dataset = readers.frame_dataset(files, batch_size, num_classes=num_classes,
                                    max_frames=max_frames,
                                    feature_names=serving.FEATURE_NAMES,
                                    feature_sizes=tuple(serving.FEATURE_SIZES[name]
                                                        for name in serving.FEATURE_NAMES))
    remaining = max_examples
    for batch in dataset:
        if remaining <= 0:
            return
        size = int(batch["num_frames"].shape[0])
        if size > remaining:
            batch = {name: value[:remaining] for name, value in batch.items()}
        remaining -= min(size, remaining)
        yield batch


def random_videos(num_videos, num_frames_max, seed=0):
    """Random quantized-then-dequantized frames of random lengths, zero past num_frames, as the
    reader would give them: ({name: [B, T, D] float32}, num_frames [B] int32)."""
    rng = np.random.default_rng(seed)
    num_frames = rng.integers(1, num_frames_max + 1, size=num_videos).astype(np.int32)
    valid = np.arange(num_frames_max)[None, :, None] < num_frames[:, None, None]
    frames = {}
    for name in serving.FEATURE_NAMES:
        codes = rng.integers(0, 256, size=(num_videos, num_frames_max,
                                           serving.FEATURE_SIZES[name]), dtype=np.uint8)
        frames[name] = tf.constant(np.where(valid, records.dequantize_np(codes), 0.0)
                                   .astype(np.float32))
    return frames, tf.constant(num_frames)

