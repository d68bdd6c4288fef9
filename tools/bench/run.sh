#!/usr/bin/env bash
# shellcheck disable=SC2317  # shellcheck takes the functions nested in main() for unreachable because of the `exit` after the call
# cowdax side-by-side benchmark: one command sets up every target on
# DRAM-backed images under /dev/shm, runs the same fio job set (and the
# metadata helper) on each, repeats everything, and renders a report.
#
#   tools/bench/run.sh [--quick] [--repeats N] [--targets a,b,...]
#                      [--jobs a,b,...] [--size SIZE] [--runtime SECONDS]
#                      [--meta-files N] [--settle SECONDS] [--poll-idle]
#                      [--out DIR] [--publish DIR]
#
# See docs/BENCHMARKS.md for what each job measures and how to read the
# ratios. Needs root (mount, losetup), fio, python3, cc, pkg-config and the
# Debian packages libfuse3-dev fuse2fs bindfs xfsprogs btrfs-progs.
#
# Every mount, loop device, daemon and image this script creates is recorded
# on a cleanup stack and torn down on exit, on error and on SIGINT/SIGTERM.
set -euo pipefail

# The whole script is one function, called on the last line, so bash parses
# it completely before running it: editing run.sh while a run is in progress
# cannot change that run.
main() {
here=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$here/../.." && pwd)

all_targets=(cowdax tmpfs xfs ext4 btrfs fuse2fs bindfs passthrough_ll null)
all_jobs=(
    randread-4k-direct randwrite-4k-direct
    randread-4k-buffered randread-4k-cached randwrite-4k-buffered randwrite-4k-fsync
    seqread-8k-buffered seqread-1m-buffered seqwrite-1m-buffered seqread-1m-direct seqwrite-1m-direct
    randread-4k-uring-qd16
    randwrite-4k-direct-2jobs seqread-1m-buffered-2jobs
    mmap-randread-4k mmap-randwrite-4k
)

quick=0
repeats=3
jobs_csv=
# Default: every target, plus cowdax in its two other cache modes (the
# default is cache=auto; docs/FUSE.md), whose trade-offs are part of the
# picture, and with idle polling on (plain cowdax is the default mount:
# idle polling off, the peers' terms; docs/FUSE.md "Idle polling").
targets_csv=$(IFS=,; echo "${all_targets[*]},cowdax@cache=page,cowdax@cache=direct,cowdax@idle_poll=on")
file_size=""
runtime_seconds=""
meta_files=""
settle_seconds=0
poll_idle=0
out_dir=""
publish_dir=""

usage() {
    sed -n '3,16p' "$0" | sed 's/^# \{0,1\}//'
}

while (($#)); do
    case $1 in
        --quick) quick=1 ;;
        --repeats) repeats=${2:?}; shift ;;
        --targets) targets_csv=${2:?}; shift ;;
        --jobs) jobs_csv=${2:?}; shift ;;
        --size) file_size=${2:?}; shift ;;
        --runtime) runtime_seconds=${2:?}; shift ;;
        --meta-files) meta_files=${2:?}; shift ;;
        --settle) settle_seconds=${2:?}; shift ;;
        --poll-idle) poll_idle=1 ;;
        --out) out_dir=${2:?}; shift ;;
        --publish) publish_dir=${2:?}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument '$1' (try --help)" >&2; exit 1 ;;
    esac
    shift
done

if ((quick)); then
    # Smoke run: small files and 1 s per job so all targets finish in minutes.
    file_size=${file_size:-64m}
    runtime_seconds=${runtime_seconds:-1}
    meta_files=${meta_files:-2000}
else
    file_size=${file_size:-1g}
    runtime_seconds=${runtime_seconds:-10}
    meta_files=${meta_files:-20000}
fi
if ! [[ $repeats =~ ^[0-9]+$ ]] || ((repeats < 1)); then
    echo "run.sh: --repeats must be a positive integer" >&2
    exit 1
fi
if ! [[ $settle_seconds =~ ^[0-9]+$ ]]; then
    echo "run.sh: --settle must be a whole number of seconds" >&2
    exit 1
