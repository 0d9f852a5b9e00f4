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

Two steps of MOD's submission script, off by default (the MOD recipe: both, 100000):
--segment_candidate_limit=N: per class, only the first N candidate segments in video-score order
(the videos holding the class as a candidate by video score, each video's segments by start) are
ranked, as MOD's candidate expansion stopped at 100000 segments per class;
--segment_fallback_file=CSV: each class's row is filled up to --segment_top_k from a video-level
CSV (yt8m.segments.fallback).
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
from yt8m.segments import fallback as fallback_lib
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
    segment_candidate_limit: int = options.option(
        0, "MOD's candidate limit: per class, only the first N candidate segments by video score "
        "(then video id, then start) are ranked. 0: no limit (MOD: 100000).", lower=0)
    segment_fallback_file: str = options.option(
        "", "MOD's add_fallbacks: a video-level CSV (VideoId,LabelConfidencePairs, e.g. "
        "inference.py --top_k=1000); each class's row is filled up to --segment_top_k with the "
        "full segments of the videos listing the class there, by their score. Empty: off.")


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


@dataclasses.dataclass
class ClassRanking:
    """What pass 2 ranked: per class the best segments by fused score (at most K)."""
    buffer: top_k_lib.PerClassTopK  # by fused score; by video score with the limit (payload fused)
    limited: bool                   # --segment_candidate_limit is on
    top_k: int
    sorted_video_ids: list          # video number -> id

    def classes(self):
        return self.buffer.classes()

    def segments(self, cls):
        """[(video id, start), ...] of class `cls`, best fused score first, at most K."""
        if self.limited:  # the candidates held by video score: rank their fused scores now
            _, numbers, starts, fused = self.buffer.top(cls)
            order = top_k_lib.rank(fused, numbers, starts)[:self.top_k]
            numbers, starts = numbers[order], starts[order]
        else:
            _, numbers, starts = self.buffer.top(cls)
        return [(self.sorted_video_ids[n], int(s)) for n, s in zip(numbers, starts)]


def rank_segments(batches, candidates, segment_predict, video_score_weight, segment_top_k,
                  num_classes, candidate_limit=0):
    """Ranks every full segment's fused candidate scores per class.

    batches: segment batches (`segment_dataset` mode "all"); segment_predict: batch -> [B, V], or
    None for the dummy prediction; candidate_limit: MOD's per-class candidate limit (0: none).
    Returns (ClassRanking, number of segments scored, {video id: number of full segments}).
    """
    sorted_ids = sorted(candidates)
    if candidate_limit:
        buffer = top_k_lib.PerClassTopK(candidate_limit, num_payloads=1)
    else:
        buffer = top_k_lib.PerClassTopK(segment_top_k)
    video_numbers = {video_id: number for number, video_id in enumerate(sorted_ids)}
    segment_counts = dict.fromkeys(sorted_ids, 0)
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
            segment_counts[video_id] += 1
            cls, scores = candidates[video_id]
            classes.append(cls)
            video_scores.append(scores)
            segment_scores.append(scores if predictions is None else predictions[row, cls])
            videos.append(np.full(cls.size, video_numbers[video_id]))
            segment_starts.append(np.full(cls.size, starts[row]))
        num_segments += full.size
        video_scores = np.concatenate(video_scores)
        fused = fusion.fuse(video_scores, np.concatenate(segment_scores), video_score_weight)
        classes, videos = np.concatenate(classes), np.concatenate(videos)
        segment_starts = np.concatenate(segment_starts)
        if candidate_limit:  # held in candidate order (video score), the fused score travels
            buffer.add(classes, video_scores, videos, segment_starts, fused)
        else:
            buffer.add(classes, fused, videos, segment_starts)
        logging.log_every_n(logging.INFO, "%d segments scored", 50, num_segments)
    ranking = ClassRanking(buffer, bool(candidate_limit), segment_top_k, sorted_ids)
    return ranking, num_segments, segment_counts


def submission_rows(ranking, classes, fallback_videos=None, segment_counts=None,
                    fallback_path=""):
    """(class, [(video id, start), ...]) rows for `classes`, best segment first; with
    `fallback_videos` ({class: [(video id, score), ...]}, yt8m.segments.fallback) each row is
    filled up to K from the class's fallback list."""
    for cls in classes:
        row = ranking.segments(cls)
        if fallback_videos is not None:
            extra = fallback_lib.fallback_segments(fallback_videos.get(cls, ()), segment_counts,
                                                   ranking.top_k, fallback_path)
            row = fallback_lib.fill(row, extra, ranking.top_k)
        yield cls, row


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
    if config.segment_candidate_limit < 0:
        raise errors.InvalidInputError(
            "--segment_candidate_limit must be >= 0 (0: no limit), got "
            f"{config.segment_candidate_limit}")
    files = inputs.require_files(config.input_data_pattern, "--input_data_pattern")
    video_predict, video_data = models.load_predictor(config.video_model, "--video_model",
                                                      config.num_readers)
    whitelist = None
    if config.segment_label_ids:
        whitelist = submission.read_segment_whitelist(config.segment_label_ids,
                                                      num_classes=video_data.num_classes)
    fallback_videos = None
    if config.segment_fallback_file:  # read before the long passes: a bad file fails now
        fallback_videos = fallback_lib.read_class_videos(config.segment_fallback_file, whitelist)
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
    if fallback_videos is not None:
        fallback_lib.check_videos(fallback_videos, candidates, config.segment_fallback_file)
    ranking, num_segments, segment_counts = rank_segments(
        segment_batches(files, segment_data, config.segment_batch_size), candidates,
        segment_predict, config.video_score_weight, config.segment_top_k,
        video_data.num_classes, config.segment_candidate_limit)
    ranked_classes = set(ranking.classes()) | set(fallback_videos or ())
    classes = submission.row_classes(ranked_classes, whitelist)
    num_rows = submission.write_segment_submission(
        config.output_file, submission_rows(ranking, classes, fallback_videos, segment_counts,
                                            config.segment_fallback_file))
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
