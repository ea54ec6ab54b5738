#!/usr/bin/env python3
"""No two modules of a crate import each other, directly or through others (docs/architecture.md).

Reads every `crate::…` path in each crate's non-test source, resolves it to the module that owns it,
and finds strongly connected components of the module graph (Tarjan). A child module's use of its
parent (`mod.rs`/`lib.rs`) is not an edge: the parent declares the child. Exit 1 on any cycle,
printing the modules and the imports that close it.

    scripts/check-module-cycles.py crates/*/src
"""
import collections
import pathlib
import re
import sys


def modules_of(src):
    modules = {}
    for path in src.rglob("*.rs"):
        parts = [p for p in path.relative_to(src).with_suffix("").parts if p not in ("mod", "lib", "main")]
        modules["::".join(parts)] = path
    return modules


def graph_of(modules):
    def owner(path):
        parts = path.split("::")
        for n in range(len(parts), 0, -1):
            if "::".join(parts[:n]) in modules:
                return "::".join(parts[:n])
        return None

    graph = collections.defaultdict(set)
    for module, path in modules.items():
        text = path.read_text().split("#[cfg(test)]")[0]
        refs = set(re.findall(r"crate::([a-z_]+(?:::[A-Za-z_]+)*)", text))
        for group in re.finditer(r"crate::((?:[a-z_]+::)*)\{([^}]*)\}", text):
            refs.update(group.group(1) + item.strip().split(" as ")[0] for item in group.group(2).split(",") if item.strip())
        for ref in refs:
            target = owner(ref.replace("::self", ""))
            if target and target != module and not module.startswith(target + "::"):
                graph[module].add(target)
    return graph


def cycles(graph):
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def main(sources):
    failed = False
    for source in sources:
        src = pathlib.Path(source)
        graph = graph_of(modules_of(src))
        for component in cycles(graph):
            failed = True
            print(f"{src}: modules import each other: {' '.join(component)}")
            for module in component:
                print(f"    {module} -> {' '.join(sorted(t for t in graph[module] if t in component))}")
    if not failed:
        print(f"no module cycles in {len(sources)} crates")
    return 1 if failed else 0


def self_test():
    """The check finds a cycle through a third module and ignores a child's use of its parent."""
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        src = pathlib.Path(root)
        (src / "a").mkdir()
        (src / "lib.rs").write_text("pub mod a; pub mod b; pub mod c;\n")
        (src / "a" / "mod.rs").write_text("pub mod child;\nuse crate::b::B;\n")
        (src / "a" / "child.rs").write_text("use crate::a::A;\n")
        (src / "b.rs").write_text("use crate::{c::C, c};\n")
        (src / "c.rs").write_text("use crate::a::child::X;\n#[cfg(test)]\nmod tests { use crate::b::B; }\n")
        found = cycles(graph_of(modules_of(src)))
        assert found == [], f"a -> b -> c -> a::child is no cycle: {found}"
        (src / "c.rs").write_text("use crate::a::A;\n")
        found = cycles(graph_of(modules_of(src)))
        assert found == [["a", "b", "c"]], found
    print("self-test passed")


if __name__ == "__main__":
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(self_test())
    sys.exit(main(sys.argv[1:]))