fi
if ((repeats < 3)); then
    echo "run.sh: warning: fewer than 3 repeats; min-max ranges will be thin" >&2
fi

# --jobs: a subset of the fio jobs, plus `copy` and `metadata`.
if [[ -n $jobs_csv ]]; then
    IFS=, read -r -a wanted_jobs <<<"$jobs_csv"
    for job in "${wanted_jobs[@]}"; do
        if [[ " ${all_jobs[*]} copy metadata " != *" $job "* ]]; then
            echo "run.sh: unknown job '$job' (known: ${all_jobs[*]} copy metadata)" >&2
            exit 1
        fi
    done
    selected_jobs=()
    for job in "${all_jobs[@]}"; do
        if [[ " ${wanted_jobs[*]} " == *" $job "* ]]; then selected_jobs+=("$job"); fi
    done
    extra_jobs=()
    for job in copy metadata; do
        if [[ " ${wanted_jobs[*]} " == *" $job "* ]]; then extra_jobs+=("$job"); fi
    done
    all_jobs=("${selected_jobs[@]}")
else
    extra_jobs=(copy metadata)
fi

IFS=, read -r -a targets <<<"$targets_csv"
for target in "${targets[@]}"; do
    # cowdax@OPTS is cowdax mounted with -o OPTS ('+' stands for ','), e.g.
    # cowdax@writeback_cache+threads=4, to compare settings in one run.
    if [[ " ${all_targets[*]} " != *" ${target%%@*} "* || ! $target =~ ^[A-Za-z0-9_@=+.-]+$ ]] ||
        [[ $target == *@* && ${target%%@*} != cowdax ]]; then
        echo "run.sh: unknown target '$target' (known: ${all_targets[*]}, cowdax@OPT+OPT...)" >&2
        exit 1
    fi
done

# passthrough_ll keeps an open file descriptor per inode it has seen: the
# metadata job's files must stay below the limit (it ran out at 20,000 on
# a machine whose hard limit is 20,000). Raise it where allowed; warn when
# the metadata job will not fit.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) < meta_files + 1000)); then
    echo "run.sh: warning: open-file limit $(ulimit -n) is below --meta-files $meta_files + 1000: passthrough_ll's metadata job will fail (use --meta-files $(($(ulimit -n) - 1000)))" >&2
fi

if [[ $(id -u) != 0 ]]; then
    echo "run.sh: must run as root (mount, losetup)" >&2
    exit 1
fi
for tool in fio python3 cc pkg-config losetup findmnt; do
    if ! command -v "$tool" >/dev/null; then
        echo "run.sh: '$tool' not found (see docs/BENCHMARKS.md for the packages)" >&2
        exit 1
    fi
done

