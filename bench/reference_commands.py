"""Runs the reference repositories' command lines (bench/reference_commands.json: the starter and
Willow READMEs, linrongc's and MOD's scripts, boliu61's README) with this project's tools and
reports, per command, whether it runs and which flags failed:

    python bench/reference_commands.py [--only=REGEX] [--max_steps=2] \
        [--markdown=docs/reference_commands.md] [--readme=README.md]

Every command runs with its flags as written there, except these overrides (OVERRIDES below):
- tool: the reference tool's counterpart here (TOOLS); MOD's parallel_train.py with --num_gpu=g
  and --model=MixNeXtVladModel becomes train.py --model=MODNeXtVLADModel --mod_tree=gxM (its
  model-parallel towers, M = --mix_number), --num_gpu=1 one model;
- paths: data patterns point to tiny synthetic records (frame or segment files by the tool and
  --segment_labels), train dirs, output files and checkpoints to a scratch directory (the same
  train dir name is the same directory, so an eval or inference command reads what the train
  command before it wrote);
- sizes: model sizes, batch size, frames and steps reduced (SIZES; a flag is replaced where the
  command has it, added to training commands where the tool defines it), --num_classes and
  --max_frames of the synthetic data added to training commands.
The project's tool must define every flag the reference tool defines: the flags it does not define
(read from `--helpfull`) are reported, those the reference tool did not define either (it ignored
them) apart, and the command is run without them, so the table says both which flags failed and
whether the rest runs. boliu61's in-graph float16 ensemble (--ensemble_num) becomes its members'
own train.py runs and an export_ensemble.py of them. Reference parameter counts (tests/reference/param_counts.py, from the
references' variable shapes, 3862 classes) stand next to this project's model built from the same
flags at full size.
"""
import dataclasses
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _path in (REPO, os.path.join(REPO, "tests")):  # the project; tests/reference (param counts)
    if _path not in sys.path:
        sys.path.insert(0, _path)

from absl import flags as absl_flags  # noqa: E402

import yt8m  # noqa: E402,F401
import tensorflow as tf  # noqa: E402
from tensorflow.python.ops import resource_variable_ops  # noqa: E402

import frame_level_models  # noqa: E402
from frame_level_models import hparams as zoo_hparams  # noqa: E402
from frame_level_models import registry  # noqa: E402
from reference import param_counts as pc  # noqa: E402
from yt8m import synthetic  # noqa: E402
from yt8m.core import cli  # noqa: E402
from yt8m.core import files  # noqa: E402
from yt8m.core import options  # noqa: E402

COMMANDS_FILE = os.path.join(REPO, "bench", "reference_commands.json")
NUM_CLASSES = 12          # the synthetic vocabulary
MAX_FRAMES = 30           # the synthetic videos' longest
VOCAB = 3862              # parameter counts: the starter's vocabulary, for both sides
README_BEGIN = "<!-- reference-commands:begin -->"
README_END = "<!-- reference-commands:end -->"

# Reference tool -> this project's command (argv prefix after the interpreter).
TOOLS = {
    "train.py": ["train.py"], "eval.py": ["eval.py"], "inference.py": ["inference.py"],
    "parallel_train.py": ["train.py"], "parallel_eval.py": ["eval.py"],
    "segment_eval_inference.py": ["-m", "yt8m.segments.evaluate"],
}
TRAINING_TOOLS = ("train.py", "parallel_train.py", "seg_train.py")
EVAL_TOOLS = ("eval.py", "parallel_eval.py")
# Model sizes and run lengths: replaced where the command sets them; the starred ones are also
# added to training commands whose tool defines them (their defaults are large).
SIZES = {"nextvlad_cluster_size": "4*", "nextvlad_hidden_size": "16*",
         "netvlad_cluster_size": "4*", "netvlad_hidden_size": "16*", "fv_cluster_size": "4*",
         "fv_hidden_size": "16*", "dbof_cluster_size": "16*", "dbof_hidden_size": "16*",
         "lstm_cells": "8*", "gru_cells": "8*", "iterations": "10", "batch_size": "4*",
         "num_readers": "1", "num_epochs": "1", "max_step": "2"}
