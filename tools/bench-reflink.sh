#!/usr/bin/env bash
# Reflink and dedupe benchmarks: cowdax against XFS and btrfs on loop
# devices, in the same run, on the same machine (docs/REFLINK.md).
#
#  1. cp of large files (default 1 GiB and 8 GiB), fresh and fragmented to
#     ~50 000 extents: cowdax `cp` (copy_file_range → clone) and
#     `cp --reflink=always` through the LD_PRELOAD shim, vs
#     `cp --reflink=always` on XFS and btrfs. Reports seconds and the
#     physical space the copy used.
#  2. Dedupe throughput on a data set with a known duplicate fraction:
#     `cowdax dedupe -r` vs `duperemove -dr` on XFS and btrfs. Reports GiB
#     scanned per second and bytes saved.
#
# Usage (root; needs a release build, xfsprogs, btrfs-progs, duperemove):
#   cargo build --release && tools/bench-reflink.sh
# Environment:
#   SIZES_MIB="1024 8192"   file sizes for the cp benchmark
#   FRAGMENT_EXTENTS=50000  extents of the fragmented variant (0: skip)
#   DEDUPE_MIB=2048         dedupe data set size
#   DUP_PERCENT=50          share of the data set that duplicates other files
#   FILESYSTEMS="cowdax xfs btrfs"
#   WORK=/var/tmp/cowdax-bench   scratch directory (images; needs ~3x the
#                                largest size per filesystem, sparse)
#   COWDAX=target/release/cowdax  PRELOAD=target/release/libcowdax_preload.so
set -euo pipefail
cd "$(dirname "$0")/.."

SIZES_MIB=${SIZES_MIB:-"1024 8192"}
FRAGMENT_EXTENTS=${FRAGMENT_EXTENTS:-50000}
DEDUPE_MIB=${DEDUPE_MIB:-2048}
DUP_PERCENT=${DUP_PERCENT:-50}
FILESYSTEMS=${FILESYSTEMS:-"cowdax xfs btrfs"}
WORK=${WORK:-/var/tmp/cowdax-bench}
COWDAX=$(realpath "${COWDAX:-target/release/cowdax}")
PRELOAD=$(realpath "${PRELOAD:-target/release/libcowdax_preload.so}")

for tool in "$COWDAX" "$PRELOAD"; do
    [ -e "$tool" ] || { echo "missing $tool: run cargo build --release" >&2; exit 1; }
