"""The package layout: every module imports on its own, the import graph has no cycle, and the
model package loads neither distillation, training nor the tf.data readers."""
import ast
import json
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("yt8m", "frame_level_models")
ENTRY_POINTS = ("train.py", "eval.py", "inference.py", "export_ensemble.py")


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


def function_level_imports(source, modules):
    """(line, module) of the imports of project modules (relative ones as '.') inside functions
    of `source`."""
    packages = {name.split(".")[0] for name in modules}
    found = set()
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = ["." if node.level else node.module]
            else:
                continue
            found.update((node.lineno, name) for name in names
                         if name == "." or name.split(".")[0] in packages)
    return sorted(found)


def test_import_graph_reader_finds_function_level_imports_and_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []
    modules = {"p": "p/__init__.py", "p.a": "p/a.py", "p.b": "p/b.py", "p.c": "p/c.py"}
    source = ("import os\nfrom p import a\nfrom p.b import thing\n"
              "def f():\n    from . import c\n    import p\n")
    assert imported_modules("p.x", source, modules) == {"p.a", "p.b", "p.c", "p"}
    assert imported_modules("p", "from .a import y\n", modules, is_package=True) == {"p.a"}
    assert function_level_imports(source, modules) == [(5, "."), (6, "p")]


def test_project_imports_sit_at_module_level():
    # With no cycle there is no reason to hide an import in a function: the graph above is then
    # also the order in which modules load.
    modules = project_modules()
    sources = dict(modules, **{name: os.path.join(REPO, name) for name in ENTRY_POINTS})
    hidden = {}
    for name, path in sources.items():
        with open(path, encoding="utf-8") as source:
            found = function_level_imports(source.read(), modules)
        if found:
            hidden[name] = found
    assert not hidden, hidden


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


# ------------------------------------------------------------------ the layers (docs/design.md)

DESIGN_DOC = os.path.join(REPO, "docs", "design.md")
ENTRY_NODE = "entry points"


def package_of(module):
    """The diagram's node of a module: its package below yt8m (or the module, for a module of
    yt8m itself), the model package as one node, the four programs as one."""
    if module in ENTRY_POINTS:
        return ENTRY_NODE
    parts = module.split(".")
    return parts[0] if parts[0] == "frame_level_models" else ".".join(parts[:2])


def package_graph():
    """{node: nodes it imports} over every project module and the entry points (imports of the
    package `yt8m` itself, which only sets the Keras version, left out)."""
    modules = project_modules()
    sources = dict(modules, **{name: os.path.join(REPO, name) for name in ENTRY_POINTS})
    graph = {}
    for name, path in sources.items():
        with open(path, encoding="utf-8") as source:
            imported = imported_modules(name, source.read(), modules, path.endswith("__init__.py"))
        node = package_of(name)
        graph.setdefault(node, set()).update(
            package_of(other) for other in imported if other != "yt8m")
    graph.pop("yt8m", None)
    return {node: targets - {node, "yt8m"} for node, targets in graph.items()}


def transitive_reduction(graph):
    """The edges of an acyclic `graph` that no longer path implies."""
    return {node: {other for other in targets
                   if not any(other in dependencies(graph, middle)
                              for middle in targets - {other})}
            for node, targets in graph.items()}


def _node_id(node):
    return re.sub(r"\W", "_", node)


def mermaid(graph):
    """The reduced package graph as the lines of the design doc's mermaid block."""
    lines = ["flowchart BT"] + [f'    {_node_id(node)}["{node}"]' for node in sorted(graph)]
    for node in sorted(graph):
        lines += [f"    {_node_id(node)} --> {_node_id(other)}" for other in sorted(graph[node])]
    return lines


def _fenced_block(language):
    with open(DESIGN_DOC, encoding="utf-8") as handle:
        text = handle.read()
    match = re.search(rf"^```{language}\n(.*?)^```", text, re.S | re.M)
    assert match, f"docs/design.md has no ```{language} block"
    return match.group(1).rstrip("\n").splitlines()


def test_the_design_doc_diagram_is_the_import_graph():
    # Regenerate the block with `python tests/test_architecture.py`.
    graph = package_graph()
    assert not find_cycles(graph), find_cycles(graph)
    assert _fenced_block("mermaid") == mermaid(transitive_reduction(graph))


def test_every_import_goes_to_the_same_or_a_lower_layer_of_the_design_doc():
    layers = {}  # node -> rank (0: the lowest)
    lines = _fenced_block("text")
    for rank, line in enumerate(reversed(lines)):
        for node in line.split(":", 1)[1].split(","):
            layers[node.strip()] = rank
    graph = package_graph()
    assert sorted(layers) == sorted(graph), "a package missing from (or extra in) the layers"
    upward = sorted((node, other) for node, targets in graph.items() for other in targets
                    if layers[other] > layers[node])
    assert not upward, f"imports of a higher layer: {upward}"


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


if __name__ == "__main__":  # prints the mermaid block of docs/design.md
    print("\n".join(["```mermaid"] + mermaid(transitive_reduction(package_graph())) + ["```"]))
