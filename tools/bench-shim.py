#!/usr/bin/env python3
"""What the system-wide shim costs programs that never touch cowdax.

Times three workloads with and without libcowdax_preload.so preloaded and
prints, per workload, the median of the repetitions of each and the ratio
(with / without):

  ls -lR /usr          one process, many stat/readdir calls (no ioctl to
                       translate: ls only asks the terminal size);
  make -j2             a small C project (40 files, one program), rebuilt
                       from clean each time: hundreds of gcc/cc1/as/ld
                       processes, so it shows the per-process load cost;
  500 x /bin/true      nothing but process start-up.

The shim is loaded with LD_PRELOAD in the environment, which every child
inherits; ld.so maps a library from /etc/ld.so.preload the same way, so the
cost is the same, and this script never edits /etc/ld.so.preload. Runs with
and without alternate (ABBA order) so that drift of a shared machine hits
both alike.

usage: tools/bench-shim.py [--library PATH] [--reps N]
Default library: target/release/libcowdax_preload.so
(build it with `cargo build --release -p cowdax-preload`).
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

C_FILES = 40


def make_project(root):
    for i in range(C_FILES):
        with open(os.path.join(root, f"f{i}.c"), "w") as f:
            f.write(f"#include <stdio.h>\n#include <string.h>\n#include <stdlib.h>\n")
            for j in range(20):
                f.write(
                    f"int f{i}_{j}(const char *s) {{ int n = (int)strlen(s);"
                    f" for (int k = 0; k < n; k++) n += s[k] * {j + 1}; return n; }}\n"
                )
    with open(os.path.join(root, "main.c"), "w") as f:
        f.write("#include <stdio.h>\n")
        for i in range(C_FILES):
            f.write(f"int f{i}_0(const char *s);\n")
        f.write("int main(int argc, char **argv) { int n = 0;\n")
        for i in range(C_FILES):
            f.write(f" n += f{i}_0(argv[0]);\n")
        f.write(' printf("%d\\n", n); return 0; }\n')
    objs = " ".join(f"f{i}.o" for i in range(C_FILES))
    with open(os.path.join(root, "Makefile"), "w") as f:
        f.write(
            f"OBJS = main.o {objs}\nprog: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n"
            "%.o: %.c\n\t$(CC) -O2 -c -o $@ $<\n"
            "clean:\n\trm -f prog *.o\n"
        )


def timed(argv, env, cwd=None, prepare=None):
    if prepare:
        subprocess.run(prepare, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", default="target/release/libcowdax_preload.so")
    parser.add_argument("--reps", type=int, default=11)
    args = parser.parse_args()
    library = os.path.abspath(args.library)
    if not os.path.isfile(library):
        sys.exit(f"{library}: not found (cargo build --release -p cowdax-preload)")

    plain = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    shim = dict(plain, LD_PRELOAD=library)
    # The shim must really be loaded, or the comparison means nothing.
    maps = subprocess.run(["cat", "/proc/self/maps"], env=shim, capture_output=True,
                          text=True, check=True)
    if library not in maps.stdout and os.path.realpath(library) not in maps.stdout:
        sys.exit(f"{library} is not loaded by LD_PRELOAD")

    with tempfile.TemporaryDirectory(prefix="bench-shim-") as project:
        make_project(project)
        workloads = [
            ("ls -lR /usr", ["ls", "-lR", "/usr"], None, None),
            (f"make -j2 ({C_FILES + 1} C files)", ["make", "-s", "-j2"], project,
             ["make", "-s", "clean"]),
            ("500 x /bin/true", ["sh", "-c", "i=0; while [ $i -lt 500 ]; do /bin/true; i=$((i+1)); done"],
             None, None),
        ]
        print(f"library: {library}")
        print(f"repetitions: {args.reps} each (ABBA order), medians in seconds;")
        print("wall = elapsed time, cpu = user + system time of all processes")
        print(f"{'workload':28} {'wall without':>12} {'with':>7} {'ratio':>6}"
              f" {'cpu without':>12} {'with':>7} {'ratio':>6}")
        for name, argv, cwd, prepare in workloads:
            # One warm-up of each (page cache, dentries).
            timed(argv, plain, cwd, prepare)
            timed(argv, shim, cwd, prepare)
            without, with_ = [], []
            for rep in range(args.reps):
                order = [(plain, without), (shim, with_)]
                if rep % 2:
                    order.reverse()
                for env, out in order:
                    out.append(timed(argv, env, cwd, prepare))
            row = f"{name:28}"
            for i in (0, 1):
                a = statistics.median(t[i] for t in without)
                b = statistics.median(t[i] for t in with_)
                row += f" {a:12.3f} {b:7.3f} {b / a:6.3f}"
            print(row)


if __name__ == "__main__":
    main()
