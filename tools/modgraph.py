#!/usr/bin/env python3
"""Draws the import graph between the files of cowdax's modules and finds
its cycles.

Usage: tools/modgraph.py [--dot | --layers] [SRC_DIR]   (default: src)

An edge A -> B means a file of module A names an item of module B through a
`use` path (crate::x::y, super::y, self::y) or a qualified path in code
(`super::y::Item`, `crate::x::y::Item`). Modules are files (src/fs/data.rs
is `fs::data`; a mod.rs is its folder's module). Edges from a child module
to its parent's own items count (`super::Item` in fs/data.rs is
fs::data -> fs). Tests (`#[cfg(test)] mod tests` blocks) are left out.

A folder's mod.rs re-exporting its children (`pub use child::Item`) is its
facade and adds no edge; a path through the facade names the child that
defines the item (`use crate::fs::Fs` is an edge to fs::filesystem, where
`Fs` is defined and fs/mod.rs re-exports it from); any other use of a child by mod.rs's own code
does (`use child::Item`, `self::child::f()`, and a bare `child::f()` or
`child::Type` in code).

Prints every edge, then the strongly connected components with more than
one module (the import cycles); exits 1 if there is any cycle.

`--layers` prints, instead of the edges, each top-level module's files in
layers: layer 0 imports no other file of its module, layer n imports
files of layers below n only (edges to other top-level modules are not
counted here; they are in the edge list). Only an acyclic graph has
layers; a module with a cycle is reported as such.

Only paths are seen: a method call (`self.commit(..)`) names no module,
so an `impl Fs` block in fs/ops/write.rs calling a method defined in
fs/filesystem.rs adds no edge. The layering of fs (docs/DESIGN.md §3)
also holds for those calls.
"""
import os
import re
import sys


def module_of(path, src):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel in (["lib"], ["main"]):
        return "crate"
    return "::".join(rel)


def strip_tests(text):
    # Drop `#[cfg(test)] mod tests { ... }` by brace matching.
    out = []
    i = 0
    pattern = re.compile(r"#\[cfg\(test\)\]\s*(pub\s+)?mod\s+\w+\s*\{")
    while True:
        m = pattern.search(text, i)
        if not m:
            out.append(text[i:])
            break
        out.append(text[i:m.start()])
        depth = 1
        j = m.end()
        while j < len(text) and depth:
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
            j += 1
        i = j
    return "".join(out)


def strip_comments(text):
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def resolve(current, path, modules, facades):
    """Longest known module named by a path like super::a::B."""
    parts = path.split("::")
    base = current.split("::") if current != "crate" else []
    if parts[0] == "crate":
        base, parts = [], parts[1:]
    elif parts[0] == "self":
        parts = parts[1:]
    else:
        while parts and parts[0] == "super":
            base = base[:-1]
            parts = parts[1:]
    best, rest = "::".join(base) or "crate", parts
    for k in range(1, len(parts) + 1):
        cand = "::".join(base + parts[:k])
        if cand in modules:
            best, rest = cand, parts[k:]
    # An item a folder re-exports (`pub use child::Item` in its mod.rs) is
    # the child's: `crate::fs::Fs` names fs::filesystem.
    while rest and (best, rest[0]) in facades:
        best, rest = facades[(best, rest[0])], rest[1:]
    return best


def expand_use(tree):
    """Flattens a use tree `a::{b, c::{d}}` into paths."""
    tree = tree.replace(" ", "").replace("\n", "")
    m = re.match(r"^(.*?)\{(.*)\}$", tree)
    if not m:
        return [re.sub(r"as\w+$", "", tree)]
    prefix, inner = m.group(1), m.group(2)
    items, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    if cur:
        items.append(cur)
    paths = []
    for item in items:
        for sub in expand_use(item):
            paths.append((prefix + sub).rstrip(":"))
    return paths


def facade_items(files, modules):
    """{(folder, name): child} for each `pub use child::...::name` (or
    `pub use self::child::...`) in a folder's mod.rs."""
    out = {}
    for mod, path in files.items():
        if os.path.basename(path) not in ("mod.rs", "lib.rs", "main.rs"):
            continue
        with open(path, encoding="utf-8") as f:
            text = strip_comments(strip_tests(f.read()))
        prefix = "" if mod == "crate" else mod + "::"
        for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]*);", text):
            for p in expand_use(m.group(1).strip()):
                alias = re.search(r"\bas\s+(\w+)$", p)
                parts = re.sub(r"\s+as\s+\w+$", "", p).split("::")
                if parts[0] == "self":
                    parts = parts[1:]
                if len(parts) < 2 or prefix + parts[0] not in modules:
                    continue
                child = prefix + parts[0]
                for k in range(2, len(parts)):
                    if child + "::" + parts[k - 1] in modules:
                        child = child + "::" + parts[k - 1]
                name = alias.group(1) if alias else parts[-1]
                if name != "self":
                    out[(mod, name)] = child
    return out


