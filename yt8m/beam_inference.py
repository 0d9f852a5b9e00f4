"""Distributed batch inference on Apache Beam: TFRecord shards -> exported SavedModel -> Kaggle CSVs.

    python -m yt8m.beam_inference --input_data_pattern='test*.tfrecord' \
        --saved_model_dir=export/ --output_file=predictions.csv [--runner=DataflowRunner ...]

The pipeline reads frame-level SequenceExamples, batches them (Beam's BatchElements, through
RunInference), parses each batch with the frame reader's own parse step (yt8m.data.readers:
truncated or zero-padded to the export's max_frames, or --max_frames) and calls the SavedModel's
`serving_default` signature (SPEC 7: rgb, audio, num_frames -> predictions). It writes the
video-level submission (SPEC 3) as one file with its header and inference.py's rows (same
formatter), in video id order.

With --segment_saved_model_dir it also ranks 5-frame segments (the MOD recipe, SPEC 4) with the
pieces of yt8m.segments: the video model's top --segment_candidates classes are the candidates
(`fusion`), the segment model scores every full 5-frame segment (cut by the segment reader's parse
step), score = P_vid^w * P_seg^(1-w) (`fusion`), a per-class combiner keeps the best
--segment_top_k segments (`top_k`: score, then video id, then start) and the rows are
`submission`'s. For the same models and data the CSV is byte-identical to the one
`python -m yt8m.segments.inference` writes.

Every flag Beam knows (--runner, --project, --region, --temp_location, --setup_file, ...) is passed
through to the pipeline; see docs/scale_out.md for the Dataflow, Flink and Spark launches.
"""
import contextlib
import dataclasses
import functools
import os
from typing import NamedTuple

from absl import app
from absl import flags
from absl import logging

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import numpy as np
import tensorflow as tf

import apache_beam as beam
from apache_beam.ml.inference import base as beam_inference_base
from apache_beam.options.pipeline_options import PipelineOptions

from yt8m.core import cli
from yt8m.core import errors
from yt8m.core import files
from yt8m.core import options
from yt8m.core.option_groups import Batching, PredictionFiles, TopK
from yt8m.data import readers
from yt8m.data import record_stream
from yt8m.data import records
from yt8m.inference import submission as video_submission
from yt8m.segments import fusion
from yt8m.segments import submission as segment_submission
from yt8m.segments import top_k
from yt8m.segments.segment_options import SegmentRanking

SERVING_SIGNATURE = "serving_default"
# The serving contract (SPEC 7): these inputs, float32 features and int32 frame counts.
FEATURE_NAMES = records.DEFAULT_FEATURE_NAMES
NUM_FRAMES_INPUT = "num_frames"
PREDICTIONS_OUTPUT = "predictions"


# --------------------------------------------------------------------------------------------
# The model handlers: one tf.saved_model.load per worker process, batches from BatchElements.
# Records are parsed by the readers' own parse steps (yt8m.data.readers), so the model sees the
# values inference.py and yt8m.segments.inference feed it, and bad records fail the same way.

class _LoadedServingModel:
    """The loaded SavedModel (kept alive: the signature function holds only weak references) and
    its serving signature with the feature sizes and classes it has."""

    def __init__(self, saved_model_dir):
        self.saved_model = tf.saved_model.load(saved_model_dir)
        signatures = self.saved_model.signatures
        if SERVING_SIGNATURE not in signatures:
            raise errors.InvalidInputError(
                f"--saved_model_dir={saved_model_dir!r} has no {SERVING_SIGNATURE!r} "
                f"signature (it has {sorted(signatures)})")
        self.signature = signatures[SERVING_SIGNATURE]
        input_specs = self.signature.structured_input_signature[1]
        missing = [name for name in FEATURE_NAMES + (NUM_FRAMES_INPUT,) if name not in input_specs]
        if missing or PREDICTIONS_OUTPUT not in self.signature.structured_outputs:
            raise errors.InvalidInputError(
                f"--saved_model_dir={saved_model_dir!r}: {SERVING_SIGNATURE} must take "
                f"{', '.join(FEATURE_NAMES + (NUM_FRAMES_INPUT,))} and return "
                f"{PREDICTIONS_OUTPUT!r} (SPEC 7); it takes {sorted(input_specs)} and returns "
                f"{sorted(self.signature.structured_outputs)}")
        self.feature_sizes = tuple(int(input_specs[name].shape[-1]) for name in FEATURE_NAMES)
        # export_ensemble.py records its classes and the frames its members read; other
        # SavedModels may not (the classes then come from the predictions' shape).
        recorded = getattr(self.saved_model, "num_classes", None)
        num_classes = (recorded.numpy() if recorded is not None
                       else self.signature.structured_outputs[PREDICTIONS_OUTPUT].shape[-1])
        if num_classes is None:
            raise errors.InvalidInputError(
                f"--saved_model_dir={saved_model_dir!r}: the number of classes is "
                "unknown (no num_classes variable, predictions of unknown width)")
        self.num_classes = int(num_classes)
        recorded = getattr(self.saved_model, "max_frames", None)
        self.max_frames = int(recorded.numpy()) if recorded is not None else None
        self.parse = None  # the reader's parse step for this model, set by the handler

    def predict(self, inputs, batch_size):
        """Predictions [N, V] of the rows of `inputs` (reader batch), in model calls of exactly
        `batch_size` rows, the last one filled with empty videos (num_frames 0)."""
        rows = len(inputs[NUM_FRAMES_INPUT])
        outputs = []
        for begin in range(0, rows, batch_size):
            chunk = {}
            for name in FEATURE_NAMES + (NUM_FRAMES_INPUT,):
                value = np.asarray(inputs[name][begin:begin + batch_size])
                missing = batch_size - len(value)
                chunk[name] = tf.constant(np.pad(value, [(0, missing)] + [(0, 0)] *
                                                 (value.ndim - 1)))
            predictions = self.signature(**chunk)[PREDICTIONS_OUTPUT].numpy()
            outputs.append(predictions[:min(batch_size, rows - begin)])
        return (np.concatenate(outputs) if outputs
                else np.zeros((0, self.num_classes), np.float32))


