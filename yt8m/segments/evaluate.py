"""Segment MAP@K of a `Class,Segments` CSV against segment-rated TFRecords (SPEC 2):

    python -m yt8m.segments.evaluate --submission_file=segments.csv \
        --eval_data_pattern='segment/validate*.tfrecord' --segment_label_ids=segment_label_ids.csv

Prints MAP@K and, with --output_json, writes it with the per-class APs (atomically). The metric
itself is `yt8m.metrics.segment_map_at_k`; this module only reads the two inputs.
"""
import dataclasses

import yt8m  # noqa: F401
import tensorflow as tf

from yt8m import metrics
from yt8m.core import cli
from yt8m.core import errors
from yt8m.core import files
from yt8m.core import options
from yt8m.core.option_groups import TopK
from yt8m.segments import ratings as ratings_lib
from yt8m.segments import submission as submission_lib
from yt8m.segments.segment_options import SegmentRanking


@dataclasses.dataclass
class SegmentEvaluation:
    map_at_k: float
    k: int
    num_classes: int          # classes that count (whitelisted, with a positive rating)
    num_rated_pairs: int
    class_aps: dict           # class -> AP

    def as_json(self):
        return {"segment_map_at_k": self.map_at_k, "k": self.k, "num_classes": self.num_classes,
                "num_rated_pairs": self.num_rated_pairs,
                "class_aps": {str(cls): ap for cls, ap in self.class_aps.items()}}


def evaluate_submission(submission_file, eval_data_pattern, segment_label_ids="",
                        k=metrics.SEGMENT_MAP_K, top_n=0, label_cache=""):
    """MAP@K of the CSV on the ratings of `eval_data_pattern` (whitelist: optional CSV path);
    top_n: keep only each class's first N segments of the CSV (0: all); label_cache: see
    `ratings.cached_segment_ratings`."""
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise errors.InvalidInputError(f"--top_k must be a positive integer, got {k!r}")
    if top_n < 0:
        raise errors.InvalidInputError(f"--top_n must be >= 0 (0: no cap), got {top_n}")
    submission = submission_lib.read_segment_submission(submission_file)
    if top_n:
        submission = {cls: segments[:top_n] for cls, segments in submission.items()}
    ratings = ratings_lib.cached_segment_ratings(eval_data_pattern, label_cache)
    whitelist = (submission_lib.read_segment_whitelist(segment_label_ids)
                 if segment_label_ids else None)
    aps = metrics.segment_average_precisions(submission, ratings, k=k, whitelist=whitelist)
    value = sum(aps.values()) / len(aps) if aps else 0.0
    return SegmentEvaluation(float(value), k, len(aps), len(ratings), aps)


@dataclasses.dataclass
class SegmentEvaluationOptions:
    """The options of `python -m yt8m.segments.evaluate`."""
    submission_file: str = options.option("", "The Class,Segments CSV to score.")
    eval_data_pattern: str = options.option("", "Glob of the segment-rated TFRecords.")
    segment_label_ids: str = options.override(
        SegmentRanking, "segment_label_ids",
        help="Whitelist CSV (header Index); empty: every rated class counts.")
    top_k: int = options.override(TopK, "top_k", metrics.SEGMENT_MAP_K, help="K of MAP@K.")
    output_json: str = options.option(
        "", "Also write the result (with per-class APs) here.")
    top_n: int = options.option(
        0, "The starter's segment_eval_inference.py cap: read only each class's first N segments "
        "of the CSV (0: all); MAP@K then scores them.", lower=0)
    label_cache: str = options.option(
        "", "The starter's label cache: the rated (segment, class, score) lines of "
        "--eval_data_pattern, read instead of the records when the file exists, else written "
        "after reading them. Empty: no cache.")


def main():
    options.define_flags(SegmentEvaluationOptions)

    def run():
        given = options.from_flags(SegmentEvaluationOptions)
        if not given.submission_file:
            raise errors.InvalidInputError(
                "--submission_file is empty: give the Class,Segments CSV to score")
        if given.output_json:  # checked before the evaluation's minutes
            inputs = [("--submission_file", given.submission_file)]
            if given.segment_label_ids:
                inputs.append(("--segment_label_ids", given.segment_label_ids))
            if given.eval_data_pattern:
                inputs += [("--eval_data_pattern", path)
                           for path in tf.io.gfile.glob(given.eval_data_pattern)]
            files.check_output_path(given.output_json, "--output_json", inputs)
        if given.label_cache and not tf.io.gfile.exists(given.label_cache):  # it will be written
            files.check_output_path(given.label_cache, "--label_cache", [
                ("--submission_file", given.submission_file)] + [
                ("--eval_data_pattern", path) for path in tf.io.gfile.glob(
                    given.eval_data_pattern or "")])
        result = evaluate_submission(given.submission_file, given.eval_data_pattern,
                                     given.segment_label_ids, given.top_k, given.top_n,
                                     given.label_cache)
        if given.output_json:
            files.write_json_atomically(given.output_json, result.as_json())
        print(f"segment MAP@{result.k}: {result.map_at_k:.6f} over {result.num_classes} classes "
              f"({result.num_rated_pairs} rated pairs)", flush=True)
    cli.run(run, "yt8m.segments.evaluate")


if __name__ == "__main__":
    main()
