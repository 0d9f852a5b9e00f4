"""model_flags.json: a train dir refuses other model flags, except a hyper-parameter added after the
file was written (missing there) that keeps its default."""
import json
import os

import pytest

import yt8m  # noqa: F401
from yt8m.core import model_flags as model_flags_lib
from yt8m.core.model_flags import ModelFlagsMismatchError

DEFAULTS = {"l2_penalty": 1e-8, "bn_momentum": 0.999}


def _flags(model="MoeModel", **hparams):
    return {"model": model, "feature_names": "mean_rgb", "feature_sizes": "1024",
            "frame_features": False, "num_classes": 4, "max_frames": 300,
            "label_loss": "CrossEntropyLoss", "hparams": hparams}


def _written(train_dir, model_flags):
    with open(os.path.join(train_dir, "model_flags.json"), "w") as handle:
        json.dump(model_flags, handle)
    return model_flags


def _check(train_dir, model_flags, defaults=DEFAULTS):
    model_flags_lib.check_and_write_model_flags(str(train_dir), model_flags, False, defaults)


def test_a_missing_hparam_at_its_default_continues_the_train_dir(tmp_path):
    old = _written(tmp_path, _flags(l2_penalty=1e-8))  # written before bn_momentum existed
    _check(tmp_path, _flags(l2_penalty=1e-8, bn_momentum=0.999))
    with open(tmp_path / "model_flags.json") as handle:
        assert json.load(handle) == old  # the record is left as it was


def test_a_missing_hparam_at_another_value_is_refused(tmp_path):
    _written(tmp_path, _flags(l2_penalty=1e-8))
    with pytest.raises(ModelFlagsMismatchError) as error:
        _check(tmp_path, _flags(l2_penalty=1e-8, bn_momentum=0.9))
    assert str(error.value) == (
        f"Model flags do not match the existing {tmp_path}/model_flags.json:\n"
        "  hparams.bn_momentum: unset (default 0.999) in the file, 0.9 now\n"
        "Delete the file, change --train_dir, or pass --start_new_model.")


def test_without_defaults_a_missing_hparam_is_a_difference(tmp_path):
    _written(tmp_path, _flags(l2_penalty=1e-8))
    with pytest.raises(ModelFlagsMismatchError, match=r"hparams.bn_momentum: unset in the file, "
                                                      r"0.999 now\n"):
        _check(tmp_path, _flags(l2_penalty=1e-8, bn_momentum=0.999), defaults=None)


def test_defaults_of_the_new_model_do_not_excuse_another_model(tmp_path):
    _written(tmp_path, _flags("LogisticModel", l2_penalty=1e-8))
    with pytest.raises(ModelFlagsMismatchError) as error:
        _check(tmp_path, _flags(l2_penalty=1e-8, bn_momentum=0.999))
    assert str(error.value).splitlines()[1:3] == [
        "  hparams.bn_momentum: unset in the file, 0.999 now",
        "  model: 'LogisticModel' in the file, 'MoeModel' now"]


def test_a_recorded_value_differing_from_the_new_one_is_refused(tmp_path):
    _written(tmp_path, _flags(l2_penalty=1e-8, bn_momentum=0.9))
    with pytest.raises(ModelFlagsMismatchError, match=r"hparams.bn_momentum: 0.9 in the file, "
                                                      r"0.999 now\n"):
        _check(tmp_path, _flags(l2_penalty=1e-8, bn_momentum=0.999))


def test_a_new_train_dir_gets_the_record(tmp_path):
    record = _flags(bn_momentum=0.99)
    _check(tmp_path / "new", record)
    with open(tmp_path / "new" / "model_flags.json") as handle:
        assert json.load(handle) == record
