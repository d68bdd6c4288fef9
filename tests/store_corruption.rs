//! Corrupted and truncated images: each structure damaged in turn gives
//! the designed result (fallback, early end of the log, or a clear error),
//! never a panic.

mod store_support;

use cowdax::media::{Media, SimMedia};
use cowdax::store::{inspect, Access, StoreError, BLOCK_SIZE};
use proptest::prelude::*;
use store_support::*;

/// An image whose superblocks differ: A publishes a checkpoint of the first
/// five transactions, B (older) still replays everything from the start of
/// the journal. Three more transactions follow the checkpoint.
struct Fixture {
    sim: SimMedia,
    log: Vec<Vec<u8>>,
    checkpoint_block: u64,
    journal_start_byte: u64,
}

fn fixture() -> Fixture {
    let sim = formatted(SMALL_BLOCKS, SMALL_JOURNAL_BYTES);
    let (mut store, _) = open(&sim, Access::ReadWrite).unwrap();
    let mut log = Vec::new();
    for i in 0..5 {
        log.push(payload(i, 300));
        store.commit(&log[i]).unwrap();
    }
    let extents = checkpoint(&mut store, &log, false);
    for i in 5..8 {
        log.push(payload(i, 200));
        store.commit(&log[i]).unwrap();
    }
    assert_eq!(store.superblock().sb_seq, 4);
    let journal_start_byte = store.geometry().journal_start * BLOCK_SIZE;
    Fixture {
        sim,
        log,
        checkpoint_block: extents[0].start,
        journal_start_byte,
    }
}

fn flip(sim: &SimMedia, offset: u64, mask: u8) {
    let mut byte = [0u8];
    sim.read(offset, &mut byte).unwrap();
    sim.write(offset, &[byte[0] ^ mask]).unwrap();
}

#[test]
fn corrupt_current_superblock_falls_back_to_the_other() {
    let fx = fixture();
    let current_slot_byte = 0; // A was written by the checkpoint (seq 4).
    flip(&fx.sim, current_slot_byte + 200, 0x10);
    let (store, recovered) = open(&fx.sim, Access::ReadOnly).unwrap();
    assert_eq!(store.superblock().sb_seq, 3, "superblock B is used");
    assert!(recovered.checkpoint.is_none(), "B predates the checkpoint");
    assert_eq!(logical_state(&recovered), fx.log);
    let report = inspect(&fx.sim).to_text();
    assert!(
        report.contains("superblock A: INVALID: checksum mismatch"),
        "{report}"
    );
    // A read-write open repairs by writing the bad copy's slot.
    let (_, _) = open(&fx.sim, Access::ReadWrite).unwrap();
    assert_clean(&fx.sim);
}

#[test]
fn corrupt_older_superblock_is_ignored() {
    let fx = fixture();
    flip(&fx.sim, BLOCK_SIZE + 8, 0x01);
    let (store, recovered) = open(&fx.sim, Access::ReadOnly).unwrap();
    assert_eq!(store.superblock().sb_seq, 4);
    assert_eq!(logical_state(&recovered), fx.log);
    assert_eq!(recovered.transactions, fx.log[5..]);
}

#[test]
fn both_superblocks_corrupt_is_a_clear_error() {
    let fx = fixture();
    flip(&fx.sim, 300, 0x80);
    flip(&fx.sim, BLOCK_SIZE + 300, 0x80);
    let err = open(&fx.sim, Access::ReadOnly).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("superblock A") && message.contains("superblock B"),
        "{message}"
    );
    let report = inspect(&fx.sim).to_text();
    assert!(report.contains("no valid superblock"), "{report}");
}

#[test]
fn truncated_image_is_refused_without_panic() {
    let fx = fixture();
    let image = fx.sim.volatile_image();
    for len in [
        0usize,
        100,
        4096,
        4096 + 600,
        3 * 4096,
        image.len() / 2,
        image.len() - 4096,
    ] {
        let truncated = SimMedia::from_image(image[..len].to_vec());
        let err = open(&truncated, Access::ReadOnly).err().unwrap();
        assert!(
            matches!(err, StoreError::Corrupt(_) | StoreError::NotCowdax(_)),
            "{len}: {err}"
        );
        if len > 2 * 4096 {
            assert!(err.to_string().contains("truncated"), "{len}: {err}");
        }
        let _ = inspect(&truncated).to_text();
    }
}

