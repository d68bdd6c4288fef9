//! Round trips through format/open/commit/checkpoint on SimMedia.

mod store_support;

use std::sync::Arc;

use cowdax::media::{Media, SimMedia};
use cowdax::store::{Access, FormatOptions, PhysExtent, Store, StoreError, BLOCK_SIZE};
use store_support::*;

#[test]
fn fresh_format_opens_empty_and_clean() {
    let sim = formatted(SMALL_BLOCKS, SMALL_JOURNAL_BYTES);
    let (store, recovered) = open(&sim, Access::ReadOnly).unwrap();
    assert!(recovered.checkpoint.is_none());
    assert!(recovered.checkpoint_extents.is_empty());
    assert!(recovered.transactions.is_empty());
    assert!(recovered.was_clean);
    assert_eq!(store.last_seq(), 0);
    let geometry = store.geometry();
    assert_eq!(geometry.total_blocks, SMALL_BLOCKS);
    assert_eq!(geometry.journal_start, 2);
    assert_eq!(geometry.journal_blocks, 4);
    assert_eq!(geometry.pool_start, 6);
    assert_eq!(store.journal_capacity_bytes(), SMALL_JOURNAL_BYTES);
    assert_eq!(store.journal_free_bytes(), SMALL_JOURNAL_BYTES);
    assert_eq!(store.superblock().label_text(), "test");
    assert_clean(&sim);
}

#[test]
fn committed_transactions_replay_in_order_after_reopen() {
    let sim = formatted(SMALL_BLOCKS, SMALL_JOURNAL_BYTES);
    let (mut store, _) = open(&sim, Access::ReadWrite).unwrap();
    let payloads: Vec<Vec<u8>> = (0..20).map(|i| payload(i, i * 13)).collect();
    for (i, p) in payloads.iter().enumerate() {
        assert_eq!(store.commit(p).unwrap(), i as u64 + 1);
        assert_eq!(
            store.durable_seq(),
            i as u64 + 1,
            "SimMedia is byte-persistent"
        );
    }
    drop(store);
    // Only what is durable counts: recover from the durable image.
    let crashed = SimMedia::from_image(sim.durable_image());
    let (store, recovered) = open(&crashed, Access::ReadOnly).unwrap();
    assert_eq!(recovered.transactions, payloads);
    assert!(!recovered.was_clean);
    assert_eq!(store.last_seq(), 20);
    assert_clean(&crashed);
}

#[test]
fn checkpoint_then_more_commits_survive_reopen() {
    let sim = formatted(SMALL_BLOCKS, SMALL_JOURNAL_BYTES);
    let (mut store, _) = open(&sim, Access::ReadWrite).unwrap();
    let mut log = Vec::new();
    for i in 0..5 {
        log.push(payload(i, 100));
        store.commit(&log[i]).unwrap();
    }
    let extents = checkpoint(&mut store, &log, true);
    assert!(
        extents.len() > 1,
        "fragmented checkpoint spans several extents"
    );
    assert_eq!(store.journal_free_bytes(), store.journal_capacity_bytes());
    for i in 5..8 {
        log.push(payload(i, 50));
        store.commit(&log[i]).unwrap();
    }
    let (_, recovered) =
        open(&SimMedia::from_image(sim.durable_image()), Access::ReadOnly).unwrap();
    assert_eq!(
        decode_log(recovered.checkpoint.as_deref().unwrap()),
        log[..5]
    );
    assert_eq!(recovered.checkpoint_extents, extents);
    assert_eq!(recovered.transactions, log[5..]);
    assert_eq!(logical_state(&recovered), log);
    assert_clean(&sim);
}

#[test]
fn second_checkpoint_returns_the_first_ones_extents() {
    let sim = formatted(SMALL_BLOCKS, SMALL_JOURNAL_BYTES);
    let (mut store, _) = open(&sim, Access::ReadWrite).unwrap();
    let first = checkpoint(&mut store, &[payload(1, 10)], false);
    let payload2 = encode_log(&[payload(1, 10), payload(2, 10)]);
    let second = fresh_extents(&store, 2, false);
    let freed = store.write_checkpoint(&payload2, &second).unwrap();
    assert_eq!(freed, first);
    assert_eq!(store.checkpoint_extents(), second.as_slice());
    assert_clean(&sim);
}

