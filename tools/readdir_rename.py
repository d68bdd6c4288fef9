#!/usr/bin/env python3
"""What a directory listing returns while entries are renamed in it.

Usage: tools/readdir_rename.py DIR [inplace|replace] [--files N] [--passes N]

Creates DIR (must not exist) with N files f00000…, then lists it --passes
times with os.scandir (getdents64) while a thread renames entries in it:
  inplace  f → f.tmp → f, one file after another (the count stays N)
  replace  create a fresh t<serial>, rename it over f (the editor's save)
and prints, over all passes, the worst numbers seen: names returned twice in
one pass, files returned under both names, and the fewest and most f-names
in a pass (N each is the ideal). Compares file systems on the workload of
tests/fuse_readdir_rename.rs; docs/CONFORMANCE.md quotes its results.
"""
import argparse
import collections
import os
import threading


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("mode", nargs="?", default="inplace", choices=["inplace", "replace"])
    ap.add_argument("--files", type=int, default=15000)
    ap.add_argument("--passes", type=int, default=25)
    args = ap.parse_args()
    d, n = args.dir, args.files
    os.mkdir(d)
    for i in range(n):
        open(os.path.join(d, "f%05d" % i), "w").close()
    stop = threading.Event()

    def renamer():
        i, serial = 0, 0
        while not stop.is_set():
            f = os.path.join(d, "f%05d" % i)
            if args.mode == "inplace":
                os.rename(f, f + ".tmp")
                os.rename(f + ".tmp", f)
            else:
                t = os.path.join(d, "t%d" % serial)
                open(t, "w").close()
                os.rename(t, f)
                serial += 1
            i = (i + 7919) % n

    thread = threading.Thread(target=renamer)
    thread.start()
    twice = both = 0
    fewest, most = n, 0
    try:
        for _ in range(args.passes):
            names = [e.name for e in os.scandir(d)]
            twice = max(twice, sum(1 for c in collections.Counter(names).values() if c > 1))
            files = [x for x in names if x.startswith("f")]
            fewest, most = min(fewest, len(files)), max(most, len(files))
            per_file = collections.Counter(x[:6] for x in files)
            both = max(both, sum(1 for c in per_file.values() if c > 1))
    finally:
        stop.set()
        thread.join()
    print(
        f"{args.mode}: names twice {twice}, files under both names {both}, "
        f"f-names per pass {fewest}..{most} (of {n})"
    )


if __name__ == "__main__":
    main()
