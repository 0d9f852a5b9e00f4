"""Offline distillation: the teachers' outputs computed once over a data set, stored by video id.

    python -m yt8m.distillation.teacher_cache --teacher_dirs=runs/a,runs/b,export/ensemble \
        --data_pattern='data/frame/train*.tfrecord' --cache_dir=cache/ab

Layout of a cache directory (written in a temporary directory, then renamed into place):

    teacher_cache.json        teachers (path, description, embedding size), num_classes, dtype,
                              the number of videos and the data pattern
    ids.txt                   one video id per line; line i is row i of every array
    teacher_<t>.logits.bin    [num_videos, num_classes] raw little-endian float32 (or float16)
    teacher_<t>.embedding.bin [num_videos, embedding size], for teachers with an embedding output

Only raw logits (and embeddings) are stored: temperatures, teacher weights and the softmax or
sigmoid form are chosen at training time. Training reads the arrays memory-mapped, so a cache larger
than memory works; a lookup copies only the batch's rows.
"""
import dataclasses
import json
import os
import time

import numpy as np
from absl import logging

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

from yt8m.core import cli
from yt8m.core import errors
from yt8m.core import files
from yt8m.core import model_flags as model_flags_lib
from yt8m.core import options
from yt8m.core.config import DataConfig
from yt8m.core.option_groups import Batching
from yt8m.distillation import teachers as teachers_lib
from yt8m.distillation.config import DistillConfig
from yt8m.export import serving
from yt8m.training import inputs

CACHE_FILE = "teacher_cache.json"
IDS_FILE = "ids.txt"
FORMAT_VERSION = 1
DTYPES = ("float32", "float16")


def _storage_dtype(dtype):
    return np.dtype(dtype).newbyteorder("<")


def _array_file(teacher_index, output):
    return f"teacher_{teacher_index}.{output}.bin"


def data_config_for(teacher, num_readers=1):
    """What the teacher reads: its train dir's data settings, or the export's (rgb, audio)."""
    if isinstance(teacher, teachers_lib.TrainDirTeacher):
        return inputs.data_config_from_model_flags(
            model_flags_lib.read_model_flags(teacher.path), segment_labels=False,
            num_readers=num_readers)
    return DataConfig(feature_names=tuple(serving.FEATURE_NAMES),
                      feature_sizes=tuple(serving.FEATURE_SIZES[n] for n in serving.FEATURE_NAMES),
                      frame_features=True, num_classes=teacher.num_classes,
                      max_frames=int(teacher.loaded.max_frames.numpy()), num_readers=num_readers)


def _outputs_function(teachers):
    """tf.function: features -> per teacher (logits, embedding or None)."""

    @tf.function(reduce_retracing=True)
    def compute(features):
        results = []
        for teacher in teachers:
            outputs = teacher(features)
            results.append((outputs["logits"], outputs.get("embedding")))
        return results

    return compute


def write_teacher_cache(teacher_paths, data_pattern, cache_dir, batch_size=256, num_readers=1,
                        dtype="float32", overwrite=False, teachers=None):
    """Runs every teacher over every video of `data_pattern` and writes the cache (see the module
    doc). `teachers` may pass already loaded teachers (one per path). Returns the cache record."""
    if not teacher_paths:
        raise errors.InvalidInputError(
            "--teacher_dirs is empty: give the teachers whose outputs to cache")
    if dtype not in DTYPES:
        raise errors.InvalidInputError(f"--dtype={dtype!r}: choose one of {', '.join(DTYPES)}")
    if not cache_dir:
        raise errors.InvalidInputError(
            "--cache_dir is empty: give the directory to write the cache into")
    # --overwrite replaces an earlier cache, never a teacher, a data file or anything else.
    files.check_output_path(cache_dir, "--cache_dir",
                            [("--teacher_dirs", path) for path in teacher_paths])
    files.check_replaceable_directory(cache_dir, "--cache_dir", overwrite, (CACHE_FILE, IDS_FILE),
                                      "yt8m.distillation.teacher_cache")
    data_files = inputs.require_files(data_pattern, "--data_pattern")
    files.check_output_path(cache_dir, "--cache_dir",
                            [("--data_pattern", path) for path in data_files])
    teachers = list(teachers) if teachers is not None else [
        teachers_lib.load_teacher(path) for path in teacher_paths]
    data = data_config_for(teachers[0], num_readers)
    teachers_lib.check_teachers(teachers, data.num_classes, data.feature_names,
                                data.frame_features)
    dataset = inputs.evaluation_dataset(data_files, data, batch_size)
    compute = _outputs_function(teachers)

    with files.atomic_directory(cache_dir) as temp_dir:
        record = _write_arrays(temp_dir, teachers, teacher_paths, dataset, data, compute, dtype)
        record["data_pattern"] = data_pattern
        files.write_json_atomically(os.path.join(temp_dir, CACHE_FILE), record)
    return record


