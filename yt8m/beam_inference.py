"""Distributed batch inference on Apache Beam: TFRecord shards -> exported SavedModel -> Kaggle CSVs.

    python -m yt8m.beam_inference --input_data_pattern='test*.tfrecord' \
        --saved_model_dir=export/ --output_file=predictions.csv [--runner=DataflowRunner ...]

The pipeline reads frame-level SequenceExamples, pads each video to the export's max_frames (or
--max_frames), batches videos (Beam's BatchElements, through RunInference) and calls the
SavedModel's `serving_default` signature (SPEC 7: rgb, audio, num_frames -> predictions). It
writes the video-level submission (SPEC 3) as one file with its header, row for row what
inference.py writes for the same export and batch size (same formatter).

With --segment_saved_model_dir it also ranks 5-frame segments (the MOD recipe, SPEC 4): the video
model's top --segment_candidates classes are the candidates, the segment model scores every full
5-frame segment, score = P_vid^w * P_seg^(1-w), and a per-class Top combiner keeps the best
--segment_top_k segments for the `Class,Segments` CSV.

Every flag Beam knows (--runner, --project, --region, --temp_location, --setup_file, ...) is passed
through to the pipeline; see docs/scale_out.md for the Dataflow, Flink and Spark launches.
"""
import dataclasses
import functools
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
from yt8m.core import options
from yt8m.core.option_groups import Batching, PredictionFiles, TopK
from yt8m.data import records
from yt8m.inference import submission
from yt8m.segments.segment_options import SegmentRanking

SERVING_SIGNATURE = "serving_default"
SEGMENT_SUBMISSION_HEADER = "Class,Segments"
# The serving contract (SPEC 7): these inputs, float32 features and int32 frame counts.
FEATURE_NAMES = records.DEFAULT_FEATURE_NAMES
NUM_FRAMES_INPUT = "num_frames"
PREDICTIONS_OUTPUT = "predictions"


# --------------------------------------------------------------------------------------------
# Elements flowing through the pipeline.

class VideoFrames(NamedTuple):
    """Quantized frames of one video (or segment): feature name -> uint8 [T, size], T unpadded."""
    features: dict

    @property
    def num_frames(self):
        return len(next(iter(self.features.values())))

    def slice(self, start, stop):
        return VideoFrames({name: codes[start:stop] for name, codes in self.features.items()})


class SegmentKey(NamedTuple):
    """What travels beside a segment through RunInference: where it is and its candidates."""
    video_id: str
    start: int
    classes: tuple        # candidate class indices (the video model's top classes, whitelisted)
    video_scores: tuple   # the video model's probability for each candidate class


def parse_video(filename, serialized):
    """Serialized SequenceExample -> (video id, VideoFrames); errors name the file and the video.

    Parsed with the protobuf message rather than TensorFlow ops: one record at a time is all a
    Beam element needs, and it keeps the uint8 codes compact until the batch is built.
    """
    try:
        example = tf.train.SequenceExample.FromString(serialized)
    except Exception as error:  # protobuf raises DecodeError, a private type
        raise ValueError(f"{filename}: a record is not a tf.train.SequenceExample "
                         f"({error})") from None
    context = example.context.feature
    id_key = "id" if "id" in context else "video_id"  # 2017 files say video_id
    if id_key not in context or not context[id_key].bytes_list.value:
        raise ValueError(f"{filename}: a SequenceExample has no context 'id' (nor 'video_id')")
    video_id = context[id_key].bytes_list.value[0].decode("utf-8")
    features = {}
    for name in FEATURE_NAMES:
        if name not in example.feature_lists.feature_list:
            raise ValueError(f"{filename}: video {video_id!r} has no feature_list {name!r} "
                             "(frame-level SequenceExamples are required)")
        frames = [feature.bytes_list.value[0]
                  for feature in example.feature_lists.feature_list[name].feature]
        sizes = {len(frame) for frame in frames}
        if len(sizes) > 1:
            raise ValueError(f"{filename}: video {video_id!r}: {name} frames have different "
                             f"sizes {sorted(sizes)}")
        size = sizes.pop() if sizes else 0
        features[name] = np.frombuffer(b"".join(frames), np.uint8).reshape(len(frames), size)
    counts = {name: len(codes) for name, codes in features.items()}
    if len(set(counts.values())) > 1:
        raise ValueError(f"{filename}: video {video_id!r} has different frame counts per "
                         f"feature: {counts}")
    return video_id, VideoFrames(features)


