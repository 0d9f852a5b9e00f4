"""inference.py as the starter's: the segment mode (--segment_labels) against a numpy oracle written
from the starter's inference.py (tests/reference/starter_numpy.py), the whitelist as a path or an
http(s) URL, the model archive round trip (--output_model_tgz, then --input_model_tgz) and the
starter's defaults."""
import dataclasses
import functools
import http.server
import os
import socket
import tarfile
import threading

import numpy as np
import pytest
import tensorflow as tf

import yt8m  # noqa: F401
from yt8m.core.config import DataConfig, InferenceConfig, SEGMENT_LABEL_IDS_URL
from yt8m.data import records
from yt8m.inference import model_archive
from yt8m.segments import starter_inference
from yt8m.segments import submission
from yt8m.training import checkpoints
from yt8m.training import trainer

from reference import common
from reference import starter_numpy

import training_helpers as helpers

NUM_CLASSES = 6
SIZES = {"rgb": 8, "audio": 4}
DATA = DataConfig(feature_names=tuple(SIZES), feature_sizes=tuple(SIZES.values()),
                  frame_features=True, num_classes=NUM_CLASSES, max_frames=30, num_readers=1)
WHITELIST = (0, 2, 3, 5)
TOP_K = 3
TIED = ["vidA:0", "vidA:5", "vidA:10", "vidB:0"]  # the same five frames: equal scores


def _codes(rng, num_frames):
    return {name: rng.integers(0, 256, size=(num_frames, size), dtype=np.uint8)
            for name, size in SIZES.items()}


def _test_videos():
    """{video id: frame codes}, written in this order. vidA repeats one 5-frame block three times
    (then 2 more frames), vidB is that block alone; vidC and vidD end inside a segment; vidE has
    303 frames, of which the starter's reader keeps 300."""
    rng = np.random.default_rng(15)
    block = _codes(rng, 5)
    tail = _codes(rng, 2)
    video_a = {name: np.concatenate([block[name]] * 3 + [tail[name]]) for name in SIZES}
    return {"vidA": video_a, "vidB": block, "vidC": _codes(rng, 12), "vidD": _codes(rng, 3),
            "vidE": _codes(rng, 303)}


def _write(path, videos, rng):
    with tf.io.TFRecordWriter(path) as writer:
        for video_id, frames in videos.items():
            labels = rng.choice(NUM_CLASSES, size=2, replace=False)
            writer.write(records.make_sequence_example(video_id, labels, frames)
                         .SerializeToString())


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A FrameLevelLogisticModel trained a few steps on random videos, the test videos, the
    whitelist file, and the oracle's segment lines (starter format_lines) for the test videos."""
    root = tmp_path_factory.mktemp("starter_inference")
    rng = np.random.default_rng(3)
    train_file = str(root / "train.tfrecord")
    _write(train_file, {f"train{index}": _codes(rng, 10) for index in range(16)}, rng)
    train_dir = str(root / "run")
    trainer.train(helpers.train_config(
        train_dir, str(root), frame_level=True, data=DATA, train_data_pattern=train_file,
        max_steps=6, base_learning_rate=0.5))
    videos = _test_videos()
    test_file = str(root / "test.tfrecord")
    _write(test_file, videos, rng)
    whitelist_file = root / "segment_label_ids.csv"
    whitelist_file.write_text("Index\n" + "".join(f"{cls}\n" for cls in WHITELIST))
    return {"root": root, "train_dir": train_dir, "test_file": test_file,
            "whitelist_file": str(whitelist_file), "lines": _oracle_lines(train_dir, videos)}


def _oracle_lines(train_dir, videos):
    """The starter's per-segment lines: get_segments on each video as its reader pads it (300
    frames), the model's predictions, format_lines with the whitelist mask."""
    ids, inputs, counts = [], {name: [] for name in SIZES}, []
    for video_id, frames in videos.items():
        num_frames = min(len(frames["rgb"]), records.DEFAULT_MAX_FRAMES)
        for name in SIZES:
            padded = np.zeros((1, records.DEFAULT_MAX_FRAMES, SIZES[name]))
            padded[0, :num_frames] = common.dequantize(frames[name][:num_frames])
            cut = starter_numpy.get_segments(padded, [num_frames])
            inputs[name].append(cut["video_batch"])
        counts.append(cut["num_frames_batch"])
        ids += [f"{video_id}:{start}" for start in cut["video_segment_ids"][:, 1]]
    model = checkpoints.load_model(train_dir)
    features = {name: tf.constant(np.concatenate(parts), tf.float32)
                for name, parts in inputs.items()}
    features["num_frames"] = tf.constant(np.concatenate(counts), tf.int32)
    predictions = model(features, training=False)["predictions"].numpy()
    mask = starter_numpy.whitelist_mask(["Index"] + [str(cls) for cls in WHITELIST], NUM_CLASSES)
    return starter_numpy.format_lines(ids, predictions, TOP_K, mask)