#[test]
fn ring_wraps_over_several_laps_with_checkpoints() {
    // Room in the pool for checkpoints of the whole history.
    let sim = formatted(4 * SMALL_BLOCKS, SMALL_JOURNAL_BYTES);
    let (mut store, _) = open(&sim, Access::ReadWrite).unwrap();
    let capacity = store.journal_capacity_bytes();
    let mut log: Vec<Vec<u8>> = Vec::new();
    let mut written_bytes = 0u64;
    let mut index = 0;
    let mut wrap_markers_seen = 0;
    // Odd sizes so the head lands at many offsets and wrap markers are needed.
    while written_bytes < 6 * capacity {
        let p = payload(index, 100 + (index * 37) % 700);
        match store.commit(&p) {
            Ok(_) => {
                written_bytes += p.len() as u64;
                log.push(p);
                index += 1;
            }
            Err(StoreError::JournalFull) => {
                checkpoint(&mut store, &log, index % 2 == 0);
            }
            Err(other) => panic!("commit failed: {other}"),
        }
        if index % 7 == 0 {
            let (_, recovered) = open(&sim, Access::ReadOnly).unwrap();
            assert_eq!(logical_state(&recovered), log);
            let journal = cowdax::store::inspect(&sim).journal.unwrap();
            wrap_markers_seen += journal.wrap_markers;
        }
    }
    let inspection = cowdax::store::inspect(&sim);
    let (_, recovered) = open(&sim, Access::ReadOnly).unwrap();
    assert_eq!(logical_state(&recovered), log, "{inspection}");
    assert!(inspection.journal.unwrap().replay_offset > 0);
    assert!(wrap_markers_seen > 0, "the log crossed the ring end");
    assert_clean(&sim);
}

