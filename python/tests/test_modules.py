"""The runtime's module structure: every module imports on its own in a
fresh interpreter, and no module imports one that imports it back (the
import statements walked with ast, lazy ones inside functions included)."""

import ast
import os
import subprocess
import sys
import unittest
from typing import Dict, List, Set

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
RUNTIME_DIR = os.path.dirname(TESTS_DIR)
PACKAGE = "pypool_runtime"
PACKAGE_DIR = os.path.join(RUNTIME_DIR, PACKAGE)


def runtime_modules() -> List[str]:
    """The package's modules, by name, without the package itself."""
    return sorted(name[:-3] for name in os.listdir(PACKAGE_DIR) if name.endswith(".py") and name != "__init__.py")


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imported_siblings(module: str, modules: Set[str]) -> Set[str]:
    """The package's modules that module imports, wherever the import
    statement is (at the top or in a function), except under
    `if TYPE_CHECKING:`, which never runs. `from . import NAME` counts when
    NAME is a module; names the package's __init__ defines do not."""
    with open(os.path.join(PACKAGE_DIR, module + ".py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    found: Set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 or node.module == PACKAGE or (node.module or "").startswith(PACKAGE + "."):
                base = (node.module or "") if node.level == 1 else (node.module or "")[len(PACKAGE) + 1 :]
                if base:
                    found.add(base.partition(".")[0])
                else:
                    found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE + "."):
                    found.add(alias.name.split(".")[1])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(module)
    return found & modules


class ModuleStructureTest(unittest.TestCase):
    def test_each_module_imports_alone(self) -> None:
        for module in runtime_modules():
            with self.subTest(module=module):
                code = "import sys; sys.path.insert(0, sys.argv[1]); import %s.%s" % (PACKAGE, module)
                run = subprocess.run([sys.executable, "-I", "-c", code, RUNTIME_DIR], capture_output=True, text=True, timeout=60)
                self.assertEqual(run.returncode, 0, run.stderr)

    def test_no_import_cycles(self) -> None:
        modules = set(runtime_modules())
        graph: Dict[str, Set[str]] = {m: imported_siblings(m, modules) for m in modules}
        self.assertIn("serve", graph["worker"], "the walk finds imports")  # the walk itself works
        for start in sorted(modules):
            # Every module reachable from start, with the path that reaches it.
            paths = {start: [start]}
            todo = [start]
            while todo:
                current = todo.pop()
                for following in sorted(graph[current]):
                    self.assertNotEqual(following, start, "import cycle: %s" % " -> ".join(paths[current] + [start]))
                    if following not in paths:
                        paths[following] = paths[current] + [following]
                        todo.append(following)

    def test_in_call_modules_use_the_channel_not_the_worker(self) -> None:
        """stream.py, callback.py and aio.py reach the worker through
        channel.py and interrupt.py, never worker.py or serve.py."""
        modules = set(runtime_modules())
        for module in ("stream", "callback", "aio"):
            with self.subTest(module=module):
                self.assertFalse(imported_siblings(module, modules) & {"worker", "serve", "startup"})


if __name__ == "__main__":
    unittest.main()
