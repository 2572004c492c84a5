#!/usr/bin/python3
"""The module graph of src/ stays acyclic and downward, and the build enforces it.

cmake/modules.cmake declares one library per module, lowest first, and writes the graph to
$ACG2VEC_BUILD_DIR/module_graph.txt. This test checks:
- the declared graph: every module of src/ is declared, each uses only modules declared before it;
- every quoted include in src/<module>/ names the module itself or one it may reach;
- the compiler enforces it: a probe that includes a header from above does not compile, while a
  probe that includes from below does (so the refusal is about the include, not a broken build);
- no source file passes ~600 lines without a comment near its top that says why it is one file;
- each module defines its names in its own namespace (acg2vec::<module>; core: acg2vec).
"""
import os
import re
import subprocess
import unittest
from pathlib import Path

SOURCE = Path(os.environ.get("ACG2VEC_SOURCE_DIR", Path(__file__).resolve().parents[2]))
BUILD = Path(os.environ["ACG2VEC_BUILD_DIR"])
LONG_FILE_LINES = 600
ONE_FILE_MARKER = "One file because"
INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/[^"]+"', re.M)


def declared_graph():
    graph = {}
    for line in (BUILD / "module_graph.txt").read_text().splitlines():
        name, _, uses = line.partition(":")
        graph[name.strip()] = uses.split()
    return graph


def reachable(graph, module):
    seen, stack = set(), list(graph[module])
    while stack:
        m = stack.pop()
        if m not in seen:
            seen.add(m)
            stack.extend(graph[m])
    return seen


class ModuleGraph(unittest.TestCase):
    def setUp(self):
        self.graph = declared_graph()

    def test_declared_graph_is_downward_and_complete(self):
        order = list(self.graph)
        for i, (module, uses) in enumerate(self.graph.items()):
            for dep in uses:
                self.assertIn(dep, order[:i], f"{module} uses {dep}, which is not below it")
        on_disk = sorted(p.name for p in (SOURCE / "src").iterdir() if p.is_dir())
        self.assertEqual(on_disk, sorted(order), "every directory of src/ is a declared module")

    def test_every_include_points_down(self):
        wrong = []
        for module in self.graph:
            allowed = reachable(self.graph, module) | {module}
            for path in sorted((SOURCE / "src" / module).glob("*.[ch]*")):
                for target in INCLUDE.findall(path.read_text(errors="replace")):
                    if target in self.graph and target not in allowed:
                        wrong.append(f"{path.relative_to(SOURCE)} includes {target}/")
        self.assertEqual(wrong, [], "includes that point up or sideways")

    def test_long_files_say_why(self):
        unexplained = []
        for path in sorted((SOURCE / "src").rglob("*.[ch]*")):
            lines = path.read_text(errors="replace").splitlines()
            head = "\n".join(lines[:20])
            if len(lines) > LONG_FILE_LINES and ONE_FILE_MARKER not in head:
                unexplained.append(f"{path.relative_to(SOURCE)} ({len(lines)} lines)")
        self.assertEqual(unexplained, [], f"files over {LONG_FILE_LINES} lines without '{ONE_FILE_MARKER}'")

    def test_one_namespace_per_module(self):
        """src/<m>/ defines names only in acg2vec::<m> (core: acg2vec itself, the shared vocabulary),
        or in a namespace nested inside it; it may forward-declare another module's type, nothing
        more. Headers hold no using-directives."""
        opening = re.compile(r"^namespace\s+(acg2vec[\w:]*)\s*\{(.*)$", re.M)
        wrong = []
        for module in self.graph:
            own = "acg2vec" if module == "core" else f"acg2vec::{module}"
            for path in sorted((SOURCE / "src" / module).glob("*.[ch]*")):
                text = path.read_text(errors="replace")
                rel = path.relative_to(SOURCE)
                for m in opening.finditer(text):
                    name = m.group(1)
                    if name == own or name.startswith(own + "::"):
                        continue
                    # A forward declaration of another module's type: `namespace acg2vec::x {`
                    # followed only by `class y;` / `struct y;` lines up to its closing brace.
                    body = text[m.end():text.find("}", m.end())]
                    decls = [ln.strip() for ln in body.splitlines() if ln.strip()]
                    if decls and all(re.fullmatch(r"(class|struct)\s+\w+;", d) for d in decls):
                        continue
                    wrong.append(f"{rel}: namespace {name}")
                if path.suffix == ".h" and re.search(r"^\s*using\s+namespace\b", text, re.M):
                    wrong.append(f"{rel}: using namespace in a header")
        self.assertEqual(wrong, [], "code outside its module's namespace")

    def build(self, target):
        return subprocess.run(["cmake", "--build", str(BUILD), "--target", target],
                              capture_output=True, text=True, timeout=600)

    def test_compiler_refuses_an_upward_include(self):
        down = self.build("arch_probe_downward")
        self.assertEqual(down.returncode, 0, f"the downward probe must compile:\n{down.stdout[-3000:]}")
        up = self.build("arch_probe_upward")
        self.assertNotEqual(up.returncode, 0, "a module including a header of a module above it compiled")
        self.assertIn("server/routes.h", up.stdout + up.stderr,
                      "the upward probe failed for another reason than the include")


if __name__ == "__main__":
    unittest.main(verbosity=2)
