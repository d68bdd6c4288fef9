//! Bad metadata in the journal or checkpoint is reported as corruption at
//! open, never a panic and never silently accepted.

mod core_support;

use std::sync::Arc;

use core_support::{formatted, open, ROOT_CREDS};
use cowdax::fs::{Error, Fs, OpenOptions, ROOT_INO};
use cowdax::media::SimMedia;
use cowdax::store::{Access, Store};

/// Append one raw transaction payload to a formatted image's journal.
fn append_raw(sim: &SimMedia, payload: &[u8]) {
    let (mut store, _) = Store::open(Arc::new(sim.clone()), Access::ReadWrite).expect("store");
    store.commit(payload).expect("commit");
    store.sync().expect("sync");
}

fn open_err(sim: &SimMedia) -> Error {
    match Fs::open(Arc::new(sim.clone()), OpenOptions::default()) {
        Ok(_) => panic!("bad metadata was accepted"),
        Err(e) => e,
    }
}

#[test]
fn garbage_transaction_is_corrupt() {
    let sim = formatted(256, None);
    append_raw(&sim, b"\xc7\x01\x01\x00\x00\x00\xff garbage");
    assert!(matches!(open_err(&sim), Error::Corrupt(_)));
}

#[test]
fn record_for_a_missing_inode_is_corrupt() {
    let sim = formatted(256, None);
    // DeleteInode of inode 999, hand-encoded.
    let mut payload = vec![0xc7, 1, 1, 0, 0, 0, 2];
    payload.extend_from_slice(&999u64.to_le_bytes());
    append_raw(&sim, &payload);
    assert!(matches!(open_err(&sim), Error::Corrupt(_)));
}

#[test]
fn extent_outside_the_pool_is_corrupt() {
    let sim = formatted(256, None);
    let fs = open(&sim);
    let f = fs
        .mknod(ROOT_INO, b"f", libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("create");
    fs.unmount().expect("unmount");
    drop(fs);
    // MapExtent(f, 0 → block 1 (a superblock), 1 block).
    let mut payload = vec![0xc7, 1, 1, 0, 0, 0, 7];
    for v in [f.ino, 0, 1, 1] {
        payload.extend_from_slice(&v.to_le_bytes());
    }
    payload.push(0);
    append_raw(&sim, &payload);
    assert!(matches!(open_err(&sim), Error::Corrupt(_)));
}

#[test]
fn unformatted_region_is_refused() {
    let sim = SimMedia::new(256 * 4096);
    assert!(Fs::open(Arc::new(sim), OpenOptions::default()).is_err());
}