def read_named_records(filename):
    """Yields (file name, serialized record) of one TFRecord file, read by the readers' own
    checked reader (yt8m.data.record_stream): a truncated or corrupted file fails with one line
    naming it and the byte offset (Beam's TFRecord reader dumps the bytes in hex instead)."""
    try:
        for _, record in record_stream.named_records([filename]).as_numpy_iterator():
            yield filename, record
    except tf.errors.OpError as error:
        message = errors.input_error_message(error)
        if message is None:
            raise
        raise errors.InvalidInputError(message) from None


@functools.lru_cache(maxsize=None)
def _traced_parser(make_parser, *args):
    """The reader's parse step `make_parser(*args)`, traced once per process for any number of
    records (its trace and XLA compilation cost about a second; a pipeline loads its models
    anew)."""
    spec = tf.TensorSpec([None], tf.string)
    return tf.function(make_parser(*args), input_signature=[spec, spec], autograph=False)


def _parse(model, named_records):
    """The reader's parse of (file name, serialized record) pairs -> numpy batch."""
    filenames, serialized = zip(*named_records)
    batch = model.parse(tf.constant(filenames), tf.constant(serialized))
    return {name: value.numpy() for name, value in batch.items()}


class _ServingModelHandler(beam_inference_base.ModelHandler):
    """A RunInference handler around the SPEC 7 `serving_default` signature of an export.

    Beam's stock TensorFlow handler loads through Keras, and Keras 3 rejects SavedModel
    directories; tf.saved_model.load reads any SavedModel.

    Every model call gets exactly `batch_size` rows (a short batch is filled with empty videos):
    matrix kernels sum in an order that depends on the number of rows, so a video's scores would
    otherwise change in the last digits with however the runner happened to group elements.
    """

    def __init__(self, saved_model_dir, batch_size=32):
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)
        self.saved_model_dir = saved_model_dir
        self.batch_size = batch_size

    def load_model(self):
        logging.info("Loading SavedModel %s", self.saved_model_dir)
        model = _LoadedServingModel(self.saved_model_dir)
        model.parse = self.parser(model)
        return model

    def parser(self, model):
        """parse(filenames, serialized) -> the reader batch `model` is fed."""
        raise NotImplementedError

    def get_metrics_namespace(self):
        return "yt8m_saved_model"


class VideoModelHandler(_ServingModelHandler):
    """Examples: (file name, serialized SequenceExample) records; each result's inference is
    (video id, predictions [V]) of the video's first max_frames frames, read as frame_dataset
    reads them."""

    def __init__(self, saved_model_dir, max_frames=0, batch_size=32):
        """max_frames: frames per video fed to the model; 0 takes the SavedModel's own
        `max_frames` (export_ensemble.py records it), else the YouTube-8M 300."""
        super().__init__(saved_model_dir, batch_size)
        self.max_frames = max_frames

    def parser(self, model):
        max_frames = self.max_frames or model.max_frames or records.DEFAULT_MAX_FRAMES
        return _traced_parser(readers.frame_batch_parser, model.num_classes, max_frames,
                              FEATURE_NAMES, model.feature_sizes)

    def run_inference(self, batch, model, inference_args=None):
        inputs = _parse(model, batch)
        predictions = model.predict(inputs, self.batch_size)
        return [beam_inference_base.PredictionResult(record, (video_id.decode("utf-8"), row))
                for record, video_id, row in zip(batch, inputs["id"], predictions)]

    def get_num_bytes(self, batch):
        # The default pickles the whole batch just to measure it.
        return sum(len(serialized) for _, serialized in batch)


