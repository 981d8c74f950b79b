"""The package's wings, read from its imports with `ast` (no third-party tool).

- the core (top-level modules) and the vision wing never import ros, bags or learning; the one exception
  is the torch backend (`inference.TorchBackend`), which loads the learning wing's checkpoint code lazily;
- nothing outside the ros wing imports rclpy; nothing outside the learning wing imports torch at module level;
- no two modules import each other, directly or round a longer circle, counting imports inside functions.

The front doors (`cli`, `__main__` and `bench`, which run every wing's commands) are outside these rules.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fer_ros"
WINGS = ("vision", "ros", "bags", "learning")
FRONT = ("fer_ros.cli", "fer_ros.__main__", "fer_ros.bench")
#: (importer, imported) pairs allowed across the rules, each a lazy import inside a function
EXCEPTIONS = {("fer_ros.inference", "fer_ros.learning.checkpoint"), ("fer_ros.inference", "fer_ros.learning.models")}


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path) -> list[tuple[str, bool]]:
    """(absolute module, at module level) for every import in `path`; `from . import x` names module x when
    x is one."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    top = {id(n) for n in tree.body} | {id(c) for n in tree.body if isinstance(n, ast.If | ast.Try)
                                        for c in ast.walk(n)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                is_module = (root.parent / Path(*sub.split("."))).with_suffix(".py").is_file() or \
                    (root.parent / Path(*sub.split("."))).is_dir()
                found.append((sub if is_module else target, id(node) in top))
    return found


def graph(root: Path = PACKAGE) -> dict[str, list[tuple[str, bool]]]:
    return {module_name(p, root): imports(p, root) for p in sorted(root.rglob("*.py"))}


def wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[1] in WINGS else "core"


def problems(modules: dict[str, list[tuple[str, bool]]]) -> list[str]:
    """Every broken rule, one line each."""
    found = []
    ours = set(modules)
    for module, deps in modules.items():
        if module.startswith(FRONT):
            continue
        for dep, at_top in deps:
            root = dep.split(".")[0]
            if root == "rclpy" and wing(module) != "ros":
                found.append(f"{module} imports rclpy outside the ros wing")
            if root == "torch" and at_top and wing(module) != "learning":
                found.append(f"{module} imports torch at module level outside the learning wing")
            if dep.startswith("fer_ros.") and wing(module) in ("core", "vision") and \
                    wing(dep) in ("ros", "bags", "learning") and (module, dep) not in EXCEPTIONS:
                found.append(f"{module} ({wing(module)}) imports {dep} ({wing(dep)})")
    edges = {m: {d for d, _ in deps if d in ours and d != m} for m, deps in modules.items()}
    seen, stack, on_stack = set(), [], set()

    def visit(m):
        seen.add(m)
        stack.append(m)
        on_stack.add(m)
        for d in sorted(edges[m]):
            if d in on_stack:
                found.append("import circle: " + " -> ".join(stack[stack.index(d):] + [d]))
            elif d not in seen:
                visit(d)
        stack.pop()
        on_stack.discard(m)

    for m in sorted(edges):
        if m not in seen:
            visit(m)
    return found


def test_the_package_keeps_its_wings():
    modules = graph()
    assert {wing(m) for m in modules} == {"core", *WINGS}
    assert problems(modules) == []


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in {"__init__.py": "", **{f"{w}/__init__.py": "" for w in WINGS}, **files}.items():
        path = root / "fer_ros" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "fer_ros"


@pytest.mark.parametrize("files, expected", [
    ({"pipeline.py": "from .learning import train\n", "learning/train.py": ""},
     "fer_ros.pipeline (core) imports fer_ros.learning.train (learning)"),
    ({"vision/faces.py": "def f():\n    from ..bags.replay import run\n", "bags/replay.py": ""},
     "fer_ros.vision.faces (vision) imports fer_ros.bags.replay (bags)"),
    ({"config.py": "from .ros import node_logic\n", "ros/node_logic.py": ""},
     "fer_ros.config (core) imports fer_ros.ros.node_logic (ros)"),
    ({"bags/replay.py": "import rclpy\n"}, "fer_ros.bags.replay imports rclpy outside the ros wing"),
    ({"inference.py": "import torch\n"}, "fer_ros.inference imports torch at module level outside the learning wing"),
    ({"vision/faces.py": "from .align import T\n", "vision/align.py": "def f():\n    from .faces import F\n"},
     "import circle: fer_ros.vision.align -> fer_ros.vision.faces -> fer_ros.vision.align"),
])
def test_each_rule_catches_its_break(tmp_path, files, expected):
    assert expected in problems(graph(write(tmp_path, files)))


def test_what_the_rules_allow(tmp_path):
    root = write(tmp_path, {"inference.py": "def f():\n    import torch\n",
                            "learning/train.py": "import torch\nfrom ..pipeline import P\nfrom ..vision import faces\n",
                            "vision/faces.py": "from ..errors import E\n", "errors.py": "", "pipeline.py": "",
                            "ros/node.py": "import rclpy\nfrom ..bags import bagio\n", "bags/bagio.py": ""})
    assert problems(graph(root)) == []
