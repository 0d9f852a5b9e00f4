"""Tests of the tf.data readers (yt8m.data.readers) on small TFRecord files written here."""
import re

import numpy as np
import pytest

import yt8m  # noqa: F401
import tensorflow as tf

from yt8m import data
from yt8m.data import records

SIZES = (8, 4)          # small rgb/audio sizes keep most tests tiny
NAMES = ("rgb", "audio")
V = 10                  # classes in the small tests


def _codes(rng, frames, size):
    return rng.integers(0, 256, (frames, size), dtype=np.uint8)


def _write(path, examples):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for example in examples:
            writer.write(example if isinstance(example, bytes) else example.SerializeToString())
    return str(path)


def _video(video_id, labels, frames, rng, sizes=SIZES, id_key="id", segments=None):
    features = {name: _codes(rng, frames, size) for name, size in zip(NAMES, sizes)}
    example = records.make_sequence_example(video_id, labels, features, id_key=id_key,
                                            segments=segments)
    return example, features


def _expected_float(codes):
    # SPEC 1: x = q * 4/255 + (4/512 - 2), computed here independently of records.py.
    return codes.astype(np.float64) * (4.0 / 255.0) + (4.0 / 512.0 - 2.0)


def _all(dataset):
    return [{k: v.numpy() for k, v in batch.items()} for batch in dataset]


def _concat(batches, key):
    return np.concatenate([b[key] for b in batches])


@pytest.fixture(scope="module")
def frame_files(tmp_path_factory):
    """Two shards: videos of several lengths, one without labels, one of 305 frames."""
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("frames")
    plan = {"a": [("a0", [1, 3], 4), ("a1", [], 2), ("a2", [9], 305)],
            "b": [("b0", [0], 1), ("b1", [2, 2, 5], 7)]}
    videos, files = {}, {}
    for shard, entries in plan.items():
        examples = []
        for video_id, labels, frames in entries:
            example, features = _video(video_id, labels, frames, rng)
            examples.append(example)
            videos[video_id] = (labels, features)
        files[shard] = _write(root / f"train_{shard}.tfrecord", examples)
    return root, files, videos


def test_round_trip_real_sizes_gives_exact_dequantized_values(tmp_path):
    frames = np.zeros((3, 1024), np.uint8)
    frames[1] = 255
    frames[2] = np.arange(1024) % 256
    audio = np.full((3, 128), 7, np.uint8)
    example = records.make_sequence_example("vid", [0, 3861], {"rgb": frames, "audio": audio})
    path = _write(tmp_path / "one.tfrecord", [example])

    (batch,) = _all(data.frame_dataset(path, batch_size=4))

    assert batch["rgb"].shape == (1, 300, 1024) and batch["rgb"].dtype == np.float32
    assert batch["audio"].shape == (1, 300, 128)
    assert batch["rgb"][0, 0, 0] == -1.9921875      # q = 0
    assert batch["rgb"][0, 1, 0] == 2.0078125       # q = 255
    np.testing.assert_allclose(batch["rgb"][0, :3], _expected_float(frames), rtol=0, atol=1e-6)
    np.testing.assert_allclose(batch["audio"][0, :3], _expected_float(audio), rtol=0, atol=1e-6)
    assert not batch["rgb"][0, 3:].any() and not batch["audio"][0, 3:].any()  # zero padding
    assert batch["num_frames"].tolist() == [3] and batch["num_frames"].dtype == np.int32
    assert batch["id"].tolist() == [b"vid"]
    expected_labels = np.zeros((1, 3862), np.float32)
    expected_labels[0, [0, 3861]] = 1
    np.testing.assert_array_equal(batch["labels"], expected_labels)


