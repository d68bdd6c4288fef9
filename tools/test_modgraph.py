#!/usr/bin/env python3
"""Tests of modgraph.py on small synthetic source trees.

Run: python3 tools/test_modgraph.py
"""

import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import modgraph  # noqa: E402  (path set up above)


def tree(files):
    """A temporary src/ holding `files` ({relative path: text})."""
    root = tempfile.TemporaryDirectory()
    for rel, text in files.items():
        path = Path(root.name) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def analyse(files):
    with tree(files) as src:
        modules, edges = modgraph.graph(src)
        return edges, modgraph.cycles(modules, edges), modgraph.layers(modules, edges)


class ModGraph(unittest.TestCase):
    def test_a_child_using_its_sibling_and_back_is_a_cycle(self):
        edges, found, layers = analyse({
            "lib.rs": "pub mod a;\n",
            "a/mod.rs": "mod x;\nmod y;\n",
            "a/x.rs": "use super::y::Y;\npub struct X;\n",
            "a/y.rs": "pub struct Y;\nfn f() -> super::x::X { todo!() }\n",
        })
        self.assertIn(("a::x", "a::y"), edges)
        self.assertIn(("a::y", "a::x"), edges)
        self.assertEqual(found, [["a::x", "a::y"]])
        self.assertIsNone(layers["a"])

    def test_a_facade_is_no_edge_but_a_path_through_it_names_the_child(self):
        edges, found, layers = analyse({
            "lib.rs": "pub mod a;\n",
            "a/mod.rs": "mod low;\nmod high;\npub use low::Low;\npub struct Shared;\n",
            "a/low.rs": "use super::Shared;\npub struct Low;\n",
            "a/high.rs": "use crate::a::{Low, Shared};\n",
        })
        self.assertNotIn(("a", "a::low"), edges)
        self.assertIn(("a::high", "a::low"), edges)
        self.assertIn(("a::low", "a"), edges)
        self.assertEqual(found, [])
        self.assertEqual(layers["a"], [["a"], ["a::low"], ["a::high"]])

    def test_a_mod_rs_naming_its_child_in_code_depends_on_it(self):
        edges, found, _ = analyse({
            "lib.rs": "pub mod a;\n",
            "a/mod.rs": "mod ring;\npub const SIZE: u64 = 4;\nfn f() -> ring::Ring { todo!() }\n",
            "a/ring.rs": "pub struct Ring;\nconst N: u64 = super::SIZE;\n",
        })
        self.assertIn(("a", "a::ring"), edges)
        self.assertEqual(found, [["a", "a::ring"]])

    def test_test_modules_and_comments_add_no_edges(self):
        edges, found, _ = analyse({
            "lib.rs": "pub mod a;\n",
            "a/mod.rs": "mod x;\nmod y;\n",
            "a/x.rs": "use super::y::Y;\n",
            "a/y.rs": "pub struct Y;\n// super::x::X\n#[cfg(test)]\nmod tests {\n    use super::super::x;\n    fn t() { crate::a::x::f(); }\n}\n",
        })
        self.assertEqual(edges, {("a::x", "a::y")})
        self.assertEqual(found, [])


if __name__ == "__main__":
    unittest.main()
