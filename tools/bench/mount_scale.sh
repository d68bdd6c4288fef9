#!/usr/bin/env bash
# shellcheck disable=SC2317  # shellcheck takes the functions nested in main() for unreachable because of the `exit` after the call
# cowdax mount scale: how long a mount takes and how much DRAM the daemon
# keeps, for an empty filesystem and for one holding N files of 4 KiB (one
# extent each; 1,000,000 by default).
#
#   tools/bench/mount_scale.sh [--quick] [--files N] [--out DIR] [--publish DIR]
#
# Steps: mkfs an image on /dev/shm; mount it (timed) and read the daemon's
# memory; populate N files through the mount (metabench --populate);
# unmount; mount again (timed) and read the memory again; unmount; fsck -n.
# Mount time is from starting `cowdax IMG MNT -f` to the mount being visible
# (polled every 10 ms). DRAM per extent is the growth of the daemon's
# anonymous memory (RssAnon: heap, not the mapped image) divided by N.
# Issue 6 asks for <= 2 s with 1M inodes and <= 128 bytes per extent.
set -euo pipefail

main() {
here=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$here/../.." && pwd)
file_count=1000000
quick=0
out_dir=""
publish_dir=""
while (($#)); do
    case $1 in
        --quick) quick=1 ;;
        --files) file_count=${2:?}; shift ;;
        --out) out_dir=${2:?}; shift ;;
        --publish) publish_dir=${2:?}; shift ;;
        -h | --help) sed -n '3,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "mount_scale.sh: unknown argument '$1' (try --help)" >&2; exit 1 ;;
    esac
    shift
done
if ((quick)); then
    file_count=20000
fi
if ! [[ $file_count =~ ^[0-9]+$ ]] || ((file_count < 1)); then
    echo "mount_scale.sh: --files must be a positive integer" >&2
    exit 1
fi
if [[ $(id -u) != 0 ]]; then
    echo "mount_scale.sh: must run as root" >&2
    exit 1
fi

cowdax_bin=${COWDAX:-}
if [[ -z $cowdax_bin ]]; then
    if [[ -x $repo_root/target/release/cowdax ]]; then
        cowdax_bin=$repo_root/target/release/cowdax
    else
        cowdax_bin=$(command -v cowdax || true)
    fi
fi
if [[ -z $cowdax_bin || ! -x $cowdax_bin ]]; then
    echo "mount_scale.sh: no cowdax binary (cargo build --release, or set COWDAX=path)" >&2
    exit 1
fi