def test_frame_batches_values_truncation_and_order(frame_files):
    root, _, videos = frame_files
    batches = _all(data.frame_dataset(str(root / "train_*.tfrecord"), batch_size=2,
                                      num_classes=V, feature_names=NAMES, feature_sizes=SIZES))
    # Two files read round-robin (deterministic): a0 b0 a1 b1 a2; the last batch is partial.
    assert [len(b["id"]) for b in batches] == [2, 2, 1]
    ids = [i.decode() for i in _concat(batches, "id")]
    assert ids == ["a0", "b0", "a1", "b1", "a2"]
    num_frames = _concat(batches, "num_frames")
    assert num_frames.tolist() == [4, 1, 2, 7, 300]        # 305 frames truncated to 300
    rgb, audio, labels = (_concat(batches, k) for k in ("rgb", "audio", "labels"))
    assert rgb.shape == (5, 300, 8) and audio.shape == (5, 300, 4)
    for row, video_id in enumerate(ids):
        video_labels, features = videos[video_id]
        n = num_frames[row]
        for name, got in (("rgb", rgb), ("audio", audio)):
            np.testing.assert_allclose(got[row, :n], _expected_float(features[name][:n]),
                                       rtol=0, atol=1e-6)
            assert not got[row, n:].any()
        assert labels[row].tolist() == [1.0 if c in video_labels else 0.0 for c in range(V)]
    assert not labels[ids.index("a1")].any()                # a video without labels


def test_uint8_option_keeps_codes_and_matches_dequantize_padded(frame_files):
    root, files, videos = frame_files
    kwargs = dict(batch_size=3, num_classes=V, feature_names=NAMES, feature_sizes=SIZES)
    (codes_batch,) = _all(data.frame_dataset(files["a"], dequantize=False, **kwargs))
    (float_batch,) = _all(data.frame_dataset(files["a"], **kwargs))
    assert codes_batch["rgb"].dtype == np.uint8
    np.testing.assert_array_equal(codes_batch["rgb"][0, :4], videos["a0"][1]["rgb"])
    np.testing.assert_array_equal(codes_batch["audio"][2, :300], videos["a2"][1]["audio"][:300])
    assert not codes_batch["rgb"][0, 4:].any()
    redone = data.dequantize_padded(codes_batch["rgb"], codes_batch["num_frames"]).numpy()
    np.testing.assert_array_equal(redone, float_batch["rgb"])


def test_drop_remainder_epochs_and_comma_separated_patterns(frame_files):
    _, files, _ = frame_files
    kwargs = dict(num_classes=V, feature_names=NAMES, feature_sizes=SIZES)
    pattern = f"{files['b']}, {files['a']},{files['b']}"   # b listed twice: read once
    assert data.list_files(pattern) == [files["b"], files["a"]]
    batches = _all(data.frame_dataset(pattern, batch_size=2, drop_remainder=True, **kwargs))
    assert [i.decode() for i in _concat(batches, "id")] == ["b0", "a0", "b1", "a1"]
    twice = _all(data.frame_dataset(files["b"], batch_size=10, num_epochs=2, **kwargs))
    assert [i.decode() for i in _concat(twice, "id")] == ["b0", "b1", "b0", "b1"]


def test_shuffle_with_seed_is_a_repeatable_permutation(frame_files):
    root, _, _ = frame_files
    kwargs = dict(batch_size=5, num_classes=V, feature_names=NAMES, feature_sizes=SIZES,
                  shuffle=True, seed=3, num_epochs=4)
    first = [i.decode() for i in _concat(_all(data.frame_dataset(str(root / "*"), **kwargs)),
                                         "id")]
    again = [i.decode() for i in _concat(_all(data.frame_dataset(str(root / "*"), **kwargs)),
                                         "id")]
    assert first == again
    assert sorted(first) == sorted(["a0", "a1", "a2", "b0", "b1"] * 4)
    assert first != ["a0", "b0", "a1", "b1", "a2"] * 4


def test_video_id_key_of_2017_files(tmp_path):
    rng = np.random.default_rng(1)
    example, _ = _video("old", [4], 3, rng, id_key="video_id")
    path = _write(tmp_path / "old.tfrecord", [example])
    (batch,) = _all(data.frame_dataset(path, 2, num_classes=V, feature_names=NAMES,
                                       feature_sizes=SIZES))
    assert batch["id"].tolist() == [b"old"]


def test_iterator_checkpoint_resumes_where_it_stopped(frame_files, tmp_path):
    root, _, _ = frame_files
    dataset = data.frame_dataset(str(root / "*"), batch_size=1, num_classes=V,
                                 feature_names=NAMES, feature_sizes=SIZES)
    iterator = iter(dataset)
    next(iterator)
    checkpoint = tf.train.Checkpoint(iterator=iterator)
    path = checkpoint.save(str(tmp_path / "ckpt"))
    expected = [next(iterator)["id"].numpy()[0] for _ in range(2)]
    checkpoint.restore(path)
    assert [next(iterator)["id"].numpy()[0] for _ in range(2)] == expected == [b"b0", b"a1"]


