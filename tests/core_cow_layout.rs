//! Dedupe, the extent report, preallocation and copy-on-write layout in the
//! core (docs/CONFORMANCE.md, "Dedupe, the extent report, preallocation and
//! CoW fragmentation"). Each test ends with a clean scrub.

mod core_support;

use core_support::{assert_clean, formatted, open, pattern, ROOT_CREDS};
use cowdax::fs::{DedupeOutcome, FallocMode, Fs, Ino, SetAttr, ROOT_INO};

const BS: u64 = 4096;
const MIB: u64 = 1 << 20;

fn create(fs: &Fs, name: &[u8]) -> Ino {
    fs.mknod(ROOT_INO, name, libc::S_IFREG | 0o644, 0, ROOT_CREDS)
        .expect("create")
        .ino
}

/// Mapped extents (holes left out) as the extent report gives them.
fn mapped(fs: &Fs, ino: Ino) -> Vec<cowdax::fs::ExtentInfo> {
    fs.extents(ino)
        .expect("extents")
        .into_iter()
        .filter(|e| e.phys_offset.is_some())
        .collect()
}

/// A permutation of `0..n` (xorshift-driven Fisher–Yates, fixed seed).
fn shuffled(n: u64, seed: u64) -> Vec<u64> {
    let mut order: Vec<u64> = (0..n).collect();
    let mut state = seed | 1;
    for i in (1..order.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(i, (state % (i as u64 + 1)) as usize);
    }
    order
}

/// An 8 MiB file, reflinked, then every 4 KiB block of the copy rewritten
/// in `order`: the extent count of the copy.
fn cow_rewrite_extents(order: &[u64]) -> usize {
    let sim = formatted(16384, None);
    let fs = open(&sim);
    let orig = create(&fs, b"orig");
    fs.write(orig, 0, &pattern(1, (8 * MIB) as usize))
        .expect("write orig");
    let copy = create(&fs, b"copy");
    fs.clone_range(orig, 0, copy, 0, 0).expect("reflink");
    let block = pattern(2, BS as usize);
    for &b in order {
        fs.write(copy, b * BS, &block).expect("rewrite");
    }
    let extents = mapped(&fs, copy);
    assert!(extents.iter().all(|e| !e.shared), "all rewritten");
    assert_eq!(
        fs.read(copy, 8 * MIB - BS, BS as u32).expect("read"),
        block,
        "last block rewritten"
    );
    assert_clean(&fs);
    extents.len()
}

#[test]
fn dedupe_leaves_the_destination_ctime_and_mtime_alone() {
    let sim = formatted(1024, None);
    let fs = open(&sim);
    let data = pattern(3, (16 * BS) as usize);
    let a = create(&fs, b"a");
    let b = create(&fs, b"b");
    fs.write(a, 0, &data).expect("write a");
    fs.write(b, 0, &data).expect("write b");
    fs.fsync(b, false).expect("fsync");
    let before = fs.getattr(b).expect("stat b");
    // A change of either timestamp would be visible after this pause.
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(
        fs.dedupe_range(a, 0, b, 0, 16 * BS).expect("dedupe"),
        DedupeOutcome::Deduped { bytes: 16 * BS }
    );
    let after = fs.getattr(b).expect("stat b");
    assert_eq!((after.mtime, after.ctime), (before.mtime, before.ctime));
    assert!(mapped(&fs, b).iter().all(|e| e.shared));
    assert_clean(&fs);
}

#[test]
fn a_dedupe_ending_at_both_eofs_shares_the_partial_last_block() {
    let sim = formatted(1024, None);
    let fs = open(&sim);
    let len = 32 * BS + 100; // 131,172 bytes
    let data = pattern(4, len as usize);
    let a = create(&fs, b"a");
    let b = create(&fs, b"b");
    fs.write(a, 0, &data).expect("write a");
    fs.write(b, 0, &data).expect("write b");
    assert_eq!(
        fs.dedupe_range(a, 0, b, 0, len).expect("dedupe"),
        DedupeOutcome::Deduped { bytes: len }
    );
    // The tails alone: 100 bytes at the last block of both files.
    let c = create(&fs, b"c");
    fs.write(c, 0, &pattern(5, (32 * BS) as usize))
        .expect("write c");
    fs.write(c, 32 * BS, &data[(32 * BS) as usize..])
        .expect("write c tail");
    assert_eq!(
        fs.dedupe_range(a, 32 * BS, c, 32 * BS, 100)
            .expect("dedupe"),
        DedupeOutcome::Deduped { bytes: 100 }
    );
    let shared: Vec<_> = mapped(&fs, c).into_iter().filter(|e| e.shared).collect();
    assert_eq!(shared.len(), 1);
    assert_eq!((shared[0].file_offset, shared[0].len), (32 * BS, BS));
    // Not ending at the destination's EOF: shortened to whole blocks.
    let d = create(&fs, b"d");
    fs.write(d, 0, &data).expect("write d");
    fs.write(d, len, b"more").expect("extend d");
    assert_eq!(
        fs.dedupe_range(a, 0, d, 0, len).expect("dedupe"),
        DedupeOutcome::Deduped { bytes: 32 * BS }
    );
    assert_clean(&fs);
}

