"""Video-level Kaggle submission CSV (SPEC 3): `VideoId,LabelConfidencePairs`, then one row per
video with its top-k classes by descending score as `"%d %g"` pairs joined by single spaces.
"""
from absl import logging

import yt8m  # noqa: F401
import numpy as np
import tensorflow as tf

from yt8m.core import files

VIDEO_SUBMISSION_HEADER = "VideoId,LabelConfidencePairs"


def _as_text(video_id):
    return video_id.decode("utf-8") if isinstance(video_id, bytes) else str(video_id)


def format_video_row(video_id, class_indices, scores):
    pairs = " ".join("%d %g" % (int(index), float(score))
                     for index, score in zip(class_indices, scores))
    return f"{_as_text(video_id)},{pairs}"


def top_k_rows(video_ids, predictions, top_k):
    """Rows for a batch: predictions [B, V] -> B CSV lines (ties keep the lower class first)."""
    predictions = tf.convert_to_tensor(predictions)
    k = min(top_k, int(predictions.shape[-1]))
    scores, indices = tf.math.top_k(predictions, k=k, sorted=True)
    return [format_video_row(video_id, row_indices, row_scores)
            for video_id, row_indices, row_scores
            in zip(np.asarray(video_ids), indices.numpy(), scores.numpy())]


def write_video_submission(output_file, batches, predict, top_k=20):
    """Writes the CSV for every batch of `batches` (dicts with `id` and the model inputs).

    Args:
      output_file: path of the CSV; written to a temp file and renamed when complete.
      batches: iterable of batch dicts.
      predict: function batch -> predictions [B, V] (a checkpoint, a SavedModel, an ensemble...).
      top_k: classes per video.
    Returns:
      The number of videos written.
    """
    if not output_file:
        raise ValueError("--output_file is empty: give the path of the CSV to write")
    num_videos = 0
    with files.atomic_output(output_file) as handle:
        handle.write(VIDEO_SUBMISSION_HEADER + "\n")
        for batch in batches:
            rows = top_k_rows(batch["id"], predict(batch), top_k)
            handle.write("".join(row + "\n" for row in rows))
            num_videos += len(rows)
            logging.log_every_n(logging.INFO, "%d videos predicted", 20, num_videos)
    logging.info("Wrote %d videos to %s", num_videos, output_file)
    return num_videos
