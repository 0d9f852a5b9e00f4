"""Segment-level localization (yt8m.segments): rated-record gathering, the CSV format, MAP@K,
the fusion formula, bounded per-class top-K, finetune set-up, and a tiny end to end run
(video model -> finetune (train.py) -> segment CSV (checkpoint and SavedModel) -> MAP@K)."""
import dataclasses
import os
import re

import numpy as np
import pytest

import yt8m  # noqa: F401
import tensorflow as tf

from yt8m import metrics
from yt8m.core import model_flags as model_flags_lib
from yt8m.data import readers
from yt8m.data import records
from yt8m.segments import evaluate
from yt8m.segments import finetune
from yt8m.segments import fusion
from yt8m.segments import inference
from yt8m.segments import ratings as ratings_lib
from yt8m.segments import submission
from yt8m.segments import top_k
from yt8m.training import checkpoints
from yt8m.training.model_builder import build_model


import training_helpers as helpers

ROW = re.compile(r"^\d+,(\S+:\d+( \S+:\d+)*)?$")


# ------------------------------------------------------------------------ a hand-made rated file

def _codes(rng, frames, size):
    return rng.integers(0, 256, size=(frames, size), dtype=np.uint8)


@pytest.fixture(scope="module")
def rated_file(tmp_path_factory):
    """Two rated videos: a (12 frames) and b (15 frames); returns (path, frames by video)."""
    rng = np.random.default_rng(0)
    path = str(tmp_path_factory.mktemp("rated") / "validate0000.tfrecord")
    frames = {"a": {"rgb": _codes(rng, 12, 1024), "audio": _codes(rng, 12, 128)},
              "b": {"rgb": _codes(rng, 15, 1024), "audio": _codes(rng, 15, 128)}}
    rated = {"a": ([1, 1, 2], [0, 5, 5], [1.0, 0.0, 1.0]),
             "b": ([1, 1, 2], [0, 10, 0], [1.0, 0.0, 0.0])}
    with tf.io.TFRecordWriter(path) as writer:
        for video_id in ("a", "b"):
            writer.write(records.make_sequence_example(
                video_id, [1], frames[video_id], segments=rated[video_id]).SerializeToString())
    return path, frames


