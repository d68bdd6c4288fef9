#!/usr/bin/env bash
# How the kernel fills a file's page cache: drops the caches, reads the
# first MiB of FILE with dd (1 MiB reads) while perf records the
# filemap:mm_filemap_add_to_page_cache tracepoint, and prints how many folios of each order
# (order 0 = 4 KiB, order 9 = 2 MiB) were added for FILE's device.
#
#   tools/bench/folio_orders.sh [--mib N] FILE      (default N = 64)
#
# Large folios mean one allocation, one LRU insertion and one page-cache
# entry per folio instead of per 4 KiB page. docs/FUSE.md ("Read-ahead")
# has what it showed on Linux 6.18: order 0 only for FUSE files, up to
# order 9 for XFS. Run it again on a newer kernel to see whether that
# changed. Needs root and perf (Debian: linux-perf).
set -euo pipefail

mib=64
while (($#)); do
    case $1 in
        --mib) mib=${2:?--mib needs a number}; shift 2 ;;
        -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "folio_orders.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
        *) break ;;
    esac
done
if (($# != 1)); then
    echo "folio_orders.sh: expected one FILE (see --help)" >&2
    exit 2
fi
file=$1
if ! [[ $mib =~ ^[1-9][0-9]*$ ]]; then
    echo "folio_orders.sh: --mib wants a positive whole number, not '$mib'" >&2
    exit 2
fi
if [[ ! -f $file ]]; then
    echo "folio_orders.sh: $file is not a regular file" >&2
    exit 2
fi
if ! command -v perf >/dev/null; then
    echo "folio_orders.sh: perf not found (Debian: apt-get install linux-perf)" >&2
    exit 2
fi
# The tracepoint prints the file's device as MAJOR:MINOR in decimal; stat's
# %D is the same st_dev in hex, encoded the way glibc's major()/minor() decode.
st_dev=$((16#$(stat -c %D "$file")))
dev=$(((st_dev >> 8) & 0xfff)):$(((st_dev & 0xff) | ((st_dev >> 12) & 0xfff00)))
size=$(stat -c %s "$file")
if ((size < mib * 1048576)); then
    echo "folio_orders.sh: $file has $size bytes, less than --mib $mib" >&2
    exit 2
fi
data=$(mktemp /tmp/folio_orders.XXXXXX)
trap 'rm -f "$data"' EXIT
sync
echo 3 >/proc/sys/vm/drop_caches
perf record -q -o "$data" -e filemap:mm_filemap_add_to_page_cache -a -- \
    dd if="$file" of=/dev/null bs=1M count="$mib" status=none 2>/dev/null
echo "page-cache insertions for $file (device $dev), first $mib MiB:"
perf script -i "$data" 2>/dev/null |
    awk -v dev="$dev" '$0 ~ ("dev " dev " ") { for (i = 1; i <= NF; i++) if ($i ~ /^order=/) { split($i, o, "="); n[o[2]]++ } }
        END { for (k in n) printf "  order %-2s (%4d KiB): %d folios\n", k, 4 * 2 ^ k, n[k] }' |
    sort -k2 -n