def padded_batch(frames_batch, feature_sizes, max_frames, batch_rows):
    """VideoFrames list -> the serving inputs: dequantized float32 [batch_rows, max_frames, size]
    with the frames past each video's end left at 0, and num_frames int32 [batch_rows] (SPEC 1
    padding). Rows past the batch are empty videos (num_frames 0) whose outputs are dropped."""
    num_frames = np.zeros(batch_rows, np.int32)
    num_frames[:len(frames_batch)] = [min(frames.num_frames, max_frames)
                                      for frames in frames_batch]
    inputs = {NUM_FRAMES_INPUT: num_frames}
    for name, size in feature_sizes.items():
        values = np.zeros((batch_rows, max_frames, size), np.float32)
        for row, frames in enumerate(frames_batch):
            codes = frames.features[name][:max_frames]
            if not len(codes):  # a video without frames stays all padding
                continue
            if codes.shape[1] != size:
                raise ValueError(f"{name} frames have {codes.shape[1]} values but the SavedModel "
                                 f"takes {size}")
            values[row, :len(codes)] = records.dequantize_np(codes)
        inputs[name] = values
    return inputs


# --------------------------------------------------------------------------------------------
# The model handler: one tf.saved_model.load per worker process, batches from BatchElements.

class _LoadedServingModel:
    """The loaded SavedModel (kept alive: the signature function holds only weak references) and
    its serving signature with the feature sizes it expects."""

    def __init__(self, saved_model_dir):
        self.saved_model = tf.saved_model.load(saved_model_dir)
        signatures = self.saved_model.signatures
        if SERVING_SIGNATURE not in signatures:
            raise ValueError(f"--saved_model_dir={saved_model_dir!r} has no {SERVING_SIGNATURE!r} "
                             f"signature (it has {sorted(signatures)})")
        self.signature = signatures[SERVING_SIGNATURE]
        input_specs = self.signature.structured_input_signature[1]
        missing = [name for name in FEATURE_NAMES + (NUM_FRAMES_INPUT,) if name not in input_specs]
        if missing or PREDICTIONS_OUTPUT not in self.signature.structured_outputs:
            raise ValueError(
                f"--saved_model_dir={saved_model_dir!r}: {SERVING_SIGNATURE} must take "
                f"{', '.join(FEATURE_NAMES + (NUM_FRAMES_INPUT,))} and return "
                f"{PREDICTIONS_OUTPUT!r} (SPEC 7); it takes {sorted(input_specs)} and returns "
                f"{sorted(self.signature.structured_outputs)}")
        self.feature_sizes = {name: int(input_specs[name].shape[-1]) for name in FEATURE_NAMES}
        # export_ensemble.py records the frames its members read; other SavedModels may not.
        recorded = getattr(self.saved_model, "max_frames", None)
        self.max_frames = int(recorded.numpy()) if recorded is not None else None

    def predict(self, inputs):
        outputs = self.signature(**{name: tf.constant(value) for name, value in inputs.items()})
        return outputs[PREDICTIONS_OUTPUT].numpy()


class SavedModelHandler(beam_inference_base.ModelHandler):
    """RunInference handler for the SPEC 7 `serving_default` signature of an exported SavedModel.

    Beam's stock TensorFlow handler loads through Keras, and Keras 3 rejects SavedModel
    directories; tf.saved_model.load reads any SavedModel. Examples are VideoFrames; each result
    is the video's predictions row [V] (float32).

    Every model call gets exactly `batch_size` rows (a short batch is filled with empty videos):
    matrix kernels sum in an order that depends on the number of rows, so a video's scores would
    otherwise change in the last digits with however the runner happened to group elements.
    """

    def __init__(self, saved_model_dir, max_frames=0, batch_size=32):
        """max_frames: frames per video fed to the model; 0 takes the SavedModel's own
        `max_frames` (export_ensemble.py records it), else the YouTube-8M 300."""
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)
        self.saved_model_dir = saved_model_dir
        self.max_frames = max_frames
        self.batch_size = batch_size

    def load_model(self):
        logging.info("Loading SavedModel %s", self.saved_model_dir)
        return _LoadedServingModel(self.saved_model_dir)

    def frames_for(self, model):
        return self.max_frames or model.max_frames or records.DEFAULT_MAX_FRAMES

    def run_inference(self, batch, model, inference_args=None):
        inputs = padded_batch(batch, model.feature_sizes, self.frames_for(model),
                              max(self.batch_size, len(batch)))
        predictions = model.predict(inputs)[:len(batch)]
        return [beam_inference_base.PredictionResult(frames, row)
                for frames, row in zip(batch, predictions)]

    def get_num_bytes(self, batch):
        # The default pickles the whole batch just to measure it.
        return sum(codes.nbytes for frames in batch for codes in frames.features.values())

    def get_metrics_namespace(self):
        return "yt8m_saved_model"


