#!/usr/bin/env python3
"""layering.py — the library's folders stay in their layer (docs/architecture.md).

The folders of src/ are ordered from the bottom up by the `foreach(dir ...)`
list of CMakeLists.txt. A file may include headers of its own folder, of a
folder below it, and the public include/fewmul.h; never one of a folder above
it. No loop may tie files of different folders (with every include going
down there can be none; this checks the folder graph on its own as well, so a
reordered list cannot hide one). The command (tools/) includes only the
public header and its own headers (the header is the ABI), and a module of
the command (a folder of tools/, such as tools/report/) only its own.

Usage: layering.py [ROOT]        check the tree at ROOT (default: this repo)
       layering.py --self-test   check that a planted upward include, a
                                 cross-folder loop and a command reaching
                                 into src/ are each caught
Exit status: 0 clean, 1 violations (one line each), 2 bad tree."""
import os
import re
import sys
import tempfile

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def folder_order(root):
    with open(os.path.join(root, "CMakeLists.txt")) as f:
        m = re.search(r"^foreach\(dir ([a-z_ ]+)\)$", f.read(), re.M)
    if not m:
        raise SystemExit("layering.py: no 'foreach(dir ...)' list in CMakeLists.txt")
    return m.group(1).split()


def sources(folder):
    for dirpath, _, names in os.walk(folder):
        for name in sorted(names):
            if name.endswith((".c", ".h")):
                yield os.path.join(dirpath, name)


def includes_of(path):
    with open(path, errors="replace") as f:
        return INCLUDE.findall(f.read())


def check(root):
    order = folder_order(root)
    rank = {d: i for i, d in enumerate(order)}
    src = os.path.join(root, "src")
    present = sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d)))
    problems = [f"src/{d}/ is not in CMakeLists.txt's folder list" for d in present if d not in rank]
    problems += [f"src/{d}/ is listed in CMakeLists.txt but does not exist" for d in order
                 if d not in present]
    home = {}  # header name -> folder
    for d in present:
        for path in sources(os.path.join(src, d)):
            if path.endswith(".h"):
                name = os.path.basename(path)
                if name in home:
                    problems.append(f"header {name} is in both src/{home[name]}/ and src/{d}/")
                home[name] = d
    edges = {}  # (from folder, to folder) -> an example "file -> header"
    for d in present:
        for path in sources(os.path.join(src, d)):
            rel = os.path.relpath(path, root)
            for header in includes_of(path):
                if header == "fewmul.h":
                    continue
                to = home.get(os.path.basename(header))
                if to is None:
                    problems.append(f"{rel}: includes \"{header}\", which is in no folder of src/")
                    continue
                if to == d:
                    continue
                edges.setdefault((d, to), f"{rel} includes {header}")
                if d in rank and to in rank and rank[to] > rank[d]:
                    problems.append(f"{rel}: upward include of {header} (src/{to}/ is above "
                                    f"src/{d}/)")
    problems += folder_loops(edges)
    tools = os.path.join(root, "tools")
    if os.path.isdir(tools):
        own = {os.path.basename(p): os.path.dirname(p) for p in sources(tools) if p.endswith(".h")}
        for path in sources(tools):
            for header in includes_of(path):
                name = os.path.basename(header)
                rel = os.path.relpath(path, root)
                if header != "fewmul.h" and name not in own:
                    problems.append(f"{rel}: includes the library's internal {header}; the "
                                    f"command uses include/fewmul.h only")
                elif (header != "fewmul.h" and os.path.dirname(path) != tools and
                      own[name] != os.path.dirname(path)):
                    problems.append(f"{rel}: includes {header} from outside its module "
                                    f"{os.path.relpath(os.path.dirname(path), root)}/")
    return problems


def folder_loops(edges):
    """A cycle in the graph of folders (each edge one include across folders)."""
    graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    state, stack, found = {}, [], []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                cycle = stack[stack.index(m):] + [m]
                steps = "; ".join(edges[(x, y)] for x, y in zip(cycle, cycle[1:]))
                found.append("loop between folders " + " -> ".join(cycle) + f" ({steps})")
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return found


def self_test():
    """Each planted violation is reported; the clean tree is not."""
    def tree(files, order="low high"):
        t = tempfile.mkdtemp()
        with open(os.path.join(t, "CMakeLists.txt"), "w") as f:
            f.write(f"foreach(dir {order})\n")
        for rel, text in files.items():
            os.makedirs(os.path.dirname(os.path.join(t, rel)), exist_ok=True)
            with open(os.path.join(t, rel), "w") as f:
                f.write(text)
        return t

    clean = {"src/low/a.h": "", "src/low/a.c": '#include "a.h"\n#include "fewmul.h"\n',
             "src/high/b.h": '#include "a.h"\n', "src/high/b.c": '#include "b.h"\n',
             "tools/cli.h": "", "tools/main.c": '#include "cli.h"\n#include "fewmul.h"\n'}
    cases = {
        "clean": (clean, "low high", None),
        "upward include": (dict(clean, **{"src/low/a.c": '#include "b.h"\n'}), "low high",
                           "upward include of b.h"),
        "loop under a wrong order": (dict(clean, **{"src/low/a.c": '#include "b.h"\n'}),
                                     "high low", "loop between folders"),
        "command reaching into src": (dict(clean, **{"tools/main.c": '#include "a.h"\n'}),
                                      "low high", "internal a.h"),
        "a command module reaching out": (dict(clean, **{"tools/mod/m.c": '#include "cli.h"\n'}),
                                          "low high", "outside its module"),
    }
    failed = 0
    for what, (files, order, expect) in cases.items():
        problems = check(tree(files, order))
        ok = not problems if expect is None else any(expect in p for p in problems)
        print(f"self-test {what}: {'ok' if ok else 'FAILED'} {problems if not ok else ''}")
        failed += not ok
    return 1 if failed else 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))
    problems = check(root)
    for p in problems:
        print("layering: " + p)
    if not problems:
        print("layering: every include goes down " + " < ".join(folder_order(root)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