# ---------------------------------------------------------------------------------------------
# Video level


def test_video_level_round_trip(tmp_path):
    mean_rgb = np.linspace(-1, 1, 8).astype(np.float32)
    examples = [records.make_video_example("v0", [1, 2], {"mean_rgb": mean_rgb,
                                                          "mean_audio": np.ones(4)}),
                records.make_video_example("v1", [], {"mean_rgb": -mean_rgb,
                                                      "mean_audio": np.zeros(4)},
                                           id_key="video_id")]
    path = _write(tmp_path / "video.tfrecord", examples)
    (batch,) = _all(data.video_dataset(path, 5, num_classes=V, feature_sizes=SIZES))
    assert batch["id"].tolist() == [b"v0", b"v1"]
    np.testing.assert_array_equal(batch["mean_rgb"], np.stack([mean_rgb, -mean_rgb]))
    np.testing.assert_array_equal(batch["mean_audio"], [[1] * 4, [0] * 4])
    assert batch["labels"].tolist() == [[0, 1, 1] + [0] * 7, [0] * 10]


# ---------------------------------------------------------------------------------------------
# Segment level


@pytest.fixture(scope="module")
def segment_file(tmp_path_factory):
    rng = np.random.default_rng(2)
    # s0: 12 frames, rated pairs (class, start, score) listed out of order.
    s0, f0 = _video("s0", [1], 12, rng, segments=([3, 7, 3], [5, 5, 0], [1.0, 0.0, 0.0]))
    # s1: 7 frames, its rated segment at 5 runs past the end (2 frames).
    s1, f1 = _video("s1", [2, 4], 7, rng, segments=([4], [5], [1.0]))
    # s2: no ratings at all.
    s2, f2 = _video("s2", [0], 3, rng, segments=([], [], []))
    path = _write(tmp_path_factory.mktemp("segments") / "validate.tfrecord", [s0, s1, s2])
    return path, {"s0": f0, "s1": f1, "s2": f2}


def test_rated_segments_group_pairs_by_start(segment_file):
    path, features = segment_file
    batches = _all(data.segment_dataset(path, batch_size=2, num_classes=V, feature_names=NAMES,
                                        feature_sizes=SIZES))
    assert [len(b["id"]) for b in batches] == [2, 1]
    ids = _concat(batches, "id").tolist()
    starts = _concat(batches, "segment_start").tolist()
    assert list(zip(ids, starts)) == [(b"s0", 0), (b"s0", 5), (b"s1", 5)]
    assert _concat(batches, "num_frames").tolist() == [5, 5, 2]
    labels, weights = _concat(batches, "labels"), _concat(batches, "label_weights")
    expected_labels = np.zeros((3, V))
    expected_weights = np.zeros((3, V))
    expected_weights[0, 3] = 1                        # s0@0: class 3 rated 0
    expected_labels[1, 3], expected_weights[1, [3, 7]] = 1, 1   # s0@5: 3 -> 1, 7 -> 0
    expected_labels[2, 4], expected_weights[2, 4] = 1, 1        # s1@5: 4 -> 1
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_array_equal(weights, expected_weights)
    rgb = _concat(batches, "rgb")
    assert rgb.shape == (3, 5, 8)
    np.testing.assert_allclose(rgb[1], _expected_float(features["s0"]["rgb"][5:10]), atol=1e-6)
    np.testing.assert_allclose(rgb[2, :2], _expected_float(features["s1"]["rgb"][5:7]),
                               atol=1e-6)
    assert not rgb[2, 2:].any()


