#!/usr/bin/env bash
# Extent count of a reflinked 8 MiB file after its copy is rewritten
# completely by xfs_io pwrites, the way xfstests' CoW fragmentation tests
# do it: 4 KiB and 64 KiB writes, in sequential and in random order
# (a fixed permutation of the blocks, every block once), through a plain
# descriptor and with O_DIRECT (-d). One fresh image on /dev/shm; each case
# makes its own original and reflink (`cowdax clone`) and counts the
# copy's extents with `cowdax extents`. Ends with `cowdax fsck -n`.
#
#   tools/bench/cow_fragmentation.sh [--cases seq4k,rand4k,...]
#
# Cases: seq4k rand4k seq64k rand64k seq4k-direct rand4k-direct (default: all).
# docs/CONFORMANCE.md ("Dedupe, the extent report, preallocation and CoW
# fragmentation") quotes its figures. Needs root and xfs_io; uses
# target/release/cowdax (or $COWDAX). Not a timing benchmark.
set -euo pipefail

cases=seq4k,rand4k,seq64k,rand64k,seq4k-direct,rand4k-direct
while (($#)); do
    case $1 in
        --cases) cases=${2:?}; shift 2 ;;
        -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "cow_fragmentation.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
# shellcheck source=tools/bench/scratch.sh
source "$(dirname "$0")/scratch.sh"
bench_scratch cow_fragmentation.sh xfs_io
"$cowdax" mkfs --size 256M "$image" >/dev/null
"$cowdax" "$image" "$mnt" -f 2>"$work/daemon.log" &
daemon=$!
for _ in $(seq 100); do
    mountpoint -q "$mnt" && break
    kill -0 "$daemon" 2>/dev/null || break
    sleep 0.05
done
if ! mountpoint -q "$mnt"; then
    echo "cow_fragmentation.sh: cowdax did not mount:" >&2
    cat "$work/daemon.log" >&2
    exit 1
fi

file_bytes=$((8 << 20))
# xfs_io arguments rewriting the whole file with BS-byte pwrites in ORDER.
pwrites() {
    local bs=$1 order=$2 count=$((file_bytes / $1))
    local blocks
    if [[ $order == random ]]; then
        # A fixed permutation: shuf fed a constant random source.
        blocks=$(shuf -i "0-$((count - 1))" --random-source=<(yes 19))
    else
        blocks=$(seq 0 $((count - 1)))
    fi
    for block in $blocks; do
        printf '%s\n' -c "pwrite -q -S 0x5a -b $bs $((block * bs)) $bs"
    done
}

IFS=, read -r -a case_list <<<"$cases"
printf '%-14s %s\n' case extents
for name in "${case_list[@]}"; do
    case $name in
        seq4k) bs=4096 order=sequential direct=() ;;
        rand4k) bs=4096 order=random direct=() ;;
        seq64k) bs=65536 order=sequential direct=() ;;
        rand64k) bs=65536 order=random direct=() ;;
        seq4k-direct) bs=4096 order=sequential direct=(-d) ;;
        rand4k-direct) bs=4096 order=random direct=(-d) ;;
        *) echo "cow_fragmentation.sh: unknown case '$name'" >&2; exit 2 ;;
    esac
    orig=$mnt/$name.orig
    copy=$mnt/$name
    head -c "$file_bytes" /dev/urandom >"$orig"
    sync "$orig"
    "$cowdax" clone "$orig" "$copy" >/dev/null
    mapfile -t args < <(pwrites "$bs" "$order")
    xfs_io "${direct[@]}" "${args[@]}" -c fsync "$copy"
    extents=$("$cowdax" extents "$copy" | tail -n 1)
    printf '%-14s %s\n' "$name" "${extents#"$copy": }"
    rm -f "$orig" "$copy"
done
umount "$mnt"
wait "$daemon"
daemon=""
"$cowdax" fsck -n "$image" >/dev/null
echo "fsck: clean"
