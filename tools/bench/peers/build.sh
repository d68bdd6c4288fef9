#!/usr/bin/env bash
# Builds the FUSE peers that Debian ships only as example sources:
# libfuse's high-level `null` filesystem (the FUSE round-trip floor) and the
# low-level `passthrough_ll` (a thin, multi-threaded pass-through to a
# directory), plus the metadata helper `metabench`.
#
# Usage: peers/build.sh OUT_DIR
# Needs: libfuse3-dev (examples in /usr/share/doc/libfuse3-dev/examples), cc,
# pkg-config. Built with -O2 as a user would build them; the sources are
# compiled unmodified.
set -euo pipefail

out_dir=${1:?usage: build.sh OUT_DIR}
examples_dir=${FUSE_EXAMPLES_DIR:-/usr/share/doc/libfuse3-dev/examples}
here=$(cd "$(dirname "$0")/.." && pwd)

mkdir -p "$out_dir"
if ! pkg-config --exists fuse3; then
    echo "build.sh: pkg-config cannot find fuse3 (apt-get install libfuse3-dev)" >&2
    exit 1
fi
read -r -a fuse_cflags <<<"$(pkg-config fuse3 --cflags)"
read -r -a fuse_libs <<<"$(pkg-config fuse3 --libs)"

for example in null passthrough_ll; do
    src="$examples_dir/$example.c"
    if [[ ! -r $src ]]; then
        # Debian may ship the examples compressed.
        if [[ -r $src.gz ]]; then
            gzip -dc "$src.gz" >"$out_dir/$example.c"
            src="$out_dir/$example.c"
        else
            echo "build.sh: $src not found (apt-get install libfuse3-dev)" >&2
            exit 1
        fi
    fi
    # passthrough_ll.c includes passthrough_helpers.h from its own directory.
    cc -O2 -Wall -I"$examples_dir" "${fuse_cflags[@]}" "$src" -o "$out_dir/$example" "${fuse_libs[@]}"
done

cc -O2 -Wall -Wextra -o "$out_dir/metabench" "$here/metabench.c"