def _oracle_rows(lines, segment_max_pred):
    """The starter's CSV (its post-processing, starter_numpy.segment_submission) as
    {class: [segment ids]} plus {(segment id, class): score} read back from its lines."""
    mask = starter_numpy.whitelist_mask(["Index"] + [str(cls) for cls in WHITELIST], NUM_CLASSES)
    text = starter_numpy.segment_submission(lines, mask, segment_max_pred)
    rows = _rows(text)
    scores = {}
    for line in lines:
        segment_id, pairs = line.split(",")
        values = pairs.split(" ")
        for cls, score in zip(values[0::2], values[1::2]):
            scores[segment_id, int(cls)] = float(score)
    return rows, scores


def _rows(text):
    lines = text.splitlines()
    assert lines[0] == "Class,Segments"
    return {int(cls): segments.split() for cls, segments in
            (line.split(",") for line in lines[1:])}


def _project_order(segment_ids, cls, scores):
    """The project's one tie order (yt8m.segments.top_k): score descending, then video id, then
    the start frame as a number."""
    def key(segment_id):
        video_id, start = segment_id.rsplit(":", 1)
        return (-scores[segment_id, cls], video_id, int(start))
    return sorted(segment_ids, key=key)


def _run(setup, name, **changes):
    config = InferenceConfig(
        train_dir=setup["train_dir"], input_data_pattern=setup["test_file"],
        output_file=str(setup["root"] / f"{name}.csv"), segment_labels=True, top_k=TOP_K,
        segment_label_ids_file=setup["whitelist_file"])
    config = dataclasses.replace(config, **changes)
    result = starter_inference.run_starter_segment_inference(config)
    with open(config.output_file) as handle:
        return result, handle.read()


def test_segment_csv_is_the_starters_with_its_ties_in_the_project_order(setup):
    result, text = _run(setup, "all")
    # vidA 17 frames: 4 segments (the last holds 2 frames); vidB 1; vidC 12: 3; vidD 3: 1;
    # vidE 303 frames, 300 read: 60.
    assert result.num_segments == 4 + 1 + 3 + 1 + 60
    oracle, scores = _oracle_rows(setup["lines"], 100000)
    rows = _rows(text)
    assert text.endswith("\n") and list(rows) == sorted(oracle)  # ascending class order
    assert set(rows) <= set(WHITELIST)
    for cls, segments in oracle.items():
        assert rows[cls] == _project_order(segments, cls, scores), cls
    assert "vidE:300" not in text and "vidE:295" in text
    # The tied block: same score, ranked by video id, then numerically by start (vidA:5 before
    # vidA:10, which text order would swap); it offers its top classes to three rows.
    tied_rows = [cls for cls in rows if TIED[0] in rows[cls]]
    assert len(tied_rows) == TOP_K
    for cls in tied_rows:
        position = rows[cls].index(TIED[0])
        assert rows[cls][position:position + 4] == TIED
        assert len({scores[segment, cls] for segment in TIED}) == 1


def test_segment_max_pred_cuts_ties_in_the_project_order(setup):
    oracle, scores = _oracle_rows(setup["lines"], 100000)
    cls = min(c for c in oracle if TIED[0] in oracle[c])
    ahead = sum(scores[segment, cls] > scores[TIED[0], cls] for segment in oracle[cls])
    keep = ahead + 2  # the cut falls inside the tied block
    _, text = _run(setup, "cut", segment_max_pred=keep)
    rows = _rows(text)
    for c, segments in oracle.items():
        assert rows[c] == _project_order(segments, c, scores)[:keep], c
    assert rows[cls][ahead:] == ["vidA:0", "vidA:5"]
    # The starter's heap keeps the largest (score, id) tuples: the larger id texts.
    starter_rows, _ = _oracle_rows(setup["lines"], keep)
    assert set(starter_rows[cls][ahead:]) == {"vidA:5", "vidB:0"}


