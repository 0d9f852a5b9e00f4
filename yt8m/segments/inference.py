"""Segment inference (the MOD recipe, SPEC 4): test shards -> `Class,Segments` CSV.

    python -m yt8m.segments.inference --video_model=runs/video --segment_model=runs/segment \
        --input_data_pattern='segment/test*.tfrecord' --segment_label_ids=segment_label_ids.csv \
        --output_file=segments.csv

Pass 1: the video model predicts every video; its top --segment_candidates classes (kept if
whitelisted) are that video's candidates. Pass 2: the segment model scores every full 5-frame
segment (starts 0, 5, 10, ...); for each candidate class c the segment's score is
P_vid(c)^w * P_seg(c)^(1-w); each class keeps its best --segment_top_k segments (bounded buffers,
ranked by yt8m.segments.top_k: score, then video id, then start). Without --segment_model every
segment gets its video's score (the "dummy prediction" baseline of the MOD paper). Either model may
be a train dir or an exported SavedModel.
"""
import dataclasses

from absl import logging

import yt8m  # noqa: F401
import numpy as np

from yt8m.core import cli
from yt8m.core import errors
from yt8m.core import files as files_lib
from yt8m.core import options
from yt8m.core.option_groups import Batching, PredictionFiles
from yt8m.data import readers
from yt8m.data import records
from yt8m.segments import fusion
from yt8m.segments import models
from yt8m.segments.segment_options import SegmentRanking
from yt8m.segments import submission
from yt8m.segments import top_k as top_k_lib
from yt8m.training import inputs


@dataclasses.dataclass
class SegmentInferenceConfig(PredictionFiles, SegmentRanking, Batching):
    """The options of `python -m yt8m.segments.inference`."""
    input_data_pattern: str = options.override(
        PredictionFiles, "input_data_pattern", help="Glob of the frame-level TFRecords to rank.")
    output_file: str = options.override(PredictionFiles, "output_file",
                                        help="Segment CSV to write (atomically).")
    video_model: str = options.option(
        "", "Video-level model (candidates): a train dir or a SavedModel directory.")
    segment_model: str = options.option(
        "", "Finetuned 5-frame segment model: a train dir or a SavedModel directory. Empty: "
        "every segment gets its video's scores.")
    batch_size: int = options.override(Batching, "batch_size", 64,
                                       help="Videos per video-model batch.")
    segment_batch_size: int = options.option(512, "Segments per segment-model batch.", lower=1)
    num_readers: int = options.override(Batching, "num_readers", 1)


@dataclasses.dataclass
class SegmentInferenceResult:
    num_videos: int
    num_segments: int       # full segments scored
    num_rows: int           # class rows written


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def video_candidates(files, predict, data_config, batch_size, num_candidates, whitelist):
    """{video id: (candidate classes, video scores)}, in reading order."""
    candidates = {}
    for batch in inputs.inference_dataset(files, data_config, batch_size):
        predictions = np.asarray(predict(batch))
        if predictions.shape[1] != data_config.num_classes:
            raise errors.InvalidInputError(
                f"--video_model predicts {predictions.shape[1]} classes, expected "
                f"{data_config.num_classes}")
        rows = fusion.candidate_classes(predictions, num_candidates, whitelist)
        for video_id, row in zip(batch["id"].numpy(), rows):
            video_id = _text(video_id)
            if video_id in candidates:
                raise errors.InvalidInputError(
                    f"--input_data_pattern: video {video_id!r} appears twice")
            candidates[video_id] = row
    return candidates


def segment_batches(files, data_config, batch_size, max_frames=None):
    """Every 5-frame segment (starts 0, 5, 10, ...; the last one may be partial) of every video
    (of its first `max_frames` frames when given), `batch_size` segments a batch."""
    return readers.segment_dataset(
        files, batch_size, num_classes=data_config.num_classes, mode="all",
        feature_names=data_config.feature_names, feature_sizes=data_config.feature_sizes,
        num_parallel_reads=data_config.num_readers, max_frames=max_frames)