run_stamp=$(date -u +%Y%m%dT%H%M%SZ)
out_dir=${out_dir:-/tmp/cowdax-bench-results/$run_stamp}
mkdir -p "$out_dir"/{raw,logs,targets}
# Rounds append to the target descriptions: start from none (--out may be reused).
rm -f "$out_dir"/targets/*.info
out_dir=$(cd "$out_dir" && pwd)
# Images, backing directories and mount points live on DRAM.
work_dir=$(mktemp -d /dev/shm/cowdax-bench.XXXXXX)

# ---------------------------------------------------------------------------
# Cleanup stack: each entry is a command string, run in reverse order.
cleanup_stack=()
push_cleanup() { cleanup_stack+=("$1"); }
# Runs and pops entries until the stack has $1 entries left.
unwind_to() {
    local keep=$1
    while ((${#cleanup_stack[@]} > keep)); do
        local last=$((${#cleanup_stack[@]} - 1))
        local command=${cleanup_stack[$last]}
        unset 'cleanup_stack[$last]'
        eval "$command" || echo "run.sh: cleanup step failed: $command" >&2
    done
}
on_exit() {
    local status=$?
    trap - EXIT INT TERM
    unwind_to 0
    rm -rf "$work_dir"
    exit "$status"
}
trap on_exit EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT TERM

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$out_dir/logs/run.log" >&2; }

# Unmounts $1, retrying while busy, and lazily as a last resort.
unmount_path() {
    local mount_path=$1
    for _ in 1 2 3 4 5; do
        if ! findmnt -rn --mountpoint "$mount_path" >/dev/null 2>&1; then
            return 0
        fi
        umount "$mount_path" 2>/dev/null && return 0
        sleep 0.5
    done
    echo "run.sh: $mount_path still busy, detaching lazily" >&2
    umount -l "$mount_path"
}

# Waits for the daemon $1 to exit after its unmount, then ends it.
reap_daemon() {
    local pid=$1
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.2
    done
    echo "run.sh: daemon $pid did not exit after unmount; sending SIGTERM" >&2
    kill -TERM "$pid" 2>/dev/null || true
    sleep 1
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Waits until something is mounted on $1 (a FUSE daemon answered INIT) or the
# daemon $2 died. Returns non-zero on failure.
wait_for_mount() {
    local mount_path=$1 pid=$2
    for _ in $(seq 1 100); do
        if findmnt -rn --mountpoint "$mount_path" >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------------------
# Machine description and idleness.
loadavg_1min() { cut -d' ' -f1 /proc/loadavg; }

{
    echo "date_utc=$(date -u '+%Y-%m-%d %H:%M:%S')"
    echo "kernel=$(uname -srmv)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "cpus=$(nproc)"
    echo "memory=$(free -g | awk '/^Mem:/{print $2 " GiB"}')"
    echo "fio=$(fio --version)"
    echo "mode=$( ((quick)) && echo quick || echo full)"
    echo "repeats=$repeats"
    echo "order=$repeats rounds; each round sets up every target in turn, runs every job once on it and tears it down"
    echo "file_size=$file_size"
    echo "runtime_seconds=$runtime_seconds"
    echo "settle_seconds=$settle_seconds"
    echo "poll_idle=$( ((poll_idle)) && echo "yes: a CPU latency request of 0 us held for the whole run, so idle CPUs poll for every target" || echo no)"
    echo "cpuidle=$(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo none)/$(cat /sys/devices/system/cpu/cpuidle/current_governor_ro 2>/dev/null || cat /sys/devices/system/cpu/cpuidle/current_governor 2>/dev/null || echo none); guest_halt_poll_ns=$(cat /sys/module/haltpoll/parameters/guest_halt_poll_ns 2>/dev/null || echo n/a)"
    echo "meta_files=$meta_files"
    echo "git_commit=$(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "fuse_max_pages_limit=$(cat /proc/sys/fs/fuse/max_pages_limit 2>/dev/null || echo unknown)"
    echo "loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$out_dir/system.env"

log "results in $out_dir, images in $work_dir"

# --poll-idle: the like-for-like run for cowdax's idle_poll=on mount option
# (docs/BENCHMARKS.md "Idle polling"): a PM QoS CPU latency request of 0 us,
# held while this shell keeps the device open (the whole run), makes idle
# CPUs poll instead of halting for every target (plain cowdax, idle polling
# off, included), not only while a cowdax@idle_poll=on daemon is busy and
# not capped at 5 s an engagement as the daemon's own request is.
if ((poll_idle)); then
    exec {qos_fd}>/dev/cpu_dma_latency || {
        echo "run.sh: --poll-idle: cannot open /dev/cpu_dma_latency (needs root)" >&2
        exit 1
    }
    printf '0' >&"$qos_fd"
    log "idle CPUs poll for the whole run (--poll-idle)"
fi
log "building FUSE peers and the metadata helper"
bin_dir=$work_dir/bin
"$here/peers/build.sh" "$bin_dir" >"$out_dir/logs/build.log" 2>&1 || {
    echo "run.sh: building the peers failed, see $out_dir/logs/build.log" >&2
    exit 1
}

cowdax_bin=${COWDAX:-}
if [[ -z $cowdax_bin ]]; then
    if [[ -x $repo_root/target/release/cowdax ]]; then
        cowdax_bin=$repo_root/target/release/cowdax
    else
        cowdax_bin=$(command -v cowdax || true)
    fi
fi

if [[ -n $cowdax_bin && -x $cowdax_bin ]]; then
    {
        echo "cowdax_binary=$cowdax_bin"
        echo "cowdax_version=$("$cowdax_bin" --version 2>/dev/null | head -n 1)"
        echo "cowdax_binary_mtime=$(date -u -r "$cowdax_bin" '+%Y-%m-%d %H:%M:%S')"
        echo "cowdax_build_note=${COWDAX_BUILD_NOTE:-}"
    } >>"$out_dir/system.env"
fi

# ---------------------------------------------------------------------------
# Targets. setup_<target> mounts it and sets:
#   data_dir      directory for files (metadata job runs here)
#   bench_file1/2 the two fio files
#   daemon_pid    FUSE daemon to account CPU/RSS to (empty for kernel fs)
#   mount_desc    how it was mounted, for the report
#   layout_needed 1 when the fio files must be written first
# and pushes its teardown on the cleanup stack. It returns non-zero (with a
# reason in setup_failure) when the target cannot be set up.
# must WHAT COMMAND...: runs a setup step; on failure records why (setup
# functions run under `if`, where errexit is off, so each step is checked).
# The command's stdout passes through; its stderr goes to the setup log.
must() {
    local what=$1
    shift
    if ! "$@" 2>>"$out_dir/logs/setup.log"; then
        setup_failure="$what failed: $(tail -n 2 "$out_dir/logs/setup.log" | tr '\n' ' ')"
        return 1
    fi
}

image_bytes_for_files() {
    # Two fio files, the copy job's full copy (filesystems without reflink
    # store it), and room for metadata, journals, ext4's 5 % reserve and
    # the metadata job.
    local file_bytes
    file_bytes=$(numfmt --from=iec "${file_size^^}")
    echo $((file_bytes * 3 + file_bytes / 2 + 512 * 1024 * 1024))
}

make_loop_image() {
    local name=$1
    local image=$work_dir/$name.img
    truncate -s "$(image_bytes_for_files)" "$image"
    push_cleanup "rm -f '$image'"
    if ! loop_device=$(losetup --find --show "$image" 2>>"$out_dir/logs/setup.log"); then
        setup_failure="losetup failed: $(tail -n 1 "$out_dir/logs/setup.log")"
        return 1
    fi
    push_cleanup "losetup -d '$loop_device'"
}

mount_kernel_fs() {
    local name=$1
    local mount_path=$work_dir/mnt/$name
    mkdir -p "$mount_path"
    must "mount" mount "$loop_device" "$mount_path" || return 1
    push_cleanup "unmount_path '$mount_path'"
    data_dir=$mount_path
}

start_fuse_daemon() {
    # start_fuse_daemon NAME MOUNT_PATH COMMAND...: runs the daemon in the
    # foreground (as our child, so we own its pid) and waits for the mount.
    local name=$1 mount_path=$2
    shift 2
    "$@" >"$out_dir/logs/$name.daemon.log" 2>&1 &
    daemon_pid=$!
    push_cleanup "reap_daemon $daemon_pid"
    push_cleanup "unmount_path '$mount_path'"
    if ! wait_for_mount "$mount_path" "$daemon_pid"; then
        setup_failure="daemon did not mount: $(tail -n 3 "$out_dir/logs/$name.daemon.log" | tr '\n' ' ')"
        return 1
    fi
}

setup_tmpfs() {
    data_dir=$work_dir/mnt/tmpfs
    mkdir -p "$data_dir"
    must "mount" mount -t tmpfs -o size="$(image_bytes_for_files)" tmpfs "$data_dir" || return 1
    push_cleanup "unmount_path '$data_dir'"
    mount_desc="mount -t tmpfs -o size=$(image_bytes_for_files)"
}

setup_xfs() {
    make_loop_image xfs || return 1
    must "mkfs.xfs" mkfs.xfs -q -f -m reflink=1,rmapbt=1 "$loop_device" || return 1
    mount_kernel_fs xfs || return 1
    mount_desc="mkfs.xfs -m reflink=1,rmapbt=1 on a loop device over /dev/shm; mount defaults"
}

setup_ext4() {
    make_loop_image ext4 || return 1
    must "mkfs.ext4" mkfs.ext4 -q -F "$loop_device" || return 1
    mount_kernel_fs ext4 || return 1
    mount_desc="mkfs.ext4 (defaults) on a loop device over /dev/shm; mount defaults"
}

setup_btrfs() {
    make_loop_image btrfs || return 1
    must "mkfs.btrfs" mkfs.btrfs -q -f "$loop_device" || return 1
    mount_kernel_fs btrfs || return 1
    mount_desc="mkfs.btrfs (defaults) on a loop device over /dev/shm; mount defaults"
}

setup_fuse2fs() {
    local image=$work_dir/fuse2fs.img mount_path=$work_dir/mnt/fuse2fs
    truncate -s "$(image_bytes_for_files)" "$image"
    push_cleanup "rm -f '$image'"
    must "mkfs.ext4" mkfs.ext4 -q -F "$image" || return 1
    mkdir -p "$mount_path"
    start_fuse_daemon fuse2fs "$mount_path" fuse2fs "$image" "$mount_path" -f || return 1
    data_dir=$mount_path
    mount_desc="fuse2fs IMAGE MNT -f (ext4 image on /dev/shm, fuse2fs defaults)"
}

setup_bindfs() {
    local source_dir=$work_dir/bindfs-source mount_path=$work_dir/mnt/bindfs
    mkdir -p "$source_dir" "$mount_path"
    push_cleanup "rm -rf '$source_dir'"
    # shellcheck disable=SC2086 # BINDFS_OPTS is a word list on purpose
    start_fuse_daemon bindfs "$mount_path" bindfs -f ${BINDFS_OPTS:-} "$source_dir" "$mount_path" || return 1
    data_dir=$mount_path
    mount_desc="bindfs -f ${BINDFS_OPTS:-} SRC MNT (SRC on /dev/shm tmpfs; bindfs defaults: single-threaded)"
}

setup_passthrough_ll() {
    local source_dir=$work_dir/passthrough-source mount_path=$work_dir/mnt/passthrough_ll
    mkdir -p "$source_dir" "$mount_path"
    push_cleanup "rm -rf '$source_dir'"
    start_fuse_daemon passthrough_ll "$mount_path" \
        "$bin_dir/passthrough_ll" -f -o source="$source_dir" "$mount_path" || return 1
    data_dir=$mount_path
    mount_desc="passthrough_ll -f -o source=SRC MNT (SRC on /dev/shm tmpfs; example defaults: multi-threaded, cache=auto)"
}

setup_null() {
    # libfuse's null fs mounts over a regular file and serves only that file:
    # reads return zeros, writes are discarded, 4 GiB size.
    local mount_path=$work_dir/mnt/null.file
    mkdir -p "$work_dir/mnt"
    : >"$mount_path"
    start_fuse_daemon null "$mount_path" "$bin_dir/null" -f "$mount_path" || return 1
    data_dir=""
    bench_file1=$mount_path
    bench_file2=$mount_path
    layout_needed=0
    mount_desc="null -f FILE (libfuse example, defaults: multi-threaded; one 4 GiB file, no directories)"
}

# Hook for the daemon's persistence counters (bytes stored/persisted, lines
# flushed, fences, msyncs). Prints one JSON object of numbers, or nothing.
# Set COWDAX_COUNTERS_CMD to a command that takes the mount point and prints
# such an object; by default `cowdax counters --json MNT` is used if the
# binary has a `counters` subcommand.
cowdax_counters() {
    local mount_path=$1
    if [[ -n ${COWDAX_COUNTERS_CMD:-} ]]; then
        # shellcheck disable=SC2086 # a command line on purpose
        ${COWDAX_COUNTERS_CMD} "$mount_path" 2>/dev/null | head -n 1 || true
    elif [[ $cowdax_has_counters == 1 ]]; then
        "$cowdax_bin" counters --json "$mount_path" 2>/dev/null | head -n 1 || true
    fi
}

setup_cowdax() {
    if [[ -z $cowdax_bin || ! -x $cowdax_bin ]]; then
        setup_failure="no cowdax binary (build with cargo build --release, or set COWDAX=path)"
        return 1
    fi
    cowdax_has_counters=0
    if "$cowdax_bin" --help 2>/dev/null | grep -qw counters; then
        cowdax_has_counters=1
    fi
    local label=$1 options=${COWDAX_MOUNT_OPTS:-rw}
    if [[ $label == *@* ]]; then
        options=${label#*@}
        options=${options//+/,}
    fi
    local image=$work_dir/$label.img mount_path=$work_dir/mnt/$label
    if ! "$cowdax_bin" mkfs --size "$(image_bytes_for_files)" "$image" >"$out_dir/logs/$label.mkfs.log" 2>&1; then
        setup_failure="cowdax mkfs failed: $(tail -n 2 "$out_dir/logs/$label.mkfs.log" | tr '\n' ' ')"
        rm -f "$image"
        return 1
    fi
    push_cleanup "rm -f '$image'"
    # Runs after the unmount and the daemon's exit (the stack unwinds in
    # reverse): the image the benchmark wrote must check clean.
    push_cleanup "check_cowdax_image '$image' '$out_dir/targets/$label.info' '$label' '$rep'"
    mkdir -p "$mount_path"
    # -f keeps the daemon our child so its CPU time and RSS can be read.
    start_fuse_daemon "$label" "$mount_path" "$cowdax_bin" "$image" "$mount_path" -o "$options" -f || return 1
    data_dir=$mount_path
    mount_desc="cowdax mkfs --size $(image_bytes_for_files) IMG; cowdax IMG MNT -o $options -f (image on /dev/shm)"
}
cowdax_has_counters=0

# Read-only fsck of the image after each round; the verdict goes into the
# report. The info file keeps the last fsck= line, so a round that checks
# clean must not hide an earlier round that did not.
check_cowdax_image() {
    local image=$1 info=$2 label=$3 round=$4 status=0
    local fsck_log=logs/$label.round$round.fsck.log
    "$cowdax_bin" fsck -n "$image" >"$out_dir/$fsck_log" 2>&1 || status=$?
    if ((status == 0)); then
        if ! grep -q '^fsck=NOT CLEAN' "$info" 2>/dev/null; then
            echo "fsck=clean (cowdax fsck -n after each round's unmount)" >>"$info"
        fi
    else
        echo "fsck=NOT CLEAN: cowdax fsck -n exited $status after round $round, see $fsck_log" >>"$info"
        log "   $label: cowdax fsck -n exited $status after round $round ($fsck_log)"
    fi
}

# The kernel's read-ahead window of the mount at $1 (KiB, from its backing
# device's /sys/class/bdi entry), or "–" where the mount has no such entry
# (tmpfs; btrfs names its bdi differently).
read_ahead_of() {
    local majmin
    majmin=$(findmnt -rn -o MAJ:MIN --mountpoint "$1" | tail -n 1)
    if [[ -n $majmin && -r /sys/class/bdi/$majmin/read_ahead_kb ]]; then
        echo "$(cat "/sys/class/bdi/$majmin/read_ahead_kb") KiB"
    else
        echo "–"
    fi
}

# Reasons a job cannot run on a target (empty: it can).
job_na_reason() {
    local target=${1%%@*} job=$2
    case $target:$job in
        null:metadata | null:copy) echo "the null fs serves one file and no directory: nothing to create" ;;
    esac
}

# Notes attached to a figure that did run but means something particular.
job_note() {
    local target=${1%%@*} job=$2
    case $target:$job in
        null:*-2jobs) echo "both jobs use the null fs's single file" ;;
        null:randwrite-4k-fsync) echo "null has no fsync: the kernel stops sending it after the first ENOSYS" ;;
    esac
}

# ---------------------------------------------------------------------------
# Per-run accounting: daemon CPU ticks and memory, cowdax counters.
daemon_cpu_ticks() {
    local pid=$1
    [[ -n $pid && -r /proc/$pid/stat ]] || { echo ""; return; }
    # Fields after the parenthesised command name: utime is 14, stime 15.
    sed 's/^.*) //' "/proc/$pid/stat" | awk '{print $12 + $13}'
}
daemon_memory_kib() {
    local pid=$1 field=$2
    [[ -n $pid && -r /proc/$pid/status ]] || { echo ""; return; }
    awk -v f="$field:" '$1 == f {print $2}' "/proc/$pid/status"
}

# run_one TARGET JOB REP COMMAND...: runs the command with accounting around it.
run_one() {
    local target=$1 job=$2 rep=$3
    shift 3
    local base=$out_dir/raw/$target/$job.rep$rep
    local ticks_before ticks_after counters_before="" counters_after="" status=0
    # --settle: an idle pause first, so a job does not start in the wake of
    # the previous one (docs/BENCHMARKS.md, "Caveats").
    if ((settle_seconds > 0)); then sleep "$settle_seconds"; fi
    ticks_before=$(daemon_cpu_ticks "$daemon_pid")
    if [[ ${target%%@*} == cowdax ]]; then counters_before=$(cowdax_counters "$data_dir"); fi
    "$@" >"$base.json" 2>"$base.err" || status=$?
    ticks_after=$(daemon_cpu_ticks "$daemon_pid")
    if [[ ${target%%@*} == cowdax ]]; then counters_after=$(cowdax_counters "$data_dir"); fi
    {
        echo "status=$status"
        echo "clock_ticks_per_second=$(getconf CLK_TCK)"
        echo "daemon_ticks_before=$ticks_before"
        echo "daemon_ticks_after=$ticks_after"
        echo "daemon_rss_kib=$(daemon_memory_kib "$daemon_pid" VmRSS)"
        echo "daemon_hwm_kib=$(daemon_memory_kib "$daemon_pid" VmHWM)"
        echo "counters_before=$counters_before"
        echo "counters_after=$counters_after"
    } >"$base.meta"
    if ((status != 0)); then
        log "  $target $job rep $rep failed (status $status): $(tail -n 2 "$base.err" | tr '\n' ' ')"
    fi
}

run_fio_job() {
    local target=$1 job=$2 rep=$3
    run_one "$target" "$job" "$rep" \
        env BENCH_FILE1="$bench_file1" BENCH_FILE2="$bench_file2" \
        BENCH_SIZE="$file_size" BENCH_RUNTIME="$runtime_seconds" \
        fio --output-format=json "$here/jobs/$job.fio"
}

# timed_copy SRC DST: one `cp` (coreutils: FICLONE, then copy_file_range,
# then read/write), timed, printed as JSON; DST is removed afterwards.
# Runs where errexit is off (under run_one's `||`), so every step is checked.
timed_copy() {
    local source=$1 destination=$2 start_ns end_ns bytes
    bytes=$(stat -c %s "$source") || return 1
    start_ns=$(date +%s%N)
    cp --reflink=auto "$source" "$destination" || return 1
    end_ns=$(date +%s%N)
    rm -f "$destination" || return 1
    printf '{"bytes": %d, "seconds": %s}\n' "$bytes" \
        "$(awk -v ns=$((end_ns - start_ns)) 'BEGIN {printf "%.6f", ns / 1e9}')"
}

run_copy_job() {
    local target=$1 rep=$2
    run_one "$target" copy "$rep" timed_copy "$bench_file1" "$data_dir/copy.rep$rep"
}

run_metadata_job() {
    local target=$1 rep=$2
    local meta_dir=$data_dir/metabench.rep$rep
    mkdir -p "$meta_dir"
    run_one "$target" metadata "$rep" "$bin_dir/metabench" "$meta_dir" "$meta_files" 4096
    # A target that failed the job may refuse the cleanup too: record it,
    # do not end the whole run (the target's teardown removes its files).
    rm -rf "$meta_dir" 2>>"$out_dir/logs/cleanup.log" ||
        log "  $target: could not remove the metadata directory of repeat $rep"
}

lay_out_file() {
    fio --name=layout --filename="$1" --size="$file_size" --rw=write --bs=1m \
        --ioengine=psync --end_fsync=1 --output-format=terse >/dev/null
}

# One round on one target: set it up, run every job once (repeat REP),
# tear it down. The run is REPEATS rounds over all targets rather than all
# repeats of one target after another, so that drift of this shared
# machine over the hour a full run takes spreads over every target alike
# instead of favouring the targets that happened to run in a quiet spell.
bench_target() {
    local target=$1 rep=$2
    local level=${#cleanup_stack[@]}
    local info=$out_dir/targets/$target.info
    data_dir="" bench_file1="" bench_file2="" daemon_pid="" mount_desc="" layout_needed=1 setup_failure=""
    mkdir -p "$out_dir/raw/$target"
    log "== $target (round $rep/$repeats): setting up"
    if ! "setup_${target%%@*}" "$target" || { [[ -z $bench_file1 ]] && [[ -z $data_dir ]]; }; then
        setup_failure=${setup_failure:-setup of $target failed}
        log "   $target unavailable: $setup_failure"
        echo "unavailable=round $rep: $setup_failure" >>"$info"
        unwind_to "$level"
        return 0
    fi
    if [[ -z $bench_file1 ]]; then
        bench_file1=$data_dir/fio.file1
        bench_file2=$data_dir/fio.file2
    fi
    # The description is the same every round: written once, so that the
    # lines later rounds append (fsck, unavailable) are kept.
    if ! grep -q '^mount_desc=' "$info" 2>/dev/null; then {
        echo "mount_desc=$mount_desc"
        local mount_path=${data_dir:-$bench_file1}
        echo "findmnt=$(findmnt -rn -o FSTYPE,OPTIONS --mountpoint "$mount_path" | head -n 1)"
        echo "readahead=$(read_ahead_of "$mount_path")"
        echo "daemon=$( [[ -n $daemon_pid ]] && echo yes || echo no)"
        for job in "${all_jobs[@]}" "${extra_jobs[@]}"; do
            local reason note
            reason=$(job_na_reason "$target" "$job")
            note=$(job_note "$target" "$job")
            if [[ -n $reason ]]; then echo "na.$job=$reason"; fi
            if [[ -n $note ]]; then echo "note.$job=$note"; fi
        done
    } >>"$info"; fi

    if ((layout_needed)); then
        log "   laying out two $file_size files"
        if ! lay_out_file "$bench_file1" || ! lay_out_file "$bench_file2"; then
            log "   $target: laying out the fio files failed"
            echo "unavailable=round $rep: laying out the fio files failed" >>"$info"
            unwind_to "$level"
            return 0
        fi
    fi

    local job
    for job in "${all_jobs[@]}"; do
        if [[ -n $(job_na_reason "$target" "$job") ]]; then continue; fi
        run_fio_job "$target" "$job" "$rep"
    done
    if [[ " ${extra_jobs[*]} " == *" copy "* && -z $(job_na_reason "$target" copy) ]]; then
        run_copy_job "$target" "$rep"
    fi
    if [[ " ${extra_jobs[*]} " == *" metadata "* && -z $(job_na_reason "$target" metadata) ]]; then
        run_metadata_job "$target" "$rep"
    fi
    if [[ -n $daemon_pid ]]; then
        echo "daemon_hwm_kib_final=$(daemon_memory_kib "$daemon_pid" VmHWM)" >>"$info"
    fi
    log "   tearing down"
    unwind_to "$level"
}

for rep in $(seq 1 "$repeats"); do
    for target in "${targets[@]}"; do
        bench_target "$target" "$rep"
    done
done

echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$out_dir/system.env"
printf '%s\n' "${all_jobs[@]}" "${extra_jobs[@]}" >"$out_dir/jobs.list"
printf '%s\n' "${targets[@]}" >"$out_dir/targets.list"

log "rendering the report"
python3 "$here/report.py" "$out_dir"
log "report: $out_dir/report.md, chart: $out_dir/chart.svg"
if [[ -n $publish_dir ]]; then
    mkdir -p "$publish_dir"
    cp "$out_dir/report.md" "$out_dir/chart.svg" "$out_dir/summary.json" "$publish_dir/"
    log "published to $publish_dir"
fi
}

# exit on the same line: bash must not read past it if the file is edited meanwhile.
main "$@"; exit "$?"
