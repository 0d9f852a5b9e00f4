"""Beam batch inference (yt8m.beam_inference) on the DirectRunner, with SavedModels written by the
real exporter, against numpy references and the reader + CSV writer that inference.py uses."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from absl import flags

import yt8m  # noqa: F401
import tensorflow as tf
import tf_keras as keras

beam = pytest.importorskip("apache_beam")

import frame_level_models  # noqa: E402
from yt8m import beam_inference  # noqa: E402
from yt8m.data import records  # noqa: E402
from yt8m.export import exporter  # noqa: E402
from yt8m.export.saved_model_predictor import load_saved_model_predictor  # noqa: E402
from yt8m.inference import submission  # noqa: E402
from yt8m.segments import inference as segment_inference  # noqa: E402
from yt8m.training import checkpoints  # noqa: E402
from yt8m.core import files  # noqa: E402
from yt8m.training import inputs  # noqa: E402

NUM_CLASSES = 12
MAX_FRAMES = 12
BATCH_SIZE = 3
WHITELIST = (0, 2, 3, 5, 7, 8, 11)
NEVER_CLASS = 11  # the video model never ranks it: its row in the segment CSV stays empty
# Both models give these (whitelisted) classes one constant score (zero weights, equal biases):
# ties between classes of a video, between videos and between segments of a video.
TIED_CLASSES = (7, 8)
RUNNER_ARGS = ["--runner=DirectRunner", "--direct_num_workers=1"]


class LogisticReference:
    """A FrameLevelLogisticModel train dir with random weights, exported by export_ensemble, and
    the same arithmetic in float64 numpy (the starter's input: each frame's rgb ++ audio
    L2-normalised; mean of the valid frames -> x W + b -> sigmoid)."""

    def __init__(self, root, name, max_frames, seed, never_class=None, tied_bias=0.0):
        rng = np.random.default_rng(seed)
        self.kernel = rng.normal(0.0, 0.3, (1024 + 128, NUM_CLASSES)).astype(np.float32)
        self.bias = rng.normal(0.0, 0.5, NUM_CLASSES).astype(np.float32)
        if never_class is not None:
            self.bias[never_class] = -30.0
        self.kernel[:, TIED_CLASSES] = 0.0
        self.bias[list(TIED_CLASSES)] = tied_bias
        train_dir = str(root / f"{name}_train")
        files.write_json_atomically(os.path.join(train_dir, "model_flags.json"), {
            "model": "FrameLevelLogisticModel", "feature_names": "rgb,audio",
            "feature_sizes": "1024,128", "frame_features": True, "num_classes": NUM_CLASSES,
            "max_frames": max_frames, "label_loss": "CrossEntropyLoss", "hparams": {}})
        model = frame_level_models.build("FrameLevelLogisticModel", NUM_CLASSES,
                                         feature_names="rgb,audio", feature_sizes="1024,128")
        (kernel,) = [v for v in model.variables if v.name.endswith("kernel:0")]
        (bias,) = [v for v in model.variables if v.name.endswith("bias:0")]
        kernel.assign(self.kernel)
        bias.assign(self.bias)
        checkpoints.make_checkpoint_manager(
            tf.train.Checkpoint(model=model, optimizer=keras.optimizers.Adam()), train_dir,
            1).save(checkpoint_number=1)
        self.saved_model_dir = str(root / name)
        exporter.export_ensemble(exporter.ExportConfig(members=[train_dir],
                                                       output_dir=self.saved_model_dir))

    def numpy_predictions(self, features):
        """One video's (unpadded, already truncated) dequantized frames -> [V] float64."""
        frames = np.concatenate([features["rgb"], features["audio"]], axis=1).astype(np.float64)
        frames /= np.sqrt(np.maximum(np.sum(frames ** 2, axis=1, keepdims=True), 1e-12))
        mean = frames.mean(axis=0) if len(frames) else np.zeros(1152)
        return 1.0 / (1.0 + np.exp(-(mean @ self.kernel + self.bias)))


