"""The readers' `shard=(index, count)`: disjoint shares that cover the data once per epoch."""
import numpy as np
import pytest

import yt8m  # noqa: F401
import tensorflow as tf

from yt8m import data
from yt8m.data import records

NAMES, SIZES, V = ("rgb", "audio"), (8, 4), 10


def _write(path, video_ids, rng):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for video_id in video_ids:
            frames = int(rng.integers(1, 6))
            features = {name: rng.integers(0, 256, (frames, size), dtype=np.uint8)
                        for name, size in zip(NAMES, SIZES)}
            writer.write(records.make_sequence_example(video_id, [1], features)
                         .SerializeToString())
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("shards")
    return [_write(root / f"part{i}.tfrecord", [f"f{i}-{j}" for j in range(5 + i)], rng)
            for i in range(3)]


def _ids(dataset):
    return [video_id.decode() for batch in dataset for video_id in batch["id"].numpy()]


def _frame_ids(pattern, shard, **kwargs):
    return _ids(data.frame_dataset(pattern, 4, num_classes=V, feature_names=NAMES,
                                   feature_sizes=SIZES, shard=shard, **kwargs))


def test_by_files_each_share_reads_its_own_files(files):
    pattern = ",".join(files)
    shares = [_frame_ids(pattern, (index, 2)) for index in range(2)]
    # Files 0 and 2 for the first share (read round-robin), file 1 for the second.
    assert shares[0] == ["f0-0", "f2-0", "f0-1", "f2-1", "f0-2", "f2-2", "f0-3", "f2-3",
                         "f0-4", "f2-4", "f2-5", "f2-6"]
    assert shares[1] == [f"f1-{j}" for j in range(6)]


def test_by_records_when_there_are_fewer_files_than_shares(files):
    everything = _frame_ids(files[2], None)                 # 7 videos in one file
    shares = [_frame_ids(files[2], (index, 3)) for index in range(3)]
    assert shares == [everything[index::3] for index in range(3)]


@pytest.mark.parametrize("count", [2, 4])
def test_shuffled_shares_are_disjoint_and_cover_every_epoch(files, count):
    pattern = ",".join(files)
    every_video = sorted(_frame_ids(pattern, None))
    epochs = 2
    shares = [_frame_ids(pattern, (index, count), shuffle=True, seed=5, num_epochs=epochs)
              for index in range(count)]
    assert sorted(sum(shares, [])) == sorted(every_video * epochs)
    per_epoch = [set(_frame_ids(pattern, (index, count), shuffle=True, seed=5))
                 for index in range(count)]  # one epoch: no video is in two shares
    for a in range(count):
        for b in range(a + 1, count):
            assert not per_epoch[a] & per_epoch[b]


def test_video_and_segment_readers_take_a_shard_and_a_bad_one_is_named(files, tmp_path):
    video_path = tmp_path / "video.tfrecord"
    with tf.io.TFRecordWriter(str(video_path)) as writer:
        for index in range(5):
            writer.write(records.make_video_example(
                f"v{index}", [0], {"mean_rgb": np.zeros(8), "mean_audio": np.zeros(4)})
                .SerializeToString())
    shares = [_ids(data.video_dataset(str(video_path), 8, num_classes=V, feature_sizes=SIZES,
                                      shard=(index, 2))) for index in range(2)]
    assert shares == [["v0", "v2", "v4"], ["v1", "v3"]]
    segments = _ids(data.segment_dataset(files[0], 8, num_classes=V, mode="all",
                                         feature_names=NAMES, feature_sizes=SIZES,
                                         shard=(1, 2)))
    assert sorted(set(segments)) == ["f0-1", "f0-3"]
    for shard in ((2, 2), (-1, 2), (0, 0)):
        with pytest.raises(ValueError, match=r"shard must be \(index, count\) with "
                                             r"0 <= index < count"):
            data.frame_dataset(files[0], 4, shard=shard)