def test_all_segments_mode_covers_every_video(segment_file):
    path, features = segment_file
    kwargs = dict(batch_size=4, num_classes=V, mode="all", feature_names=NAMES,
                  feature_sizes=SIZES)
    batches = _all(data.segment_dataset(path, **kwargs))
    pairs = list(zip(_concat(batches, "id").tolist(), _concat(batches, "segment_start").tolist()))
    assert pairs == [(b"s0", 0), (b"s0", 5), (b"s0", 10), (b"s1", 0), (b"s1", 5), (b"s2", 0)]
    assert _concat(batches, "num_frames").tolist() == [5, 5, 2, 5, 2, 3]
    assert "label_weights" not in batches[0]
    assert _concat(batches, "labels")[3].tolist() == [0, 0, 1, 0, 1] + [0] * 5
    audio = _concat(batches, "audio")
    np.testing.assert_allclose(audio[2, :2], _expected_float(features["s0"]["audio"][10:12]),
                               atol=1e-6)
    assert not audio[2, 2:].any()
    codes = _concat(_all(data.segment_dataset(path, dequantize=False, max_frames=6, **kwargs)),
                    "rgb")
    assert codes.dtype == np.uint8 and codes.shape[0] == 5   # s0: 0, 5; s1: 0, 5; s2: 0
    np.testing.assert_array_equal(codes[1, :1], features["s0"]["rgb"][5:6])
    assert not codes[1, 1:].any()                             # frame 6+ cut by max_frames


# ---------------------------------------------------------------------------------------------
# Bad input


def _error_message(dataset):
    with pytest.raises(tf.errors.OpError) as raised:
        _all(dataset)
    return str(raised.value)


def test_pattern_matching_no_file_names_the_pattern(tmp_path):
    pattern = str(tmp_path / "missing*.tfrecord")
    expected = re.escape(f"No file matches the pattern '{pattern}'")
    with pytest.raises(FileNotFoundError, match=expected):
        data.frame_dataset(pattern, 2)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"feature_names \('rgb',\) and feature_sizes"):
        data.frame_dataset("unused", 2, feature_names=("rgb",), feature_sizes=(1024, 128))
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        data.video_dataset("unused", 0)
    with pytest.raises(ValueError, match="num_epochs must be a positive integer, got 0"):
        data.frame_dataset("unused", 2, num_epochs=0)
    with pytest.raises(ValueError, match="mode must be 'rated' or 'all', got 'some'"):
        data.segment_dataset("unused", 2, mode="some")


def test_frame_of_wrong_byte_length_names_file_and_video(tmp_path):
    rng = np.random.default_rng(3)
    good, _ = _video("fine", [1], 2, rng)
    bad = records.make_sequence_example("broken", [1], {"rgb": _codes(rng, 3, 8),
                                                        "audio": _codes(rng, 3, 5)})
    path = _write(tmp_path / "wrong_size.tfrecord", [good, bad])
    message = _error_message(data.frame_dataset(path, 4, num_classes=V, feature_names=NAMES,
                                                feature_sizes=SIZES))
    assert (f"{path}: video broken: feature audio frame 0 has 5 bytes, expected 4"
            in message)


def test_label_out_of_range_names_file_and_video(tmp_path):
    rng = np.random.default_rng(4)
    path = _write(tmp_path / "labels.tfrecord", [_video("ok", [9], 2, rng)[0],
                                                 _video("too_big", [2, 10], 2, rng)[0]])
    message = _error_message(data.frame_dataset(path, 4, num_classes=V, feature_names=NAMES,
                                                feature_sizes=SIZES))
    assert f"{path}: video too_big: label 10 is outside [0, num_classes=10)" in message
    video_path = _write(tmp_path / "video_labels.tfrecord", [records.make_video_example(
        "neg", [-1], {"mean_rgb": np.zeros(8), "mean_audio": np.zeros(4)})])
    message = _error_message(data.video_dataset(video_path, 4, num_classes=V,
                                                feature_sizes=SIZES))
    assert f"{video_path}: video neg: label -1 is outside [0, num_classes=10)" in message


def test_video_feature_of_wrong_length_names_the_file(tmp_path):
    path = _write(tmp_path / "short_mean.tfrecord", [records.make_video_example(
        "short", [1], {"mean_rgb": np.zeros(7), "mean_audio": np.zeros(4)})])
    message = _error_message(data.video_dataset(path, 4, num_classes=V, feature_sizes=SIZES))
    assert f"Name: {path}, Key: mean_rgb, Index: 0.  Number of float values != expected" in message


