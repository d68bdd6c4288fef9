#!/usr/bin/env bash
# The test command (README "Run the tests"; .ci/run runs exactly this).
# Format check, clippy with warnings as errors, every cargo test target
# (FUSE tests included, never skipped), the Debian package test
# (tools/test-package.sh), then the FUSE conformance run if
# tools/conformance.sh exists. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }

# System pieces the tests need beyond cargo (FUSE, mkfs.ext4, users, …).
tools/ci-deps.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo test (all targets)"
# --no-fail-fast: report every failing test target, not just the first.
cargo test --all-targets --no-fail-fast
# Doc tests are not part of --all-targets.
cargo test --doc

step "tools/test-package.sh (Debian package: build, lintian, install, mount, shim, fsck, remove)"
tools/test-package.sh

step "benchmark report arithmetic (python3 tools/bench/test_report.py)"
python3 tools/bench/test_report.py

step "module graph tool (python3 tools/test_modgraph.py)"
python3 tools/test_modgraph.py

if [ -x tools/conformance.sh ]; then
    step "tools/conformance.sh"
    tools/conformance.sh
    # The default cache=auto sends fsx's read-write open straight to the
    # media while mmap uses the page cache; run fsx again with reads and
    # writes through the page cache too (cache=page).
    step "tools/conformance.sh --skip-pjdfstest --options cache=page --fsx-seeds 2"
    tools/conformance.sh --skip-pjdfstest --options cache=page --fsx-seeds 2
fi
step "all tests passed"