MODEL_INDEPENDENT = ("batch_size",)  # added to every training command
DATA_FLAGS = {"num_classes": str(NUM_CLASSES), "max_frames": str(MAX_FRAMES)}
WHITELIST_FILE = "segment_label_ids.csv"  # written by yt8m.synthetic next to the records
OUTPUT_FLAGS = ("output_file", "output_model_tgz", "label_cache", "submission_file")
# MOD's seg script names its video run without the "_fix" of the run its parallel_script trains
# (same configuration): the bench warm starts from that run.
PRETRAINED_RUNS = {
    "parallel4_mix3_nextvlad_x2_1T1_8g_5l2_5drop_128k_2048_80_logistic_final":
        "parallel4_mix3_nextvlad_x2_1T1_8g_5l2_5drop_128k_2048_80_logistic_fix_final"}
OVERRIDES = (
    "tool: parallel_train.py -> train.py (--num_gpu=g: --model=MODNeXtVLADModel --mod_tree=gxM), "
    "parallel_eval.py -> eval.py, segment_eval_inference.py -> python -m yt8m.segments.evaluate",
    "paths: --train/eval/input_data_pattern -> synthetic frame (or, with --segment_labels, "
    "segment) records, and with --segment_labels --segment_label_ids_file (default: a URL) -> "
    "the synthetic whitelist; --train_dir, --output_file, --output_model_tgz, --label_cache, "
    "--submission_file -> a scratch dir; --pretrain_model_path, --checkpoint_file -> the newest "
    "checkpoint of the run they name",
    "sizes: " + ", ".join(f"--{name}={value.rstrip('*')}" for name, value in SIZES.items())
    + " (replaced where given; the starred ones also added to training commands whose model "
    f"has them); training commands also get --num_classes={NUM_CLASSES} "
    f"--max_frames={MAX_FRAMES} and --max_steps",
    "eval commands without --run_once get it (else the evaluator, the reference's too, waits "
    "for new checkpoints forever)",
    "a README note's intended flags (`intended_extra_argv`) are added",
    "boliu61's float16 ensemble (--ensemble_num=n with n x --netvlad_cluster_size, "
    "--netvlad_hidden_size, --ensemble_wts): its train.py step -> one train.py run per member "
    "(train_dir_member<i>); its eval.py --create_meta_only step (with overwrite_float16_ckpt.py "
    "after it) -> export_ensemble.py --members=<those runs> --weights=<ensemble_wts> "
    "(--float16_flag: --precision=float16 --float16_selection=boliu61)",
)


@dataclasses.dataclass
class Options:
    only: str = options.option("", "Run only the commands whose source, tool or model matches "
                               "this regular expression; empty: all.")
    max_steps: int = options.option(2, "Training steps of every training command.", lower=1)
    work_dir: str = options.option("", "Scratch directory (data, train dirs); empty: a new "
                                   "temporary one.")
    markdown: str = options.option("", "Write the table (markdown) to this file; empty: stdout "
                                   "only.")
    readme: str = options.option("", "Replace the block between the reference-commands markers "
                                 "of this file with the summary.")
    timeout_secs: int = options.option(600, "Per command run.", lower=1)


# ------------------------------------------------------------------------------ flags of argv


@dataclasses.dataclass
class Flag:
    name: str
    value: Optional[str]  # None: a bare boolean flag
    separate: bool = False  # "--name value" (two words) rather than "--name=value"

    def words(self):
        if self.value is None:
            return [f"--{self.name}"]
        return [f"--{self.name}", self.value] if self.separate else [f"--{self.name}={self.value}"]


def parse_argv(argv):
    """The words bash passed -> [Flag] in order ('--name value' when the next word is no flag)."""
    result, index = [], 0
    while index < len(argv):
        word = argv[index]
        if not word.startswith("--"):
            raise ValueError(f"unexpected word {word!r} in {argv}")
        name, equals, value = word[2:].partition("=")
        if equals:
            result.append(Flag(name, value))
        elif index + 1 < len(argv) and not argv[index + 1].startswith("--"):
            result.append(Flag(name, argv[index + 1], separate=True))
            index += 1
        else:
            result.append(Flag(name, None))
        index += 1
    return result


def values(flags):
    """{name: value} (the last occurrence wins, as in absl); bare flags are 'true'."""
    return {flag.name: "true" if flag.value is None else flag.value for flag in flags}


def is_true(text):
    return str(text).lower() in ("true", "1", "yes")


def set_flag(flags, name, value, add=True):
    """Replaces every occurrence of --name (keeping its form), or adds --name=value."""
    found = False
    for flag in flags:
        if flag.name == name:
            flag.value, found = value, True
    if not found and add:
        flags.append(Flag(name, value))
    return found or add


