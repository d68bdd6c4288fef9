#!/usr/bin/env bash
# Which FUSE requests a command makes: counts the kernel's
# fuse:fuse_request_send tracepoint (Linux 6.9 and later) over the whole
# system while COMMAND runs, by opcode, and optionally divides by the number
# of operations the command performs.
#
#   tools/bench/optrace.sh [--per N] -- COMMAND [ARGS...]
#
# Example (round trips per created file, on any FUSE mount):
#   tools/bench/optrace.sh --per 1000 -- metabench /mnt/dir 1000 4096
#
# Counts every FUSE connection on the machine, so run it with only the
# mount under study busy. Needs root and perf (Debian: linux-perf).
# docs/FUSE.md "Round trips per operation" was measured with it.
set -euo pipefail

per=""
while (($#)); do
    case $1 in
        --per) per=${2:?--per needs a number}; shift 2 ;;
        --) shift; break ;;
        -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "optrace.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
if (($# == 0)); then
    echo "optrace.sh: no command given (see --help)" >&2
    exit 2
fi
if [[ -n $per ]] && ! [[ $per =~ ^[1-9][0-9]*$ ]]; then
    echo "optrace.sh: --per $per: not a positive number" >&2
    exit 2
fi
if ! command -v perf >/dev/null; then
    echo "optrace.sh: perf not found (apt-get install linux-perf)" >&2
    exit 1
fi
if ! perf list 2>/dev/null | grep 'fuse:fuse_request_send' >/dev/null; then
    echo "optrace.sh: this kernel has no fuse:fuse_request_send tracepoint (Linux 6.9+, run as root)" >&2
    exit 1
fi

data=$(mktemp /tmp/optrace.XXXXXX)
trap 'rm -f "$data"' EXIT
status=0
perf record -q -e fuse:fuse_request_send -a -o "$data" -- "$@" >&2 || status=$?
if ((status != 0)); then
    echo "optrace.sh: the command exited $status; counts cover what it did" >&2
fi
perf script -i "$data" 2>/dev/null |
    grep -o 'opcode [0-9]* ([A-Z_0-9]*)' |
    sed 's/opcode [0-9]* (\(.*\))/\1/' |
    sort | uniq -c | sort -rn |
    awk -v per="$per" '
        { total += $1; count[NR] = $1; name[NR] = $2 }
        END {
            for (i = 1; i <= NR; i++) {
                if (per != "") printf "%-22s %8d  %8.2f per op\n", name[i], count[i], count[i] / per
                else printf "%-22s %8d\n", name[i], count[i]
            }
            if (per != "") printf "%-22s %8d  %8.2f per op\n", "total", total, total / per
            else printf "%-22s %8d\n", "total", total
        }'
exit "$status"