# A hand-built case: two batches of segments with fixed predictions (4 classes, class 2 not
# whitelisted, 2 classes a segment). Scores equal to six digits tie, as in the starter's
# post-processing, which reads the "%g" text back.
HAND_BATCHES = [
    (["v1:0", "v1:5", "v1:10"], [[0.9, 0.5, 0.95, 0.1],
                                 [0.7, 0.2, 0.99, 0.4],
                                 [0.7000001, 0.1, 0.0, 0.4]]),
    (["v10:0", "v2:0"], [[0.6999999, 0.5, 0.0, 0.05],
                         [0.1, 0.5000001, 0.0, 0.4]]),
]
HAND_WHITELIST = (0, 1, 3)
HAND_EXPECTED = {  # the hand-ranked CSV rows: score, then video id text ("v10" < "v2"), start
    100000: ["0,v1:0 v1:5 v1:10 v10:0", "1,v1:0 v10:0 v2:0", "3,v1:5 v1:10 v2:0"],
    2: ["0,v1:0 v1:5", "1,v1:0 v10:0", "3,v1:5 v1:10"],
}


def _hand_batches():
    for segment_ids, predictions in HAND_BATCHES:
        video_ids = [segment_id.split(":")[0].encode() for segment_id in segment_ids]
        starts = [int(segment_id.split(":")[1]) for segment_id in segment_ids]
        yield {"id": tf.constant(video_ids), "segment_start": tf.constant(starts),
               "predictions": np.asarray(predictions, np.float32)}


@pytest.mark.parametrize("segment_max_pred", sorted(HAND_EXPECTED))
def test_hand_built_segments_with_ties(segment_max_pred):
    mask = starter_inference.whitelist_mask(HAND_WHITELIST, 4)
    ranked, num_segments = starter_inference.rank_segments(
        _hand_batches(), lambda batch: batch["predictions"], mask, 2, segment_max_pred)
    assert num_segments == 5
    rows = submission.ranked_rows(ranked, ranked.classes(), bytes.decode)
    assert [submission.format_segment_row(cls, segments) for cls, segments in rows] == \
        HAND_EXPECTED[segment_max_pred]
    # The starter's post-processing keeps the same segments when nothing is cut.
    lines = [line for segment_ids, predictions in HAND_BATCHES
             for line in starter_numpy.format_lines(segment_ids, predictions, 2, mask)]
    starter = _rows(starter_numpy.segment_submission(lines, mask, 100000))
    assert {cls: set(ids) for cls, ids in starter.items()} == {
        int(row.split(",")[0]): set(row.split(",")[1].split()) for row in HAND_EXPECTED[100000]}


def test_scores_are_ranked_at_the_starters_six_digits():
    np.testing.assert_array_equal(
        starter_inference.starter_scores(np.float32([0.7000001, 0.12345649, 1e-7, 0.0])),
        [0.7, 0.123456, 1e-7, 0.0])


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def whitelist_server(setup):
    handler = functools.partial(_Quiet, directory=os.path.dirname(setup["whitelist_file"]))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_whitelist_may_be_an_http_url(setup, whitelist_server):
    _, from_path = _run(setup, "path")
    name = os.path.basename(setup["whitelist_file"])
    _, from_url = _run(setup, "url", segment_label_ids_file=f"{whitelist_server}/{name}")
    assert from_url == from_path
    missing = f"{whitelist_server}/nothing.csv"
    with pytest.raises(submission.WhitelistDownloadError,
                       match=rf"^--segment_label_ids_file='{missing}': cannot fetch it \(HTTP "
                             r"Error 404"):
        _run(setup, "missing", segment_label_ids_file=missing)
    unreachable = f"http://127.0.0.1:{_closed_port()}/segment_label_ids.csv"
    with pytest.raises(submission.WhitelistDownloadError,
                       match=rf"^--segment_label_ids_file='{unreachable}': cannot fetch it "):
        _run(setup, "unreachable", segment_label_ids_file=unreachable)
    assert not os.path.exists(setup["root"] / "unreachable.csv")


def test_an_empty_whitelist_ranks_every_class(setup):
    _, text = _run(setup, "every_class", segment_label_ids_file="")
    rows = _rows(text)
    assert set(rows) - set(WHITELIST)  # classes outside the whitelist get rows too
    assert all(len(segments) > 0 for segments in rows.values())


def test_segment_mode_needs_a_frame_level_model(setup, tmp_path):
    data_dir = helpers.make_small_dataset(tmp_path / "data")
    video_dir = str(tmp_path / "video")
    trainer.train(helpers.train_config(video_dir, data_dir, max_steps=1))
    with pytest.raises(ValueError, match="needs a frame-level model"):
        _run(setup, "video_model", train_dir=video_dir)


