#!/usr/bin/env python3
"""Draws the import graph between the files of cowdax's modules and finds
its cycles.

Usage: tools/modgraph.py [--dot] [SRC_DIR]   (default: src)

An edge A -> B means a file of module A names an item of module B through a
`use` path (crate::x::y, super::y, self::y) or a qualified path in code
(`super::y::Item`, `crate::x::y::Item`). Modules are files (src/fs/data.rs
is `fs::data`; a mod.rs is its folder's module). Edges from a child module
to its parent's own items count (`super::Item` in fs/data.rs is
fs::data -> fs). Tests (`#[cfg(test)] mod tests` blocks) are left out.

Prints every edge, then the strongly connected components with more than
one module (the import cycles); exits 1 if there is any cycle.
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


def resolve(current, path, modules):
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
    best = "::".join(base) or "crate"
    for k in range(1, len(parts) + 1):
        cand = "::".join(base + parts[:k])
        if cand in modules:
            best = cand
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


def graph(src):
    files = {}
    for root, _, names in os.walk(src):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(root, name)
                files[module_of(path, src)] = path
    modules = set(files)
    edges = set()
    for mod, path in files.items():
        with open(path, encoding="utf-8") as f:
            text = strip_comments(strip_tests(f.read()))
        paths = []
        for m in re.finditer(r"\buse\s+((?:crate|super|self)[^;]*);", text):
            paths.extend(expand_use(m.group(1)))
        for m in re.finditer(r"\b((?:crate|super)(?:::\w+)+)", text):
            paths.append(m.group(1))
        for p in paths:
            target = resolve(mod, p, modules)
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


def main():
    args = [a for a in sys.argv[1:] if a != "--dot"]
    src = args[0] if args else "src"
    modules, edges = graph(src)
    if "--dot" in sys.argv:
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
