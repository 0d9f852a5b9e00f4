"""yt8m.synthetic: layout, record contents, determinism, label statistics, segment ratings."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

from yt8m import data, synthetic
from yt8m.data import records

OPTIONS = dict(num_videos=60, num_classes=12, seed=3, num_shards=2, min_frames=40, max_frames=330,
               num_segment_videos=12)
SPLIT_SIZES = {"train": 42, "validate": 9, "test": 9}  # 60 * (0.7, 0.15, 0.15)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("synthetic"))
    summary = synthetic.generate(output_dir, **OPTIONS)
    config = synthetic.Config(**OPTIONS)
    return output_dir, summary, config, synthetic.build_world(config)


def _records(path):
    return [record.numpy() for record in tf.data.TFRecordDataset(path)]


def _parse_frame_record(serialized):
    """Independent of the project's readers: the public format parsed with tf.train protos."""
    example = tf.train.SequenceExample.FromString(serialized)
    context = example.context.feature
    frames = {name: np.stack([np.frombuffer(f.bytes_list.value[0], np.uint8)
                              for f in example.feature_lists.feature_list[name].feature])
              for name in ("rgb", "audio")}
    segments = None
    if "segment_labels" in context:
        segments = (list(context["segment_labels"].int64_list.value),
                    list(context["segment_start_times"].int64_list.value),
                    list(context["segment_scores"].float_list.value))
    return {"id": context["id"].bytes_list.value[0].decode(),
            "labels": list(context["labels"].int64_list.value),
            "rgb": frames["rgb"], "audio": frames["audio"], "segments": segments}


def _split_records(output_dir, directory, stem):
    paths = sorted(tf.io.gfile.glob(os.path.join(output_dir, directory, f"{stem}*.tfrecord")))
    return [record for path in paths for record in _records(path)]


def _index(video_id, split):
    return int(video_id[len(synthetic.SPLITS[split][1]):])


def test_layout_headers_and_summary(dataset):
    output_dir, summary, config, world = dataset
    expected = {"vocabulary.csv", "segment_label_ids.csv", "generator_config.json"}
    for directory, stems in (("frame", ("train", "validate", "test")),
                             ("video", ("train", "validate", "test")),
                             ("segment", ("validate", "test"))):
        for stem in stems:
            expected |= {f"{directory}/{stem}{shard:04d}.tfrecord" for shard in range(2)}
    written = {os.path.relpath(os.path.join(root, name), output_dir)
               for root, _, names in os.walk(output_dir) for name in names}
    assert written == expected  # nothing else, in particular no temporary files left behind
    assert sorted(summary["files"]["frame/train"]) == [
        os.path.join(output_dir, "frame", f"train{shard:04d}.tfrecord") for shard in range(2)]
    assert summary["num_videos"] == {**SPLIT_SIZES, "segment_validate": 6, "segment_test": 6}

    with open(os.path.join(output_dir, "vocabulary.csv"), newline="") as f:
        lines = f.read().splitlines()
    assert lines[0] == ("Index,TrainVideoCount,KnowledgeGraphId,Name,WikiUrl,Vertical1,Vertical2,"
                        "Vertical3,WikiDescription")
    rows = list(csv.reader(lines[1:]))
    assert [int(row[0]) for row in rows] == list(range(12))
    assert all(len(row) == 9 and row[5] for row in rows)
    # TrainVideoCount counts the labels written in the train shards.
    counts = np.zeros(12, int)
    for record in _split_records(output_dir, "frame", "train"):
        counts[_parse_frame_record(record)["labels"]] += 1
    assert [int(row[1]) for row in rows] == counts.tolist()

    with open(os.path.join(output_dir, "segment_label_ids.csv")) as f:
        whitelist = f.read().splitlines()
    assert whitelist[0] == "Index"
    whitelist = [int(i) for i in whitelist[1:]]
    assert whitelist == world.segment_classes.tolist()
    assert len(whitelist) == 6 and whitelist == sorted(set(whitelist))  # half of the 12 classes
    with open(os.path.join(output_dir, "generator_config.json")) as f:
        assert synthetic.Config(**json.load(f)) == config


