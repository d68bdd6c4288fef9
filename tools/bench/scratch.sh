# shellcheck shell=bash
# Sourced by the small measuring scripts of tools/bench (cow_fragmentation.sh,
# read_sizes.sh): finds the cowdax binary and makes a scratch directory on
# /dev/shm with an image path and a mount point, removed on exit (the mount
# unmounted and the daemon waited for first).
#
#   bench_scratch NAME TOOL
#
# NAME is the calling script's name (messages, directory prefix), TOOL a
# program it needs. Sets cowdax, work, image, mnt and daemon (empty; the
# caller sets it to the background daemon's pid while one runs). Exits 2
# with a message when the binary or the tool is missing.

# shellcheck disable=SC2034  # the variables are for the calling script
bench_scratch() {
    local name=$1 tool=$2 here
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    cowdax=${COWDAX:-$here/../../target/release/cowdax}
    if [[ ! -x $cowdax ]]; then
        echo "$name: no cowdax binary at $cowdax (cargo build --release, or set COWDAX)" >&2
        exit 2
    fi
    command -v "$tool" >/dev/null || { echo "$name: $tool not found" >&2; exit 2; }
    work=$(mktemp -d "/dev/shm/${name%.sh}.XXXXXX")
    image=$work/image
    mnt=$work/mnt
    daemon=""
    trap bench_scratch_cleanup EXIT
    mkdir "$mnt"
}

bench_scratch_cleanup() {
    if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt" || umount -l "$mnt" || true; fi
    if [[ -n $daemon ]]; then wait "$daemon" 2>/dev/null || true; fi
    rm -rf "$work"
}
