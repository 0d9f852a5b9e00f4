"""Length bucketing (yt8m.data.bucketing): same videos and values, less padding, same predictions."""
import dataclasses

import numpy as np
import pytest

import yt8m  # noqa: F401
import tensorflow as tf

import frame_level_models
from yt8m import evaluation
from yt8m.core.config import EvalConfig, InferenceConfig
from yt8m.core.option_groups import FRAME_BUCKET_ITEMS
from yt8m.data import bucketing, readers
from yt8m.inference import video_inference
from yt8m.training import inputs, trainer

import training_helpers as helpers

# The helper data set has 20-30 frames per video, cut to MAX_FRAMES = 24: three buckets.
BUCKETS = (21, 23)
BOUNDS = (21, 23, helpers.MAX_FRAMES)
NUM_CLASSES = helpers.NUM_CLASSES


def _frames(small_dataset, batch_size, **options):
    return list(readers.frame_dataset(helpers.pattern(small_dataset, "frame", "train"), batch_size,
                                      num_classes=NUM_CLASSES, max_frames=helpers.MAX_FRAMES,
                                      **options))


def _by_id(batches):
    videos = {}
    for batch in batches:
        for row, video_id in enumerate(batch["id"].numpy()):
            assert video_id not in videos, f"{video_id} yielded twice"
            videos[video_id] = {key: value[row].numpy() for key, value in batch.items()}
    return videos


def test_parse_boundaries():
    assert bucketing.parse_boundaries([], 300) == ()
    assert bucketing.parse_boundaries(["60", "120"], 300) == (60, 120, 300)
    assert bucketing.parse_boundaries("100,200,300", 300) == (100, 200, 300)
    assert bucketing.parse_boundaries((50,), 50) == (50,)


@pytest.mark.parametrize("values, message", [
    (["60", "x"], "--frame_buckets='60,x': 'x' is not an integer number of frames"),
    (["0"], "--frame_buckets: bucket bounds must be positive, got 0"),
    (["400"], "--frame_buckets: bucket bound 400 is above --max_frames=300"),
    (["120", "60"], "--frame_buckets='120,60': bounds must be strictly increasing"),
    (["60", "60"], "--frame_buckets='60,60': bounds must be strictly increasing"),
])
def test_parse_boundaries_errors_name_the_flag(values, message):
    with pytest.raises(ValueError) as error:
        bucketing.parse_boundaries(values, 300)
    assert str(error.value).startswith(message)


def test_even_boundaries():
    assert bucketing.even_boundaries(300, 5) == (60, 120, 180, 240, 300)
    assert bucketing.even_boundaries(10, 3) == (3, 7, 10)
    assert bucketing.even_boundaries(300, 1) == (300,)


def test_flag_values_become_integers():
    assert FRAME_BUCKET_ITEMS(["60", "120"], "--frame_buckets") == (60, 120)
    with pytest.raises(ValueError, match="--frame_buckets='60,sixty': 'sixty' is not an integer"):
        FRAME_BUCKET_ITEMS(["60", "sixty"], "--frame_buckets")


def test_every_video_once_in_its_bucket_with_the_padded_values(small_dataset):
    padded = _by_id(_frames(small_dataset, 5))
    batches = _frames(small_dataset, 5, frame_buckets=BUCKETS)
    bucketed = _by_id(batches)
    assert sorted(bucketed) == sorted(padded)  # 42 training videos, each exactly once
    lengths_seen = set()
    for batch in batches:
        num_frames = batch["num_frames"].numpy()
        bound = batch["rgb"].shape[1]
        assert batch["audio"].shape[1] == bound and bound in BOUNDS
        lower = BOUNDS[BOUNDS.index(bound) - 1] if bound != BOUNDS[0] else 0
        assert np.all((num_frames > lower) & (num_frames <= bound)), (num_frames, bound)
        lengths_seen.add(bound)
    assert lengths_seen == set(BOUNDS)  # the data reach every bucket
    for video_id, video in bucketed.items():
        reference = padded[video_id]
        bound = video["rgb"].shape[0]
        assert video["num_frames"] == reference["num_frames"] <= bound
        for name in ("rgb", "audio"):
            np.testing.assert_array_equal(video[name], reference[name][:bound])
            assert not reference[name][bound:].any()  # only padding was cut
        np.testing.assert_array_equal(video["labels"], reference["labels"])
    # Less padding: frames fed to the model with and without bucketing.
    fed = sum(int(np.prod(batch["rgb"].shape[:2])) for batch in batches)
    assert fed < len(padded) * helpers.MAX_FRAMES


def test_drop_remainder_keeps_full_batches_only_and_uint8_codes_work(small_dataset):
    batches = _frames(small_dataset, 4, frame_buckets=BUCKETS, drop_remainder=True,
                      dequantize=False)
    assert batches and all(batch["rgb"].shape[0] == 4 for batch in batches)
    assert all(batch["rgb"].dtype == tf.uint8 for batch in batches)
    # Each bucket drops at most one partial batch.
    assert 42 - 4 * len(batches) < 4 * len(BOUNDS)