def _write_arrays(directory, teachers, teacher_paths, dataset, data, compute, dtype):
    handles = {}
    seen = set()
    count = 0
    started = time.time()
    try:
        ids_handle = open(os.path.join(directory, IDS_FILE), "w", encoding="utf-8")
        handles[IDS_FILE] = ids_handle
        for batch in dataset:
            ids = [value.decode("utf-8") for value in batch["id"].numpy()]
            for video_id in ids:
                if video_id in seen:
                    raise errors.InvalidInputError(
                        f"--data_pattern holds video id {video_id!r} twice; a cache "
                        "is keyed by id, so ids must be unique")
                if not video_id or "\n" in video_id:
                    raise errors.InvalidInputError(
                        f"--data_pattern holds an empty or multi-line video id "
                        f"{video_id!r}")
                seen.add(video_id)
            ids_handle.write("".join(f"{video_id}\n" for video_id in ids))
            for index, (logits, embedding) in enumerate(compute(inputs.model_inputs(batch, data))):
                for output, value in (("logits", logits), ("embedding", embedding)):
                    if value is None:
                        continue
                    name = _array_file(index, output)
                    if name not in handles:
                        handles[name] = open(os.path.join(directory, name), "wb")
                    handles[name].write(np.asarray(value.numpy(), _storage_dtype(dtype))
                                        .tobytes())
            count += len(ids)
    finally:
        for handle in handles.values():
            handle.close()
    if count == 0:
        raise errors.InvalidInputError("--data_pattern holds no video: nothing to cache")
    logging.info("Cached %d teacher(s) over %d videos in %.1f s", len(teachers), count,
                 time.time() - started)
    return {"format": FORMAT_VERSION, "num_videos": count, "num_classes": data.num_classes,
            "dtype": dtype, "feature_names": list(data.feature_names),
            "teachers": [{"path": path, "description": teacher.description,
                          "embedding_size": teacher.embedding_size}
                         for path, teacher in zip(teacher_paths, teachers)]}


