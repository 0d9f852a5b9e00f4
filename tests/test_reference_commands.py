"""bench/reference_commands.py: every reference command line translates with only the documented
overrides (tools, paths, sizes), the reference parameter counts it reports are the references'
totals, and a training command and the inference command after it really run at tiny scale, the
flags this project's tool lacks reported (absl refuses them, the rest runs)."""
import importlib.util
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load():
    spec = importlib.util.spec_from_file_location(
        "reference_commands", os.path.join(REPO, "bench", "reference_commands.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


rc = _load()
COMMANDS = rc.load_commands()
REFERENCE_PATHS = re.compile(r"\$HOME|\$USER|/media/|gs://|path_to_features|^results/|~")


def test_the_data_file_lists_every_family():
    sources = {entry["source"].split("@")[0].rsplit("/", 1)[0] for _, entry in COMMANDS}
    assert len(COMMANDS) == 41
    for repo in ("google/youtube-8m", "antoine77340/Youtube-8M-WILLOW", "linrongc/youtube-8m",
                 "linrongc/solution_youtube8m_v3", "boliu61/youtube-8m"):
        assert any(source.startswith(repo) for source in sources), repo


@pytest.mark.parametrize("index,command", COMMANDS, ids=[str(i) for i, _ in COMMANDS])
def test_translation_keeps_the_flags_and_replaces_paths_and_sizes(index, command, tmp_path):
    defined = {flag.name for flag in rc.parse_argv(command["argv"])} | {
        "batch_size", "max_steps", "num_classes", "max_frames", "nextvlad_cluster_size"}
    run = rc.translate(command, str(tmp_path / "data"), str(tmp_path / "runs"), defined, 3,
                       {"nextvlad_cluster_size"})
    if command.get("tool_missing_in_reference"):
        assert run.skip
        return
    written = rc.parse_argv(command["argv"])
    here = rc.values(run.flags)
    for flag in written:  # every flag as written is still there, or a documented override
        if flag.name == "num_gpu" and command["tool"].startswith("parallel_"):
            assert flag.name not in here  # MOD's towers: --mod_tree
            continue
        assert flag.name in here, flag.name
        if flag.name in rc.SIZES or flag.name in ("model", "max_steps"):
            continue
        if REFERENCE_PATHS.search(flag.value or "") or flag.name.endswith(
                ("_pattern", "train_dir", "output_file", "_tgz", "pretrain_model_path",
                 "checkpoint_file")):
            assert here[flag.name].startswith(str(tmp_path)), (flag.name, here[flag.name])
        else:
            assert here[flag.name] == ("true" if flag.value is None else flag.value), flag.name
    for name, value in rc.SIZES.items():
        if name in here:
            assert here[name] == value.rstrip("*"), name
    if command["tool"] in rc.TRAINING_TOOLS:
        assert (here["max_steps"], here["num_classes"], here["max_frames"]) == (
            "3", str(rc.NUM_CLASSES), str(rc.MAX_FRAMES))
        assert "nextvlad_cluster_size" in here  # the model has it: added or replaced
    if command["tool"] == "parallel_train.py" and here.get("model") == "MODNeXtVLADModel":
        assert here["mod_tree"] == "4x3"  # --num_gpu=4 towers of --mix_number=3


def test_reference_parameter_counts_are_the_references_totals():
    by_index = dict(COMMANDS)
    assert rc.reference_parameters(by_index[19]) == 88_889_378  # linrongc local script (paper)
    assert rc.reference_parameters(by_index[22]) == 235_935_273  # linrongc final mixture
    assert rc.reference_parameters(by_index[5]) == 321_528_380  # Willow Gated NetVLAD, 3862
    assert rc.reference_parameters(by_index[20]) is None  # eval: no model of its own


def test_unknown_flag_is_refused_by_the_tool(tmp_path):
    """What 'unknown here' means: absl stops the tool on it."""
    code, output = rc.run_tool(["eval.py"], [rc.Flag("no_such_reference_flag", "1")], 300)
    assert code != 0 and "no_such_reference_flag" in rc.error_line(output)


def test_a_training_command_and_its_inference_run(tmp_path):
    """linrongc's NeXtVLAD script: train.py then inference.py on the run it trained."""
    selected = [(index, command) for index, command in COMMANDS if index in (19, 21)]
    lines = []
    rows = rc.run_commands(selected, str(tmp_path), max_steps=1, timeout=300, parameters=False,
                           log=lines.append)
    train, inference = rows
    assert train.status.startswith("runs"), train.detail
    assert inference.status.startswith("runs"), inference.detail
    assert train.passed and inference.passed
    # The flags reported are exactly the script's flags train.py does not define (none left:
    # --max_step is Willow's alias of --max_steps, --num_gpu the starter's flag).
    unknown = set(re.findall(r"--(\w+)", train.detail))
    defined = rc.defined_flags(["train.py"])
    assert {f.name for f in rc.parse_argv(COMMANDS[19][1]["argv"])} - defined == unknown
    assert os.path.exists(rc.newest_checkpoint(os.path.join(
        str(tmp_path), "runs", rc._safe_name(train.run.train_dir))) + ".index")
    table = rc.markdown(rows, 1)
    assert table.count("\n| 19 | linrongc/youtube-8m/scripts/train_nextvlad_local.sh:21") == 1
    assert len(lines) == 2


def test_boliu61s_float16_ensemble_becomes_member_runs_and_an_export(tmp_path):
    """boliu61's step 1 (train.py --ensemble_num=4: the i-th --netvlad_cluster_size /
    --netvlad_hidden_size / --ensemble_wts are member i's) -> one train.py run per member; its
    step 2 (eval.py --create_meta_only, then overwrite_float16_ckpt.py) -> export_ensemble.py over
    those runs with the weights and boliu61's float16 tensors."""
    by_index = dict(COMMANDS)
    data, runs = str(tmp_path / "data"), str(tmp_path / "runs")
    written = rc.parse_argv(by_index[39]["argv"])
    members, weights = rc.ensemble_members(written)
    assert [(rc.values(m)["netvlad_cluster_size"], rc.values(m)["netvlad_hidden_size"])
            for m in members] == [("24", "1440"), ("32", "1024"), ("16", "800"), ("32", "512")]
    assert weights == ["0.25"] * 4
    assert all(not {"ensemble_num", "ensemble_wts", "float16_flag"} & set(rc.values(m))
               for m in members)
    defined = rc.defined_flags(["train.py"])
    train = rc.translate(by_index[39], data, runs, defined, 2, {"netvlad_cluster_size"})
    train_dir = rc.values(train.flags)["train_dir"]
    assert [tool for tool, _ in train.commands()] == [["train.py"]] * 4
    assert [rc.values(flags)["train_dir"] for _, flags in train.commands()] == [
        f"{train_dir}_member{i}" for i in range(4)]
    export = rc.translate(by_index[40], data, runs, rc.defined_flags(["eval.py"]), 2, set())
    ((tool, flags),) = export.commands()
    given = rc.values(flags)
    assert tool == ["export_ensemble.py"]
    assert given["members"] == ",".join(f"{train_dir}_member{i}" for i in range(4))
    assert (given["weights"], given["precision"], given["float16_selection"]) == (
        "0.25,0.25,0.25,0.25", "float16", "boliu61")
    assert {flag.name for flag in flags} <= rc.defined_flags(["export_ensemble.py"])