class SegmentCandidates(NamedTuple):
    """A video whose segments are to be scored, with the video model's candidates."""
    record: tuple               # (file name, serialized SequenceExample)
    video_id: str
    classes: np.ndarray         # candidate classes (yt8m.segments.fusion.candidate_classes)
    video_scores: np.ndarray    # the video model's score of each


class SegmentModelHandler(_ServingModelHandler):
    """Examples: SegmentCandidates; each result's inference is (starts [S], predictions [S, V])
    of the video's full 5-frame segments, cut as segment_dataset(mode="all") cuts them."""

    def parser(self, model):
        return _traced_parser(readers.segment_batch_parser, model.num_classes, "all",
                              records.SEGMENT_SIZE, FEATURE_NAMES, model.feature_sizes)

    def run_inference(self, batch, model, inference_args=None):
        # One parse per video: the segments of a batch of videos do not say which video they
        # came from, only its id, and ids may repeat across files.
        segments = []
        for candidates in batch:
            parsed = _parse(model, [candidates.record])
            full = parsed[NUM_FRAMES_INPUT] == records.SEGMENT_SIZE
            segments.append({name: value[full] for name, value in parsed.items()})
        inputs = {name: np.concatenate([video[name] for video in segments])
                  for name in FEATURE_NAMES + (NUM_FRAMES_INPUT,)}
        predictions = model.predict(inputs, self.batch_size)
        splits = np.cumsum([len(video["segment_start"]) for video in segments])[:-1]
        return [beam_inference_base.PredictionResult(candidates,
                                                     (video["segment_start"], rows))
                for candidates, video, rows in zip(batch, segments,
                                                   np.split(predictions, splits))]

    def get_num_bytes(self, batch):
        return sum(len(candidates.record[1]) for candidates in batch)


# --------------------------------------------------------------------------------------------
# Rows of the two CSVs.

def video_row(video_id, predictions, top_k_classes):
    """(video id, CSV row), the row through inference.py's own formatter."""
    row = video_submission.top_k_rows([video_id], predictions[np.newaxis], top_k_classes)[0]
    return video_id, row


def segment_candidates(record, video_id, predictions, num_candidates, whitelist):
    """Yields the video's SegmentCandidates when the video model gives it a candidate class."""
    ((classes, video_scores),) = fusion.candidate_classes(predictions[np.newaxis],
                                                          num_candidates, whitelist)
    if classes.size:
        yield SegmentCandidates(record, video_id, classes, video_scores)


def scored_segments(candidates, starts, segment_predictions, video_score_weight):
    """Yields (class, (fused scores [S], video id, starts [S])) per candidate class of a video."""
    if not len(starts):
        return
    fused = fusion.fuse(candidates.video_scores, segment_predictions[:, candidates.classes],
                        video_score_weight)
    for column, cls in enumerate(candidates.classes):
        yield int(cls), (fused[:, column], candidates.video_id, starts)


class TopSegments(beam.CombineFn):
    """Per class: its best `k` segments as [(video id, start), ...], best first, ranked by
    yt8m.segments.top_k (one TopK buffer per accumulator, merged in any order)."""

    def __init__(self, k):
        self.k = k

    def create_accumulator(self):
        return top_k.TopK(self.k)

    def add_input(self, accumulator, scored):
        scores, video_id, starts = scored
        accumulator.add(scores, np.full(len(scores), video_id), starts)
        return accumulator

    def merge_accumulators(self, accumulators):
        accumulators = iter(accumulators)
        merged = next(accumulators)
        for accumulator in accumulators:
            merged.merge(accumulator)
        return merged

    def extract_output(self, accumulator):
        _, videos, starts = accumulator.top()
        return [(str(video_id), int(start)) for video_id, start in zip(videos, starts)]


def segment_rows(top_segments, whitelist):
    """The segment CSV's rows (after the header) from (class, segments) pairs: the classes of
    yt8m.segments.submission.row_classes, ascending, each row from its own formatter."""
    top = dict(top_segments)
    return [segment_submission.format_segment_row(cls, top.get(cls, ()))
            for cls in segment_submission.row_classes(top, whitelist)]