#[test]
fn extent_report_marks_only_the_shared_part_of_an_extent_shared() {
    let sim = formatted(1024, None);
    let fs = open(&sim);
    let a = create(&fs, b"a");
    fs.write(a, 0, &pattern(6, (128 * 1024) as usize))
        .expect("write a");
    assert_eq!(mapped(&fs, a).len(), 1, "one extent to start with");
    let b = create(&fs, b"b");
    fs.clone_range(a, 0, b, 0, 64 * 1024)
        .expect("reflink first 64 KiB");
    let extents = mapped(&fs, a);
    let summary: Vec<(u64, u64, bool)> = extents
        .iter()
        .map(|e| (e.file_offset, e.len, e.shared))
        .collect();
    assert_eq!(
        summary,
        vec![(0, 64 * 1024, true), (64 * 1024, 64 * 1024, false)]
    );
    // Physically contiguous halves of what was one extent.
    assert_eq!(
        extents[1].phys_offset,
        extents[0].phys_offset.map(|p| p + 64 * 1024)
    );
    // Shared in the middle: three pieces.
    let c = create(&fs, b"c");
    fs.clone_range(a, 96 * 1024, c, 0, 8 * 1024)
        .expect("reflink 8 KiB in the middle of the second half");
    let summary: Vec<(u64, u64, bool)> = mapped(&fs, a)
        .iter()
        .map(|e| (e.file_offset, e.len, e.shared))
        .collect();
    assert_eq!(
        summary,
        vec![
            (0, 64 * 1024, true),
            (64 * 1024, 32 * 1024, false),
            (96 * 1024, 8 * 1024, true),
            (104 * 1024, 24 * 1024, false),
        ]
    );
    assert_clean(&fs);
}

#[test]
fn truncate_to_the_current_size_drops_preallocation_past_eof() {
    let sim = formatted(1024, None);
    let fs = open(&sim);
    let f = create(&fs, b"f");
    fs.write(f, 0, &pattern(7, 10_000)).expect("write");
    fs.fallocate(f, 10_000, 64 * 1024, FallocMode::KeepSize)
        .expect("fallocate -k");
    let before = fs.getattr(f).expect("stat");
    assert_eq!(before.size, 10_000);
    assert!(before.blocks > 3 * 8, "preallocated past EOF");
    let truncate = SetAttr {
        size: Some(10_000),
        ..SetAttr::default()
    };
    fs.setattr(f, &truncate).expect("truncate to the same size");
    let after = fs.getattr(f).expect("stat");
    assert_eq!(after.size, 10_000);
    assert_eq!(after.blocks, 3 * 8, "only the blocks up to EOF stay");
    let extents = mapped(&fs, f);
    assert_eq!(extents.iter().map(|e| e.len).sum::<u64>(), 3 * BS);
    assert!(extents.iter().all(|e| !e.unwritten));
    assert_eq!(
        fs.read(f, 0, 10_000).expect("read"),
        pattern(7, 10_000),
        "data up to EOF kept"
    );
    // Preallocation that starts inside the file and crosses EOF.
    fs.fallocate(f, 0, 64 * 1024, FallocMode::KeepSize)
        .expect("fallocate -k over EOF");
    fs.setattr(f, &truncate).expect("truncate to the same size");
    assert_eq!(fs.getattr(f).expect("stat").blocks, 3 * 8);
    assert_clean(&fs);
}

#[test]
fn cow_rewrite_of_a_reflinked_file_in_random_order_ends_in_a_few_extents() {
    let blocks = 8 * MIB / BS;
    let random = cow_rewrite_extents(&shuffled(blocks, 19));
    let sequential = cow_rewrite_extents(&(0..blocks).collect::<Vec<_>>());
    eprintln!("extents after a CoW rewrite: random {random}, sequential {sequential}");
    assert!(random <= 8, "random-order rewrite left {random} extents");
    assert!(
        sequential <= 8,
        "sequential rewrite left {sequential} extents"
    );
}