#[test]
fn journal_full_until_checkpoint_frees_the_ring() {
    let sim = formatted(SMALL_BLOCKS, SMALL_JOURNAL_BYTES);
    let (mut store, _) = open(&sim, Access::ReadWrite).unwrap();
    let mut log = Vec::new();
    let mut full = false;
    for i in 0..1000 {
        let fits = store.commit_fits(200);
        match store.commit(&payload(i, 200)) {
            Ok(_) => {
                assert!(fits, "commit_fits said no but it fit");
                log.push(payload(i, 200));
            }
            Err(StoreError::JournalFull) => {
                assert!(!fits, "commit_fits said yes but the journal was full");
                full = true;
                break;
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert!(full, "the journal must fill up");
    assert!(store.journal_free_bytes() < 256);
    // Nothing was overwritten: everything committed replays.
    let (_, recovered) = open(&sim, Access::ReadOnly).unwrap();
    assert_eq!(recovered.transactions, log);
    checkpoint(&mut store, &log, false);
    store.commit(&payload(5000, 200)).unwrap();
    log.push(payload(5000, 200));
    let (_, recovered) = open(&sim, Access::ReadOnly).unwrap();
    assert_eq!(logical_state(&recovered), log);
    assert_clean(&sim);
}

#[test]
fn oversized_transaction_is_refused_and_largest_one_fits_after_checkpoint() {
    let sim = formatted(SMALL_BLOCKS, SMALL_JOURNAL_BYTES);
    let (mut store, _) = open(&sim, Access::ReadWrite).unwrap();
    let max = store.max_transaction_bytes();
    assert!(matches!(
        store.commit(&vec![1; max + 1]),
        Err(StoreError::TransactionTooLarge(n)) if n == max + 1
    ));
    // Move the head to every position class and check a maximal one fits
    // right after a checkpoint.
    let mut log = Vec::new();
    for i in 0..6 {
        let small = payload(i, 300);
        store.commit(&small).unwrap();
        log.push(small);
        checkpoint(&mut store, &log, false);
        let big = payload(100 + i, max);
        store.commit(&big).unwrap();
        log.push(big);
        checkpoint(&mut store, &log, false);
    }
    let (_, recovered) = open(&sim, Access::ReadOnly).unwrap();
    assert_eq!(logical_state(&recovered), log);
    assert_clean(&sim);
}

#[test]
fn read_only_open_never_writes() {
    let sim = formatted(SMALL_BLOCKS, SMALL_JOURNAL_BYTES);
    {
        let (mut store, _) = open(&sim, Access::ReadWrite).unwrap();
        store.commit(b"one").unwrap();
    }
    let before = sim.volatile_image();
    let stored_before = sim.counters().bytes_stored;
    let (mut store, recovered) = open(&sim, Access::ReadOnly).unwrap();
    assert_eq!(recovered.transactions, vec![b"one".to_vec()]);
    assert!(matches!(store.commit(b"two"), Err(StoreError::ReadOnly)));
    assert!(matches!(store.set_clean(true), Err(StoreError::ReadOnly)));
    assert!(matches!(
        store.write_checkpoint(b"x", &[PhysExtent { start: 10, len: 1 }]),
        Err(StoreError::ReadOnly)
    ));
    store.sync().unwrap();
    let _ = cowdax::store::inspect(&sim);
    assert_eq!(sim.counters().bytes_stored, stored_before);
    assert_eq!(sim.volatile_image(), before);
}

#[test]
fn read_write_open_marks_in_use_and_set_clean_records_unmount() {
    let sim = formatted(SMALL_BLOCKS, SMALL_JOURNAL_BYTES);
    let (mut store, recovered) = open(&sim, Access::ReadWrite).unwrap();
    assert!(recovered.was_clean);
    assert_eq!(store.superblock().mount_count, 1);
    assert!(!store.superblock().clean);
    let (_, again) = open(&sim, Access::ReadOnly).unwrap();
    assert!(!again.was_clean, "a crash now would be seen as unclean");
    store.set_clean(true).unwrap();
    drop(store);
    let (store, recovered) = open(&sim, Access::ReadWrite).unwrap();
    assert!(recovered.was_clean);
    assert_eq!(store.superblock().mount_count, 2);
    assert_clean(&sim);
}

#[test]
fn sequence_numbers_continue_across_reopen_and_checkpoint() {
    let sim = formatted(SMALL_BLOCKS, SMALL_JOURNAL_BYTES);
    let (mut store, _) = open(&sim, Access::ReadWrite).unwrap();
    store.commit(b"a").unwrap();
    store.commit(b"b").unwrap();
    drop(store);
    let (mut store, recovered) = open(&sim, Access::ReadWrite).unwrap();
    assert_eq!(store.last_seq(), 2);
    assert_eq!(store.commit(b"c").unwrap(), 3);
    let log: Vec<Vec<u8>> = logical_state(&recovered)
        .into_iter()
        .chain([b"c".to_vec()])
        .collect();
    checkpoint(&mut store, &log, false);
    assert_eq!(store.commit(b"d").unwrap(), 4);
    let (_, recovered) = open(&sim, Access::ReadOnly).unwrap();
    assert_eq!(
        logical_state(&recovered),
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec()]
    );
    assert_clean(&sim);
}

#[test]
fn bad_checkpoint_extents_are_refused() {
    let sim = formatted(SMALL_BLOCKS, SMALL_JOURNAL_BYTES);
    let (mut store, _) = open(&sim, Access::ReadWrite).unwrap();
    let pool = store.geometry().pool_start;
    let cases: Vec<Vec<PhysExtent>> = vec![
        vec![PhysExtent { start: 3, len: 2 }],
        vec![PhysExtent {
            start: pool - 1,
            len: 2,
        }],
        vec![PhysExtent {
            start: SMALL_BLOCKS - 1,
            len: 2,
        }],
        vec![PhysExtent {
            start: u64::MAX,
            len: 2,
        }],
        vec![
            PhysExtent {
                start: pool,
                len: 2,
            },
            PhysExtent {
                start: pool + 1,
                len: 1,
            },
        ],
        vec![
            PhysExtent {
                start: pool,
                len: 0,
            },
            PhysExtent {
                start: pool + 2,
                len: 2,
            },
        ],
    ];
    for extents in cases {
        assert!(
            matches!(
                store.write_checkpoint(b"xy", &extents),
                Err(StoreError::InvalidExtents(_))
            ),
            "{extents:?} accepted"
        );
    }
    assert!(matches!(
        store.write_checkpoint(
            &[0; 5000],
            &[PhysExtent {
                start: pool,
                len: 2
            }]
        ),
        Err(StoreError::CheckpointSpace { needed: 3, .. })
    ));
    assert!(matches!(
        store.write_checkpoint(b"x", &[]),
        Err(StoreError::CheckpointSpace { .. })
    ));
    let live = vec![PhysExtent {
        start: pool,
        len: 2,
    }];
    store.write_checkpoint(b"x", &live).unwrap();
    assert!(matches!(
        store.write_checkpoint(
            b"x",
            &[PhysExtent {
                start: pool + 1,
                len: 2
            }]
        ),
        Err(StoreError::InvalidExtents(_))
    ));
    assert_clean(&sim);
}

#[test]
fn region_too_small_names_the_minimum() {
    let sim = SimMedia::new(20 * BLOCK_SIZE);
    let err = Store::format(Arc::new(sim), &opts(SMALL_JOURNAL_BYTES)).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::TooSmall(_)));
    assert!(message.contains("at least 90112 bytes"), "{message}");
}