class TeacherCache:
    """A cache directory opened for reading: `lookup(ids)` gives the teachers' outputs."""

    def __init__(self, cache_dir):
        path = os.path.join(cache_dir, CACHE_FILE)
        if not os.path.exists(path):
            raise errors.MissingInputError(
                f"--teacher_cache={cache_dir!r} has no {CACHE_FILE}: it is not "
                "a cache written by yt8m.distillation.teacher_cache")
        with open(path, encoding="utf-8") as handle:
            self.record = json.load(handle)
        if self.record.get("format") != FORMAT_VERSION:
            raise errors.InvalidInputError(
                f"{path}: unknown cache format {self.record.get('format')!r}")
        self.cache_dir = cache_dir
        self.num_videos = int(self.record["num_videos"])
        self.num_classes = int(self.record["num_classes"])
        self.teacher_paths = [teacher["path"] for teacher in self.record["teachers"]]
        self.embedding_sizes = [teacher["embedding_size"] for teacher in self.record["teachers"]]
        with open(os.path.join(cache_dir, IDS_FILE), encoding="utf-8") as handle:
            ids = handle.read().splitlines()
        if len(ids) != self.num_videos:
            raise errors.InvalidInputError(
                f"{cache_dir}/{IDS_FILE} lists {len(ids)} ids, {CACHE_FILE} says "
                f"{self.num_videos}: the cache is damaged")
        self.rows = {video_id.encode("utf-8"): row for row, video_id in enumerate(ids)}
        self.arrays = []
        for index, size in enumerate(self.embedding_sizes):
            arrays = {"logits": self._open(index, "logits", self.num_classes)}
            if size is not None:
                arrays["embedding"] = self._open(index, "embedding", int(size))
            self.arrays.append(arrays)

    @property
    def num_teachers(self):
        return len(self.arrays)

    def _open(self, index, output, width):
        path = os.path.join(self.cache_dir, _array_file(index, output))
        dtype = _storage_dtype(self.record["dtype"])
        expected = self.num_videos * width * dtype.itemsize
        if not os.path.exists(path) or os.path.getsize(path) != expected:
            raise errors.InvalidInputError(
                f"{path} is missing or not {expected} bytes "
                f"([{self.num_videos}, {width}] {self.record['dtype']}): the cache is "
                "damaged")
        return np.memmap(path, dtype=dtype, mode="r", shape=(self.num_videos, width))

    def row_indices(self, ids):
        """numpy int64 rows of the video ids (bytes); an unknown id is an error naming the cache."""
        rows = np.empty(len(ids), np.int64)
        for position, video_id in enumerate(ids):
            row = self.rows.get(bytes(video_id))
            if row is None:
                raise errors.UnknownKeyError(
                    f"video id {bytes(video_id).decode('utf-8', 'replace')!r} is not in "
                    f"--teacher_cache={self.cache_dir!r} (written over "
                    f"{self.record.get('data_pattern')!r})")
            rows[position] = row
        return rows

    def lookup_numpy(self, ids, indices=None):
        """[{'logits': [B, V] float32, 'embedding': [B, D] float32 (where cached)}, per teacher
        of `indices` (default all)]."""
        rows = self.row_indices(ids)
        indices = range(self.num_teachers) if indices is None else indices
        return [{key: np.asarray(array[rows], np.float32)
                 for key, array in self.arrays[index].items()} for index in indices]

    def lookup(self, ids, indices=None):
        """The same as lookup_numpy, inside TensorFlow (a tf.numpy_function over the mapped
        files): ids string [B] -> per teacher {'logits', 'predictions', 'embedding'?}."""
        indices = list(range(self.num_teachers) if indices is None else indices)
        keys = [(position, index, key) for position, index in enumerate(indices)
                for key in self.arrays[index]]

        def fetch(id_values):
            found = self.lookup_numpy(id_values, indices)
            return [found[position][key] for position, _, key in keys]

        values = tf.numpy_function(fetch, [ids], [tf.float32] * len(keys), stateful=False)
        results = [{} for _ in indices]
        for (position, index, key), value in zip(keys, values):
            width = self.num_classes if key == "logits" else int(self.embedding_sizes[index])
            value.set_shape([None, width])
            results[position][key] = value
        for result in results:
            result["predictions"] = tf.sigmoid(result["logits"])
        return results


# ----------------------------------------------------------------------------- command line

@dataclasses.dataclass
class TeacherCacheOptions(Batching):
    """The options of `python -m yt8m.distillation.teacher_cache`."""
    teacher_dirs: tuple[str, ...] = options.override(
        DistillConfig, "teacher_dirs",
        help="Teachers: train dirs of train.py or ensembles exported by export_ensemble.py.")
    data_pattern: str = options.option(
        "", "Glob of the TFRecord files to cache the teachers' outputs for (the student's "
        "training data).")
    cache_dir: str = options.option(
        "", "Directory to write (must not exist unless --overwrite).")
    batch_size: int = options.override(Batching, "batch_size", 256, help="Videos per batch.")
    num_readers: int = options.override(Batching, "num_readers", 1)
    dtype: str = options.option(
        "float32", "Storage type of the cached arrays (float16 halves the size).",
        choices=DTYPES)
    overwrite: bool = options.option(False, "Replace an existing --cache_dir.")


def main():
    given = options.from_flags(TeacherCacheOptions)
    record = write_teacher_cache(given.teacher_dirs, given.data_pattern, given.cache_dir,
                                 given.batch_size, given.num_readers, given.dtype,
                                 given.overwrite)
    print(f"teacher_cache: wrote {record['num_videos']} videos x {len(record['teachers'])} "
          f"teacher(s) to {given.cache_dir}", flush=True)


if __name__ == "__main__":
    options.define_flags(TeacherCacheOptions)
    cli.run(main, "teacher_cache")