done
for command in mkfs.xfs mkfs.btrfs losetup duperemove python3 xfs_io; do
    command -v "$command" >/dev/null || { echo "missing $command" >&2; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { echo "run as root (loop devices, mounts)" >&2; exit 1; }

largest=0
for size in $SIZES_MIB; do [ "$size" -gt "$largest" ] && largest=$size; done
[ "$DEDUPE_MIB" -gt "$largest" ] && largest=$DEDUPE_MIB
image_mib=$((largest * 3 + 2048))

mkdir -p "$WORK"
loops=()
mounts=()
cleanup() {
    for mnt in "${mounts[@]}"; do umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true; done
    for loop in "${loops[@]}"; do losetup -d "$loop" 2>/dev/null || true; done
    rm -f "$WORK"/*.img
}
trap cleanup EXIT

mount_fs() { # fs → sets MNT (not a subshell: the cleanup lists must grow)
    local fs=$1 image="$WORK/$1.img"
    MNT="$WORK/mnt-$1"
    rm -f "$image"
    mkdir -p "$MNT"
    case $fs in
        cowdax)
            "$COWDAX" mkfs --size "${image_mib}M" "$image" >/dev/null
            "$COWDAX" mount "$image" "$MNT"
            ;;
        xfs|btrfs)
            local loop
            truncate -s "${image_mib}M" "$image"
            loop=$(losetup -f --show "$image")
            loops+=("$loop")
            if [ "$fs" = xfs ]; then mkfs.xfs -q -f -m reflink=1 "$loop"; else mkfs.btrfs -q -f "$loop" >/dev/null 2>&1; fi
            mount "$loop" "$MNT"
            ;;
    esac
    mounts+=("$MNT")
}

umount_fs() { # mnt fs — also frees the image, so that only one
    # filesystem's image occupies $WORK at a time (an 8 GiB run needs a
    # 26 GiB image, fully reserved for cowdax).
    local image="$WORK/$2.img" loop
    umount "$1"
    sleep 0.5
    for loop in $(losetup -j "$image" -n -O NAME 2>/dev/null); do
        losetup -d "$loop" 2>/dev/null || true
    done
    rm -f "$image"
}

used_bytes() { # mnt → physical bytes in use
    local json
    if json=$("$COWDAX" df --json "$1" 2>/dev/null); then
        python3 -c 'import json,sys; print(json.loads(sys.argv[1])["physical_bytes"])' "$json"
    else
        sync -f "$1"
        df -B1 --output=used "$1" | tail -1 | tr -d ' '
    fi
}

seconds() { python3 -c 'import time; print(f"{time.monotonic():.6f}")'; }

fill_random() { # path mib
    dd if=/dev/urandom of="$1" bs=4M count=$(($2 / 4)) conv=fsync status=none
}

fragment() { # path extents: overwrite extents/2 random blocks of a reflinked file
    python3 - "$1" "$2" <<'EOF'
import os, random, sys
path, extents = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_WRONLY)
blocks = os.fstat(fd).st_size // 4096
rng = random.Random(42)
block = bytes(rng.getrandbits(8) for _ in range(4096))
for b in rng.sample(range(blocks), min(blocks, extents // 2)):
    os.pwrite(fd, block, b * 4096)
os.fsync(fd)
os.close(fd)
EOF
}

extent_count() { # path (shim for cowdax: FIEMAP is not forwarded to FUSE)
    LD_PRELOAD="$PRELOAD" filefrag "$1" 2>/dev/null | sed -n 's/.*: \([0-9]*\) extents\? found/\1/p'
}

results=()
report() { results+=("$1"); echo "$1"; }

bench_cp() { # fs size_mib fragmented(0/1)
    local fs=$1 size=$2 frag=$3 mnt src kind
    mount_fs "$fs"
    mnt=$MNT
    src="$mnt/source"
    fill_random "$src" "$size"
    kind=fresh
    if [ "$frag" = 1 ]; then
        # Reflink first, then overwrite blocks: each CoW splits an extent.
        if [ "$fs" = cowdax ]; then cp "$src" "$mnt/base"; else cp --reflink=always "$src" "$mnt/base"; fi
        fragment "$src" "$FRAGMENT_EXTENTS"
        kind="$(extent_count "$src") extents"
    fi
    sync
    echo 3 > /proc/sys/vm/drop_caches
    local commands=("cp --reflink=always")
    [ "$fs" = cowdax ] && commands=("cp" "cp --reflink=always (shim)")
    for command in "${commands[@]}"; do
        local before after t0 t1 dst
        dst="$mnt/copy-$RANDOM"
        before=$(used_bytes "$mnt")
        t0=$(seconds)
        case $command in
            cp) cp "$src" "$dst" ;;
            "cp --reflink=always (shim)") LD_PRELOAD="$PRELOAD" cp --reflink=always "$src" "$dst" ;;
            *) cp --reflink=always "$src" "$dst" ;;
        esac
        sync -f "$dst"
        t1=$(seconds)
        after=$(used_bytes "$mnt")
        cmp -s "$src" "$dst" || { echo "copy differs on $fs" >&2; exit 1; }
        report "$(printf 'cp      %-7s %6s MiB %-16s %-28s %8.3f s  +%s bytes physical' \
            "$fs" "$size" "$kind" "$command" "$(python3 -c "print($t1-$t0)")" "$((after - before))")"
    done
    umount_fs "$mnt" "$fs"
}

bench_dedupe() { # fs
    local fs=$1 mnt files unique dups before after t0 t1
    mount_fs "$fs"
    mnt=$MNT
    mkdir -p "$mnt/set"
    files=$((DEDUPE_MIB / 64))
    dups=$((files * DUP_PERCENT / 100))
    unique=$((files - dups))
    for i in $(seq 1 "$unique"); do fill_random "$mnt/set/u$i" 64; done
    # Byte copies (not reflinks) of the unique files.
    for i in $(seq 1 "$dups"); do
        cp --reflink=never "$mnt/set/u$(( (i - 1) % unique + 1 ))" "$mnt/set/d$i"
    done
    sync
    echo 3 > /proc/sys/vm/drop_caches
    before=$(used_bytes "$mnt")
    t0=$(seconds)
    if [ "$fs" = cowdax ]; then
        "$COWDAX" dedupe -r "$mnt/set" >"$WORK/dedupe-$fs.log"
    else
        duperemove -dr --hashfile="$WORK/dupe-$fs.hash" "$mnt/set" >"$WORK/dedupe-$fs.log" 2>&1
        rm -f "$WORK/dupe-$fs.hash"
    fi
    sync -f "$mnt"
    t1=$(seconds)
    after=$(used_bytes "$mnt")
    local tool=cowdax-dedupe
    [ "$fs" = cowdax ] || tool=duperemove
    report "$(printf 'dedupe  %-7s %-14s %6s MiB (%s%% dup) %8.3f s  %6.2f GiB/s  saved %s bytes (expected %s)' \
        "$fs" "$tool" "$DEDUPE_MIB" "$DUP_PERCENT" "$(python3 -c "print($t1-$t0)")" \
        "$(python3 -c "print($DEDUPE_MIB/1024/max($t1-$t0,1e-9))")" "$((before - after))" \
        "$((dups * 64 * 1024 * 1024))")"
    umount_fs "$mnt" "$fs"
}

echo "cowdax reflink benchmarks ($(date -u +%FT%TZ), $(nproc) CPUs, kernel $(uname -r))"
for size in $SIZES_MIB; do
    for fs in $FILESYSTEMS; do
        bench_cp "$fs" "$size" 0
        [ "$FRAGMENT_EXTENTS" -gt 0 ] && bench_cp "$fs" "$size" 1
    done
done
for fs in $FILESYSTEMS; do
    bench_dedupe "$fs"
done
printf '%s\n' "${results[@]}" > "$WORK/results.txt"
echo "results in $WORK/results.txt"