#[test]
fn default_journal_scales_with_the_region() {
    let small = SimMedia::new(1 << 20);
    let geometry = Store::format(Arc::new(small), &FormatOptions::default()).unwrap();
    assert_eq!(geometry.journal_blocks, 64, "256 KiB minimum");
    let large = SimMedia::new(64 << 20);
    let geometry = Store::format(Arc::new(large.clone()), &FormatOptions::default()).unwrap();
    assert_eq!(geometry.journal_blocks, (64 << 20) / BLOCK_SIZE / 64);
    let (store, _) = open(&large, Access::ReadOnly).unwrap();
    assert_ne!(store.superblock().uuid, [0; 16], "random uuid");
}

#[test]
fn zeroed_and_foreign_regions_are_not_cowdax() {
    let zero = SimMedia::new(SMALL_BLOCKS * BLOCK_SIZE);
    let err = open(&zero, Access::ReadOnly).err().unwrap();
    assert!(matches!(err, StoreError::NotCowdax(_)));
    assert!(err.to_string().contains("mkfs"), "{err}");
    let foreign = SimMedia::new(SMALL_BLOCKS * BLOCK_SIZE);
    // An ext4 superblock magic at 1024+56, like a real foreign image.
    foreign.write(1024 + 56, &0xef53u16.to_le_bytes()).unwrap();
    foreign.write(0, b"\x7fELF junk").unwrap();
    assert!(matches!(
        open(&foreign, Access::ReadOnly),
        Err(StoreError::NotCowdax(_))
    ));
    let tiny = SimMedia::new(100);
    assert!(matches!(
        open(&tiny, Access::ReadOnly),
        Err(StoreError::Corrupt(_)) | Err(StoreError::NotCowdax(_))
    ));
}

#[test]
fn label_longer_than_63_bytes_is_refused() {
    let sim = SimMedia::new(SMALL_BLOCKS * BLOCK_SIZE);
    let opts = FormatOptions {
        label: "x".repeat(64),
        ..opts(SMALL_JOURNAL_BYTES)
    };
    assert!(Store::format(Arc::new(sim.clone()), &opts).is_err());
    let opts = FormatOptions {
        label: "y".repeat(63),
        ..opts
    };
    Store::format(Arc::new(sim.clone()), &opts).unwrap();
    let (store, _) = open(&sim, Access::ReadOnly).unwrap();
    assert_eq!(store.superblock().label_text(), "y".repeat(63));
}

#[test]
fn page_cache_commits_become_durable_at_sync() {
    let sim = formatted(SMALL_BLOCKS, SMALL_JOURNAL_BYTES);
    let media: Arc<dyn Media> = Arc::new(PageCacheSim(sim.clone()));
    let (mut store, _) = Store::open(media, Access::ReadWrite).unwrap();
    let fences = sim.counters().fences;
    store.commit(b"one").unwrap();
    store.commit(b"two").unwrap();
    assert_eq!(
        sim.counters().fences,
        fences,
        "no fence per commit on page cache"
    );
    assert_eq!(store.durable_seq(), 0);
    let (_, lost) = open(&SimMedia::from_image(sim.durable_image()), Access::ReadOnly).unwrap();
    assert!(lost.transactions.is_empty());
    store.sync().unwrap();
    assert_eq!(store.durable_seq(), 2);
    let (_, kept) = open(&SimMedia::from_image(sim.durable_image()), Access::ReadOnly).unwrap();
    assert_eq!(kept.transactions, vec![b"one".to_vec(), b"two".to_vec()]);
    assert_clean(&sim);
}

#[test]
fn read_write_open_makes_replayed_page_cache_records_durable() {
    let sim = formatted(SMALL_BLOCKS, SMALL_JOURNAL_BYTES);
    let (mut store, _) =
        Store::open(Arc::new(PageCacheSim(sim.clone())), Access::ReadWrite).unwrap();
    store.commit(b"unsynced one").unwrap();
    store.commit(b"unsynced two").unwrap();
    // The process dies without sync: the records live only in the page
    // cache (dirty, not durable), where a new process finds them.
    drop(store);
    let restarted = SimMedia::from_image(sim.durable_image());
    restarted.write(0, &sim.volatile_image()).unwrap();
    let (store, recovered) =
        Store::open(Arc::new(PageCacheSim(restarted.clone())), Access::ReadWrite).unwrap();
    assert_eq!(recovered.transactions.len(), 2);
    assert_eq!(store.durable_seq(), 2);
    let (_, after_power_loss) = open(
        &SimMedia::from_image(restarted.durable_image()),
        Access::ReadOnly,
    )
    .unwrap();
    assert_eq!(after_power_loss.transactions, recovered.transactions);
    assert_clean(&restarted);
}