def remove_flag(flags, name):
    flags[:] = [flag for flag in flags if flag.name != name]


def defined_by(name, defined):
    """absl accepts --name, and --noname for a boolean."""
    return name in defined or (name.startswith("no") and name[2:] in defined)


# ------------------------------------------------------------------------------ translation


@dataclasses.dataclass
class Run:
    """One command as it is run here."""
    tool: list             # argv prefix after the interpreter
    flags: list            # [Flag]
    train_dir: str = ""    # the --train_dir name as written ("" when none)
    pretrain: str = ""     # the run --pretrain_model_path / --checkpoint_file names
    skip: str = ""         # why it is not run at all
    # [(tool, [Flag])] run in order instead of (tool, flags) when the reference command is
    # several commands here (boliu61's in-graph ensemble), and what that translation did.
    steps: list = dataclasses.field(default_factory=list)
    translated: str = ""

    def commands(self):
        return self.steps or [(self.tool, self.flags)]


def _safe_name(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"


def _translate_parallel(command, flags, run):
    """MOD parallel_train.py / parallel_eval.py: --num_gpu is the number of model-parallel
    towers (each a full copy of --model, the same batch) under a root gate."""
    num_gpu = int(values(flags).get("num_gpu", "1"))
    remove_flag(flags, "num_gpu")
    if command["tool"] != "parallel_train.py" or num_gpu == 1:
        return
    model = values(flags).get("model", "")
    if model not in ("MixNeXtVladModel", "MixNeXtVLADModel"):
        run.skip = f"no translation of parallel_train.py --model={model} --num_gpu={num_gpu}"
        return
    mix_number = values(flags).get("mix_number", "3")
    set_flag(flags, "model", "MODNeXtVLADModel")
    set_flag(flags, "mod_tree", f"{num_gpu}x{mix_number}")


# boliu61's in-graph ensemble: train.py/eval.py --ensemble_num=n repeat --netvlad_cluster_size,
# --netvlad_hidden_size and --ensemble_wts once per member (absl multi flags there).
BOLIU_ENSEMBLE_FLAGS = ("ensemble_num", "ensemble_wts", "float16_flag", "create_meta_only")
BOLIU_MEMBER_FLAGS = ("netvlad_cluster_size", "netvlad_hidden_size")


def ensemble_members(flags):
    """([member flags], [weight]) of a boliu61 ensemble command: each member has the i-th
    --netvlad_cluster_size/--netvlad_hidden_size and the flags that are not the ensemble's."""
    count = int(values(flags)["ensemble_num"])
    per_member = {name: [flag.value for flag in flags if flag.name == name]
                  for name in BOLIU_MEMBER_FLAGS}
    weights = [flag.value for flag in flags if flag.name == "ensemble_wts"]
    if any(len(found) != count for found in per_member.values()) or len(weights) != count:
        raise ValueError(f"--ensemble_num={count} needs {count} of each of --ensemble_wts and "
                         f"--{' --'.join(BOLIU_MEMBER_FLAGS)}")
    shared = [flag for flag in flags
              if flag.name not in BOLIU_ENSEMBLE_FLAGS + BOLIU_MEMBER_FLAGS]
    members = [[dataclasses.replace(flag) for flag in shared]
               + [Flag(name, per_member[name][index]) for name in BOLIU_MEMBER_FLAGS]
               for index in range(count)]
    return members, weights


def _member_dir(train_dir, index):
    return f"{train_dir}_member{index}"


def _translate_boliu_ensemble(command, run, runs_dir):
    """boliu61's float16 ensemble recipe: step 1 (train.py --ensemble_num=n, 10 steps: the
    members' variables in one graph) and step 2 (eval.py --create_meta_only: the untrained
    float16 graph that overwrite_float16_ckpt.py fills with the separately trained members).
    Here each member is its own train.py run and export_ensemble.py builds the weighted float16
    ensemble of the trained members (--float16_selection=boliu61: the four tensors boliu61 casts)."""
    members, weights = ensemble_members(run.flags)
    train_dir = values(run.flags)["train_dir"]
    float16 = is_true(values(run.flags).get("float16_flag", "false"))
    if command["tool"] in TRAINING_TOOLS:
        for index, flags in enumerate(members):
            set_flag(flags, "train_dir", _member_dir(train_dir, index))
            run.steps.append((run.tool, flags))
        run.translated = (f"boliu61's in-graph ensemble of {len(members)} members: each member "
                          "trained as its own run (train_dir_member<i>)")
    elif is_true(values(run.flags).get("create_meta_only", "false")):
        name = _safe_name(f"{run.train_dir}_ensemble")
        flags = [Flag("members", ",".join(_member_dir(train_dir, index)
                                          for index in range(len(members)))),
                 Flag("weights", ",".join(weights)),
                 Flag("output_dir", os.path.join(runs_dir, "outputs", name)), Flag("overwrite", None)]
        if float16:
            flags += [Flag("precision", "float16"), Flag("float16_selection", "boliu61")]
        pattern = values(run.flags).get("eval_data_pattern")
        if pattern:
            flags.append(Flag("eval_data_pattern", pattern))
        run.steps.append((["export_ensemble.py"], flags))
        run.translated = ("boliu61's steps 2-3 (an untrained float16 graph, filled with the "
                          "members' weights by overwrite_float16_ckpt.py): export_ensemble.py "
                          "over the members" + (" with --precision=float16 "
                                                "--float16_selection=boliu61" if float16 else ""))
    else:
        run.skip = "no translation of an ensemble eval.py without --create_meta_only"


def model_hparam_names(model):
    """The hparams of this project's model `model` (empty when it has no such model)."""
    try:
        return set(registry.hparam_names(model))
    except ValueError:
        return set()


def translate(command, data_dir, runs_dir, defined, max_steps, model_hparams=frozenset()):
    """The Run of `command` (a bench/reference_commands.json entry) with the overrides;
    `defined`: the flags the project's tool defines; `model_hparams`: the hparams of the model it
    trains (a size flag is added only where the model has it)."""
    reference_tool = command["tool"]
    flags = parse_argv(command["argv"] + command.get("intended_extra_argv", []))
    run = Run(TOOLS.get(reference_tool, ["train.py"]), flags)
    if command.get("tool_missing_in_reference"):
        run.skip = f"{reference_tool} is not in the reference repository"
        return run
    if reference_tool.startswith("parallel_"):
        _translate_parallel(command, flags, run)
    given = values(flags)
    segment = is_true(given.get("segment_labels", "false"))
    training = reference_tool in TRAINING_TOOLS
    split = {"train_data_pattern": ("segment", "validate") if segment else ("frame", "train"),
             "eval_data_pattern": ("segment", "validate") if segment else ("frame", "validate"),
             "input_data_pattern": ("segment", "test") if segment else ("frame", "test")}
    if reference_tool == "segment_eval_inference.py":
        split["eval_data_pattern"] = ("segment", "validate")
    for name, (level, part) in split.items():
        set_flag(flags, name, os.path.join(data_dir, level, f"{part}*.tfrecord"), add=False)
    if segment and "segment_label_ids_file" in defined:  # its default is a URL: no network here
        set_flag(flags, "segment_label_ids_file", os.path.join(data_dir, WHITELIST_FILE))
    if "train_dir" in given:
        run.train_dir = given["train_dir"]
        set_flag(flags, "train_dir", os.path.join(runs_dir, _safe_name(run.train_dir)))
    for name in OUTPUT_FLAGS:
        if name in given:
            path = os.path.join(runs_dir, "outputs", _safe_name(given[name]))
            set_flag(flags, name, path)
    for name in ("pretrain_model_path", "checkpoint_file"):
        if name in given:  # the run it names; its newest checkpoint once that run exists
            source = os.path.dirname(given[name]) or given.get("train_dir", "")
            run.pretrain = PRETRAINED_RUNS.get(source, source)
            set_flag(flags, name, os.path.join(runs_dir, _safe_name(run.pretrain), "ckpt-?"))
    for name, value in SIZES.items():
        if value is not None:
            add = (training and value.endswith("*") and name in defined
                   and (name in model_hparams or name in MODEL_INDEPENDENT))
            set_flag(flags, name, value.rstrip("*"), add=add)
    if reference_tool in EVAL_TOOLS:  # without it the evaluator waits for new checkpoints
        if "run_once" not in given:
            flags.append(Flag("run_once", "true"))
    if training:
        set_flag(flags, "max_steps", str(max_steps), add=True)
        for name, value in DATA_FLAGS.items():
            set_flag(flags, name, value, add=name in defined)
    if int(given.get("ensemble_num", "1")) > 1:
        _translate_boliu_ensemble(command, run, runs_dir)
    return run


def newest_checkpoint(train_dir):
    """The newest ckpt-<step> of a train dir written by train.py, or None."""
    steps = []
    for name in os.listdir(train_dir) if os.path.isdir(train_dir) else ():
        match = re.fullmatch(r"ckpt-(\d+)\.index", name)
        if match:
            steps.append(int(match.group(1)))
    return os.path.join(train_dir, f"ckpt-{max(steps)}") if steps else None


# ------------------------------------------------------------------------------ running


def environment():
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               TF_NUM_INTEROP_THREADS="1", TF_NUM_INTRAOP_THREADS="2")
    return env