# --------------------------------------------------------------------------------------------
# Video-level submission.

def video_row(video_id, predictions, top_k):
    """One CSV row, through inference.py's own formatter so both tools write identical rows."""
    return submission.top_k_rows([video_id], predictions[np.newaxis], top_k)[0]


# --------------------------------------------------------------------------------------------
# Segment ranking (MOD: candidates from the video model, a finetuned 5-frame segment model).

def segment_candidates(video_id, frames, video_predictions, num_candidates, whitelist,
                       segment_size=records.SEGMENT_SIZE):
    """Yields (SegmentKey, VideoFrames) for every full segment of the video, carrying the
    video model's top `num_candidates` classes (ties: lower class first) kept by `whitelist`."""
    order = np.argsort(-video_predictions, kind="stable")[:num_candidates]
    if whitelist is not None:
        order = [index for index in order if int(index) in whitelist]
    if not len(order):
        return
    classes = tuple(int(index) for index in order)
    video_scores = tuple(float(video_predictions[index]) for index in classes)
    for start in range(0, frames.num_frames - segment_size + 1, segment_size):
        yield (SegmentKey(video_id, start, classes, video_scores),
               frames.slice(start, start + segment_size))


def combined_segment_scores(key, segment_predictions, video_weight):
    """Yields (class, (score, "<id>:<start>")) with score = P_vid^w * P_seg^(1 - w)."""
    segment_id = f"{key.video_id}:{key.start}"
    for index, video_score in zip(key.classes, key.video_scores):
        score = (np.float64(video_score) ** video_weight
                 * np.float64(segment_predictions[index]) ** (1.0 - video_weight))
        yield index, (float(score), segment_id)


@functools.total_ordering
class SegmentRank:
    """Ranking key of a (score, segment id) pair: higher score first, then the smaller segment id
    (so ties, also at the top-K cut, are resolved the same way on every runner)."""
    __slots__ = ("score", "segment_id")

    def __init__(self, scored_segment):
        self.score, self.segment_id = scored_segment

    def __eq__(self, other):
        return (self.score, self.segment_id) == (other.score, other.segment_id)

    def __lt__(self, other):  # "worse than"
        if self.score != other.score:
            return self.score < other.score
        return self.segment_id > other.segment_id


def segment_row(class_index, scored_segments):
    """`<class>,<id>:<start> <id>:<start> ...`, best segment first."""
    ranked = sorted(scored_segments, key=SegmentRank, reverse=True)
    return f"{class_index}," + " ".join(segment_id for _, segment_id in ranked)


def read_segment_whitelist(path):
    """segment_label_ids.csv (header `Index`, one class a line) -> frozenset of class indices."""
    with tf.io.gfile.GFile(path) as handle:
        lines = [line.strip() for line in handle.read().splitlines() if line.strip()]
    if not lines or lines[0] != records.SEGMENT_WHITELIST_HEADER:
        raise ValueError(f"--segment_label_ids={path!r}: the first line must be the header "
                         f"{records.SEGMENT_WHITELIST_HEADER!r}, got "
                         f"{lines[0] if lines else '(empty file)'!r}")
    classes = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            classes.append(int(line))
        except ValueError:
            raise ValueError(f"--segment_label_ids={path!r} line {number}: {line!r} is not a "
                             "class index") from None
    return frozenset(classes)


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
        raise ValueError(f"{flag} is empty: give the directory written by export_ensemble.py")
    if not tf.io.gfile.exists(f"{path.rstrip('/')}/saved_model.pb"):
        raise FileNotFoundError(f"{flag}={path!r} is not a SavedModel directory "
                                "(no saved_model.pb in it)")