#[test]
fn inspection_reports_superblocks_checkpoint_and_journal() {
    let sim = formatted(SMALL_BLOCKS, SMALL_JOURNAL_BYTES);
    let (mut store, _) = open(&sim, Access::ReadWrite).unwrap();
    let mut log = Vec::new();
    for i in 0..5 {
        log.push(payload(i, 40));
        store.commit(&log[i]).unwrap();
    }
    let extents = checkpoint(&mut store, &log, true);
    for i in 5..8 {
        log.push(payload(i, 40));
        store.commit(&log[i]).unwrap();
    }
    let inspection = cowdax::store::inspect(&sim);
    assert!(inspection.is_healthy());
    assert_eq!(inspection.current, Some(0));
    let journal = inspection.journal.as_ref().unwrap();
    assert_eq!(
        (journal.records, journal.first_seq, journal.last_seq),
        (3, Some(6), Some(8))
    );
    assert_eq!(journal.payload_bytes, 120);
    let cp = inspection.checkpoint.as_ref().unwrap();
    assert_eq!(cp.descriptor.as_ref().unwrap().extents, extents);
    let text = inspection.to_text();
    for expected in [
        "superblock A (current): valid, seq 4",
        "superblock B: valid, seq 3",
        "label \"test\"",
        "payload crc ok",
        "3 transactions, seq 6..=8",
        "replay stops at offset",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert_clean(&sim);
}

#[derive(Clone, Debug)]
enum Op {
    Commit(usize),
    Checkpoint { fragmented: bool },
    Sync,
    Reopen,
    CrashAndReopen,
}

fn op_strategy() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        8 => (0usize..2000).prop_map(Op::Commit),
        1 => any::<bool>().prop_map(|fragmented| Op::Checkpoint { fragmented }),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
        1 => Just(Op::CrashAndReopen),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Random operation sequences against a model (the list of committed
    /// transactions and how many of them are durable).
    #[test]
    fn random_operation_sequences_match_the_model(
        ops in proptest::collection::vec(op_strategy(), 1..60),
        page_cache in proptest::prelude::any::<bool>(),
    ) {
        let mut sim = formatted(4 * SMALL_BLOCKS, SMALL_JOURNAL_BYTES);
        let media_of = |sim: &SimMedia| -> Arc<dyn Media> {
            if page_cache {
                Arc::new(PageCacheSim(sim.clone()))
            } else {
                Arc::new(sim.clone())
            }
        };
        let (mut store, _) = Store::open(media_of(&sim), Access::ReadWrite).unwrap();
        let mut log: Vec<Vec<u8>> = Vec::new();
        let mut durable = 0usize;
        for (index, op) in ops.into_iter().enumerate() {
            match op {
                Op::Commit(len) => {
                    let p = payload(index, len);
                    match store.commit(&p) {
                        Ok(seq) => {
                            log.push(p);
                            proptest::prop_assert_eq!(seq, store.last_seq());
                        }
                        Err(StoreError::JournalFull) => {
                            proptest::prop_assert!(!store.commit_fits(len));
                        }
                        Err(err) => panic!("commit: {err}"),
                    }
                }
                Op::Checkpoint { fragmented } => {
                    checkpoint(&mut store, &log, fragmented);
                    durable = log.len();
                }
                Op::Sync => {
                    store.sync().unwrap();
                    durable = log.len();
                }
                Op::Reopen => {
                    drop(store);
                    let (reopened, recovered) =
                        Store::open(media_of(&sim), Access::ReadWrite).unwrap();
                    proptest::prop_assert_eq!(&logical_state(&recovered), &log);
                    store = reopened;
                    durable = log.len();
                }
                Op::CrashAndReopen => {
                    drop(store);
                    sim = SimMedia::from_image(sim.durable_image());
                    let (reopened, recovered) =
                        Store::open(media_of(&sim), Access::ReadWrite).unwrap();
                    let state = logical_state(&recovered);
                    proptest::prop_assert!(state.len() >= durable && state.len() <= log.len());
                    proptest::prop_assert_eq!(&state[..], &log[..state.len()]);
                    log.truncate(state.len());
                    store = reopened;
                    durable = log.len();
                }
            }
            if !page_cache {
                durable = log.len();
            }
            proptest::prop_assert!(store.durable_seq() >= durable as u64);
        }
        drop(store);
        assert_clean(&sim);
    }
}
