"""Stored benchmark results and data sets, keyed by their settings AND the code that made them.

A result written before a code change must not be printed as if the new code had produced it, so
every stored entry carries a digest of the sources it depends on (the .py files under the listed
paths: their relative paths and bytes; works outside git, and a dirty tree counts as changed):

    settings = {"model": ..., "epochs": ...}
    result = result_cache.load(path, settings)            # None when absent or stale
    if result is None:
        result = run(...)
        result_cache.store(path, result, settings)

Results (trained models, their scores and speeds) depend on the whole library; synthetic data sets
only on the generator and the record format (DATA_SOURCES), so a trainer change re-runs the
training without writing the data again.
"""
import hashlib
import json
import os

from yt8m.core import files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY_SOURCES = ("yt8m", "frame_level_models")
DATA_SOURCES = ("yt8m/synthetic", "yt8m/data/records.py")
STAMP_FILE = "bench_stamp.json"  # what a reusable directory was made with


def _python_files(path):
    if os.path.isfile(path):
        yield path
        return
    for directory, subdirectories, names in os.walk(path):
        subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
        for name in sorted(names):
            if name.endswith(".py"):
                yield os.path.join(directory, name)


def source_digest(sources=LIBRARY_SOURCES, root=REPO):
    """sha256 (hex) of the .py files under `sources` (paths relative to `root`)."""
    digest = hashlib.sha256()
    for source in sources:
        path = os.path.join(root, source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"benchmark cache: source path {path} does not exist")
        for filename in _python_files(path):
            digest.update(os.path.relpath(filename, root).encode() + b"\0")
            with open(filename, "rb") as handle:
                digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


def key(settings, sources=LIBRARY_SOURCES, root=REPO):
    """What an entry is stored under: its settings (JSON-able) and the digest of its sources."""
    return {"settings": json.loads(json.dumps(settings)),
            "code_digest": source_digest(sources, root)}


def load(path, settings, sources=LIBRARY_SOURCES, root=REPO):
    """The JSON dict stored at `path` when it was stored with `settings` by the current sources;
    None when there is none or it is stale."""
    if not os.path.exists(path):
        return None
    stored = files.read_json(path)
    wanted = key(settings, sources, root)
    if any(stored.get(name) != value for name, value in wanted.items()):
        return None
    return stored


def store(path, result, settings, sources=LIBRARY_SOURCES, root=REPO):
    """Writes `result` (a JSON-able dict) with its key, atomically; returns what was written."""
    entry = {**result, **key(settings, sources, root)}
    files.write_json_atomically(path, entry)
    return entry


def keyed_dir(parent, prefix, settings, sources=LIBRARY_SOURCES, root=REPO):
    """`parent/<prefix>_<hash of key>`: a directory name that changes with settings or code."""
    text = json.dumps(key(settings, sources, root), sort_keys=True)
    return os.path.join(parent, f"{prefix}_{hashlib.sha1(text.encode()).hexdigest()[:12]}")


def directory_is_fresh(directory, settings, sources=LIBRARY_SOURCES, root=REPO):
    """True when `directory` was stamped (`stamp_directory`) with these settings and sources."""
    return load(os.path.join(directory, STAMP_FILE), settings, sources, root) is not None


def stamp_directory(directory, settings, sources=LIBRARY_SOURCES, root=REPO):
    """Marks a directory just (re)made as made with `settings` by the current sources."""
    return store(os.path.join(directory, STAMP_FILE), {}, settings, sources, root)
