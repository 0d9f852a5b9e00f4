"""train.py's starter flags: the float --learning_rate_decay_examples, --num_gpu and
--log_device_placement, and checkpoint retention as the starter's (every checkpoint kept by
default, so the exporter can average a START:END step range)."""
import os

import pytest
from absl import flags

import yt8m  # noqa: F401
from yt8m.core import options
from yt8m.core.config import LocalDevices, TrainConfig
from yt8m.export import members
from yt8m.training import checkpoints
from yt8m.training import distribution
from yt8m.training import trainer
from yt8m.training.schedules import examples_staircase_decay

import training_helpers as helpers


def _parse(config_class, argv):
    flag_values = flags.FlagValues()
    options.define_flags(config_class, flag_values)
    flag_values(["train.py", *argv])
    return options.from_flags(config_class, flag_values)


def test_learning_rate_decay_examples_is_a_number_as_in_the_starter():
    assert _parse(TrainConfig, []).learning_rate_decay_examples == 4000000.0
    config = _parse(TrainConfig, ["--learning_rate_decay_examples=2.5e6"])
    assert config.learning_rate_decay_examples == 2500000.0
    # 1e6 examples a step: 0.01 until 2.5e6 examples (step 2), halved from step 3 (3e6 examples).
    schedule = examples_staircase_decay(0.01, 0.5, config.learning_rate_decay_examples, 10 ** 6)
    assert [float(schedule(step)) for step in (2, 3, 5)] == pytest.approx([0.01, 0.005, 0.0025])


def test_local_device_flags_of_the_starter():
    assert _parse(LocalDevices, []) == LocalDevices(num_gpu=1, num_cpu_devices=1,
                                                    log_device_placement=False)
    assert _parse(LocalDevices, ["--num_gpu=0", "--log_device_placement"]) == LocalDevices(
        num_gpu=0, num_cpu_devices=1, log_device_placement=True)
    with pytest.raises(flags.IllegalFlagValueError):
        _parse(LocalDevices, ["--num_gpu=-1"])
    with pytest.raises(ValueError, match=r"^--num_gpu must be >= 0, got -1$"):
        distribution.limit_gpus(-1)


def test_checkpoint_flags_default_to_the_starters():
    config = _parse(TrainConfig, [])
    assert config.keep_checkpoint_max == 0          # Saver(max_to_keep=0): keep them all
    assert config.save_checkpoint_secs == 900.0     # Supervisor(save_model_secs=15 * 60)
    assert config.export_model_steps == 1000


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return helpers.make_small_dataset(tmp_path_factory.mktemp("data"))


def _steps(train_dir):
    return [step for step, _ in members.available_checkpoints(train_dir)]


def test_default_retention_keeps_a_step_range_for_the_exporter(data_dir, tmp_path):
    config = helpers.train_config(tmp_path / "run", data_dir, export_model_steps=2,
                                  max_steps=14)
    assert config.keep_checkpoint_max == TrainConfig().keep_checkpoint_max == 0
    trainer.train(config)
    assert _steps(config.train_dir) == [2, 4, 6, 8, 10, 12, 14]  # more than the old 5
    spec = members.parse_member(f"{config.train_dir}@4:12", None)
    assert members.select_checkpoints(spec) == [
        os.path.join(config.train_dir, f"ckpt-{step}") for step in (4, 6, 8, 10, 12)]
    # A bound still keeps only the newest ones.
    bounded = helpers.train_config(tmp_path / "bounded", data_dir, export_model_steps=2,
                                   max_steps=14, keep_checkpoint_max=3)
    trainer.train(bounded)
    assert _steps(bounded.train_dir) == [10, 12, 14]


def test_start_new_model_removes_only_the_earlier_checkpoints(data_dir, tmp_path):
    first = helpers.train_config(tmp_path, data_dir, export_model_steps=2, max_steps=6)
    trainer.train(first)
    (tmp_path / "notes.txt").write_text("kept")
    again = helpers.train_config(tmp_path, data_dir, model="MoeModel", max_steps=2,
                                 start_new_model=True)
    result = trainer.train(again)
    assert result.checkpoint == str(tmp_path / "ckpt-2")
    assert _steps(tmp_path) == [2]  # ckpt-4 and ckpt-6 of the LogisticModel are gone
    assert checkpoints.checkpoint_paths(str(tmp_path)) == [str(tmp_path / "ckpt-2")]
    assert (tmp_path / "notes.txt").read_text() == "kept"
    checkpoints.load_model(str(tmp_path))  # the MoeModel