# --------------------------------------------------------------------------------------------
# The pipeline.

@dataclasses.dataclass
class BeamInferenceConfig(PredictionFiles, TopK, SegmentRanking):
    """The options of `python -m yt8m.beam_inference` (Beam's own flags pass through)."""
    input_data_pattern: str = options.override(
        PredictionFiles, "input_data_pattern",
        help="Glob of frame-level TFRecord files (gs:// works).")
    saved_model_dir: str = options.option(
        "", "SavedModel with the SPEC 7 serving_default signature (export_ensemble.py output).")
    output_file: str = options.override(PredictionFiles, "output_file",
                                        help="Video-level submission CSV to write.")
    max_frames: int = options.option(
        0, "Frames per video fed to the model (truncate / zero-pad); 0: the max_frames the "
        "export records (else 300).")
    batch_size: int = options.override(
        Batching, "batch_size", 32, help="Videos (or segments) per model call; short batches "
        "are padded so scores never depend on the grouping.")
    segment_saved_model_dir: str = options.option(
        "", "5-frame segment model (same signature); enables the Class,Segments output.")
    segment_output_file: str = options.option("", "Segment submission CSV to write.")


def _require_saved_model(path, flag):
    if not path:
        raise errors.InvalidInputError(
            f"{flag} is empty: give the directory written by export_ensemble.py")
    if not tf.io.gfile.exists(f"{path.rstrip('/')}/saved_model.pb"):
        raise errors.MissingInputError(f"{flag}={path!r} is not a SavedModel directory "
                                       "(no saved_model.pb in it)")


def validate(config):
    """Checks the configuration before anything runs; errors name the flag."""
    if not config.input_data_pattern:
        raise errors.InvalidInputError(
            "--input_data_pattern is empty: give a glob of frame-level TFRecords")
    if not tf.io.gfile.glob(config.input_data_pattern):
        raise errors.MissingInputError(
            f"--input_data_pattern={config.input_data_pattern!r} matches no "
            "file")
    _require_saved_model(config.saved_model_dir, "--saved_model_dir")
    if not config.output_file:
        raise errors.InvalidInputError("--output_file is empty: give the path of the CSV to write")
    if config.max_frames < 0:
        raise errors.InvalidInputError(f"--max_frames must be >= 0 (0: the SavedModel's own), got "
                                       f"{config.max_frames}")
    for flag, value in (("--top_k", config.top_k), ("--batch_size", config.batch_size),
                        ("--segment_candidates", config.segment_candidates),
                        ("--segment_top_k", config.segment_top_k)):
        if value < 1:
            raise errors.InvalidInputError(f"{flag} must be >= 1, got {value}")
    fusion.check_video_score_weight(config.video_score_weight)
    if config.segment_saved_model_dir:
        _require_saved_model(config.segment_saved_model_dir, "--segment_saved_model_dir")
        if not config.segment_output_file:
            raise errors.InvalidInputError(
                "--segment_saved_model_dir is set but --segment_output_file is "
                "empty: give the path of the Class,Segments CSV")
    elif config.segment_output_file:
        raise errors.InvalidInputError(
            "--segment_output_file needs --segment_saved_model_dir (the 5-frame "
            "segment model)")


def _write_csv(rows, path, header, label, ordered_lines):
    """Writes one CSV: every element of `rows` collected in one list, `ordered_lines(list)` the
    lines under the header, in their order.

    One element, because Beam keeps no order between elements; one shard without a shard suffix:
    Beam writes it under a temporary name and renames it when the pipeline finishes, so a failed
    run never leaves a half-written CSV at `path`.
    """
    def text(collected):
        lines = ordered_lines(collected)
        return ["\n".join(lines)] if lines else []
    return (rows
            | f"Collect{label}" >> beam.combiners.ToList()
            | f"Format{label}" >> beam.FlatMap(text)
            | f"Write{label}" >> beam.io.WriteToText(path, num_shards=1, shard_name_template="",
                                                      header=header))


def _by_video_id(video_rows):
    """Rows in video id order: the runner's order is arbitrary, the files' order unknown here."""
    return [row for _, row in sorted(video_rows)]


