#!/usr/bin/env bash
# Sequential read bandwidth by read size, for each cowdax cache mode: what
# the page cache's read-ahead is worth to small readers and what it costs
# large ones. One image on /dev/shm, one file laid out once; each mode gets
# a fresh mount of the same image; each cell is fio rw=read (psync, the
# cache dropped as fio does by default) run REPEATS times, median printed
# with the minimum and maximum. Ends with `cowdax fsck -n` of the image.
#
#   tools/bench/read_sizes.sh [--sizes 4k,8k,32k,128k,1m] [--modes auto,direct]
#                             [--file-size 1g] [--runtime SECONDS] [--repeats N]
#
# docs/FUSE.md ("Which opens use the page cache") quotes its figures.
# Needs root and fio; uses target/release/cowdax (or $COWDAX).
set -euo pipefail

sizes=4k,8k,32k,128k,1m
modes=auto,direct
file_size=1g
runtime=3
repeats=3
while (($#)); do
    case $1 in
        --sizes) sizes=${2:?}; shift 2 ;;
        --modes) modes=${2:?}; shift 2 ;;
        --file-size) file_size=${2:?}; shift 2 ;;
        --runtime) runtime=${2:?}; shift 2 ;;
        --repeats) repeats=${2:?}; shift 2 ;;
        -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "read_sizes.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
for number in "$runtime" "$repeats"; do
    if ! [[ $number =~ ^[1-9][0-9]*$ ]]; then
        echo "read_sizes.sh: --runtime and --repeats want positive whole numbers, not '$number'" >&2
        exit 2
    fi
done
# shellcheck source=tools/bench/scratch.sh
source "$(dirname "$0")/scratch.sh"
bench_scratch read_sizes.sh fio
"$cowdax" mkfs --size "$(( $(numfmt --from=iec "${file_size^^}") * 3 ))" "$image" >/dev/null

mount_mode() {
    "$cowdax" "$image" "$mnt" -f -o "cache=$1" 2>"$work/daemon.log" &
    daemon=$!
    for _ in $(seq 100); do
        mountpoint -q "$mnt" && return 0
        kill -0 "$daemon" 2>/dev/null || break
        sleep 0.05
    done
    echo "read_sizes.sh: cowdax did not mount with cache=$1:" >&2
    cat "$work/daemon.log" >&2
    exit 1
}
unmount() {
    umount "$mnt"
    wait "$daemon"
    daemon=""
}

IFS=, read -r -a size_list <<<"$sizes"
IFS=, read -r -a mode_list <<<"$modes"
printf '%-8s' "read"
for mode in "${mode_list[@]}"; do printf '  %-26s' "cache=$mode MiB/s"; done
echo
for bs in "${size_list[@]}"; do
    printf '%-8s' "$bs"
    for mode in "${mode_list[@]}"; do
        mount_mode "$mode"
        if [[ ! -e $mnt/file ]]; then
            fio --name=layout --filename="$mnt/file" --size="$file_size" --rw=write --bs=1m \
                --direct=1 --output-format=terse >/dev/null
        fi
        figures=()
        for _ in $(seq "$repeats"); do
            figures+=("$(fio --name=read --filename="$mnt/file" --size="$file_size" --runtime="$runtime" \
                --time_based --rw=read --bs="$bs" --ioengine=psync --output-format=terse |
                awk -F';' '{ printf "%.0f\n", $7 / 1024 }')")
        done
        unmount
        printf '  %-26s' "$(printf '%s\n' "${figures[@]}" | sort -n |
            awk '{ v[NR] = $1 } END { printf "%d (%d-%d)", v[int((NR + 1) / 2)], v[1], v[NR] }')"
    done
    echo
done
"$cowdax" fsck -n "$image"