def test_frame_and_video_records(dataset):
    output_dir, _, config, world = dataset
    all_ids = []
    lengths = []
    for split in ("train", "validate", "test"):
        frames = [_parse_frame_record(r) for r in _split_records(output_dir, "frame", split)]
        videos = [tf.train.Example.FromString(r).features.feature
                  for r in _split_records(output_dir, "video", split)]
        assert len(frames) == len(videos) == SPLIT_SIZES[split]
        for frame, video in zip(frames, videos):
            plan = synthetic.plan_video(world, config, split, _index(frame["id"], split))
            assert frame["id"] == plan.video_id == video["id"].bytes_list.value[0].decode()
            # Test files carry no labels, like the public ones; the others the noisy labels.
            expected_labels = [] if split == "test" else plan.labels.tolist()
            assert frame["labels"] == expected_labels
            assert list(video["labels"].int64_list.value) == expected_labels
            assert frame["rgb"].shape == (plan.num_frames, 1024)
            assert frame["audio"].shape == (plan.num_frames, 128)
            # mean_rgb is the mean of the dequantized frames: x = q * 4/255 + 4/512 - 2.
            for name, size in (("rgb", 1024), ("audio", 128)):
                mean = (frame[name].astype(np.float64) * (4 / 255) + (4 / 512 - 2)).mean(axis=0)
                stored = np.array(video[f"mean_{name}"].float_list.value)
                assert stored.shape == (size,)
                np.testing.assert_allclose(stored, mean, atol=1e-5)
            # Quantized like the real features: values well inside [-2, 2], codes 0/255 rare.
            saturated = np.mean((frame["rgb"] == 0) | (frame["rgb"] == 255))
            assert saturated < 1e-3
            lengths.append(plan.num_frames)
            all_ids.append(frame["id"])
    assert len(set(all_ids)) == len(all_ids)
    assert min(lengths) >= 40 and max(lengths) <= 330 and max(lengths) > 300


def test_project_readers_accept_the_files(dataset):
    """yt8m.data readers: shapes, truncation to 300 frames, labels and rated segments."""
    output_dir, _, config, world = dataset
    (frames,) = data.frame_dataset(os.path.join(output_dir, "frame", "train*.tfrecord"), 64,
                                   num_classes=12).as_numpy_iterator()
    assert frames["rgb"].shape == (42, 300, 1024) and frames["audio"].shape == (42, 300, 128)
    plans = [synthetic.plan_video(world, config, "train", _index(i.decode(), "train"))
             for i in frames["id"]]
    np.testing.assert_array_equal(frames["num_frames"], [min(p.num_frames, 300) for p in plans])
    for row, plan in enumerate(plans):
        assert np.flatnonzero(frames["labels"][row]).tolist() == plan.labels.tolist()
    (videos,) = data.video_dataset(os.path.join(output_dir, "video", "train*.tfrecord"), 64,
                                   num_classes=12).as_numpy_iterator()
    assert videos["id"].tolist() == frames["id"].tolist()
    np.testing.assert_array_equal(videos["labels"], frames["labels"])
    segments = list(data.segment_dataset(os.path.join(output_dir, "segment", "validate*.tfrecord"),
                                         1000, num_classes=12).as_numpy_iterator())[0]
    ratings = [_parse_frame_record(r)["segments"]
               for r in _split_records(output_dir, "segment", "validate")]
    assert segments["label_weights"].sum() == sum(len(r[0]) for r in ratings)
    assert segments["labels"].sum() == sum(sum(r[2]) for r in ratings)
    assert segments["rgb"].shape[1:] == (5, 1024)


def _shows(projections, class_id, world, threshold):
    """[T] bool: frames that show class_id's pattern, read from the features themselves."""
    present = projections[:, world.rgb_modes[class_id]] > threshold  # [T, modes, 2]
    if world.together[class_id]:
        return present.all(axis=2).any(axis=1)
    return (present.sum(axis=2) == 1).any(axis=1)