def build_pipeline(pipeline, config):
    """Adds the inference transforms to `pipeline` (the caller runs it)."""
    validate(config)
    whitelist = (segment_submission.read_segment_whitelist(config.segment_label_ids)
                 if config.segment_label_ids else None)
    predicted = (
        pipeline
        | "InputFiles" >> beam.Create(readers.list_files(config.input_data_pattern))
        | "SpreadFiles" >> beam.Reshuffle()
        | "ReadRecords" >> beam.FlatMap(read_named_records)
        | "PredictVideos" >> beam_inference_base.RunInference(
            VideoModelHandler(config.saved_model_dir, config.max_frames, config.batch_size)))
    video_rows = predicted | "VideoRows" >> beam.Map(
        lambda result: video_row(*result.inference, config.top_k))
    _write_csv(video_rows, config.output_file, video_submission.VIDEO_SUBMISSION_HEADER,
               "VideoCsv", _by_video_id)
    if not config.segment_saved_model_dir:
        return
    candidate_whitelist = None if whitelist is None else set(whitelist)
    top_segments = (
        predicted
        | "SegmentCandidates" >> beam.FlatMap(
            lambda result: segment_candidates(result.example, *result.inference,
                                              config.segment_candidates, candidate_whitelist))
        | "PredictSegments" >> beam_inference_base.RunInference(
            SegmentModelHandler(config.segment_saved_model_dir, config.batch_size))
        | "FuseScores" >> beam.FlatMap(
            lambda result: scored_segments(result.example, *result.inference,
                                           config.video_score_weight))
        | "TopSegmentsPerClass" >> beam.CombinePerKey(TopSegments(config.segment_top_k)))
    _write_csv(top_segments, config.segment_output_file,
               segment_submission.SEGMENT_SUBMISSION_HEADER, "SegmentCsv",
               functools.partial(segment_rows, whitelist=whitelist))


def _output_files(config):
    return [path for path in (config.output_file, config.segment_output_file) if path]


def check_outputs(config):
    """The CSVs may replace no input (a data file, a SavedModel) and an existing file only with
    --overwrite."""
    inputs = [("--input_data_pattern", path) for path in readers.list_files(
        config.input_data_pattern)]
    inputs += [(flag, path) for flag, path in (
        ("--saved_model_dir", config.saved_model_dir),
        ("--segment_saved_model_dir", config.segment_saved_model_dir),
        ("--segment_label_ids", config.segment_label_ids)) if path]
    for flag, path in (("--output_file", config.output_file),
                       ("--segment_output_file", config.segment_output_file)):
        if path:
            files.check_output_file(path, flag, config.overwrite, inputs)
    if config.output_file == config.segment_output_file:
        raise errors.InvalidInputError(f"--output_file and --segment_output_file are both "
                                       f"{config.output_file!r}")


def _beam_temp_dirs(output_files):
    found = set()
    for path in output_files:
        directory, name = os.path.split(path)
        found.update(tf.io.gfile.glob(os.path.join(directory or ".", f"beam-temp-{name}-*")))
    return found


@contextlib.contextmanager
def _removing_beam_temp_dirs(output_files):
    """Beam writes each CSV in a `beam-temp-<name>-<uuid>` directory next to it and moves it into
    place once the pipeline succeeds; a failed run leaves that directory behind. Removes the ones
    that appeared during the run when it fails."""
    before = _beam_temp_dirs(output_files)
    try:
        yield
    except BaseException:
        for path in sorted(_beam_temp_dirs(output_files) - before):
            files.remove(path)
        raise


def run(config, pipeline_args=()):
    """Builds and runs the pipeline with Beam options `pipeline_args`; waits until it finishes.
    A failed run leaves no temporary files and any earlier CSV as it was."""
    validate(config)
    check_outputs(config)
    options = PipelineOptions(list(pipeline_args))
    with _removing_beam_temp_dirs(_output_files(config)):
        with beam.Pipeline(options=options) as pipeline:
            build_pipeline(pipeline, config)
    logging.info("Wrote %s%s", config.output_file,
                 f" and {config.segment_output_file}" if config.segment_saved_model_dir else "")


# --------------------------------------------------------------------------------------------
# Command line.

def define_flags(flag_values=flags.FLAGS):
    """Defines this tool's flags (only when it runs: other tools define some of the same names)."""
    options.define_flags(BeamInferenceConfig, flag_values)


def config_from_flags(flag_values=flags.FLAGS):
    return options.from_flags(BeamInferenceConfig, flag_values)


def run_from_flags(flag_values, pipeline_args):
    """Runs with the parsed flags; bad input ends with one line on stderr and exit code 1."""
    with cli.exit_on_user_error("beam_inference"):
        run(config_from_flags(flag_values), pipeline_args)


def main(argv):
    run_from_flags(flags.FLAGS, argv[1:])  # argv keeps what absl did not parse: Beam's options


def _parse_known_flags(argv):
    return flags.FLAGS(argv, known_only=True)


if __name__ == "__main__":
    define_flags()
    app.run(main, flags_parser=_parse_known_flags)
