"""Cuts a leaf or a sub-tree out of a trained mixture / MOD tree into a train dir of its own.

    python -m yt8m.distillation.extract --train_dir=mod_run --path=2/1 --output_dir=nextvlad_distill

`--path` lists 0-based branch indices from the root ("2/1": branch 1 of the root's branch 2). A leaf
becomes its zoo model (NeXtVLADModel for MixNeXtVLAD/MOD trees: the paper's "NeXtVLAD_distill"), a
sub-tree a MixtureModel with the remaining levels. The output dir holds model_flags.json and a
checkpoint `ckpt-<step of the source checkpoint>` written through tf.train.CheckpointManager over
tf.train.Checkpoint(model=...), the layout train.py writes: eval.py, inference.py and the exporter
load it with `yt8m.training.checkpoints.load_model`.

A tool, not a model part: it reads and writes train dirs through yt8m.training, which the model
package must not import; the model side (`mixture_models.node_model_flags`, `MixtureModel.subtree`)
lives in frame_level_models.composite.
"""
import dataclasses
import os
from typing import Optional

from absl import flags

import yt8m  # noqa: F401  (legacy Keras before TensorFlow)
import tensorflow as tf

from frame_level_models.composite import mixture_models
from frame_level_models.composite import mod_tree
from yt8m.core import cli
from yt8m.core import files
from yt8m.core import model_flags as model_flags_lib
from yt8m.core import errors
from yt8m.core import options
from yt8m.core.option_groups import CheckpointSelection
from yt8m.training import checkpoints


@dataclasses.dataclass
class ExtractOptions(CheckpointSelection):
    train_dir: Optional[str] = options.override(
        CheckpointSelection, "train_dir", None, required=True,
        help="Train dir of the trained mixture / MOD tree.")
    checkpoint: Optional[str] = options.override(
        CheckpointSelection, "checkpoint",
        help="Checkpoint of --train_dir to cut from (default: the newest).")
    path: Optional[str] = options.option(
        None, "0-based branch indices from the root joined by '/', e.g. 2/1 (a leaf of a 4x3 "
        "tree) or 2 (a sub-mixture).", required=True)
    output_dir: Optional[str] = options.option(
        None, "New train dir for the extracted model.", required=True)


def read_tree_flags(train_dir):
    """model_flags of `train_dir`, which must hold a mixture model."""
    tree_flags = model_flags_lib.read_model_flags(train_dir)
    if tree_flags.get("model") not in mixture_models.MIXTURE_MODELS:
        raise errors.InvalidInputError(
            f"--train_dir={train_dir!r} holds a {tree_flags.get('model')!r} model, "
            f"not a mixture ({', '.join(mixture_models.MIXTURE_MODELS)}); there is "
            "nothing to cut out")
    return tree_flags


def _require_empty_output(output_dir):
    for name in (model_flags_lib.MODEL_FLAGS_FILE, "checkpoint"):
        if tf.io.gfile.exists(os.path.join(output_dir, name)):
            raise errors.InvalidInputError(
                f"--output_dir={output_dir!r} already holds {name}; give a new "
                "directory (extraction never overwrites a train dir)")


def extract(train_dir, path, output_dir, checkpoint=None):
    """Writes the node at `path` (tuple of branch indices) of the tree in `train_dir` to
    `output_dir`; returns the checkpoint path written."""
    if not path:
        raise errors.InvalidInputError(
            "--path is empty; name a branch (e.g. 2 or 2/1), the root is the whole "
            "train dir")
    _require_empty_output(output_dir)
    files.check_output_path(output_dir, "--output_dir", [("--train_dir", train_dir)])
    # Check the path on the flags before paying for building and restoring the tree.
    node_flags = mixture_models.node_model_flags(read_tree_flags(train_dir), path)
    # load_model strips a pruned tree: the node is written without masks, its zeros in the weights.
    node_flags.pop(model_flags_lib.PRUNING, None)
    checkpoint_path = checkpoint or checkpoints.latest_checkpoint(train_dir)
    node = checkpoints.load_model(train_dir, checkpoint_path).subtree(path)
    tf.io.gfile.makedirs(output_dir)
    manager = checkpoints.make_checkpoint_manager(tf.train.Checkpoint(model=node), output_dir,
                                                  max_to_keep=1)
    # The checkpoint first, then model_flags.json (atomically): a dir with model_flags.json is
    # complete.
    written = manager.save(checkpoint_number=checkpoints.checkpoint_step(checkpoint_path))
    files.write_json_atomically(model_flags_lib.model_flags_path(output_dir), node_flags)
    return written


def define_flags(flag_values=flags.FLAGS):
    options.define_flags(ExtractOptions, flag_values)


def main():
    chosen = options.from_flags(ExtractOptions)
    written = extract(chosen.train_dir, mod_tree.parse_path(chosen.path), chosen.output_dir,
                      chosen.checkpoint)
    print(f"extract: wrote {written} and model_flags.json to {chosen.output_dir}", flush=True)


if __name__ == "__main__":
    define_flags()
    cli.run(main, "extract")