def _write_shards(directory, rng):
    """Two shards, 9 videos of 0..23 frames (some longer than MAX_FRAMES, one empty)."""
    videos = []
    for shard, lengths in enumerate([[23, 5, 0, 10], [12, 7, 16, 3, 9]]):
        path = os.path.join(directory, f"test{shard}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for index, length in enumerate(lengths):
                video_id = f"v{shard}{index}"
                codes = {"rgb": rng.integers(0, 256, (length, 1024), dtype=np.uint8),
                         "audio": rng.integers(0, 256, (length, 128), dtype=np.uint8)}
                writer.write(records.make_sequence_example(video_id, [1], codes)
                             .SerializeToString())
                videos.append((video_id, codes))
    return videos


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("beam")
    data_dir = root / "data"
    data_dir.mkdir()
    videos = _write_shards(str(data_dir), np.random.default_rng(7))
    # The tied classes score 0.993 in the video model: candidates of every video.
    video_model = LogisticReference(root, "video_model", MAX_FRAMES, 1, NEVER_CLASS,
                                    tied_bias=5.0)
    segment_model = LogisticReference(root, "segment_model", records.SEGMENT_SIZE, 2)
    whitelist_file = root / "segment_label_ids.csv"
    whitelist_file.write_text("Index\n" + "".join(f"{index}\n" for index in WHITELIST))
    config = beam_inference.BeamInferenceConfig(
        input_data_pattern=str(data_dir / "test*.tfrecord"),
        saved_model_dir=video_model.saved_model_dir,
        output_file=str(root / "out" / "videos.csv"),
        top_k=5, batch_size=BATCH_SIZE,  # max_frames: the export's own (MAX_FRAMES)
        segment_saved_model_dir=segment_model.saved_model_dir,
        segment_output_file=str(root / "out" / "segments.csv"),
        segment_label_ids=str(whitelist_file),
        segment_candidates=4, segment_top_k=3)
    beam_inference.run(config, RUNNER_ARGS)
    return dict(root=root, videos=videos, config=config, video_model=video_model,
                segment_model=segment_model, whitelist_file=str(whitelist_file))


def _dequantized(codes):
    return {name: records.dequantize_np(value) for name, value in codes.items()}


def _csv_lines(path):
    with open(path) as handle:
        return handle.read().splitlines()


def test_video_csv_has_one_header_and_the_rows_of_the_inference_writer(workspace):
    config, videos = workspace["config"], workspace["videos"]
    lines = _csv_lines(config.output_file)
    assert lines[0] == "VideoId,LabelConfidencePairs"
    assert lines.count("VideoId,LabelConfidencePairs") == 1
    assert len(lines) == len(videos) + 1
    # inference.py's pipeline: its reader (tf.data, file order, batches of 3: 9 videos fill
    # them all), its SavedModel predictor and its CSV writer. Every row must be byte-identical.
    predict, data_config = load_saved_model_predictor(config.saved_model_dir)
    assert data_config.max_frames == MAX_FRAMES
    reference_file = workspace["root"] / "reference.csv"
    dataset = inputs.inference_dataset(
        inputs.require_files(config.input_data_pattern, "--input_data_pattern"), data_config,
        BATCH_SIZE)
    submission.write_video_submission(str(reference_file), dataset, predict, config.top_k)
    # Beam writes rows in video id order; inference.py in reading order, the same here (the
    # shards hold the videos in id order): the two files are byte-identical.
    assert [line.split(",")[0] for line in lines[1:]] == sorted(v for v, _ in videos)
    assert open(config.output_file, "rb").read() == open(reference_file, "rb").read()


def test_video_rows_match_numpy_arithmetic(workspace):
    config, model = workspace["config"], workspace["video_model"]
    rows = {line.split(",")[0]: line.split(",")[1].split() for line in
            _csv_lines(config.output_file)[1:]}
    for video_id, codes in workspace["videos"]:
        truncated = {name: value[:MAX_FRAMES] for name, value in _dequantized(codes).items()}
        expected = model.numpy_predictions(truncated)
        top = np.argsort(-expected, kind="stable")[:config.top_k]  # ties: the lower class
        pairs = rows[video_id]
        assert [int(cls) for cls in pairs[0::2]] == [int(cls) for cls in top]
        np.testing.assert_allclose([float(score) for score in pairs[1::2]], expected[top],
                                   rtol=2e-5)


def _expected_segment_rows(workspace):
    """Independent recomputation of the MOD segment ranking in float64 numpy."""
    config = workspace["config"]
    per_class = {index: [] for index in WHITELIST}
    for video_id, codes in workspace["videos"]:
        features = _dequantized(codes)
        video_scores = workspace["video_model"].numpy_predictions(
            {name: value[:MAX_FRAMES] for name, value in features.items()})
        candidates = [c for c in np.argsort(-video_scores, kind="stable")
                      [:config.segment_candidates] if c in WHITELIST]
        for start in range(0, len(features["rgb"]) - 4, 5):
            segment_scores = workspace["segment_model"].numpy_predictions(
                {name: value[start:start + 5] for name, value in features.items()})
            for c in candidates:
                score = video_scores[c] ** 0.05 * segment_scores[c] ** 0.95
                per_class[c].append((-score, video_id, start))  # ties: id, then start (a number)
    return {c: [f"{video_id}:{start}" for _, video_id, start in
                sorted(scored)[:config.segment_top_k]]
            for c, scored in per_class.items()}


def test_segment_csv_ranks_top_segments_per_whitelisted_class(workspace):
    lines = _csv_lines(workspace["config"].segment_output_file)
    assert lines[0] == "Class,Segments"
    rows = {}
    for line in lines[1:]:
        cls, segments = line.split(",")
        rows[int(cls)] = segments.split(" ") if segments else []
    expected = _expected_segment_rows(workspace)
    assert set(rows) == set(WHITELIST)  # also classes no video ranked get their (empty) row
    assert rows[NEVER_CLASS] == []
    assert max(len(segments) for segments in rows.values()) == 3  # the --segment_top_k cut
    # Every segment ties in the tied classes: the first video id, its starts 5 before 10.
    assert rows[TIED_CLASSES[0]] == ["v00:0", "v00:5", "v00:10"]
    assert rows == expected


def _copy_resharded(videos, directory):
    """The videos again, in reverse id order, split over three files of other names."""
    os.makedirs(directory)
    ordered = sorted(videos, reverse=True)
    for shard in range(3):
        with tf.io.TFRecordWriter(os.path.join(directory, f"part{shard}.tfrecord")) as writer:
            for video_id, codes in ordered[shard::3]:
                writer.write(records.make_sequence_example(video_id, [1], codes)
                             .SerializeToString())
    return os.path.join(directory, "part*.tfrecord")


def test_segment_csv_is_byte_identical_to_the_local_tool(workspace):
    """python -m yt8m.segments.inference, same SavedModels, data, whitelist and settings: the same
    bytes, ties included (the tied classes rank every segment of every candidate video equal).
    Read in another order and sharding, the local tool still writes those bytes."""
    config = workspace["config"]
    beam_csv = open(config.segment_output_file, "rb").read()
    for name, pattern in (
            ("local", config.input_data_pattern),
            ("resharded", _copy_resharded(workspace["videos"],
                                          str(workspace["root"] / "resharded")))):
        local = segment_inference.SegmentInferenceConfig(
            input_data_pattern=pattern, video_model=config.saved_model_dir,
            segment_model=config.segment_saved_model_dir,
            output_file=str(workspace["root"] / f"{name}_segments.csv"),
            segment_label_ids=workspace["whitelist_file"],
            segment_candidates=config.segment_candidates,
            video_score_weight=config.video_score_weight, segment_top_k=config.segment_top_k,
            batch_size=BATCH_SIZE, segment_batch_size=BATCH_SIZE)
        segment_inference.run_segment_inference(local)
        assert open(local.output_file, "rb").read() == beam_csv, name


class _StubServingModel(beam_inference._LoadedServingModel):
    """A handler's model without a SavedModel: every class scores the row's num_frames; the row
    count of every call is recorded."""

    def __init__(self):  # no SavedModel to load
        self.feature_sizes, self.num_classes, self.max_frames = (1024, 128), NUM_CLASSES, None
        self.calls = []

        def signature(rgb, audio, num_frames):
            self.calls.append(int(num_frames.shape[0]))
            return {"predictions": tf.tile(tf.cast(num_frames, tf.float32)[:, None],
                                           [1, NUM_CLASSES])}
        self.signature = signature


def _record(video_id, num_frames, audio_frames=None):
    codes = {"rgb": np.zeros((num_frames, 1024), np.uint8),
             "audio": np.zeros((num_frames if audio_frames is None else audio_frames, 128),
                               np.uint8)}
    return records.make_sequence_example(video_id, [0], codes).SerializeToString()


def test_segment_handler_scores_full_segments_in_calls_of_batch_size():
    handler = beam_inference.SegmentModelHandler("unused", batch_size=2)
    model = _StubServingModel()
    model.parse = handler.parser(model)
    no_classes = np.zeros(0, np.int64)
    videos = [beam_inference.SegmentCandidates(("f", _record(video_id, frames)), video_id,
                                               no_classes, no_classes)
              for video_id, frames in (("a", 17), ("b", 3), ("c", 5))]
    results = handler.run_inference(videos, model)
    # 17 frames: full segments at 0, 5, 10 (15 has 2 frames); 3 frames: none; 5 frames: one.
    assert [result.inference[0].tolist() for result in results] == [[0, 5, 10], [], [0]]
    assert [result.example.video_id for result in results] == ["a", "b", "c"]
    np.testing.assert_array_equal(np.concatenate([r.inference[1] for r in results]),
                                  np.full((4, NUM_CLASSES), 5.0))
    assert model.calls == [2, 2]  # 4 segments: two calls of exactly --batch_size rows


def test_candidates_are_the_top_classes_kept_by_the_whitelist():
    scores = np.array([0.1, 0.9, 0.5, 0.9, 0.2], np.float32)
    (candidates,) = beam_inference.segment_candidates(("f", b""), "v", scores, 3, {1, 2})
    # top 3 = classes 1, 3 (tie: lower first), 2; the whitelist keeps 1 and 2.
    assert candidates.classes.tolist() == [1, 2]
    np.testing.assert_allclose(candidates.video_scores, [0.9, 0.5])
    assert list(beam_inference.segment_candidates(("f", b""), "v", scores, 3, {4})) == []


def test_top_segments_combiner_ranks_like_the_local_tool():
    combine = beam_inference.TopSegments(4)
    left, right = combine.create_accumulator(), combine.create_accumulator()
    for accumulator, scored in ((left, ([0.5, 0.9], "vid", [10, 0])),
                                (right, ([0.5, 0.7], "vid", [5, 15])),
                                (right, ([0.5], "a", [20]))):
        combine.add_input(accumulator, (np.array(scored[0]), scored[1], np.array(scored[2])))
    # Score first; the 0.5 ties by id ("a" < "vid"), then by start as a number (5 before 10).
    assert combine.extract_output(combine.merge_accumulators([right, left])) == [
        ("vid", 0), ("vid", 15), ("a", 20), ("vid", 5)]
    assert beam_inference.segment_rows([(4, [("vid", 0), ("vid", 5)])], (2, 4)) == [
        "2,", "4,vid:0 vid:5"]


def test_bad_records_fail_naming_the_file():
    handler = beam_inference.VideoModelHandler("unused", batch_size=2)
    model = _StubServingModel()
    model.parse = handler.parser(model)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="Invalid protocol message input, example id: shard-3"):
        handler.run_inference([("shard-3", b"\x01not a proto")], model)
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(
            "f.tfrecord: video vid: feature audio has 3 frames but rgb has 2")):
        handler.run_inference([("f.tfrecord", _record("vid", 2, audio_frames=3))], model)


