//! `Store::open_in_place`: the checkpoint payload is verified where it lies
//! and located, not copied; what it locates is what `Store::open` copies.

mod store_support;

use std::sync::Arc;

use cowdax::media::{Media, SimMedia};
use cowdax::store::{Access, Store, BLOCK_SIZE};
use store_support::*;

/// The payload read back from the runs `open_in_place` reported.
fn read_runs(media: &SimMedia, runs: &[(u64, u64)]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for &(off, len) in runs {
        let mut part = vec![0u8; len as usize];
        media.read(off, &mut part).expect("read run");
        bytes.extend_from_slice(&part);
    }
    bytes
}

#[test]
fn in_place_open_locates_the_payload_that_open_copies_contiguous_or_fragmented() {
    for fragmented in [false, true] {
        let sim = formatted(SMALL_BLOCKS, SMALL_JOURNAL_BYTES);
        let (mut store, _) = open(&sim, Access::ReadWrite).expect("open");
        let log: Vec<Vec<u8>> = (0..6).map(|i| payload(i, 1500)).collect();
        for p in &log {
            store.commit(p).expect("commit");
        }
        checkpoint(&mut store, &log, fragmented);
        store.commit(&payload(9, 40)).expect("commit");
        drop(store);

        let (_, copied) = open(&sim, Access::ReadOnly).expect("open");
        let (_, located) =
            Store::open_in_place(Arc::new(sim.clone()), Access::ReadOnly).expect("open in place");
        assert!(located.checkpoint.is_none(), "nothing copied");
        let runs = located.checkpoint_in_place.expect("checkpoint located");
        assert_eq!(runs.len() > 1, fragmented);
        assert_eq!(Some(read_runs(&sim, &runs)), copied.checkpoint);
        assert_eq!(located.checkpoint_extents, copied.checkpoint_extents);
        assert_eq!(located.transactions, copied.transactions);
        assert_clean(&sim);
    }
}

#[test]
fn in_place_open_never_hands_out_a_payload_changed_under_its_checksum() {
    let sim = formatted(SMALL_BLOCKS, SMALL_JOURNAL_BYTES);
    let (mut store, _) = open(&sim, Access::ReadWrite).expect("open");
    let log: Vec<Vec<u8>> = (0..3).map(|i| payload(i, 700)).collect();
    let extents = checkpoint(&mut store, &log, false);
    drop(store);
    let (_, located) =
        Store::open_in_place(Arc::new(sim.clone()), Access::ReadOnly).expect("open in place");
    let runs = located.checkpoint_in_place.expect("checkpoint located");
    assert_eq!(
        runs[0].0,
        (extents[0].start + 1) * BLOCK_SIZE,
        "after the descriptor"
    );
    let (off, _) = runs[0];
    let mut byte = [0u8; 1];
    sim.read(off + 10, &mut byte).expect("read");
    sim.write(off + 10, &[byte[0] ^ 0xff]).expect("write");
    let corrupted = read_runs(&sim, &runs);
    // Either both opens refuse the image or both fall back to the older
    // superblock; the in-place one must not locate the changed bytes.
    match (
        Store::open_in_place(Arc::new(sim.clone()), Access::ReadOnly),
        open(&sim, Access::ReadOnly),
    ) {
        (Err(_), Err(_)) => {}
        (Ok((_, located)), Ok((_, copied))) => {
            let located_bytes = located
                .checkpoint_in_place
                .as_deref()
                .map(|runs| read_runs(&sim, runs));
            assert_ne!(located_bytes.as_ref(), Some(&corrupted));
            assert_eq!(located_bytes, copied.checkpoint);
            assert_eq!(located.transactions, copied.transactions);
        }
        (in_place, copying) => panic!(
            "the opens disagree: in place ok = {}, copying ok = {}",
            in_place.is_ok(),
            copying.is_ok()
        ),
    }
}
