"""Ensemble members: `TRAIN_DIR[@CHECKPOINTS]` specs, checkpoint selection and loading.

CHECKPOINTS picks the checkpoints of a train dir whose mean becomes the member's weights:

    latest        the newest checkpoint (the default)
    last:N        the newest N checkpoints
    START:END     every checkpoint with START <= step <= END (either end may be left out)
    STEP          the checkpoint of exactly that step

A member without `@...` uses the export-wide default (`--average_checkpoints`). Any train dir
works, whatever its model: the model is rebuilt from its model_flags.json.
"""
import dataclasses
import os
import re
from typing import Optional

import yt8m  # noqa: F401
import tensorflow as tf

from frame_level_models import pruning
from yt8m.export import averaging
from yt8m.training import checkpoints
from yt8m.core import model_flags as model_flags_lib
from yt8m.training.model_builder import build_model
from yt8m.core import errors

LATEST = "latest"
_LAST_N = re.compile(r"^last:(\d+)$")
_RANGE = re.compile(r"^(\d*):(\d*)$")
_STEP = re.compile(r"^(\d+)$")


@dataclasses.dataclass(frozen=True)
class CheckpointSelection:
    """Which checkpoints of a train dir to average (see the module docstring)."""
    kind: str                     # "latest", "last", "range" or "step"
    count: int = 1                # for "last"
    start: Optional[int] = None   # for "range" (inclusive) and "step"
    end: Optional[int] = None     # for "range" (inclusive)

    def describe(self):
        if self.kind == "last":
            return f"last:{self.count}"
        if self.kind == "range":
            return f"{'' if self.start is None else self.start}:{'' if self.end is None else self.end}"
        if self.kind == "step":
            return str(self.start)
        return LATEST


def parse_selection(text, where):
    """'last:3' / '1000:3000' / '2500' / 'latest' -> CheckpointSelection; `where` names the flag."""
    text = text.strip()
    if text == LATEST:
        return CheckpointSelection(LATEST)
    match = _LAST_N.match(text)
    if match:
        count = int(match.group(1))
        if count < 1:
            raise errors.InvalidInputError(f"{where}: last:N needs N >= 1, got {text!r}")
        return CheckpointSelection("last", count=count)
    match = _RANGE.match(text)
    if match:
        start = int(match.group(1)) if match.group(1) else None
        end = int(match.group(2)) if match.group(2) else None
        if start is not None and end is not None and start > end:
            raise errors.InvalidInputError(f"{where}: step range {text!r} starts after it ends")
        return CheckpointSelection("range", start=start, end=end)
    match = _STEP.match(text)
    if match:
        return CheckpointSelection("step", start=int(match.group(1)))
    raise errors.InvalidInputError(
        f"{where}: cannot read checkpoint selection {text!r}; expected 'latest', 'last:N', "
        "'START:END' (steps, inclusive, either may be empty) or a single step")


@dataclasses.dataclass(frozen=True)
class MemberSpec:
    train_dir: str
    selection: CheckpointSelection

    def describe(self):
        return f"{self.train_dir}@{self.selection.describe()}"


def parse_member(text, default_selection):
    """'DIR' or 'DIR@SELECTION' -> MemberSpec. Only the last '@' separates (a dir may hold '@')."""
    text = text.strip()
    if not text:
        raise errors.InvalidInputError(
            "--members: empty member (two commas in a row, or a trailing comma?)")
    train_dir, separator, selection_text = text.rpartition("@")
    if not separator:
        return MemberSpec(text, default_selection)
    if not train_dir:
        raise errors.InvalidInputError(f"--members: member {text!r} has no train dir before '@'")
    return MemberSpec(train_dir, parse_selection(selection_text, f"--members={text}"))


def parse_members(texts, default_selection=CheckpointSelection(LATEST)):
    specs = [parse_member(text, default_selection) for text in texts]
    if not specs:
        raise errors.InvalidInputError("--members is empty: give at least one TRAIN_DIR")
    described = [spec.describe() for spec in specs]
    repeated = sorted({text for text in described if described.count(text) > 1})
    if repeated:
        raise errors.InvalidInputError(
            f"--members lists {', '.join(repeated)} more than once (give it a "
            "larger weight instead)")
    return specs


def available_checkpoints(train_dir):
    """[(step, checkpoint path)] of every checkpoint file in train_dir, oldest first."""
    pattern = os.path.join(train_dir, f"{checkpoints.CHECKPOINT_PREFIX}-*.index")
    found = []
    for index_file in tf.io.gfile.glob(pattern):
        path = index_file[:-len(".index")]
        try:
            found.append((checkpoints.checkpoint_step(path), path))
        except ValueError:
            continue  # not a ckpt-<step> file
    if not found:
        raise checkpoints.NoCheckpointError(
            f"--members: {train_dir!r} holds no checkpoint "
            f"({checkpoints.CHECKPOINT_PREFIX}-<step>.index)")
    return sorted(found)


def select_checkpoints(spec):
    """The checkpoint paths `spec` names, oldest first; a clear error when there are none."""
    found = available_checkpoints(spec.train_dir)
    selection = spec.selection
    steps = ", ".join(str(step) for step, _ in found)
    if selection.kind == LATEST:
        chosen = found[-1:]
    elif selection.kind == "last":
        if selection.count > len(found):
            raise errors.InvalidInputError(
                f"--members: {spec.describe()} asks for {selection.count} checkpoints but "
                f"{spec.train_dir} holds {len(found)} (steps {steps})")
        chosen = found[-selection.count:]
    elif selection.kind == "range":
        chosen = [(step, path) for step, path in found
                  if (selection.start is None or step >= selection.start)
                  and (selection.end is None or step <= selection.end)]
    else:
        chosen = [(step, path) for step, path in found if step == selection.start]
    if not chosen:
        raise errors.InvalidInputError(
            f"--members: {spec.describe()} matches no checkpoint of {spec.train_dir} "
            f"(steps {steps})")
    return [path for _, path in chosen]


@dataclasses.dataclass
class LoadedMember:
    """A member rebuilt in float32 with its (averaged) weights."""
    spec: MemberSpec
    model: object         # tf_keras model, uncompiled
    model_flags: dict     # train_dir/model_flags.json
    checkpoints: list     # the averaged checkpoint paths

    @property
    def name(self):
        return os.path.basename(os.path.normpath(self.spec.train_dir)) or self.spec.train_dir


def load_member(spec):
    """Rebuilds the member's model from its model_flags.json and averages its checkpoints."""
    flags = model_flags_lib.read_model_flags(spec.train_dir)
    paths = select_checkpoints(spec)
    model = build_model(flags)
    description = (f"model {flags.get('model')!r} described by "
                   f"{model_flags_lib.model_flags_path(spec.train_dir)}")
    averaging.average_checkpoints(model, paths, description)
    # A pruned train dir's model: wrappers removed, pruned weights zeros (--sparse_weights).
    return LoadedMember(spec=spec, model=pruning.strip(model), model_flags=flags,
                        checkpoints=paths)
