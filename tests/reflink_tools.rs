//! Reflink and dedupe through a real mount with the cowdax tools and plain
//! `cp` (copy_file_range): sharing, copy-on-write, the owner map, usage.
//! Every test unmounts and checks the image (clean, scrub without errors).

#[path = "fuse_support/mod.rs"]
mod support;
#[path = "reflink_support/mod.rs"]
mod reflink;

use std::process::Command;

use reflink::*;
use support::TestFs;

const MIB: u64 = 1 << 20;

#[test]
fn cowdax_clone_shares_every_block_and_uses_no_new_space() {
    let mut t = TestFs::new(256 * MIB);
    t.mount("");
    let src = t.path("src.img");
    let dst = t.path("dst.img");
    write_pattern_file(&src, 16 * MIB + 1000, 1);
    let before = usage(&t.mnt);
    let out = tool_ok(&["clone", path_str(&src), path_str(&dst)]);
    assert!(out.contains(&format!("cloned {} bytes", 16 * MIB + 1000)), "{out}");
    let after = usage(&t.mnt);
    assert!(same_contents(&src, &dst));
    assert_eq!(after.physical_bytes, before.physical_bytes);
    assert_eq!(after.logical_bytes, 2 * before.logical_bytes);
    assert_eq!(after.saved_bytes, before.logical_bytes);
    assert_eq!(shared_bytes(&src), 16 * MIB + BLOCK);
    assert_eq!(shared_bytes(&dst), 16 * MIB + BLOCK);
    t.finish();
}