def test_rated_segments_are_gathered_with_label_weights(rated_file):
    path, frames = rated_file
    batch = next(iter(readers.segment_dataset(path, 10, num_classes=4, mode="rated")))
    got = [(i.decode(), int(s)) for i, s in zip(batch["id"].numpy(),
                                                 batch["segment_start"].numpy())]
    assert got == [("a", 0), ("a", 5), ("b", 0), ("b", 10)]
    # Ratings at the rated classes; weight 1 exactly there (class 2 of a:5 positive, b:0 negative).
    np.testing.assert_array_equal(batch["labels"].numpy(), [[0, 1, 0, 0], [0, 0, 1, 0],
                                                            [0, 1, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(batch["label_weights"].numpy(), [[0, 1, 0, 0], [0, 1, 1, 0],
                                                                   [0, 1, 1, 0], [0, 1, 0, 0]])
    np.testing.assert_array_equal(batch["num_frames"].numpy(), [5, 5, 5, 5])
    for row, (video_id, start) in enumerate(got):
        expected = frames[video_id]["rgb"][start:start + 5] * (4.0 / 255) + (4.0 / 512 - 2.0)
        np.testing.assert_allclose(batch["rgb"].numpy()[row], expected, rtol=0, atol=1e-6)


def test_ratings_reader_reads_every_rated_pair(rated_file):
    path, _ = rated_file
    assert ratings_lib.read_segment_ratings(path) == {
        ("a", 0, 1): 1, ("a", 5, 1): 0, ("a", 5, 2): 1,
        ("b", 0, 1): 1, ("b", 10, 1): 0, ("b", 0, 2): 0}


def test_ratings_reader_refuses_files_without_ratings(tmp_path):
    path = str(tmp_path / "test0000.tfrecord")
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(records.make_sequence_example(
            "t", [], {"rgb": np.zeros((5, 1024), np.uint8)}).SerializeToString())
    with pytest.raises(ValueError, match=re.escape(
            f"--eval_data_pattern={path!r}: the files hold no segment ratings (segment_labels)")):
        ratings_lib.read_segment_ratings(path)


# ------------------------------------------------------------------------------------ CSV format

def test_csv_is_written_exactly_and_read_back(tmp_path):
    path = str(tmp_path / "segments.csv")
    rows = [(3, [("vidA", 0), ("vidB", 15)]), (7, []), (12, [("x:y", 5)])]
    assert submission.write_segment_submission(path, rows) == 3
    text = open(path).read()
    assert text == "Class,Segments\n3,vidA:0 vidB:15\n7,\n12,x:y:5\n"
    assert all(ROW.match(line) for line in text.splitlines()[1:])
    assert not [name for name in os.listdir(tmp_path) if name != "segments.csv"]  # no temp left
    # Every segment of a line counts (the last one too); ids are text, a ':' in an id is kept.
    assert submission.read_segment_submission(path) == {
        3: [("vidA", 0), ("vidB", 15)], 7: [], 12: [("x:y", 5)]}


@pytest.mark.parametrize("text, message", [
    ("3,a:0\n", "line 1: expected the header 'Class,Segments', got '3,a:0'"),
    ("Class,Segments\n3 a:0\n", "line 2: expected <class>,<segments>, got '3 a:0'"),
    ("Class,Segments\nx,a:0\n", "line 2: class 'x' is not an integer"),
    ("Class,Segments\n3,a:0\n3,b:0\n", "line 3: class 3 is listed twice"),
    ("Class,Segments\n3,a:0 b\n", "line 2: 'b' is not <video id>:<start>"),
    ("Class,Segments\n3,a:7\n", "line 2: segment 'a:7' must start at a multiple of 5 >= 0"),
    ("", "is empty: expected the header 'Class,Segments'"),
])
def test_bad_csv_errors_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        submission.read_segment_submission(str(path))
    assert str(error.value).startswith(str(path))


def test_rows_are_the_whitelist_else_the_ranked_classes():
    assert submission.row_classes({7, 3}) == (3, 7)
    assert submission.row_classes({7, 3}, (2, 3, 9)) == (2, 3, 9)  # 2 and 9: empty rows


def test_whitelist_file(tmp_path):
    path = tmp_path / "segment_label_ids.csv"
    path.write_text("Index\n5\n2\n\n9\n")
    assert submission.read_segment_whitelist(str(path)) == (2, 5, 9)
    with pytest.raises(ValueError, match=re.escape(
            f"--segment_label_ids={str(path)!r} line 5: class 9 is outside [0, "
            "num_classes=8)")):
        submission.read_segment_whitelist(str(path), num_classes=8)
    path.write_text("5\n2\n")
    with pytest.raises(ValueError, match="the first line must be the header 'Index', got '5'"):
        submission.read_segment_whitelist(str(path))


# ----------------------------------------------------------------------------------------- MAP@K

def test_map_at_k_of_a_csv_against_hand_computed_values(rated_file, tmp_path):
    path, _ = rated_file
    csv_path = str(tmp_path / "sub.csv")
    whitelist = tmp_path / "ids.csv"
    whitelist.write_text("Index\n1\n2\n3\n")
    submission.write_segment_submission(csv_path, [
        (1, [("b", 0), ("a", 5), ("x", 0), ("a", 0)]),   # rated: 1, 0, (unrated), 1
        (2, [("a", 0), ("b", 0), ("a", 5)]),             # rated: (unrated), 0, 1
    ])
    # Class 1: 2 positives, ranks 1 and 3 relevant: (1/1 + 2/3) / 2 = 5/6. Class 2: 1 positive at
    # rank 2: (1/2) / 1. Class 3 has no rating: not counted. MAP = (5/6 + 1/2) / 2 = 2/3.
    result = evaluate.evaluate_submission(csv_path, path, str(whitelist))
    assert result.class_aps == pytest.approx({1: 5 / 6, 2: 1 / 2})
    assert result.map_at_k == pytest.approx(2 / 3)
    assert (result.num_classes, result.num_rated_pairs) == (2, 6)
    # K=2 cuts each list to its first two entries: class 1 [1, 0] -> 1 / min(2, 2); class 2 [0].
    assert evaluate.evaluate_submission(csv_path, path, str(whitelist), k=2).map_at_k == \
        pytest.approx((1 / 2 + 0) / 2)


def test_the_starters_top_n_cap_and_label_cache(rated_file, tmp_path):
    """segment_eval_inference.py's --top_n (each class's first N segments of the CSV) and
    --label_cache (its "<video>:<start>,<class>,<score>" lines: written once, then read instead
    of the records)."""
    path, _ = rated_file
    csv_path = str(tmp_path / "sub.csv")
    submission.write_segment_submission(csv_path, [
        (1, [("b", 0), ("a", 5), ("x", 0), ("a", 0)]),
        (2, [("a", 0), ("b", 0), ("a", 5)]),
    ])
    cache = tmp_path / "validate.label_cache"
    # N=2: class 1 keeps [b:0 (1), a:5 (0)] -> (1/1) / 2 positives; class 2 keeps [a:0 (unrated),
    # b:0 (0)] -> 0. MAP = 1/4.
    result = evaluate.evaluate_submission(csv_path, path, top_n=2, label_cache=str(cache))
    assert result.class_aps == pytest.approx({1: 1 / 2, 2: 0.0})
    assert cache.read_text() == "a:0,1,1\na:5,1,0\na:5,2,1\nb:0,1,1\nb:0,2,0\nb:10,1,0\n"
    # The cache answers without the records; 0 = no cap.
    again = evaluate.evaluate_submission(csv_path, "/nonexistent/*.tfrecord", top_n=0,
                                         label_cache=str(cache))
    assert again.class_aps == pytest.approx({1: 5 / 6, 2: 1 / 2})
    cache.write_text("a:0,1\n")
    with pytest.raises(ValueError, match="line 1: expected <video id>:<start>,<class>,<score>"):
        evaluate.evaluate_submission(csv_path, path, label_cache=str(cache))
    with pytest.raises(ValueError, match="--top_n must be >= 0"):
        evaluate.evaluate_submission(csv_path, path, top_n=-1)


# ------------------------------------------------------------------------ fusion and candidates

def test_fusion_formula_and_candidates():
    assert fusion.fuse([0.8], [0.3], 0.05)[0] == pytest.approx(0.8 ** 0.05 * 0.3 ** 0.95,
                                                               rel=1e-12)
    assert fusion.fuse([0.8], [0.3], 0.0)[0] == pytest.approx(0.3)
    assert fusion.fuse([0.8], [0.3], 1.0)[0] == pytest.approx(0.8)
    predictions = np.array([[0.1, 0.5, 0.5, 0.2], [0.9, 0.0, 0.3, 0.4]], np.float32)
    rows = fusion.candidate_classes(predictions, 2, None)
    assert [r[0].tolist() for r in rows] == [[1, 2], [0, 3]]  # tie: lower class first
    assert rows[1][1].tolist() == pytest.approx([0.9, 0.4])
    # Top 2 first, then the whitelist (class 3 of video 0 is not a candidate: not in its top 2).
    assert [r[0].tolist() for r in fusion.candidate_classes(predictions, 2, {2, 3})] == [[2], [3]]
    with pytest.raises(ValueError, match=r"--video_score_weight must be in \[0, 1\], got 1.5"):
        fusion.check_video_score_weight(1.5)


def test_ranking_is_score_then_video_id_then_numeric_start():
    # Hand-ordered: 0.9 first; the four 0.5 ties by id ("v1" < "v10" < "v2", as text), then by
    # start as a number (5 before 10, which text order would swap).
    scores = [0.5, 0.5, 0.9, 0.5, 0.5, 0.2]
    videos = ["v2", "v1", "v10", "v1", "v10", "v1"]
    starts = [0, 10, 0, 5, 0, 0]
    order = top_k.rank(scores, videos, starts)
    assert [f"{videos[i]}:{starts[i]}" for i in order] == [
        "v10:0", "v1:5", "v1:10", "v10:0", "v2:0", "v1:0"]
    # Positions in the sorted ids rank like the ids themselves.
    positions = {video_id: n for n, video_id in enumerate(sorted(set(videos)))}
    np.testing.assert_array_equal(top_k.rank(scores, [positions[v] for v in videos], starts),
                                  order)


def _random_segments(rng, n):
    classes = rng.integers(0, 3, n)
    scores = np.round(rng.random(n), 1)  # many ties
    videos = np.array([f"v{i}" for i in rng.integers(0, 30, n)], dtype=str)
    starts = 5 * rng.integers(0, 60, n)
    return classes, scores, videos, starts


def _full_sort(everything, cls, k):
    return sorted((-s, v, int(t)) for c, s, v, t in everything if c == cls)[:k]


def test_per_class_top_k_equals_a_full_sort():
    rng = np.random.default_rng(1)
    ranked = top_k.PerClassTopK(7)
    everything = []
    for _ in range(40):  # many small batches force many cuts
        segments = _random_segments(rng, rng.integers(0, 12))
        ranked.add(*segments)
        everything += list(zip(*segments))
    for cls in range(3):
        scores, videos, starts = ranked.top(cls)
        assert list(zip(-scores, videos, starts.tolist())) == _full_sort(everything, cls, 7)
    assert [len(array) for array in ranked.top(5)] == [0, 0, 0]  # a class nothing ranked in
    with pytest.raises(ValueError, match="--segment_top_k must be a positive integer, got 0"):
        top_k.PerClassTopK(0)


def test_merged_top_k_buffers_equal_one_buffer():
    # The Beam combiner adds segments to many accumulators and merges them in any order.
    rng = np.random.default_rng(2)
    parts = [top_k.TopK(5) for _ in range(4)]
    everything = []
    for step in range(30):
        classes, scores, videos, starts = _random_segments(rng, rng.integers(0, 9))
        parts[step % 4].add(scores, videos, starts)
        everything += list(zip(np.zeros_like(classes), scores, videos, starts))
    merged = parts[3]
    for part in parts[:3]:
        merged.merge(part)
    scores, videos, starts = merged.top()
    assert list(zip(-scores, videos, starts.tolist())) == _full_sort(everything, 0, 5)


# ------------------------------------------------------------------------------ finetune set-up

@pytest.fixture(scope="module")
def video_run(frame_logistic_run):
    """The video-level model: the shared FrameLevelLogisticModel run (10 steps on frame/train)."""
    return frame_logistic_run


def test_finetune_config_takes_the_model_from_the_source(video_run, tmp_path):
    fv = helpers.train_flag_values([f"--finetune_from={video_run}", f"--train_dir={tmp_path}/seg",
                             "--segment_labels", "--mod_finetune_settings", "--batch_size=8",
                             "--l2_penalty=0.5"])
    config = finetune.config_from_flags(fv)
    assert config.model == "FrameLevelLogisticModel"
    assert (config.data.feature_names, config.data.num_classes) == (("rgb", "audio"), 6)
    assert config.data.frame_features and config.data.segment_labels
    assert config.data.max_frames == 5
    # MOD settings fill what was not given; given flags win.
    assert (config.base_learning_rate, config.learning_rate_decay,
            config.learning_rate_decay_examples, config.num_epochs, config.batch_size) == \
        (2e-4, 0.8, 1_000_000, 10, 8)
    assert config.model_hparams == {"l2_penalty": 0.5}

    fv = helpers.train_flag_values([f"--finetune_from={video_run}", "--model=NeXtVLADModel",
                             f"--train_dir={tmp_path}/seg"])
    with pytest.raises(ValueError, match=re.escape(
            f"--model='NeXtVLADModel' contradicts --finetune_from={video_run!r}, whose model has "
            "model='FrameLevelLogisticModel'; leave --model out")):
        finetune.config_from_flags(fv)
    fv = helpers.train_flag_values([f"--finetune_from={tmp_path}", f"--train_dir={tmp_path}/seg"])
    with pytest.raises(FileNotFoundError, match="has no model_flags.json"):
        finetune.config_from_flags(fv)


def test_warm_start_copies_the_source_weights(video_run, tmp_path):
    source = checkpoints.load_model(video_run)
    config = dataclasses.replace(helpers.train_config(str(tmp_path), ""), train_dir=str(tmp_path))
    fresh = build_model(model_flags_lib.read_model_flags(video_run))
    assert fresh is finetune.warm_start_factory(config, video_run)(fresh)
    for got, want in zip(fresh.weights, source.weights):
        np.testing.assert_array_equal(got.numpy(), want.numpy())


# -------------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def segment_run(video_run, small_dataset, tmp_path_factory):
    """train.py --finetune_from: the segment model, finetuned on segment/validate ratings."""
    train_dir = str(tmp_path_factory.mktemp("segment_run"))
    segment_data = helpers.pattern(small_dataset, "segment", "validate")
    process = helpers.start(helpers.python_command(
        "train.py", f"--finetune_from={video_run}", f"--train_dir={train_dir}",
        "--segment_labels", f"--train_data_pattern={segment_data}",
        "--mod_finetune_settings", "--batch_size=8", "--num_epochs=2", "--base_learning_rate=0.05",
        "--distribution_strategy=one_device"))
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    assert f"Warm start: weights from {video_run}/ckpt-10" in output
    return train_dir


def _reference_submission(video_dir, segment_dir, pattern, whitelist, weight):
    """The ranking computed directly: models on numpy slices of every video's frames."""
    video_model = checkpoints.load_model(video_dir)
    segment_model = checkpoints.load_model(segment_dir) if segment_dir else None
    batch = next(iter(readers.frame_dataset(pattern, 100, num_classes=helpers.NUM_CLASSES,
                                            max_frames=1000)))
    ids = [i.decode() for i in batch["id"].numpy()]
    num_frames = batch["num_frames"].numpy()
    video_inputs = {name: batch[name][:, :helpers.MAX_FRAMES] for name in ("rgb", "audio")}
    video_inputs["num_frames"] = np.minimum(num_frames, helpers.MAX_FRAMES)
    video_scores = video_model(video_inputs)["predictions"].numpy().astype(np.float64)
    scored = {c: [] for c in whitelist}
    for v, video_id in enumerate(ids):
        for start in range(0, num_frames[v] - 4, 5):
            if segment_model is None:
                segment_scores = video_scores[v]
            else:
                segment_scores = segment_model(
                    {"rgb": batch["rgb"][v:v + 1, start:start + 5],
                     "audio": batch["audio"][v:v + 1, start:start + 5],
                     "num_frames": np.array([5], np.int32)})["predictions"].numpy()[0]
            for c in whitelist:  # 6 classes <= 20 candidates: every whitelisted class
                score = video_scores[v, c] ** weight * float(segment_scores[c]) ** (1 - weight)
                scored[c].append((-score, video_id, start))  # ties: video id, then start
    return {c: [(video_id, start) for _, video_id, start in sorted(scored[c])]
            for c in whitelist}


def _rows_as_dict(path):
    lines = open(path).read().splitlines()
    assert lines[0] == "Class,Segments"
    assert all(ROW.match(line) for line in lines[1:]), lines
    return submission.read_segment_submission(path)


def test_end_to_end_video_model_finetune_csv_map(video_run, segment_run, small_dataset, tmp_path):
    pattern = helpers.pattern(small_dataset, "segment", "validate")
    whitelist_path = os.path.join(small_dataset, "segment_label_ids.csv")
    whitelist = submission.read_segment_whitelist(whitelist_path)
    config = inference.SegmentInferenceConfig(
        input_data_pattern=pattern, video_model=video_run, segment_model=segment_run,
        output_file=str(tmp_path / "segments.csv"), segment_label_ids=whitelist_path,
        video_score_weight=0.3, segment_batch_size=7)
    result = inference.run_segment_inference(config)
    got = _rows_as_dict(config.output_file)
    expected = _reference_submission(video_run, segment_run, pattern, whitelist, 0.3)
    assert list(got) == list(whitelist)
    assert result.num_rows == len(whitelist)
    assert result.num_segments == len(expected[whitelist[0]])
    for cls in whitelist:
        assert got[cls] == expected[cls], cls

    # MAP@K of the CSV equals the metric on the reference ranking and ratings parsed directly.
    ratings = {}
    for path in readers.list_files(pattern):
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            context = tf.train.SequenceExample.FromString(record).context.feature
            metrics.add_segment_ratings(
                ratings, context["id"].bytes_list.value[0],
                context["segment_labels"].int64_list.value,
                context["segment_start_times"].int64_list.value,
                context["segment_scores"].float_list.value)
    evaluation = evaluate.evaluate_submission(config.output_file, pattern, whitelist_path)
    assert evaluation.map_at_k == pytest.approx(
        metrics.segment_map_at_k(expected, ratings, whitelist=whitelist))
    assert evaluation.num_classes > 0

    # K = 3 keeps each class's three best segments.
    top3 = dataclasses.replace(config, segment_top_k=3, output_file=str(tmp_path / "top3.csv"))
    inference.run_segment_inference(top3)
    assert _rows_as_dict(top3.output_file) == {c: expected[c][:3] for c in whitelist}

    # Dummy prediction: every segment gets its video's score (no segment model).
    dummy = dataclasses.replace(config, segment_model="", output_file=str(tmp_path / "d.csv"))
    inference.run_segment_inference(dummy)
    assert _rows_as_dict(dummy.output_file) == _reference_submission(
        video_run, None, pattern, whitelist, 0.3)


def test_mod_fallback_fills_each_class_to_k(video_run, segment_run, small_dataset, tmp_path):
    """--segment_fallback_file through run_segment_inference: with one candidate class per video
    most classes are short; each row is its ranked segments, then the first K segments of the
    fallback CSV's videos (by score, expanded to their full segments) not listed yet, up to K."""
    pattern = helpers.pattern(small_dataset, "segment", "validate")
    whitelist_path = os.path.join(small_dataset, "segment_label_ids.csv")
    whitelist = submission.read_segment_whitelist(whitelist_path)
    batch = next(iter(readers.frame_dataset(pattern, 100, num_classes=helpers.NUM_CLASSES,
                                            max_frames=1000)))
    lengths = dict(zip((i.decode() for i in batch["id"].numpy()), batch["num_frames"].numpy()))
    videos = sorted(lengths)
    lines = ["VideoId,LabelConfidencePairs"]  # video n lists every class with score 1/(n+1)
    lines += [f"{video}," + " ".join(f"{c} {1 / (n + 1)!r}" for c in range(helpers.NUM_CLASSES))
              for n, video in enumerate(videos)]
    (tmp_path / "top.csv").write_text("\n".join(lines) + "\n")
    k = 12
    config = inference.SegmentInferenceConfig(
        input_data_pattern=pattern, video_model=video_run, segment_model=segment_run,
        output_file=str(tmp_path / "plain.csv"), segment_label_ids=whitelist_path,
        segment_candidates=1, segment_top_k=k)
    inference.run_segment_inference(config)
    plain = _rows_as_dict(config.output_file)
    filled_config = dataclasses.replace(config, output_file=str(tmp_path / "filled.csv"),
                                        segment_fallback_file=str(tmp_path / "top.csv"))
    inference.run_segment_inference(filled_config)
    filled = _rows_as_dict(filled_config.output_file)
    # MOD's fallback list: the expansion stops at K segments, covered ones included.
    fallback_order = [(video, start) for video in videos  # scores fall with n
                      for start in range(0, lengths[video] - lengths[video] % 5, 5)][:k]
    assert any(len(plain[cls]) < k for cls in whitelist)
    for cls in whitelist:
        extra = [segment for segment in fallback_order if segment not in plain[cls]]
        assert filled[cls] == (plain[cls] + extra)[:k], cls


def test_segment_model_as_a_saved_model(video_run, segment_run, small_dataset, tmp_path):
    from yt8m.export import exporter
    export_dir = str(tmp_path / "segment_export")
    exporter.export_ensemble(exporter.ExportConfig(members=[segment_run], output_dir=export_dir))
    pattern = helpers.pattern(small_dataset, "segment", "validate")
    outputs = {}
    for name, segment_model in (("checkpoint", segment_run), ("saved_model", export_dir)):
        config = inference.SegmentInferenceConfig(
            input_data_pattern=pattern, video_model=video_run, segment_model=segment_model,
            output_file=str(tmp_path / f"{name}.csv"))
        inference.run_segment_inference(config)
        outputs[name] = _rows_as_dict(config.output_file)
    assert outputs["saved_model"] == outputs["checkpoint"]
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"--segment_model={str(tmp_path)!r} is neither a train dir (no model_flags.json) nor "
            "a SavedModel (no saved_model.pb)")):
        inference.run_segment_inference(dataclasses.replace(config, segment_model=str(tmp_path)))
