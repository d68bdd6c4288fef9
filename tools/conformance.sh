#!/usr/bin/env bash
# POSIX conformance of a real cowdax mount: pjdfstest and fsx, then unmount
# and a clean `cowdax fsck`.
#
# Usage: tools/conformance.sh [--min-pass N] [--fsx-seeds N] [--fsx-ops N]
#                             [--skip-pjdfstest] [--skip-fsx] [--keep]
#                             [--options OPTS]   (more -o mount options, e.g. cache=page)
# Environment: COWDAX=/path/to/cowdax (default: builds target/release/cowdax).
#
# Needs root (mounting, pjdfstest's credential switches) and /dev/fuse.
# Installs what is missing: users `tests` and `nobody`, libacl (pjdfstest
# links it), and the `pjdfstest` and `fsx` crates through `cargo install`.
#
# Exit status: 0 when pjdfstest passes at least --min-pass tests (default
# 370), every fsx run finishes without a failure, the daemon unmounts
# cleanly and fsck reports a clean image; 1 otherwise.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MIN_PASS=370
FSX_SEEDS=4
FSX_OPS=20000
RUN_PJDFSTEST=1
RUN_FSX=1
KEEP=0
IMAGE_SIZE=2G
EXTRA_OPTIONS=

while [ $# -gt 0 ]; do
    case "$1" in
        --min-pass) MIN_PASS=$2; shift 2 ;;
        --fsx-seeds) FSX_SEEDS=$2; shift 2 ;;
        --fsx-ops) FSX_OPS=$2; shift 2 ;;
        --skip-pjdfstest) RUN_PJDFSTEST=0; shift ;;
        --skip-fsx) RUN_FSX=0; shift ;;
        --keep) KEEP=1; shift ;;
        --options) EXTRA_OPTIONS=",$2"; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "conformance.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