def test_unequal_feature_lengths_and_missing_id_are_named(tmp_path):
    rng = np.random.default_rng(5)
    uneven = records.make_sequence_example("uneven", [], {"rgb": _codes(rng, 3, 8),
                                                          "audio": _codes(rng, 2, 4)})
    path = _write(tmp_path / "uneven.tfrecord", [uneven])
    message = _error_message(data.frame_dataset(path, 4, num_classes=V, feature_names=NAMES,
                                                feature_sizes=SIZES))
    assert f"{path}: video uneven: feature audio has 2 frames but rgb has 3" in message
    no_id = records.make_sequence_example("", [], {"rgb": _codes(rng, 1, 8),
                                                   "audio": _codes(rng, 1, 4)})
    path = _write(tmp_path / "no_id.tfrecord", [no_id])
    message = _error_message(data.frame_dataset(path, 4, num_classes=V, feature_names=NAMES,
                                                feature_sizes=SIZES))
    assert f"{path}: record has no id (or video_id) value" in message


def test_bad_rated_segment_names_file_and_video(tmp_path):
    rng = np.random.default_rng(6)
    example, _ = _video("late", [], 6, rng, segments=([1], [10], [1.0]))
    path = _write(tmp_path / "rated.tfrecord", [example])
    message = _error_message(data.segment_dataset(path, 4, num_classes=V, feature_names=NAMES,
                                                  feature_sizes=SIZES))
    assert (f"{path}: video late: rated segment (class 1, start 10) is invalid: classes must be "
            "in [0, 10), starts multiples of 5 inside the video (6 frames)") in message


def _corrupt_files(tmp_path):
    """good.tfrecord (g0, g1); mixed.tfrecord: m0, garbage, m1, bad label, m2 (framing intact);
    cut.tfrecord: c0, c1, c2 with a flipped byte inside c1's data (CRC failure)."""
    rng = np.random.default_rng(7)
    video = lambda name, labels=(1,): _video(name, list(labels), 2, rng)[0]  # noqa: E731
    good = _write(tmp_path / "good.tfrecord", [video("g0"), video("g1")])
    mixed = _write(tmp_path / "mixed.tfrecord", [video("m0"), b"\x08\xff\xff not a proto",
                                                 video("m1"), video("bad", [12]), video("m2")])
    cut_records = [video(f"c{i}").SerializeToString() for i in range(3)]
    cut = _write(tmp_path / "cut.tfrecord", cut_records)
    raw = bytearray(open(cut, "rb").read())
    first_record_bytes = len(cut_records[0]) + 16
    raw[first_record_bytes + 12 + 5] ^= 0xFF   # 12 = length (8) + length CRC (4)
    open(cut, "wb").write(bytes(raw))
    return good, mixed, cut, first_record_bytes, len(raw)


def test_corrupted_records_raise_naming_the_file(tmp_path):
    good, mixed, cut, offset, size = _corrupt_files(tmp_path)
    kwargs = dict(num_classes=V, feature_names=NAMES, feature_sizes=SIZES)
    message = _error_message(data.frame_dataset(f"{good},{cut}", 8, **kwargs))
    assert (f"{cut}: corrupted or truncated record at byte {offset} of {size} "
            "(TFRecord length/CRC check failed" in message)
    truncated = _write(tmp_path / "truncated.tfrecord", [])
    open(truncated, "wb").write(open(good, "rb").read()[:-7])
    message = _error_message(data.frame_dataset(truncated, 8, **kwargs))
    assert f"{truncated}: corrupted or truncated record at byte " in message
    message = _error_message(data.frame_dataset(mixed, 8, **kwargs))
    assert f"example id: {mixed}" in message       # TensorFlow's parse error, with the file


def test_skip_corrupted_drops_and_counts(tmp_path, capfd):
    good, mixed, cut, _, _ = _corrupt_files(tmp_path)
    capfd.readouterr()
    dataset = data.frame_dataset(f"{good},{mixed},{cut}", 3, num_classes=V, feature_names=NAMES,
                                 feature_sizes=SIZES, skip_corrupted=True, num_parallel_reads=1)
    ids = [i.decode() for i in _concat(_all(dataset), "id")]
    assert ids == ["g0", "g1", "m0", "m1", "m2", "c0"]
    log = capfd.readouterr().err
    assert f"yt8m.data: skipped 1 corrupted record(s) in {mixed}; 1 skipped so far" in log
    assert f"yt8m.data: skipped 1 corrupted record(s) in {mixed}; 2 skipped so far" in log
    assert (f"bytes of {cut} (corrupted or truncated record, counted as one); 3 skipped so far"
            in log)