def test_bad_configuration_names_the_flag(workspace, tmp_path):
    config = workspace["config"]
    for changes, message in (
            (dict(input_data_pattern=str(tmp_path / "none*")),
             f"--input_data_pattern='{tmp_path}/none*' matches no file"),
            (dict(saved_model_dir=str(tmp_path)),
             f"--saved_model_dir='{tmp_path}' is not a SavedModel directory"),
            (dict(segment_output_file=""),
             "--segment_saved_model_dir is set but --segment_output_file is empty"),
            (dict(top_k=0), "--top_k must be >= 1, got 0")):
        bad = beam_inference.BeamInferenceConfig(**{**vars(config), **changes})
        with pytest.raises((ValueError, FileNotFoundError), match="^" + re.escape(message)):
            beam_inference.validate(bad)
    whitelist = tmp_path / "ids.csv"
    whitelist.write_text("Class\n1\n")
    with pytest.raises(ValueError, match=re.escape(
            f"--segment_label_ids='{whitelist}': the first line must be the header 'Index', "
            "got 'Class'")):
        beam_inference.build_pipeline(beam.Pipeline(), beam_inference.BeamInferenceConfig(
            **{**vars(config), "segment_label_ids": str(whitelist)}))


def test_command_line_writes_the_same_csv(workspace, tmp_path):
    config = workspace["config"]
    output = tmp_path / "cli.csv"
    result = subprocess.run(
        [sys.executable, "-m", "yt8m.beam_inference",
         f"--input_data_pattern={config.input_data_pattern}",
         f"--saved_model_dir={config.saved_model_dir}", f"--output_file={output}",
         "--top_k=5", f"--batch_size={BATCH_SIZE}", *RUNNER_ARGS],
        capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert open(output, "rb").read() == open(config.output_file, "rb").read()


def test_bad_flag_ends_with_one_error_line(workspace, capsys):
    flag_values = flags.FlagValues()
    beam_inference.define_flags(flag_values)
    rest = flag_values(["beam_inference", "--input_data_pattern=/nonexistent/*",
                        f"--saved_model_dir={workspace['config'].saved_model_dir}",
                        "--output_file=x.csv", "--runner=DirectRunner"], known_only=True)
    assert rest == ["beam_inference", "--runner=DirectRunner"]  # Beam's options pass through
    with pytest.raises(SystemExit) as exit_info:
        beam_inference.run_from_flags(flag_values, rest[1:])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == (
        "beam_inference: error: --input_data_pattern='/nonexistent/*' matches no file\n")