def defined_flags(tool):
    """The flags a tool of this project defines, from its --helpfull (asked once per tool)."""
    return _defined_flags(tuple(tool))


@functools.lru_cache(maxsize=None)
def _defined_flags(tool):
    result = subprocess.run([sys.executable, *tool, "--helpfull"], cwd=REPO, env=environment(),
                            capture_output=True, text=True, timeout=300)
    names = re.findall(r"^\s+--(?:\[no\])?([A-Za-z0-9_]+):", result.stdout, flags=re.M)
    if not names:
        raise RuntimeError(f"{' '.join(tool)} --helpfull listed no flags:\n"
                           f"{result.stderr[-2000:]}")
    return set(names)


def error_line(output):
    """The line that says why a tool failed: '<tool>: error: ...', absl's flag error, else the
    exception of a traceback."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for pattern in (r"^[\w./-]+: error: ", r"FATAL Flags parsing error: ", r"Error: ",
                    r"^\w+(Error|Exception)\b"):
        matches = [line for line in lines if re.search(pattern, line)]
        if matches:
            return matches[-1][:300]
    return lines[-1][:300] if lines else "(no output)"


def run_tool(tool, flags, timeout):
    """(return code, output) of the tool with these flags."""
    argv = [sys.executable, *tool] + [word for flag in flags for word in flag.words()]
    try:
        result = subprocess.run(argv, cwd=REPO, env=environment(), capture_output=True,
                                text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout} s"
    return result.returncode, result.stdout + result.stderr


# ------------------------------------------------------------------------------ parameters


def _flag_value(given, name, default, kind=str):
    if name not in given:
        return default
    return is_true(given[name]) if kind is bool else kind(given[name])


def reference_parameters(command):
    """Trainable parameters of the reference model the command builds (3862 classes), or None."""
    if command["tool"] not in TRAINING_TOOLS:
        return None
    flags = parse_argv(command["argv"])
    given = values(flags)
    model, repo = command["model"], command["source"].split("/")[1]
    get = lambda name, default, kind=str: _flag_value(given, name, default, kind)  # noqa: E731
    if repo == "youtube-8m" and command["source"].startswith("boliu61"):
        clusters = [int(f.value) for f in flags if f.name == "netvlad_cluster_size"]
        hidden = [int(f.value) for f in flags if f.name == "netvlad_hidden_size"]
        if model is None:
            return None  # no --model: the starter's video-level LogisticModel on frame input
        return sum(pc.count(pc.boliu_netvlad_member(k, h, prefix=f"m{i}/"))
                   for i, (k, h) in enumerate(zip(clusters, hidden)))
    if model == "FrameLevelLogisticModel":
        return pc.count(pc.frame_level_logistic_model())
    willow = dict(gating=get("gating", False, bool),
                  moe_prob_gating=get("moe_prob_gating", False, bool))
    if model == "NetVLADModelLF":
        return pc.count(pc.netvlad_model_lf(
            cluster_size=get("netvlad_cluster_size", 64, int),
            hidden_size=get("netvlad_hidden_size", 1024, int),
            lightvlad=get("lightvlad", False, bool), netvlad_relu=get("netvlad_relu", True, bool),
            **willow))
    if model == "NetFVModelLF":
        return pc.count(pc.netfv_model_lf(
            fv_cluster_size=get("fv_cluster_size", 64, int),
            fv_hidden_size=get("fv_hidden_size", 2048, int), fv_relu=get("fv_relu", True, bool),
            fv_couple_weights=get("fv_couple_weights", True, bool), **willow))
    if model in ("GatedDbofModelLF", "SoftDbofModelLF"):
        function = (pc.gated_dbof_model_lf if model == "GatedDbofModelLF"
                    else pc.soft_dbof_model_lf)
        return pc.count(function(dbof_cluster_size=get("dbof_cluster_size", 16384, int),
                                 dbof_hidden_size=get("dbof_hidden_size", 2048, int),
                                 dbof_relu=get("dbof_relu", True, bool),
                                 moe_prob_gating=willow["moe_prob_gating"]))
    if model == "GruModel":
        return pc.count(pc.gru_model(gru_cells=get("gru_cells", 1024, int)))
    if model == "LstmModel":
        return pc.count(pc.willow_lstm_model(lstm_cells=get("lstm_cells", 1024, int)))
    nextvlad = dict(nextvlad_cluster_size=get("nextvlad_cluster_size", 64, int),
                    nextvlad_hidden_size=get("nextvlad_hidden_size", 1024, int),
                    groups=get("groups", 8, int), expansion=get("expansion", 2, int),
                    gating_reduction=get("gating_reduction", 8, int))
    num_gpu = get("num_gpu", 1, int) if command["tool"] == "parallel_train.py" else 0
    if model == "NeXtVLADModel":
        shapes = pc.nextvlad_model(
            video_level_classifier_model=get("video_level_classifier_model", "MoeModel"),
            num_mixtures=get("moe_num_mixtures", 4, int), **nextvlad)
        root_gate = 1152 * num_gpu + 2 * 1152 + num_gpu if num_gpu else 0  # MOD's ensemble gate
        return num_gpu * pc.count(shapes) + root_gate if num_gpu else pc.count(shapes)
    if model == "MixNeXtVladModel":
        mix_number = get("mix_number", 3, int)
        if num_gpu:
            return pc.count(pc.mod_tree(num_gpu=num_gpu, mix_number=mix_number, **nextvlad))
        return pc.count(pc.mix_nextvlad_model(mix_number=mix_number, **nextvlad))
    return None


def project_parameters(flags, model_name):
    """Trainable parameters of this project's model built from `flags` (full size, 3862
    classes), or a short reason it cannot be built."""

    def uninitialized(next_creator, **kwargs):
        del next_creator
        return resource_variable_ops.UninitializedVariable(
            shape=kwargs["shape"], dtype=kwargs["dtype"], name=kwargs.get("name"),
            trainable=kwargs.get("trainable", True))

    if model_name not in registry.model_names() + tuple(registry.aliases()):
        return f"no model {model_name}"
    model_name = registry.canonical_name(model_name)
    flag_values = absl_flags.FlagValues()
    zoo_hparams.define_flags(flag_values)
    flag_values(["probe"] + [word for flag in flags for word in flag.words()], known_only=True)
    hparams = zoo_hparams.hparams_from_flags(flag_values, model_name=model_name)
    try:
        with tf.variable_creator_scope(uninitialized):
            model = frame_level_models.build(model_name, VOCAB, feature_names="rgb,audio",
                                             feature_sizes="1024,128", **hparams)
    except ValueError as error:
        return str(error).splitlines()[0][:120]
    return sum(int(v.shape.num_elements()) for v in model.trainable_variables)


# ------------------------------------------------------------------------------ the table


@dataclasses.dataclass
class Row:
    index: int
    command: dict
    run: Run
    status: str
    detail: str = ""
    reference_params: Optional[int] = None
    project_params: object = None
    seconds: float = 0.0
    passed: bool = False


def _source(command):
    repo_path, _, commit = command["source"].partition("@")
    return f"{repo_path}:{command['line']}"


def _tool_text(command, run):
    tools = [" ".join(tool) for tool, _ in run.commands()]
    here = tools[0] if len(set(tools)) == 1 else " + ".join(tools)
    here += f" x{len(tools)}" if len(tools) > 1 and len(set(tools)) == 1 else ""
    return command["tool"] if here == command["tool"] else f"{command['tool']} -> {here}"


def _params_text(row):
    reference = "—" if row.reference_params is None else f"{row.reference_params:,}"
    if row.project_params is None:
        return reference if row.reference_params is None else f"{reference} / —"
    here = (f"{row.project_params:,}" if isinstance(row.project_params, int)
            else str(row.project_params))
    return f"{reference} / {here}"


def _counts(rows):
    counts = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    passed = sum(row.passed for row in rows)
    return (f"{passed} of {len(rows)} pass ("
            + ", ".join(f"{count} {status}" for status, count in sorted(counts.items())) + ")")


def markdown(rows, max_steps):
    lines = [
        "# Reference command lines, run with this project's tools",
        "",
        "Produced by `python bench/reference_commands.py --markdown=docs/reference_commands.md "
        "--readme=README.md` from `bench/reference_commands.json` (each command's source file and "
        f"line are named), {max_steps} training steps on tiny synthetic data. Overrides (nothing "
        "else is changed):",
        ""] + [f"- {text}" for text in OVERRIDES] + [
        "",
        f"Status: **{RUNS}** (as written, with the overrides); **{RUNS_WITHOUT_IGNORED}** (the "
        "flags listed are not flags of the reference tool either: it ignored them, TF1's flag "
        "parsing skipping unknown ones, while absl refuses them here; without them the command "
        f"runs); **{RUNS_WITHOUT_MISSING}** (the reference tool defines the flags listed, this "
        f"project's does not); **{FAILS}** (the error); **{NOT_RUN}** (why). A row **passes** "
        f"when it is {RUNS} or {RUNS_WITHOUT_IGNORED}, or not run because the reference cannot "
        "run it either (its tool is not in its repository, or no listed command trains the run "
        "it reads). "
        "Parameters: trainable, 3862 classes, reference (its variable shapes) / here (the model "
        "this project builds from the same flags), training commands only.",
        "",
        "Summary: " + _counts(rows),
        "",
        "| # | source | tool | model | parameters (reference / here) | status | passes | detail |",
        "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        detail = row.detail.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {row.index} | {_source(row.command)} | "
                     f"{_tool_text(row.command, row.run)} | {row.command.get('model') or '—'} | "
                     f"{_params_text(row)} | {row.status} | {'yes' if row.passed else 'no'} | "
                     f"{detail} |")
    return "\n".join(lines) + "\n"


def summary(rows):
    return (f"{len(rows)} reference command lines (bench/reference_commands.json): "
            + _counts(rows)
            + " — table and details in [docs/reference_commands.md](docs/reference_commands.md).")


def replace_readme_block(path, text):
    with open(path) as handle:
        content = handle.read()
    if README_BEGIN not in content or README_END not in content:
        raise ValueError(f"--readme={path!r} has no {README_BEGIN} ... {README_END} block")
    head, _, rest = content.partition(README_BEGIN)
    _, _, tail = rest.partition(README_END)
    files.write_text_atomically(path, f"{head}{README_BEGIN}\n{text}\n{README_END}{tail}")


# ------------------------------------------------------------------------------ main


def make_data(data_dir):
    synthetic.generate(data_dir, num_videos=24, num_classes=NUM_CLASSES, seed=0, num_shards=1,
                       min_frames=20, max_frames=MAX_FRAMES, num_segment_videos=8)


# Statuses; a row passes when it runs with every flag its reference tool defines, or when the
# reference itself cannot run it (its tool is missing, no listed command trains what it reads).
RUNS = "runs"
RUNS_WITHOUT_IGNORED = "runs without the flags the reference ignored"
RUNS_WITHOUT_MISSING = "runs without flags this tool lacks"
FAILS = "fails"
NOT_RUN = "not run"


def run_commands(commands, work_dir, max_steps=2, timeout=600, parameters=True, log=print):
    """Runs `commands` [(index, entry)] in order; returns [Row]."""
    data_dir, runs_dir = os.path.join(work_dir, "data"), os.path.join(work_dir, "runs")
    if not os.path.isdir(os.path.join(data_dir, "frame")):
        make_data(data_dir)
    os.makedirs(os.path.join(runs_dir, "outputs"), exist_ok=True)
    trained = {}  # train dir name as written -> (command index, succeeded)
    rows = []
    for index, command in commands:
        tool = TOOLS.get(command["tool"], ["train.py"])
        model = _model_after_translation(command)
        run = translate(command, data_dir, runs_dir, defined_flags(tool), max_steps,
                        model_hparam_names(model) if model else set())
        row = Row(index, command, run, NOT_RUN)
        if parameters:
            row.reference_params = reference_parameters(command)
            if command["tool"] in TRAINING_TOOLS and not run.skip:
                row.project_params = project_parameter_count(command, model or "LogisticModel")
        rows.append(row)
        needs = run.pretrain if run.pretrain else (
            run.train_dir if command["tool"] not in TRAINING_TOOLS else "")
        if run.skip:
            row.detail, row.passed = run.skip, bool(command.get("tool_missing_in_reference"))
        elif needs and needs not in trained:
            row.detail, row.passed = f"no listed command trains {needs!r}", True
        elif needs and not trained[needs][1]:
            row.detail = f"needs #{trained[needs][0]} ({needs!r}), which did not run"
        else:
            _fill_checkpoints(run, runs_dir)
            _run_steps(row, timeout)
        if command["tool"] in TRAINING_TOOLS and run.train_dir:
            trained[run.train_dir] = (index, row.status.startswith(RUNS))
        log(f"#{index} {_source(command)}: {row.status} {row.detail[:200]} "
            f"({row.seconds:.0f} s)")
    return rows


def _run_steps(row, timeout):
    """Runs the row's command(s) without the flags their tool does not define; fills status,
    detail, passed and seconds."""
    reference_undefined = set(row.command.get("flags_not_defined_by_reference_tool") or ())
    unknown = set()
    start = time.perf_counter()
    for tool, flags in row.run.commands():
        defined = defined_flags(tool)
        missing = {flag.name for flag in flags if not defined_by(flag.name, defined)}
        unknown |= missing
        code, output = run_tool(tool, [flag for flag in flags if flag.name not in missing],
                                timeout)
        if code != 0:
            break
    row.seconds = time.perf_counter() - start
    lacking = sorted(unknown - reference_undefined)
    ignored = sorted(unknown & reference_undefined)
    notes = ([row.run.translated] if row.run.translated else []) + (
        [f"unknown here: {', '.join('--' + name for name in lacking)}"] if lacking else []) + (
        [f"dropped, the reference tool ignored them too: "
         f"{', '.join('--' + name for name in ignored)}"] if ignored else [])
    if code != 0:
        row.status = FAILS
        notes.insert(0, error_line(output))
    else:
        row.status = RUNS_WITHOUT_MISSING if lacking else (
            RUNS_WITHOUT_IGNORED if ignored else RUNS)
        row.passed = not lacking
    row.detail = "; ".join(notes)


def project_parameter_count(command, model):
    """Trainable parameters of this project's model(s) built from the command's flags at full
    size (the sum over the members of a boliu61 ensemble), or why they cannot be built."""
    flags = full_size_flags(command)
    if int(values(flags).get("ensemble_num", "1")) <= 1:
        return project_parameters(flags, model)
    counts = [project_parameters(member, model) for member in ensemble_members(flags)[0]]
    return sum(counts) if all(isinstance(c, int) for c in counts) else counts[0]


def full_size_flags(command):
    """The command's flags after the tool translation only (no path or size override): what the
    parameter count of this project's model is built from."""
    flags = parse_argv(command["argv"] + command.get("intended_extra_argv", []))
    if command["tool"].startswith("parallel_"):
        _translate_parallel(command, flags, Run([], flags))
    return flags