say() { printf '== %s\n' "$*"; }
die() { printf 'conformance.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (mount, credential switches)"
[ -e /dev/fuse ] || die "/dev/fuse is missing"

# --- prerequisites -----------------------------------------------------------
getent group nogroup >/dev/null || groupadd nogroup
id nobody >/dev/null 2>&1 || useradd -M -N -g nogroup -s /usr/sbin/nologin nobody
getent group tests >/dev/null || groupadd tests
id tests >/dev/null 2>&1 || useradd -M -g tests -s /usr/sbin/nologin tests

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v pjdfstest >/dev/null || ! command -v fsx >/dev/null; then
    if ! [ -e /usr/lib/x86_64-linux-gnu/libacl.so ] && ! ldconfig -p | grep -q 'libacl.so '; then
        say "installing libacl1-dev (pjdfstest links libacl)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libacl1-dev acl
    fi
fi
command -v pjdfstest >/dev/null || { say "cargo install pjdfstest"; cargo install --locked pjdfstest; }
command -v fsx >/dev/null || { say "cargo install fsx"; cargo install --locked fsx; }

if [ -z "${COWDAX:-}" ]; then
    say "building cowdax (release)"
    (cd "$ROOT" && cargo build --release --bin cowdax)
    COWDAX="$ROOT/target/release/cowdax"
fi
[ -x "$COWDAX" ] || die "no cowdax binary at $COWDAX"

# --- image and mount ------------------------------------------------------------
WORK=$(mktemp -d /tmp/cowdax-conformance.XXXXXX)
chmod 755 "$WORK"
IMAGE="$WORK/image.cowdax"
MNT="$WORK/mnt"
mkdir "$MNT"
cleanup() {
    if grep -q " $MNT fuse.cowdax " /proc/mounts 2>/dev/null; then
        umount "$MNT" 2>/dev/null || umount -l "$MNT" || true
    fi
    if [ "$KEEP" -eq 0 ]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap cleanup EXIT

say "mkfs ($IMAGE_SIZE) and mount on $MNT"
"$COWDAX" mkfs --size "$IMAGE_SIZE" "$IMAGE" >/dev/null
"$COWDAX" "$IMAGE" "$MNT" -o "allow_other$EXTRA_OPTIONS"
grep -q " $MNT fuse.cowdax " /proc/mounts || die "cowdax returned but nothing is mounted"
chmod 755 "$MNT"

status=0

# --- pjdfstest ------------------------------------------------------------------
if [ "$RUN_PJDFSTEST" -eq 1 ]; then
    say "pjdfstest (needs $MIN_PASS passes)"
    mkdir "$MNT/pjdfstest"
    LOG="$WORK/pjdfstest.log"
    PJD_CONF="$WORK/pjdfstest.toml"
    cp "$ROOT/tools/pjdfstest.toml" "$PJD_CONF"
    # Remounts go through mount.fuse3 to the cowdax in sh's default PATH.
    installed=$(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin command -v cowdax || true)
    if [ -z "$installed" ] || ! cmp -s "$installed" "$COWDAX"; then
        echo "note: the installed cowdax (${installed:-none}) is not $COWDAX: EROFS tests (remount) skipped"
        sed -i 's/^allow_remount = true/allow_remount = false/' "$PJD_CONF"
    fi
    # A directory on another filesystem, for the EXDEV (cross-device) tests.
    mkdir "$WORK/secondary"
    (cd "$MNT/pjdfstest" && pjdfstest -c "$PJD_CONF" -p "$MNT/pjdfstest" -s "$WORK/secondary") >"$LOG" 2>&1 || true
    summary=$(grep '^Summary:' "$LOG" || true)
    [ -n "$summary" ] || { tail -20 "$LOG"; die "pjdfstest produced no summary"; }
    echo "$summary"
    passed=$(sed -E 's/.* ([0-9]+) passed.*/\1/' <<<"$summary")
    echo "failed tests:"
    awk '$NF == "FAILED" { print "  " $1 }' "$LOG"
    cp "$LOG" "${CONFORMANCE_LOG_DIR:-$WORK}/pjdfstest.log" 2>/dev/null || true
    if [ "$passed" -lt "$MIN_PASS" ]; then
        echo "pjdfstest: $passed passed, fewer than $MIN_PASS"
        status=1
    else
        echo "pjdfstest: $passed passed (>= $MIN_PASS)"
    fi
    rm -rf "$MNT/pjdfstest"
fi

# --- fsx ------------------------------------------------------------------------
if [ "$RUN_FSX" -eq 1 ]; then
    FSX_CONF="$WORK/fsx.toml"
    cat >"$FSX_CONF" <<'EOF'
# 16 MiB file; every operation cowdax serves.
flen = 16777216
[opsize]
max = 1048576
[weights]
close_open = 1
read = 10
write = 10
mapread = 10
mapwrite = 10
invalidate = 1
truncate = 2
fsync = 1
fdatasync = 1
posix_fallocate = 2
punch_hole = 2
copy_file_range = 2
EOF
    mkdir "$MNT/fsx"
    for seed in $(seq 1 "$FSX_SEEDS"); do
        say "fsx seed $seed: $FSX_OPS operations on a 16 MiB file"
        if (cd "$MNT/fsx" && fsx -v -f "$FSX_CONF" -S "$seed" -N "$FSX_OPS" -P "$WORK" "$MNT/fsx/file$seed") >"$WORK/fsx-$seed.log" 2>&1; then
            echo "fsx seed $seed: $FSX_OPS operations, no failure; by kind:" \
                "$(awk '$1 == "[INFO" && $3 ~ /^[0-9]+$/ { n[$4]++ } END { for (k in n) printf "%s=%d ", k, n[k] }' "$WORK/fsx-$seed.log")"
        else
            echo "fsx seed $seed: FAILED"
            tail -30 "$WORK/fsx-$seed.log"
            status=1
        fi
    done
    rm -rf "$MNT/fsx"
fi

# --- unmount and fsck -------------------------------------------------------------
say "unmount and fsck"
umount "$MNT"
# The daemon exits after its final checkpoint; its lock on the image goes with it.
for _ in $(seq 1 300); do
    flock -n "$IMAGE" true 2>/dev/null && break
    sleep 0.1
done
flock -n "$IMAGE" true || die "the daemon did not exit after unmount"
if "$COWDAX" fsck -n "$IMAGE"; then
    echo "fsck: clean"
else
    echo "fsck: NOT clean"
    status=1
fi

[ "$status" -eq 0 ] && say "conformance: PASS" || say "conformance: FAIL"
exit "$status"