def validate(config):
    """Checks the configuration before anything runs; errors name the flag."""
    if not config.input_data_pattern:
        raise ValueError("--input_data_pattern is empty: give a glob of frame-level TFRecords")
    if not tf.io.gfile.glob(config.input_data_pattern):
        raise FileNotFoundError(f"--input_data_pattern={config.input_data_pattern!r} matches no "
                                "file")
    _require_saved_model(config.saved_model_dir, "--saved_model_dir")
    if not config.output_file:
        raise ValueError("--output_file is empty: give the path of the CSV to write")
    if config.max_frames < 0:
        raise ValueError(f"--max_frames must be >= 0 (0: the SavedModel's own), got "
                         f"{config.max_frames}")
    for flag, value in (("--top_k", config.top_k), ("--batch_size", config.batch_size),
                        ("--segment_candidates", config.segment_candidates),
                        ("--segment_top_k", config.segment_top_k)):
        if value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    if not 0.0 <= config.video_score_weight <= 1.0:
        raise ValueError(f"--video_score_weight must be in [0, 1], got {config.video_score_weight}")
    if config.segment_saved_model_dir:
        _require_saved_model(config.segment_saved_model_dir, "--segment_saved_model_dir")
        if not config.segment_output_file:
            raise ValueError("--segment_saved_model_dir is set but --segment_output_file is "
                             "empty: give the path of the Class,Segments CSV")
    elif config.segment_output_file:
        raise ValueError("--segment_output_file needs --segment_saved_model_dir (the 5-frame "
                         "segment model)")


def _write_single_csv(rows, path, header, label):
    # One shard without a shard suffix: Beam writes it under a temporary name and renames it when
    # the pipeline finishes, so a failed run never leaves a half-written CSV at `path`.
    return rows | label >> beam.io.WriteToText(path, num_shards=1, shard_name_template="",
                                                header=header)


def build_pipeline(pipeline, config):
    """Adds the inference transforms to `pipeline` (the caller runs it)."""
    validate(config)
    whitelist = (read_segment_whitelist(config.segment_label_ids) if config.segment_label_ids
                 else None)
    videos = (pipeline
              | "InputPattern" >> beam.Create([config.input_data_pattern])
              | "ReadRecords" >> beam.io.ReadAllFromTFRecord(with_filename=True)
              | "ParseVideos" >> beam.MapTuple(parse_video))
    video_handler = beam_inference_base.KeyedModelHandler(
        SavedModelHandler(config.saved_model_dir, config.max_frames, config.batch_size))
    predicted = videos | "PredictVideos" >> beam_inference_base.RunInference(video_handler)
    rows = predicted | "FormatVideoRows" >> beam.MapTuple(
        lambda video_id, result: video_row(video_id, result.inference, config.top_k))
    _write_single_csv(rows, config.output_file, submission.VIDEO_SUBMISSION_HEADER,
                      "WriteVideoCsv")
    if not config.segment_saved_model_dir:
        return
    segment_handler = beam_inference_base.KeyedModelHandler(
        SavedModelHandler(config.segment_saved_model_dir, records.SEGMENT_SIZE,
                          config.batch_size))
    top_segments = (
        predicted
        | "SegmentCandidates" >> beam.FlatMapTuple(
            lambda video_id, result: segment_candidates(
                video_id, result.example, result.inference, config.segment_candidates,
                whitelist))
        | "PredictSegments" >> beam_inference_base.RunInference(segment_handler)
        | "CombineScores" >> beam.FlatMapTuple(
            lambda key, result: combined_segment_scores(key, result.inference,
                                                        config.video_score_weight))
        | "TopSegmentsPerClass" >> beam.combiners.Top.PerKey(config.segment_top_k,
                                                              key=SegmentRank))
    if whitelist is None:
        class_rows = top_segments | "FormatSegmentRows" >> beam.MapTuple(segment_row)
    else:
        # One row per whitelisted class, also for a class no video ranked.
        listed = (pipeline | "Whitelist" >> beam.Create(sorted(whitelist))
                  | "KeyWhitelist" >> beam.Map(lambda index: (index, None)))
        class_rows = (
            {"listed": listed, "top": top_segments}
            | "JoinWhitelist" >> beam.CoGroupByKey()
            | "FormatSegmentRows" >> beam.MapTuple(
                lambda index, joined: segment_row(index, [segment for top in joined["top"]
                                                          for segment in top])))
    _write_single_csv(class_rows, config.segment_output_file, SEGMENT_SUBMISSION_HEADER,
                      "WriteSegmentCsv")


def run(config, pipeline_args=()):
    """Builds and runs the pipeline with Beam options `pipeline_args`; waits until it finishes."""
    options = PipelineOptions(list(pipeline_args))
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