#[test]
fn torn_last_record_ends_the_log_before_it() {
    let fx = fixture();
    let journal = inspect(&fx.sim).journal.unwrap();
    assert_eq!(journal.records, 3);
    // The last record starts at head - its size (3 records of 200 bytes,
    // 256 ring bytes each, after the checkpoint's replay point).
    let last_record = fx.journal_start_byte + journal.replay_offset + 2 * 256;
    for (offset, what) in [(10u64, "header"), (100, "payload")] {
        let sim = SimMedia::from_image(fx.sim.volatile_image());
        flip(&sim, last_record + offset, 0x04);
        let (_, recovered) = open(&sim, Access::ReadOnly).unwrap();
        assert_eq!(logical_state(&recovered), fx.log[..7], "{what}");
    }
    // Truncating the record (zeroing its second half) has the same effect.
    let sim = SimMedia::from_image(fx.sim.volatile_image());
    sim.write_zeroes(last_record + 128, 128).unwrap();
    let (_, recovered) = open(&sim, Access::ReadOnly).unwrap();
    assert_eq!(logical_state(&recovered), fx.log[..7]);
    let report = inspect(&sim).to_text();
    assert!(report.contains("torn or corrupt record"), "{report}");
}

#[test]
fn corrupt_middle_record_ends_the_log_there() {
    let fx = fixture();
    let journal = inspect(&fx.sim).journal.unwrap();
    let first_record = fx.journal_start_byte + journal.replay_offset;
    flip(&fx.sim, first_record + 64, 0xff);
    let (_, recovered) = open(&fx.sim, Access::ReadOnly).unwrap();
    assert_eq!(logical_state(&recovered), fx.log[..5]);
}

#[test]
fn stale_record_from_a_previous_lap_is_not_replayed() {
    let sim = formatted(SMALL_BLOCKS, SMALL_JOURNAL_BYTES);
    let (mut store, _) = open(&sim, Access::ReadWrite).unwrap();
    let mut log = Vec::new();
    // Fill the first lap with 448-byte records (one per 512 ring bytes).
    while store.journal_free_bytes() >= 512 {
        log.push(payload(log.len(), 448));
        store.commit(&log[log.len() - 1]).unwrap();
    }
    checkpoint(&mut store, &log, false);
    // Second lap: shorter records overwrite the beginning of the first lap.
    let replay_offset = store.superblock().journal_replay_offset;
    assert_eq!(replay_offset, 0, "the ring was exactly full");
    log.push(payload(1000, 10));
    store.commit(&log[log.len() - 1]).unwrap();
    // Right behind the new record lies the rest of an old 448-byte record
    // (garbage) and then old records of lap one, with valid checksums.
    let (_, recovered) = open(&sim, Access::ReadOnly).unwrap();
    assert_eq!(logical_state(&recovered), log);
    let journal = inspect(&sim).journal.unwrap();
    assert_eq!(journal.records, 1);
    // Destroy the new record: the old lap's record at offset 512 must still
    // not be picked up.
    let journal_byte = store.geometry().journal_start * BLOCK_SIZE;
    flip(&sim, journal_byte + 40, 0x01);
    let (_, recovered) = open(&sim, Access::ReadOnly).unwrap();
    assert_eq!(logical_state(&recovered), log[..log.len() - 1]);
    // And a valid old record right at the replay point is stale by sequence.
    let sim2 = formatted(SMALL_BLOCKS, SMALL_JOURNAL_BYTES);
    let image = sim.volatile_image();
    let journal_bytes = &image[journal_byte as usize + 512..journal_byte as usize + 1024];
    sim2.write(journal_byte, journal_bytes).unwrap();
    let (_, recovered) = open(&sim2, Access::ReadOnly).unwrap();
    assert!(
        recovered.transactions.is_empty(),
        "record of another UUID/sequence"
    );
    let report = inspect(&sim2).to_text();
    assert!(report.contains("replay stops at offset 0"), "{report}");
}

#[test]
fn corrupt_checkpoint_falls_back_when_the_older_superblock_covers_it() {
    for (offset, what) in [(20u64, "descriptor"), (BLOCK_SIZE + 7, "payload")] {
        let fx = fixture();
        flip(&fx.sim, fx.checkpoint_block * BLOCK_SIZE + offset, 0x20);
        let (store, recovered) = open(&fx.sim, Access::ReadOnly).unwrap();
        assert_eq!(
            store.superblock().sb_seq,
            3,
            "{what}: older superblock B used"
        );
        assert_eq!(logical_state(&recovered), fx.log, "{what}");
        let inspection = inspect(&fx.sim);
        assert_eq!(inspection.fallback, Some(Some(1)), "{what}");
        let report = inspection.to_text();
        assert!(report.contains("BAD"), "{what}: {report}");
        assert!(
            report.contains("falls back to superblock B"),
            "{what}: {report}"
        );
    }
}