def test_inference_defaults_are_the_starters():
    config = InferenceConfig()
    assert (config.batch_size, config.num_readers, config.top_k) == (512, 1, 20)
    assert (config.train_dir, config.input_model_tgz, config.output_model_tgz) == ("", "", "")
    assert config.untar_model_dir == "/tmp/yt8m-model"
    assert (config.segment_labels, config.segment_max_pred) == (False, 100000)
    assert config.segment_label_ids_file == SEGMENT_LABEL_IDS_URL == (
        "https://raw.githubusercontent.com/google/youtube-8m/master/segment_label_ids.csv")


# ------------------------------------------------------------------------------ model archive


def _inference_py(*args):
    process = helpers.start(helpers.python_command("inference.py", *args))
    output = process.communicate(timeout=300)[0]
    return process.returncode, output


def test_the_model_archive_round_trips(setup, tmp_path):
    archive = str(tmp_path / "out" / "model.tgz")
    common_args = ["--segment_labels", f"--input_data_pattern={setup['test_file']}",
                   f"--segment_label_ids_file={setup['whitelist_file']}", f"--top_k={TOP_K}"]
    code, output = _inference_py(f"--train_dir={setup['train_dir']}",
                                 f"--output_model_tgz={archive}",
                                 f"--output_file={tmp_path / 'first.csv'}", *common_args)
    assert code == 0, output
    assert "inference.py: wrote 4 classes (69 segments scored)" in output
    assert os.listdir(tmp_path / "out") == ["model.tgz"]  # no temporary file left
    with tarfile.open(archive) as tar:
        names = sorted(tar.getnames())
        state = tar.extractfile("checkpoint").read().decode()
    assert names == ["checkpoint", "ckpt-6.data-00000-of-00001", "ckpt-6.index",
                     "model_flags.json"]
    assert state == ('model_checkpoint_path: "ckpt-6"\n'
                     'all_model_checkpoint_paths: "ckpt-6"\n')
    untar_dir = str(tmp_path / "untarred")
    code, output = _inference_py(f"--input_model_tgz={archive}",
                                 f"--untar_model_dir={untar_dir}",
                                 f"--output_file={tmp_path / 'second.csv'}", *common_args)
    assert code == 0, output
    assert (tmp_path / "second.csv").read_text() == (tmp_path / "first.csv").read_text()
    assert sorted(os.listdir(untar_dir)) == names
    # The starter refuses a --train_dir beside an archive; so does this one.
    code, output = _inference_py(f"--input_model_tgz={archive}",
                                 f"--train_dir={setup['train_dir']}",
                                 f"--output_file={tmp_path / 'third.csv'}", *common_args)
    assert code == 1 and helpers.last_error_line(output) == (
        "inference.py: error: --train_dir and --input_model_tgz exclude each other: the model "
        "comes from the archive")


def test_a_damaged_or_foreign_archive_is_refused(setup, tmp_path):
    untar_dir = str(tmp_path / "untarred")
    broken = tmp_path / "broken.tgz"
    broken.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ValueError, match=rf"^--input_model_tgz='{broken}' is not a readable "):
        model_archive.extract_model_archive(str(broken), untar_dir)
    starter = tmp_path / "starter.tgz"  # the starter's layout: TF1 inference_model.* files
    with tarfile.open(starter, "w:gz") as tar:
        for name in ("inference_model.meta", "inference_model.index"):
            path = tmp_path / name
            path.write_bytes(b"x")
            tar.add(path, arcname=name)
    with pytest.raises(ValueError, match="the starter's archives hold TF1 meta graphs"):
        model_archive.extract_model_archive(str(starter), untar_dir)
    no_checkpoint = tmp_path / "no_checkpoint.tgz"
    with tarfile.open(no_checkpoint, "w:gz") as tar:
        tar.add(os.path.join(setup["train_dir"], "model_flags.json"), arcname="model_flags.json")
    with pytest.raises(ValueError, match=r"must hold model_flags.json, checkpoint and one "
                                         r"ckpt-<step> checkpoint; it holds model_flags.json$"):
        model_archive.extract_model_archive(str(no_checkpoint), untar_dir)
    assert not os.path.exists(untar_dir)
    # An untar directory holding anything else is never replaced.
    archive = str(tmp_path / "model.tgz")
    model_archive.write_model_archive(archive, setup["train_dir"],
                                      checkpoints.latest_checkpoint(setup["train_dir"]))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"holds notes.txt, which an untarred model does not"):
        model_archive.extract_model_archive(archive, str(busy))
    assert os.listdir(busy) == ["notes.txt"]
    # An earlier untarred model is replaced.
    assert model_archive.extract_model_archive(archive, untar_dir) == untar_dir
    assert model_archive.extract_model_archive(archive, untar_dir) == untar_dir
    assert checkpoints.latest_checkpoint(untar_dir) == os.path.join(untar_dir, "ckpt-6")