def graph(src):
    files = {}
    for root, _, names in os.walk(src):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(root, name)
                files[module_of(path, src)] = path
    modules = set(files)
    facades = facade_items(files, modules)
    edges = set()
    for mod, path in files.items():
        with open(path, encoding="utf-8") as f:
            text = strip_comments(strip_tests(f.read()))
        paths = []
        is_folder = os.path.basename(path) in ("mod.rs", "lib.rs", "main.rs")
        for m in re.finditer(r"(\bpub(?:\([^)]*\))?\s+)?\buse\s+([^;]*);", text):
            facade, tree = m.group(1), m.group(2).strip()
            for p in expand_use(tree):
                head = p.split("::")[0]
                if head in ("crate", "super", "self"):
                    # A folder's own `pub use self::child::Item` is its
                    # facade, not a dependency of the folder on the child.
                    if not (facade and is_folder and head == "self"):
                        paths.append(p)
                elif is_folder and not facade:
                    # `use child::Item` in a mod.rs: a real dependency of
                    # the folder's own code on its child (a `pub use` of a
                    # child is the folder's facade and is left out).
                    prefix = "" if mod == "crate" else mod + "::"
                    if prefix + head in modules:
                        paths.append("self::" + p)
        for m in re.finditer(r"\b((?:crate|super)(?:::\w+)+)", text):
            paths.append(m.group(1))
        if is_folder:
            # A mod.rs naming its child in code without `self::`
            # (`journal::Ring`, `checkpoint::write(..)`) uses the child
            # too. `use` statements were handled above; `::child::` in a
            # longer path is someone else's child.
            prefix = "" if mod == "crate" else mod + "::"
            code = re.sub(r"\buse\s+[^;]*;", "", text)
            for m in re.finditer(r"(?<![:\w])(\w+)::\w", code):
                head = m.group(1)
                if head not in ("crate", "super", "self") and prefix + head in modules:
                    paths.append("self::" + head + "::" + "x")
        for p in paths:
            target = resolve(mod, p, modules, facades)
            if target != mod and target != "crate" and not mod.startswith(target + "::") or (
                target != mod and mod.startswith(target + "::") and p.split("::")[-1][:1].isupper()
            ):
                # a child naming its ancestor's own items counts; naming
                # the ancestor only on the way to a sibling does not.
                edges.add((mod, target))
    return modules, edges


def cycles(modules, edges):
    adj = {m: [] for m in modules}
    for a, b in edges:
        adj.setdefault(a, []).append(b)
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in adj.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(adj):
        if v not in index:
            visit(v)
    return out


def layers(modules, edges):
    """{top-level module: [[files of layer 0], [layer 1], ...]}, or None
    for a top-level module whose files import each other in a cycle."""
    out = {}
    tops = sorted({m.split("::")[0] for m in modules if m != "crate"})
    for top in tops:
        members = {m for m in modules if m.split("::")[0] == top}
        inner = {(a, b) for a, b in edges if a in members and b in members}
        level, busy = {}, set()

        def depth(v):
            if v in level:
                return level[v]
            if v in busy:
                return None
            busy.add(v)
            ds = [depth(b) for a, b in inner if a == v]
            busy.discard(v)
            if any(d is None for d in ds):
                return None
            level[v] = 1 + max(ds) if ds else 0
            return level[v]

        ds = {m: depth(m) for m in members}
        if any(d is None for d in ds.values()):
            out[top] = None
            continue
        rows = [[] for _ in range(max(ds.values()) + 1)]
        for m, d in ds.items():
            rows[d].append(m)
        out[top] = [sorted(r) for r in rows]
    return out


def main():
    args = [a for a in sys.argv[1:] if a not in ("--dot", "--layers")]
    src = args[0] if args else "src"
    modules, edges = graph(src)
    if "--layers" in sys.argv:
        for top, rows in layers(modules, edges).items():
            if rows is None:
                print(f"{top}: cycle")
                continue
            print(f"{top}:")
            for n, row in enumerate(rows):
                print(f"  {n}: " + " ".join(row))
    elif "--dot" in sys.argv:
        print("digraph modules {")
        for a, b in sorted(edges):
            print(f'  "{a}" -> "{b}";')
        print("}")
    else:
        for a, b in sorted(edges):
            print(f"{a} -> {b}")
    found = cycles(modules, edges)
    for comp in found:
        print("cycle: " + ", ".join(comp), file=sys.stderr)
    if not found:
        print("no import cycles", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