out_dir=${out_dir:-/tmp/cowdax-mount-scale/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out_dir"
out_dir=$(cd "$out_dir" && pwd)
work_dir=$(mktemp -d /dev/shm/cowdax-mount-scale.XXXXXX)
image=$work_dir/cowdax.img
mount_path=$work_dir/mnt
mkdir -p "$mount_path"
daemon_pid=""

# Teardown: unmount if mounted, end our daemon by pid, remove the images.
on_exit() {
    local status=$?
    trap - EXIT INT TERM
    stop_daemon || true
    rm -rf "$work_dir"
    exit "$status"
}
trap on_exit EXIT
trap 'echo "mount_scale.sh: interrupted" >&2; exit 130' INT TERM

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$out_dir/run.log" >&2; }

is_mounted() { findmnt -rn --mountpoint "$mount_path" >/dev/null 2>&1; }

stop_daemon() {
    [[ -n $daemon_pid ]] || return 0
    local _
    for _ in 1 2 3 4 5; do
        is_mounted || break
        umount "$mount_path" 2>/dev/null || sleep 0.5
    done
    if is_mounted; then
        umount -l "$mount_path" || true
    fi
    for _ in $(seq 1 100); do
        kill -0 "$daemon_pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$daemon_pid" 2>/dev/null; then
        log "daemon $daemon_pid still running 20 s after unmount; sending SIGTERM"
        kill -TERM "$daemon_pid" 2>/dev/null || true
    fi
    wait "$daemon_pid" 2>/dev/null || true
    daemon_pid=""
}

# Mounts; sets daemon_pid and mount_seconds (the time until the mount was
# visible). Not to be called in $(...): the daemon must be our own child.
timed_mount() {
    local label=$1 start_ns end_ns
    start_ns=$(date +%s%N)
    "$cowdax_bin" "$image" "$mount_path" -f >>"$out_dir/daemon.$label.log" 2>&1 &
    daemon_pid=$!
    while ! is_mounted; do
        if ! kill -0 "$daemon_pid" 2>/dev/null; then
            log "mount ($label) failed: $(tail -n 3 "$out_dir/daemon.$label.log" | tr '\n' ' ')"
            daemon_pid=""
            return 1
        fi
        sleep 0.01
    done
    end_ns=$(date +%s%N)
    mount_seconds=$(awk -v ns=$((end_ns - start_ns)) 'BEGIN {printf "%.3f", ns / 1e9}')
}

memory_kib() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$daemon_pid/status"; }

image_bytes=$((file_count * 4096 * 5 / 4 + 1024 * 1024 * 1024))
log "mkfs: $image_bytes bytes for $file_count files"
"$cowdax_bin" mkfs --size "$image_bytes" "$image" >"$out_dir/mkfs.log" 2>&1

timed_mount empty
empty_mount_seconds=$mount_seconds
sleep 1
empty_rss_kib=$(memory_kib VmRSS)
empty_anon_kib=$(memory_kib RssAnon)
log "empty mount: ${empty_mount_seconds}s, RSS ${empty_rss_kib} KiB (anon ${empty_anon_kib} KiB)"

log "populating $file_count files of 4 KiB (metabench --populate)"
cc -O2 -Wall -o "$work_dir/metabench" "$here/metabench.c"
populate_json=$("$work_dir/metabench" --populate "$mount_path" "$file_count" 4096)
log "populated: $populate_json"
stop_daemon

timed_mount populated
full_mount_seconds=$mount_seconds
sleep 1
full_rss_kib=$(memory_kib VmRSS)
full_anon_kib=$(memory_kib RssAnon)
log "populated mount: ${full_mount_seconds}s, RSS ${full_rss_kib} KiB (anon ${full_anon_kib} KiB)"
stop_daemon

fsck_status=0
"$cowdax_bin" fsck -n "$image" >"$out_dir/fsck.log" 2>&1 || fsck_status=$?
log "fsck -n exit status $fsck_status"

python3 - "$out_dir" <<EOF
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
files = $file_count
populate = json.loads('''$populate_json''')
result = {
    "date_utc": "$(date -u '+%Y-%m-%d %H:%M:%S')",
    "kernel": "$(uname -sr)",
    "loadavg": "$(cut -d' ' -f1-3 /proc/loadavg)",
    "cowdax_binary": "$cowdax_bin",
    "files": files,
    "file_bytes": 4096,
    "image_bytes": $image_bytes,
    "populate_files_per_second": populate["create_per_second"],
    "empty_mount_seconds": $empty_mount_seconds,
    "populated_mount_seconds": $full_mount_seconds,
    "empty_rss_kib": $empty_rss_kib,
    "empty_anon_kib": $empty_anon_kib,
    "populated_rss_kib": $full_rss_kib,
    "populated_anon_kib": $full_anon_kib,
    "fsck_exit_status": $fsck_status,
}
anon_growth_bytes = (result["populated_anon_kib"] - result["empty_anon_kib"]) * 1024
result["dram_bytes_per_extent"] = anon_growth_bytes / files
(out / "mount_scale.json").write_text(json.dumps(result, indent=1) + "\n")
verdict = lambda ok: "yes" if ok else "**no**"
lines = [
    "# cowdax mount scale",
    "",
    f"{result['date_utc']} UTC, {result['kernel']}, load average {result['loadavg']}, binary {result['cowdax_binary']}.",
    "",
    "| figure | value |",
    "|---|---|",
    f"| files (4 KiB, one extent each) | {files:,} |",
    f"| populate rate through the mount | {result['populate_files_per_second']:.0f} files/s |",
    f"| mount time, empty | {result['empty_mount_seconds']:.3f} s |",
    f"| mount time, {files:,} files | {result['populated_mount_seconds']:.3f} s |",
    f"| daemon RSS, empty / populated | {result['empty_rss_kib'] / 1024:.1f} / {result['populated_rss_kib'] / 1024:.1f} MiB |",
    f"| daemon anonymous memory, empty / populated | {result['empty_anon_kib'] / 1024:.1f} / {result['populated_anon_kib'] / 1024:.1f} MiB |",
    f"| DRAM per extent (anonymous growth / files) | {result['dram_bytes_per_extent']:.0f} bytes |",
    f"| image checks clean afterwards (fsck -n) | {verdict(result['fsck_exit_status'] == 0)} (exit {result['fsck_exit_status']}) |",
    "",
    "Issue 6 targets:",
    "",
    "| target | measured | met? |",
    "|---|---|---|",
    f"| mount with 1M inodes in ≤ 2 s | {result['populated_mount_seconds']:.3f} s with {files:,} files | {verdict(result['populated_mount_seconds'] <= 2.0) if files >= 1000000 else 'not at 1M files'} |",
    f"| ≤ 128 bytes of DRAM per extent | {result['dram_bytes_per_extent']:.0f} bytes | {verdict(result['dram_bytes_per_extent'] <= 128)} |",
    "",
    "Anonymous memory (RssAnon) counts the daemon's own heap; the mapped image pages are",
    "page cache (RssFile/RssShmem) and are left out. The populated figure includes whatever",
    "the daemon keeps per inode as well as per extent, so it is an upper bound per extent.",
    "",
]
(out / "mount_scale.md").write_text("\n".join(lines))
print("\n".join(lines))
EOF
if [[ -n $publish_dir ]]; then
    mkdir -p "$publish_dir"
    cp "$out_dir/mount_scale.md" "$out_dir/mount_scale.json" "$publish_dir/"
    log "published to $publish_dir"
fi
}

# exit on the same line: bash must not read past it if the file is edited meanwhile.
main "$@"; exit "$?"
