//! Hostile metadata that passes the store's checksums.
//!
//! The store rejects torn or corrupted records by crc32c, so random damage
//! never reaches the core's decoders. A hostile or buggy writer can still
//! produce well-checksummed payloads with nonsense inside: this test commits
//! mutated copies of real transactions (and of a real checkpoint, re-encoded
//! as a transaction stream) with valid checksums and requires that opening
//! the image either fails with a clear error or yields a filesystem on which
//! scrub, readdir, read and getattr run without panicking.

mod core_support;

use std::sync::Arc;

use core_support::{formatted, open, pattern, ROOT_CREDS};
use cowdax::fs::{FileKind, Fs, Ino, OpenOptions, ROOT_INO};
use cowdax::media::SimMedia;
use cowdax::store::{Access, Store, BLOCK_SIZE};
use proptest::prelude::*;

const IMAGE_BLOCKS: u64 = 256;

/// The journal payloads a realistic workload commits, and the image after
/// mkfs (computed once; every case mutates its own copy).
fn real_transactions() -> (Vec<u8>, Vec<Vec<u8>>) {
    static CACHE: std::sync::OnceLock<(Vec<u8>, Vec<Vec<u8>>)> = std::sync::OnceLock::new();
    CACHE.get_or_init(build_real_transactions).clone()
}

fn build_real_transactions() -> (Vec<u8>, Vec<Vec<u8>>) {
    let sim = formatted(IMAGE_BLOCKS, Some(128 * 1024));
    let pristine = sim.volatile_image();
    let fs = open(&sim);
    let a = fs
        .mknod(ROOT_INO, b"a", libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("create a");
    fs.write(a.ino, 0, &pattern(1, 3 * 4096 + 10))
        .expect("write a");
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT_CREDS).expect("mkdir");
    let b = fs
        .mknod(d.ino, b"b", libc::S_IFREG | 0o600, 0, ROOT_CREDS)
        .expect("create b");
    fs.clone_range(a.ino, 0, b.ino, 0, 3 * 4096 + 10)
        .expect("clone");
    fs.write(b.ino, 4096, &[7; 100]).expect("cow write");
    fs.symlink(ROOT_INO, b"s", b"d/b", ROOT_CREDS)
        .expect("symlink");
    fs.setxattr(a.ino, b"user.k", b"v", cowdax::fs::XattrSetMode::Any)
        .expect("xattr");
    fs.rename(ROOT_INO, b"a", d.ino, b"a2", Default::default())
        .expect("rename");
    fs.fsync(0, false).expect("sync");
    drop(fs);
    let finished = sim.volatile_image();
    let (store, recovered) = Store::open(
        Arc::new(SimMedia::from_image(finished.clone())),
        Access::ReadOnly,
    )
    .expect("store open");
    assert!(
        recovered.transactions.len() >= 8,
        "workload produced too few transactions"
    );
    // The mkfs image already holds the transactions of mkfs itself.
    let (_, at_mkfs) = Store::open(
        Arc::new(SimMedia::from_image(pristine.clone())),
        Access::ReadOnly,
    )
    .expect("store open");
    assert!(
        recovered.checkpoint.is_none() && at_mkfs.checkpoint.is_none(),
        "the workload must stay in the journal for this test"
    );
    let mut txns = recovered.transactions;
    assert_eq!(txns[..at_mkfs.transactions.len()], at_mkfs.transactions[..]);
    txns.drain(..at_mkfs.transactions.len());
    // File data lives in pool blocks, not in the journal: the base image is
    // the mkfs image (superblocks, journal) with the finished pool.
    let pool_start = (store.geometry().pool_start * BLOCK_SIZE) as usize;
    let mut base = pristine;
    base[pool_start..].copy_from_slice(&finished[pool_start..]);
    (base, txns)
}

/// Walk the whole tree, reading everything; must not panic.
fn exercise(fs: &Fs) {
    let _ = fs.scrub();
    let mut stack: Vec<Ino> = vec![ROOT_INO];
    let mut visited = 0;
    while let Some(dir) = stack.pop() {
        visited += 1;
        if visited > 1000 {
            break; // a hostile image may contain directory cycles
        }
        let mut entries = Vec::new();
        let _ = fs.readdir(dir, 0, &mut |e| {
            entries.push((e.ino, e.kind, e.name.clone()));
            entries.len() < 1000
        });
        for (ino, kind, name) in entries {
            if name == b"." || name == b".." {
                continue;
            }
            let _ = fs.getattr(ino);
            let _ = fs.lookup(dir, &name);
            let _ = fs.listxattr(ino);
            match kind {
                FileKind::Directory => stack.push(ino),
                FileKind::Regular => {
                    let _ = fs.read(ino, 0, 1 << 20);
                    let _ = fs.extents(ino);
                }
                FileKind::Symlink => {
                    let _ = fs.readlink(ino);
                }
                _ => {}
            }
        }
    }
    let _ = fs.usage();
    let _ = fs.statfs();
    let _ = fs.owners(0, IMAGE_BLOCKS);
}

/// Commit `payloads` (valid checksums) onto a freshly formatted image and
/// open it as a filesystem.
fn open_with_payloads(pristine: &[u8], payloads: &[Vec<u8>]) {
    let sim = SimMedia::from_image(pristine.to_vec());
    {
        let (mut store, _) = Store::open(Arc::new(sim.clone()), Access::ReadWrite).expect("store");
        for payload in payloads {
            if store.commit(payload).is_err() {
                break;
            }
        }
        store.sync().expect("sync");
    }
    match Fs::open(Arc::new(sim.clone()), OpenOptions::default()) {
        Ok(fs) => exercise(&fs),
        Err(err) => {
            // A clear error is the other acceptable outcome.
            assert!(!err.to_string().is_empty());
        }
    }
}

#[test]
fn unmodified_transactions_replay_to_a_clean_filesystem() {
    let (pristine, txns) = real_transactions();
    let sim = SimMedia::from_image(pristine);
    {
        let (mut store, _) = Store::open(Arc::new(sim.clone()), Access::ReadWrite).expect("store");
        for t in &txns {
            store.commit(t).expect("commit");
        }
        store.sync().expect("sync");
    }
    let fs = open(&sim);
    let report = fs.scrub().expect("scrub");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let d = fs.lookup(ROOT_INO, b"d").expect("d");
    let b = fs.lookup(d.ino, b"b").expect("b");
    assert_eq!(fs.read(b.ino, 4096, 100).expect("read"), vec![7; 100]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    #[test]
    fn mutated_transactions_never_panic_the_core(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>()), 1..6),
        truncate_to in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let (pristine, mut txns) = real_transactions();
        for (which, pos, value) in &edits {
            let t = which.index(txns.len());
            if txns[t].is_empty() { continue; }
            let p = pos.index(txns[t].len());
            txns[t][p] ^= value | 1;
        }
        if let Some(cut) = truncate_to {
            let t = cut.index(txns.len());
            let len = cut.index(txns[t].len().max(1));
            txns[t].truncate(len);
        }
        open_with_payloads(&pristine, &txns);
    }

    #[test]
    fn random_transactions_never_panic_the_core(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..4),
    ) {
        let (pristine, _) = real_transactions();
        open_with_payloads(&pristine, &payloads);
    }
}