def _model_after_translation(command):
    """The --model a command trains here (None for other tools)."""
    if command["tool"] not in TRAINING_TOOLS:
        return None
    return values(full_size_flags(command)).get("model", "LogisticModel")


def _fill_checkpoints(run, runs_dir):
    """--pretrain_model_path / --checkpoint_file -> the newest checkpoint of the run named."""
    if not run.pretrain:
        return
    run_dir = os.path.join(runs_dir, _safe_name(run.pretrain))
    checkpoint = newest_checkpoint(run_dir) or os.path.join(run_dir, "no-checkpoint")
    for name in ("pretrain_model_path", "checkpoint_file"):
        set_flag(run.flags, name, checkpoint, add=False)


def load_commands(only=""):
    with open(COMMANDS_FILE) as handle:
        entries = json.load(handle)["commands"]
    pattern = re.compile(only) if only else None
    return [(index, entry) for index, entry in enumerate(entries)
            if pattern is None or pattern.search(
                f"{entry['source']} {entry['tool']} {entry.get('model')}")]


def main():
    config = options.from_flags(Options)
    commands = load_commands(config.only)
    if not commands:
        raise ValueError(f"--only={config.only!r} matches no command of {COMMANDS_FILE}")
    work_dir = config.work_dir or tempfile.mkdtemp(prefix="reference_commands_")
    rows = run_commands(commands, work_dir, config.max_steps, config.timeout_secs)
    text = markdown(rows, config.max_steps)
    print(text)
    if config.markdown:
        files.write_text_atomically(config.markdown, text)
    if config.readme:
        replace_readme_block(config.readme, summary(rows))


if __name__ == "__main__":
    options.define_flags(Options)
    cli.run(main, "bench/reference_commands.py")
