"""The package layout: every module imports on its own, the import graph has no cycle, and the
model package loads neither distillation, training nor the tf.data readers."""
import ast
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("yt8m", "frame_level_models")


def project_modules():
    """{module name: source path} of every module of PACKAGES."""
    modules = {}
    for package in PACKAGES:
        for directory, _, names in os.walk(os.path.join(REPO, package)):
            for file_name in sorted(names):
                if not file_name.endswith(".py"):
                    continue
                path = os.path.join(directory, file_name)
                name = os.path.relpath(path, REPO)[:-len(".py")].replace(os.sep, ".")
                modules[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return modules


def imported_modules(name, source, modules, is_package=False):
    """Project modules that module `name` imports anywhere in its `source` (module level and inside
    functions). `from a import b` counts as importing module a.b when that is a module, else a;
    the parent packages Python runs first are not counted (they are no dependency of the code)."""
    tree = ast.parse(source, name)
    package_parts = name.split(".") if is_package else name.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parts = package_parts[:len(package_parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    found.add(f"{base}.{alias.name}")
                elif base in modules:
                    found.add(base)
    found.discard(name)
    return found


def module_imports(name, modules):
    path = modules[name]
    with open(path, encoding="utf-8") as source:
        return imported_modules(name, source.read(), modules, path.endswith("__init__.py"))


def import_graph():
    modules = project_modules()
    return {name: module_imports(name, modules) for name in modules}


def find_cycles(graph):
    """Every strongly connected component with more than one module, each as one cycle through
    its first module (a list that starts and ends with that module)."""
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(set(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [cycle_through(graph, component) for component in components]


def cycle_through(graph, component):
    """A path first -> ... -> first inside the strongly connected `component` (breadth first)."""
    first = min(component)
    paths = {other: [first, other] for other in graph[first] if other in component}
    queue = list(paths)
    while first not in paths:
        node = queue.pop(0)
        for other in sorted(graph[node] & component):
            if other not in paths:
                paths[other] = paths[node] + [other]
                queue.append(other)
    return paths[first]


def test_import_graph_reader_finds_function_level_imports_and_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    modules = {"p": "p/__init__.py", "p.a": "p/a.py", "p.b": "p/b.py", "p.c": "p/c.py"}
    source = ("import os\nfrom p import a\nfrom p.b import thing\n"
              "def f():\n    from . import c\n    import p\n")
    assert imported_modules("p.x", source, modules) == {"p.a", "p.b", "p.c", "p"}
    assert imported_modules("p", "from .a import y\n", modules, is_package=True) == {"p.a"}


def test_the_import_graph_is_acyclic():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def dependencies(graph, start):
    seen, todo = set(), [start]
    while todo:
        for other in graph[todo.pop()] - seen:
            seen.add(other)
            todo.append(other)
    return seen


def test_the_model_package_depends_on_no_higher_layer():
    graph = import_graph()
    for name in [module for module in graph if module.split(".")[0] == "frame_level_models"]:
        higher = sorted(module for module in dependencies(graph, name)
                        if module.startswith(("yt8m.distillation", "yt8m.training", "yt8m.data",
                                              "yt8m.export", "yt8m.segments", "yt8m.inference")))
        assert not higher, f"{name} imports {higher}"
    assert dependencies(graph, "frame_level_models.hparams") == set()  # the mechanism alone


# Imports each module with no other module of the project loaded (the third-party libraries stay
# loaded between modules: a fresh interpreter per module would cost minutes on 2 cores); the absl
# flags the project's modules defined go with them.
_IMPORT_EACH = r"""
import importlib, json, sys, traceback
from absl import flags
PROJECT = ("yt8m", "frame_level_models")
failures = {}
for name in json.loads(sys.argv[1]):
    for loaded in [module for module in sys.modules if module.split(".")[0] in PROJECT]:
        del sys.modules[loaded]
    for module, defined in flags.FLAGS.flags_by_module_dict().items():
        if module.split(".")[0] in PROJECT:
            for flag in defined:
                if flag.name in flags.FLAGS:
                    delattr(flags.FLAGS, flag.name)
    try:
        importlib.import_module(name)
    except BaseException:  # SystemExit too: a module must not exit when imported
        failures[name] = traceback.format_exc()
print(json.dumps(failures))
"""


def test_every_module_imports_alone():
    modules = sorted(project_modules())
    env = dict(os.environ, PYTHONPATH=REPO)
    result = subprocess.run([sys.executable, "-c", _IMPORT_EACH, json.dumps(modules)], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    assert not failures, "\n".join(f"{name}:\n{error}" for name, error in failures.items())


def test_import_frame_level_models_loads_only_the_models():
    code = ("import json, sys, frame_level_models; print(json.dumps(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('yt8m', 'frame_level_models'))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=REPO), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    outside = [name for name in loaded if not name.startswith("frame_level_models")]
    # The core's pruning options (frame_level_models.pruning checks its values with them).
    assert outside == ["yt8m", "yt8m.core", "yt8m.core.config", "yt8m.core.errors",
                       "yt8m.core.option_groups", "yt8m.core.options",
                       "yt8m.core.training_protocol", "yt8m.features", "yt8m.losses"], outside


@pytest.mark.parametrize("name", ["frame_level_models.hparams", "yt8m.losses", "yt8m.features"])
def test_low_level_modules_import_nothing_of_the_project(name):
    assert module_imports(name, project_modules()) <= {"yt8m"}