def test_classes_are_planted_in_a_minority_of_frames(dataset):
    """Every true label is visible in the frames, twins never, and background dominates."""
    output_dir, _, config, world = dataset
    threshold = config.rgb_atom_norm / 2
    checked_twins = 0
    for record in _split_records(output_dir, "frame", "train"):
        frame = _parse_frame_record(record)
        plan = synthetic.plan_video(world, config, "train", _index(frame["id"], "train"))
        projections = records.dequantize_np(frame["rgb"]) @ world.rgb_atoms.T
        class_frames = np.zeros(plan.num_frames, bool)
        for class_id in plan.true_labels:
            shown = _shows(projections, class_id, world, threshold)
            np.testing.assert_array_equal(shown, plan.frames_of(class_id))
            class_frames |= shown
            twin = world.twin[class_id]
            if twin >= 0 and twin not in plan.true_labels:
                assert not _shows(projections, twin, world, threshold).any()
                checked_twins += 1
        assert class_frames.mean() <= config.max_planted_fraction
    assert checked_twins > 10


def test_twins_share_atoms_and_frame_mean_structure(dataset):
    _, _, config, world = dataset
    twins = np.flatnonzero(world.twin >= 0)
    assert len(twins) == 2 * int(0.8 * (12 // 2))  # twin_fraction 0.8 of 6 rank pairs: 4 pairs
    for class_id in twins:
        assert abs(world.twin[class_id] - class_id) == 1  # neighbours in frequency rank
    for class_id in twins:
        twin = world.twin[class_id]
        assert world.twin[twin] == class_id
        assert world.together[class_id] != world.together[twin]
        np.testing.assert_array_equal(world.rgb_modes[class_id], world.rgb_modes[twin])
        np.testing.assert_array_equal(world.verticals[class_id], world.verticals[twin])
    owners = world.rgb_modes[world.together].reshape(-1)
    assert len(set(owners.tolist())) == len(owners)  # no two looks share an atom otherwise
    assert world.rgb_modes.shape == (12, config.modes_per_class, 2)


def test_segment_ratings_match_the_planted_frames(dataset):
    output_dir, _, config, world = dataset
    threshold = config.rgb_atom_norm / 2
    whitelist = set(world.segment_classes.tolist())
    counts = {"positive": 0, "negative": 0, "hard negative": 0}
    for record in _split_records(output_dir, "segment", "validate"):
        frame = _parse_frame_record(record)
        labels, starts, scores = frame["segments"]
        assert len(labels) == len(starts) == len(scores) > 0
        projections = records.dequantize_np(frame["rgb"]) @ world.rgb_atoms.T
        for class_id, start, score in zip(labels, starts, scores):
            assert class_id in whitelist
            assert start % 5 == 0 and start + 5 <= min(len(frame["rgb"]), 300)
            shown = _shows(projections[start:start + 5], class_id, world, threshold)
            if score == 1.0:
                assert shown.all()
                counts["positive"] += 1
            else:
                assert score == 0.0 and not shown.any()
                counts["negative"] += 1
                atoms = world.rgb_modes[class_id].ravel()
                counts["hard negative"] += bool((projections[start:start + 5, atoms]
                                                 > threshold).any())
    assert min(counts.values()) > 0, counts
    for record in _split_records(output_dir, "segment", "test"):
        frame = _parse_frame_record(record)
        assert frame["segments"] is None and frame["labels"] == []


def test_same_seed_same_bytes_any_worker_count(dataset, tmp_path):
    output_dir, _, _, _ = dataset
    synthetic.generate(str(tmp_path / "again"), num_workers=2, **OPTIONS)
    for root, _, names in os.walk(output_dir):
        for name in names:
            relative = os.path.relpath(os.path.join(root, name), output_dir)
            with open(os.path.join(root, name), "rb") as a, \
                    open(tmp_path / "again" / relative, "rb") as b:
                assert a.read() == b.read(), relative
    synthetic.generate(str(tmp_path / "other"), **{**OPTIONS, "seed": 4, "num_videos": 10,
                                                   "num_segment_videos": 0})
    with open(os.path.join(output_dir, "frame", "train0000.tfrecord"), "rb") as a, \
            open(tmp_path / "other" / "frame" / "train0000.tfrecord", "rb") as b:
        assert a.read(200) != b.read(200)


def test_label_statistics_follow_the_configuration():
    """Zipf-like class frequencies, vertical co-occurrence and label noise (plans only)."""
    config = synthetic.Config(num_classes=40, seed=5, missing_label_rate=0.2,
                              spurious_label_rate=0.15)
    world = synthetic.build_world(config)
    plans = [synthetic.plan_video(world, config, "train", i) for i in range(2000)]
    counts = np.zeros(40)
    for plan in plans:
        counts[plan.true_labels] += 1
    # Head and tail: class 0 is the most frequent and the rank-frequency slope is about -1.
    assert counts[0] == counts.max() and counts[0] > 10 * counts[-5:].mean()
    slope = np.polyfit(np.log(np.arange(1, 41)), np.log(np.sort(counts)[::-1] + 1), 1)[0]
    assert -1.5 < slope < -0.6, slope
    # Labels of one video share a vertical far more often than two random classes do.
    same, pairs = 0, 0
    for plan in plans:
        for i, a in enumerate(plan.true_labels):
            for b in plan.true_labels[i + 1:]:
                same += bool(set(world.verticals[a]) & set(world.verticals[b]) - {-1})
                pairs += 1
    random_pairs = np.mean([bool(set(world.verticals[a]) & set(world.verticals[b]) - {-1})
                            for a in range(40) for b in range(a + 1, 40)])
    assert same / pairs > 1.5 * random_pairs
    # Noise: missing = true labels not written; spurious = written labels not true.
    true_total = sum(len(p.true_labels) for p in plans)
    missing = sum(len(set(p.true_labels) - set(p.labels)) for p in plans)
    spurious = sum(len(set(p.labels) - set(p.true_labels)) for p in plans)
    assert abs(missing / true_total - 0.2) < 0.02
    assert abs(spurious / true_total - 0.15) < 0.02
    assert 2.0 < true_total / len(plans) < 3.0  # mean_labels_per_video 2.5


@pytest.mark.parametrize("options, message", [
    ({"num_videos": 0}, "--num_videos=0: must be at least 1"),
    ({"min_frames": 50, "max_frames": 20}, "--max_frames=20: must be >= --min_frames"),
    ({"validate_fraction": 0.6, "test_fraction": 0.4},
     "--test_fraction=0.4: validate_fraction + test_fraction must leave some training videos"),
    ({"num_frames": 3}, "generate(): unknown option(s) num_frames"),
])
def test_bad_options_name_the_flag(tmp_path, options, message):
    with pytest.raises(ValueError) as error:
        synthetic.generate(str(tmp_path), **options)
    assert str(error.value) == message


def test_output_dir_that_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ValueError, match=r"--output_dir=.*file' exists and is not a directory"):
        synthetic.generate(str(path), num_videos=3)


def test_refuses_to_mix_with_stale_shards(tmp_path):
    synthetic.generate(str(tmp_path), num_videos=8, num_classes=4, num_shards=2,
                       min_frames=20, max_frames=30, num_segment_videos=0)
    with pytest.raises(ValueError) as error:  # one shard per split now: train0001 would stay
        synthetic.generate(str(tmp_path), num_videos=8, num_classes=4, num_shards=1,
                           min_frames=20, max_frames=30, num_segment_videos=0)
    assert str(error.value) == (
        f"--output_dir={str(tmp_path)!r} holds shards this run would not overwrite "
        "(frame/train0001.tfrecord, video/train0001.tfrecord); use an empty directory")
    # The same settings again overwrite every shard in place.
    synthetic.generate(str(tmp_path), num_videos=8, num_classes=4, num_shards=2,
                       min_frames=20, max_frames=30, num_segment_videos=0)


def test_command_line(tmp_path):
    command = [sys.executable, "-m", "yt8m.synthetic", f"--output_dir={tmp_path}",
               "--num_videos=4", "--num_classes=5", "--num_shards=1", "--min_frames=20",
               "--max_frames=30", "--num_segment_videos=2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["num_videos"] == {"train": 2, "validate": 1, "test": 1,
                                     "segment_validate": 1, "segment_test": 1}
    assert (tmp_path / "frame" / "train0000.tfrecord").exists()
    assert "videos/s" in result.stderr  # progress is logged