def rank_segments(batches, candidates, segment_predict, video_score_weight, segment_top_k,
                  num_classes):
    """Feeds every full segment's fused candidate scores into a PerClassTopK.

    batches: segment batches (`segment_dataset` mode "all"); segment_predict: batch -> [B, V], or
    None for the dummy prediction. Returns (PerClassTopK, number of segments scored); its videos
    are positions in `sorted(candidates)` (they rank like the ids, see yt8m.segments.top_k).
    """
    ranked = top_k_lib.PerClassTopK(segment_top_k)
    video_numbers = {video_id: number for number, video_id in enumerate(sorted(candidates))}
    num_segments = 0
    for batch in batches:
        full = np.flatnonzero(batch["num_frames"].numpy() == records.SEGMENT_SIZE)
        if not full.size:
            continue
        predictions = None
        if segment_predict is not None:
            predictions = np.asarray(segment_predict(batch))
            if predictions.shape[1] != num_classes:
                raise errors.InvalidInputError(
                    f"--segment_model predicts {predictions.shape[1]} classes but "
                    f"--video_model {num_classes}")
        video_ids = batch["id"].numpy()
        starts = batch["segment_start"].numpy()
        classes, video_scores, segment_scores, videos, segment_starts = [], [], [], [], []
        for row in full:
            video_id = _text(video_ids[row])
            if video_id not in candidates:
                raise errors.InvalidInputError(
                    f"video {video_id!r} was not seen by the video model")
            cls, scores = candidates[video_id]
            classes.append(cls)
            video_scores.append(scores)
            segment_scores.append(scores if predictions is None else predictions[row, cls])
            videos.append(np.full(cls.size, video_numbers[video_id]))
            segment_starts.append(np.full(cls.size, starts[row]))
        num_segments += full.size
        fused = fusion.fuse(np.concatenate(video_scores), np.concatenate(segment_scores),
                            video_score_weight)
        ranked.add(np.concatenate(classes), fused, np.concatenate(videos),
                   np.concatenate(segment_starts))
        logging.log_every_n(logging.INFO, "%d segments scored", 50, num_segments)
    return ranked, num_segments


def run_segment_inference(config):
    """Writes config.output_file; returns a SegmentInferenceResult."""
    if not config.output_file:
        raise errors.InvalidInputError(
            "--output_file is empty: give the path of the segment CSV to write")
    fusion.check_video_score_weight(config.video_score_weight)
    for flag, value in (("--segment_candidates", config.segment_candidates),
                        ("--segment_top_k", config.segment_top_k),
                        ("--batch_size", config.batch_size),
                        ("--segment_batch_size", config.segment_batch_size)):
        if value <= 0:
            raise errors.InvalidInputError(f"{flag} must be positive, got {value}")
    files = inputs.require_files(config.input_data_pattern, "--input_data_pattern")
    video_predict, video_data = models.load_predictor(config.video_model, "--video_model",
                                                      config.num_readers)
    whitelist = None
    if config.segment_label_ids:
        whitelist = submission.read_segment_whitelist(config.segment_label_ids,
                                                      num_classes=video_data.num_classes)
    segment_predict, segment_data = None, video_data
    if config.segment_model:
        segment_predict, segment_data = models.load_predictor(
            config.segment_model, "--segment_model", config.num_readers)
        if segment_data.num_classes != video_data.num_classes:
            raise errors.InvalidInputError(
                f"--segment_model has {segment_data.num_classes} classes but "
                f"--video_model {video_data.num_classes}")
    # Once the models are known to be models (their own errors come first).
    model_inputs = [(flag, path) for flag, path in (
        ("--video_model", config.video_model), ("--segment_model", config.segment_model),
        ("--segment_label_ids", config.segment_label_ids)) if path]
    files_lib.check_output_file(config.output_file, "--output_file", config.overwrite,
                                [("--input_data_pattern", path) for path in files] + model_inputs)

    candidates = video_candidates(files, video_predict, video_data, config.batch_size,
                                  config.segment_candidates,
                                  None if whitelist is None else set(whitelist))
    logging.info("%d videos: candidates from the video model", len(candidates))
    ranked, num_segments = rank_segments(
        segment_batches(files, segment_data, config.segment_batch_size), candidates,
        segment_predict, config.video_score_weight, config.segment_top_k,
        video_data.num_classes)
    classes = submission.row_classes(ranked.classes(), whitelist)
    num_rows = submission.write_segment_submission(
        config.output_file,
        submission.ranked_rows(ranked, classes, sorted(candidates).__getitem__))
    logging.info("Wrote %d classes (%d segments scored) to %s", num_rows, num_segments,
                 config.output_file)
    return SegmentInferenceResult(len(candidates), num_segments, num_rows)


# ------------------------------------------------------------------------------------ command

def main():
    options.define_flags(SegmentInferenceConfig)

    def run():
        config = options.from_flags(SegmentInferenceConfig)
        result = run_segment_inference(config)
        print(f"yt8m.segments.inference: {result.num_videos} videos, {result.num_segments} "
              f"segments scored, {result.num_rows} classes written to {config.output_file}",
              flush=True)
    cli.run(run, "yt8m.segments.inference")


if __name__ == "__main__":
    main()
