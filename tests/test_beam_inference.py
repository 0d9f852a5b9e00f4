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

pytest.importorskip("apache_beam")

import frame_level_models  # noqa: E402
from yt8m import beam_inference  # noqa: E402
from yt8m.data import records  # noqa: E402
from yt8m.export import exporter  # noqa: E402
from yt8m.export.saved_model_predictor import load_saved_model_predictor  # noqa: E402
from yt8m.inference import submission  # noqa: E402
from yt8m.training import checkpoints  # noqa: E402
from yt8m.core import files  # noqa: E402
from yt8m.training import inputs  # noqa: E402

NUM_CLASSES = 12
MAX_FRAMES = 12
BATCH_SIZE = 3
WHITELIST = (0, 2, 3, 5, 7, 8, 11)
NEVER_CLASS = 11  # the video model never ranks it: its row in the segment CSV stays empty
RUNNER_ARGS = ["--runner=DirectRunner", "--direct_num_workers=1"]


class LogisticReference:
    """A FrameLevelLogisticModel train dir with random weights, exported by export_ensemble, and
    the same arithmetic in float64 numpy (mean of the valid frames -> x W + b -> sigmoid)."""

    def __init__(self, root, name, max_frames, seed, never_class=None):
        rng = np.random.default_rng(seed)
        self.kernel = rng.normal(0.0, 0.3, (1024 + 128, NUM_CLASSES)).astype(np.float32)
        self.bias = rng.normal(0.0, 0.5, NUM_CLASSES).astype(np.float32)
        if never_class is not None:
            self.bias[never_class] = -30.0
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
    video_model = LogisticReference(root, "video_model", MAX_FRAMES, 1, NEVER_CLASS)
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
                segment_model=segment_model)


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
    reference = _csv_lines(reference_file)
    assert sorted(lines[1:]) == sorted(reference[1:])


def test_video_rows_match_numpy_arithmetic(workspace):
    config, model = workspace["config"], workspace["video_model"]
    rows = {line.split(",")[0]: line.split(",")[1].split() for line in
            _csv_lines(config.output_file)[1:]}
    for video_id, codes in workspace["videos"]:
        truncated = {name: value[:MAX_FRAMES] for name, value in _dequantized(codes).items()}
        expected = model.numpy_predictions(truncated)
        top = np.argsort(-expected)[:config.top_k]
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
        candidates = [c for c in np.argsort(-video_scores)[:config.segment_candidates]
                      if c in WHITELIST]
        for start in range(0, len(features["rgb"]) - 4, 5):
            segment_scores = workspace["segment_model"].numpy_predictions(
                {name: value[start:start + 5] for name, value in features.items()})
            for c in candidates:
                score = video_scores[c] ** 0.05 * segment_scores[c] ** 0.95
                per_class[c].append((-score, f"{video_id}:{start}"))
    return {c: [segment for _, segment in sorted(scored)[:config.segment_top_k]]
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
    assert rows == expected


def test_segment_candidates_cover_full_segments_only():
    frames = beam_inference.VideoFrames({"rgb": np.zeros((12, 4), np.uint8),
                                         "audio": np.zeros((12, 2), np.uint8)})
    scores = np.array([0.1, 0.9, 0.5, 0.9, 0.2], np.float32)
    keys = [key for key, _ in beam_inference.segment_candidates("v", frames, scores, 3, {1, 2})]
    # 12 frames hold two full 5-frame segments; top 3 = classes 1, 3 (tie: lower first), 2.
    assert [key.start for key in keys] == [0, 5]
    assert keys[0].classes == (1, 2)
    np.testing.assert_allclose(keys[0].video_scores, [0.9, 0.5])


def test_segment_rank_orders_by_score_then_segment_id():
    scored = [(0.5, "b:0"), (0.9, "a:5"), (0.5, "a:10"), (0.7, "c:0")]
    assert beam_inference.segment_row(4, scored) == "4,a:5 c:0 a:10 b:0"


def test_parse_video_errors_name_the_file():
    with pytest.raises(ValueError, match=r"^shard-3: a record is not a tf.train.SequenceExample"):
        beam_inference.parse_video("shard-3", b"\x01not a proto")
    example = records.make_sequence_example(
        "vid", [0], {"rgb": np.zeros((2, 1024), np.uint8), "audio": np.zeros((3, 128), np.uint8)})
    with pytest.raises(ValueError, match=r"^f.tfrecord: video 'vid' has different frame counts "
                                         r"per feature: \{'rgb': 2, 'audio': 3\}$"):
        beam_inference.parse_video("f.tfrecord", example.SerializeToString())


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
        beam_inference.read_segment_whitelist(str(whitelist))


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
    assert sorted(_csv_lines(output)) == sorted(_csv_lines(config.output_file))


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