@pytest.mark.parametrize("name, hparams", [
    ("NeXtVLADModel", dict(nextvlad_cluster_size=8, groups=2, nextvlad_hidden_size=32)),
    ("LstmModel", dict(lstm_cells=16, lstm_layers=2)),
    # Deterministic evaluation: the starter's DbofModel samples frames at evaluation too.
    ("DbofModel", dict(dbof_cluster_size=32, dbof_hidden_size=16, deterministic_eval=True)),
])
def test_bucketed_batches_give_the_same_predictions(small_dataset, name, hparams):
    tf.keras.utils.set_random_seed(1)
    model = frame_level_models.build(name, NUM_CLASSES, **hparams)
    predict = tf.function(lambda batch: model(
        {key: batch[key] for key in ("rgb", "audio", "num_frames")}, training=False)[
            "predictions"], reduce_retracing=True)

    def predictions(batches):
        return {video_id: row for batch in batches
                for video_id, row in zip(batch["id"].numpy(), predict(batch).numpy())}

    padded = predictions(_frames(small_dataset, 5))
    bucketed = predictions(_frames(small_dataset, 5, frame_buckets=BUCKETS))
    assert sorted(padded) == sorted(bucketed)
    for video_id, row in padded.items():
        # Float32 rounding only (a different batch size alone changes the last bit too).
        np.testing.assert_allclose(bucketed[video_id], row, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(np.argsort(-bucketed[video_id])[:3],
                                      np.argsort(-row)[:3])


def test_a_saved_iterator_resumes_at_the_same_batch(small_dataset, tmp_path):
    def dataset():
        return readers.frame_dataset(
            helpers.pattern(small_dataset, "frame", "train"), 4, num_classes=NUM_CLASSES,
            max_frames=helpers.MAX_FRAMES, shuffle=True, seed=5, num_epochs=2,
            frame_buckets=BUCKETS, drop_remainder=True)

    uninterrupted = [batch["id"].numpy().tolist() for batch in dataset()]
    iterator = iter(dataset())
    for _ in range(5):
        next(iterator)
    path = tf.train.Checkpoint(iterator=iterator).save(str(tmp_path / "ckpt"))
    restored = iter(dataset())
    tf.train.Checkpoint(iterator=restored).restore(path)
    assert [batch["id"].numpy().tolist() for batch in restored] == uninterrupted[5:]


def test_train_eval_and_inference_with_buckets(small_dataset, tmp_path):
    train_dir = str(tmp_path / "run")
    config = helpers.train_config(
        train_dir, small_dataset, frame_level=True, max_steps=8, export_model_steps=4,
        data=dataclasses.replace(helpers.FRAME_DATA, frame_buckets=BUCKETS))
    first = trainer.Trainer(dataclasses.replace(config, max_steps=4)).run()
    assert first.step == 4
    # Resuming restores the bucketed input pipeline's position from the checkpoint.
    assert trainer.Trainer(config).run().step == 8

    validate = helpers.pattern(small_dataset, "frame", "validate")
    eval_config = EvalConfig(train_dir=train_dir, eval_data_pattern=validate, batch_size=4,
                             num_readers=2, run_once=True)
    plain = evaluation.run_evaluation(eval_config)[0]
    bucketed = evaluation.run_evaluation(dataclasses.replace(eval_config,
                                                             frame_buckets=BUCKETS))[0]
    assert plain["num_examples"] == bucketed["num_examples"] == 9
    for metric in ("gap", "map", "hit_at_one", "perr", "loss"):
        assert bucketed[metric] == pytest.approx(plain[metric], abs=1e-6), metric

    rows = {}
    for label, buckets in (("plain", ()), ("bucketed", BUCKETS)):
        output_file = str(tmp_path / f"{label}.csv")
        video_inference.run_inference(InferenceConfig(
            train_dir=train_dir, input_data_pattern=helpers.pattern(small_dataset, "frame", "test"),
            output_file=output_file, top_k=3, batch_size=4, num_readers=2,
            frame_buckets=buckets))
        with open(output_file) as handle:
            lines = handle.read().splitlines()
        assert lines[0] == "VideoId,LabelConfidencePairs"
        rows[label] = {line.split(",")[0]: line.split(",")[1].split(" ") for line in lines[1:]}
    assert sorted(rows["plain"]) == sorted(rows["bucketed"]) and len(rows["plain"]) == 9
    for video_id, values in rows["plain"].items():
        other = rows["bucketed"][video_id]
        assert values[::2] == other[::2]  # same classes in the same order
        np.testing.assert_allclose([float(v) for v in other[1::2]],
                                   [float(v) for v in values[1::2]], rtol=1e-5)


def test_buckets_are_refused_where_there_is_no_frame_axis(small_dataset):
    files = readers.list_files(helpers.pattern(small_dataset, "frame", "train"))
    for data in (dataclasses.replace(helpers.FRAME_DATA, frame_buckets=(22,), segment_labels=True),
                 dataclasses.replace(helpers.VIDEO_DATA, frame_buckets=(22,))):
        with pytest.raises(ValueError, match="--frame_buckets applies to frame-level videos"):
            inputs.evaluation_dataset(files, data, 4)
    too_long = dataclasses.replace(helpers.FRAME_DATA, frame_buckets=(30,))
    with pytest.raises(ValueError, match="--frame_buckets: bucket bound 30 is above "
                                         "--max_frames=24"):
        inputs.evaluation_dataset(files, too_long, 4)
