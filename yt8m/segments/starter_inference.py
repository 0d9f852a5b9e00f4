"""The starter's segment mode of inference.py (`--segment_labels`): one frame-level model scores
every 5-frame segment of the test videos and the `Class,Segments` CSV ranks them per class.

    python inference.py --segment_labels --train_dir=runs/frame_model \
        --input_data_pattern='data/segment/test*.tfrecord' --output_file=segments.csv

As the starter: every video (its first 300 frames, the starter reader's) is cut into segments
starting at frames 0, 5, 10, ...: ceil(n / 5) of them, the last one keeping the zero padding of a
partial segment (num_frames = the frames left, at most 5), the id `<video id>:<start>`. The model
scores each segment; the classes outside the whitelist (`--segment_label_ids_file`, a path or an
http(s) URL) score 0; each segment offers its `--top_k` best classes to those that are
whitelisted, with the score the starter's post-processing reads back from its text (`"%g"`: six
significant digits); each class keeps its `--segment_max_pred` best segments.

Where this differs from the starter (docs/deviations.md): equal
scores are ranked by the project's one order (yt8m.segments.top_k: video id, then start frame as a
number), also at a class's cut-off, where the starter's heap kept the larger id text; rows come in
ascending class order (the starter's: the order in which classes first got a segment); an empty
`--segment_label_ids_file` ranks every class (the starter crashed), and the whitelist is read
strictly (a line that is not a class index is an error, not skipped).

The MOD pipeline (video-model candidates fused with a finetuned segment model) is
yt8m.segments.inference; both share the reader, the ranking and the CSV writer.
"""
import dataclasses

from absl import logging

import yt8m  # noqa: F401
import numpy as np

from yt8m.data import records
from yt8m.inference import video_inference
from yt8m.segments import fusion
from yt8m.segments import submission
from yt8m.segments import top_k as top_k_lib
from yt8m.segments.inference import segment_batches
from yt8m.core import errors


@dataclasses.dataclass
class StarterSegmentResult:
    num_segments: int       # segments scored
    num_rows: int           # class rows written


def starter_scores(scores):
    """The scores as the starter ranks them: printed with "%g" and parsed back (six significant
    digits), float64."""
    return np.array([float("%g" % score) for score in np.asarray(scores).tolist()], np.float64)


def whitelist_mask(whitelist, num_classes):
    """float32 [num_classes]: 1 at the whitelisted classes (every class when whitelist is None)."""
    if whitelist is None:
        return np.ones(num_classes, np.float32)
    mask = np.zeros(num_classes, np.float32)
    mask[list(whitelist)] = 1.0
    return mask


def rank_segments(batches, predict, mask, top_k, segment_max_pred):
    """Feeds every segment's whitelisted top-k classes into a PerClassTopK (videos are the id
    bytes). Returns (PerClassTopK, number of segments scored)."""
    ranked = top_k_lib.PerClassTopK(segment_max_pred)
    num_segments = 0
    for batch in batches:
        predictions = np.asarray(predict(batch), np.float32)
        if predictions.shape[1] != mask.size:
            raise errors.InvalidInputError(
                f"the model predicts {predictions.shape[1]} classes, expected "
                f"{mask.size}")
        classes, scores = fusion.top_classes(predictions * mask, top_k)
        offered = mask[classes] > 0
        segments = np.nonzero(offered)[0]
        video_ids = np.asarray(batch["id"].numpy(), dtype=bytes)
        starts = batch["segment_start"].numpy()
        ranked.add(classes[offered], starter_scores(scores[offered]), video_ids[segments],
                   starts[segments])
        num_segments += predictions.shape[0]
        logging.log_every_n(logging.INFO, "%d segments scored", 50, num_segments)
    return ranked, num_segments


def run_starter_segment_inference(config, predict=None, data_config=None):
    """Writes the Class,Segments CSV config.output_file (an InferenceConfig) from the frame-level
    files of config.input_data_pattern; returns a StarterSegmentResult.

    predict, data_config: as yt8m.inference.video_inference.prepare_inference (default: the
    newest checkpoint of config.train_dir and its model_flags.json).
    """
    if config.frame_buckets:
        raise errors.InvalidInputError(
            "--frame_buckets does not apply to --segment_labels (every segment has "
            f"{records.SEGMENT_SIZE} frames)")
    data_config = video_inference.model_data_config(config, data_config)
    if not data_config.frame_features:
        raise errors.InvalidInputError(
            "--segment_labels cuts frame-level videos into segments: it needs a "
            "frame-level model (this one reads video-level features)")
    files, predict, data_config = video_inference.prepare_inference(config, predict, data_config)
    whitelist = None
    if config.segment_label_ids_file:
        whitelist = submission.load_segment_whitelist(
            config.segment_label_ids_file, "--segment_label_ids_file",
            num_classes=data_config.num_classes)
    batches = segment_batches(files, data_config, config.batch_size,
                              max_frames=records.DEFAULT_MAX_FRAMES)
    ranked, num_segments = rank_segments(
        batches, predict, whitelist_mask(whitelist, data_config.num_classes),
        min(config.top_k, data_config.num_classes), config.segment_max_pred)
    classes = submission.row_classes(ranked.classes())
    num_rows = submission.write_segment_submission(
        config.output_file, submission.ranked_rows(ranked, classes, bytes.decode))
    logging.info("Wrote %d classes (%d segments scored) to %s", num_rows, num_segments,
                 config.output_file)
    return StarterSegmentResult(num_segments, num_rows)
