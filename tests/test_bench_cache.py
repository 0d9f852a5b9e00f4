"""bench/result_cache.py: stored benchmark entries go stale when a source they depend on changes."""
import hashlib
import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "bench"))
import result_cache  # noqa: E402  (bench/ is not a package)

SETTINGS = {"model": "NeXtVLADModel", "epochs": 3, "hparams": {"cluster_size": 8}}


@pytest.fixture
def sources(tmp_path):
    """A small source tree: yt8m/ (with a sub-package and a cache directory) and
    frame_level_models/."""
    files = {"yt8m/__init__.py": "", "yt8m/training/trainer.py": "STEPS = 1\n",
             "yt8m/synthetic/generator.py": "SEED = 0\n",
             "frame_level_models/nextvlad.py": "K = 8\n",
             "yt8m/README.md": "not code\n", "yt8m/__pycache__/trainer.cpython-311.pyc": "x"}
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def _reference_digest(root, names):
    """The digest as documented: sha256 over '<relative path>\\0' + sha256(bytes), sorted paths."""
    digest = hashlib.sha256()
    for name in sorted(names):
        digest.update(name.encode() + b"\0")
        digest.update(hashlib.sha256((root / name).read_bytes()).digest())
    return digest.hexdigest()


def test_digest_covers_the_python_sources_only(sources):
    expected = _reference_digest(sources, ["frame_level_models/nextvlad.py", "yt8m/__init__.py",
                                           "yt8m/synthetic/generator.py",
                                           "yt8m/training/trainer.py"])
    assert result_cache.source_digest(("frame_level_models", "yt8m"), sources) == expected
    (sources / "yt8m" / "README.md").write_text("edited\n")   # not a source: same digest
    (sources / "yt8m" / "__pycache__" / "trainer.cpython-311.pyc").write_text("y")
    assert result_cache.source_digest(("frame_level_models", "yt8m"), sources) == expected
    with pytest.raises(FileNotFoundError, match="missing_dir does not exist"):
        result_cache.source_digest(("missing_dir",), sources)


def test_entry_is_invalidated_when_a_source_changes(sources, tmp_path):
    path = str(tmp_path / "out" / "bench_result.json")
    stored = result_cache.store(path, {"gap": 0.5}, SETTINGS, root=sources)
    with open(path) as handle:
        assert json.load(handle) == stored
    assert stored["gap"] == 0.5 and stored["settings"] == SETTINGS
    assert result_cache.load(path, SETTINGS, root=sources) == stored
    assert result_cache.load(path, dict(SETTINGS, epochs=4), root=sources) is None

    (sources / "frame_level_models" / "nextvlad.py").write_text("K = 16\n")   # code changed
    assert result_cache.load(path, SETTINGS, root=sources) is None
    (sources / "frame_level_models" / "nextvlad.py").write_text("K = 8\n")    # changed back
    assert result_cache.load(path, SETTINGS, root=sources) == stored
    (sources / "yt8m" / "training" / "new_module.py").write_text("")          # a file added
    assert result_cache.load(path, SETTINGS, root=sources) is None
    assert result_cache.load(str(tmp_path / "absent.json"), SETTINGS, root=sources) is None


def test_data_sets_depend_on_the_generator_only(sources, tmp_path):
    data_sources = ("yt8m/synthetic",)
    directory = result_cache.keyed_dir(str(tmp_path), "data", SETTINGS, data_sources, sources)
    os.makedirs(directory)
    result_cache.stamp_directory(directory, SETTINGS, data_sources, sources)
    assert result_cache.directory_is_fresh(directory, SETTINGS, data_sources, sources)
    (sources / "yt8m" / "training" / "trainer.py").write_text("STEPS = 2\n")  # not a dependency
    assert result_cache.directory_is_fresh(directory, SETTINGS, data_sources, sources)
    assert result_cache.keyed_dir(str(tmp_path), "data", SETTINGS, data_sources,
                                  sources) == directory
    (sources / "yt8m" / "synthetic" / "generator.py").write_text("SEED = 1\n")
    assert not result_cache.directory_is_fresh(directory, SETTINGS, data_sources, sources)
    assert result_cache.keyed_dir(str(tmp_path), "data", SETTINGS, data_sources,
                                  sources) != directory


def test_repository_sources_exist():
    """The default source lists name real paths of this repository."""
    for sources in (result_cache.LIBRARY_SOURCES, result_cache.DATA_SOURCES):
        assert len(result_cache.source_digest(sources)) == 64