#[test]
fn corrupt_checkpoint_without_a_covering_superblock_is_an_error() {
    let fx = fixture();
    // A read-write open copies the current superblock into B: both now
    // reference the same checkpoint, so there is nothing to fall back to.
    drop(open(&fx.sim, Access::ReadWrite).unwrap());
    flip(
        &fx.sim,
        fx.checkpoint_block * BLOCK_SIZE + BLOCK_SIZE + 7,
        0x20,
    );
    let err = open(&fx.sim, Access::ReadOnly).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("superblock B") && message.contains("checkpoint payload checksum"),
        "{message}"
    );
}

#[test]
fn checkpoint_fallback_is_refused_once_the_journal_moved_on() {
    let sim = formatted(SMALL_BLOCKS, SMALL_JOURNAL_BYTES);
    let (mut store, _) = open(&sim, Access::ReadWrite).unwrap();
    let mut log: Vec<Vec<u8>> = Vec::new();
    // Checkpoint 1 (published in A), then fill and wrap the ring so that
    // the records after checkpoint 1 are overwritten, then checkpoint 2
    // (published in B).
    log.push(payload(0, 100));
    store.commit(&log[0]).unwrap();
    checkpoint(&mut store, &log, false);
    while store.commit(&payload(log.len(), 900)).is_ok() {
        log.push(payload(log.len(), 900));
    }
    let second = checkpoint(&mut store, &log, false);
    while store.commit(&payload(log.len(), 900)).is_ok() {
        log.push(payload(log.len(), 900));
    }
    drop(store);
    flip(&sim, second[0].start * BLOCK_SIZE + 30, 0x02);
    let err = open(&sim, Access::ReadOnly).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
    assert!(err.to_string().contains("superblock B"), "{err}");
    // The older superblock A is valid and so is its checkpoint: only the
    // overwritten journal makes it unusable.
    let report = inspect(&sim);
    assert!(report.superblocks.iter().all(|s| s.result.is_ok()));
    assert_eq!(report.fallback, Some(None));
    assert!(report.to_text().contains("open refuses this image"));
}

#[test]
fn newer_format_version_is_unsupported_even_with_an_older_copy() {
    let fx = fixture();
    // Rewrite A as version 2 with a valid checksum.
    let mut bytes = [0u8; 512];
    fx.sim.read(0, &mut bytes).unwrap();
    bytes[8] = 2;
    let crc = crc32c::crc32c(&bytes[..508]);
    bytes[508..].copy_from_slice(&crc.to_le_bytes());
    fx.sim.write(0, &bytes).unwrap();
    let err = open(&fx.sim, Access::ReadOnly).err().unwrap();
    assert!(matches!(err, StoreError::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("version 2"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_bytes_never_panic(image in proptest::collection::vec(any::<u8>(), 0..40_000)) {
        let sim = SimMedia::from_image(image);
        let _ = open(&sim, Access::ReadOnly);
        let _ = inspect(&sim).to_text();
    }

    #[test]
    fn random_corruptions_never_panic(
        flips in proptest::collection::vec((0u64..SMALL_BLOCKS * BLOCK_SIZE, 1u8..=255), 1..20),
        zero_block in proptest::option::of(0u64..SMALL_BLOCKS),
    ) {
        let fx = fixture();
        // Concentrate on the metadata: most flips land in the first blocks.
        for (offset, mask) in flips {
            let offset = if mask % 2 == 0 { offset % (12 * BLOCK_SIZE) } else { offset };
            flip(&fx.sim, offset, mask);
        }
        if let Some(block) = zero_block {
            fx.sim.write_zeroes(block * BLOCK_SIZE, BLOCK_SIZE).unwrap();
        }
        let _ = inspect(&fx.sim).to_text();
        if let Ok((_, recovered)) = open(&fx.sim, Access::ReadOnly) {
            // Whatever is recovered is a prefix of the real history: damage
            // can shorten the log, never invent transactions.
            let state = logical_state(&recovered);
            prop_assert!(state.len() <= fx.log.len());
            prop_assert_eq!(&state[..], &fx.log[..state.len()]);
        }
        if let Ok((mut store, _)) = open(&fx.sim, Access::ReadWrite) {
            let _ = store.commit(b"after damage");
        }
    }
}
