//! Helpers shared by the store tests: small images, a checkpoint extent
//! picker, a page-cache flavoured wrapper around SimMedia, and a logical
//! model of the store's contents.
#![allow(dead_code)]

use std::sync::Arc;

use cowdax::media::SimMedia;
use cowdax::store::{Access, FormatOptions, PhysExtent, Recovered, Store, StoreError, BLOCK_SIZE};

pub const SMALL_BLOCKS: u64 = 64;
pub const SMALL_JOURNAL_BYTES: u64 = 4 * BLOCK_SIZE;

pub fn opts(journal_bytes: u64) -> FormatOptions {
    FormatOptions {
        label: "test".into(),
        journal_bytes: Some(journal_bytes),
        uuid: Some([0x5a; 16]),
    }
}

/// A formatted SimMedia of `blocks` blocks with a journal of `journal_bytes`.
pub fn formatted(blocks: u64, journal_bytes: u64) -> SimMedia {
    let sim = SimMedia::new(blocks * BLOCK_SIZE);
    Store::format(Arc::new(sim.clone()), &opts(journal_bytes)).expect("format");
    sim
}

pub fn open(media: &SimMedia, access: Access) -> Result<(Store, Recovered), StoreError> {
    Store::open(Arc::new(media.clone()), access)
}

/// Pool blocks not used by the live checkpoint; `fragmented` takes every
/// other free block so the checkpoint spans several extents.
pub fn fresh_extents(store: &Store, needed: u64, fragmented: bool) -> Vec<PhysExtent> {
    let geometry = store.geometry();
    let live = store.checkpoint_extents().to_vec();
    let is_live = |block: u64| {
        live.iter()
            .any(|e| block >= e.start && block < e.start + e.len)
    };
    let step = if fragmented { 2 } else { 1 };
    let mut extents: Vec<PhysExtent> = Vec::new();
    let mut taken = 0;
    let mut block = geometry.pool_start;
    while taken < needed && block < geometry.total_blocks {
        if !is_live(block) {
            match extents.last_mut() {
                Some(last) if last.start + last.len == block => last.len += 1,
                _ => extents.push(PhysExtent {
                    start: block,
                    len: 1,
                }),
            }
            taken += 1;
        }
        block += step;
    }
    assert_eq!(taken, needed, "test image too small for the checkpoint");
    extents
}

/// Encode a list of transactions as a checkpoint payload.
pub fn encode_log(log: &[Vec<u8>]) -> Vec<u8> {
    let mut out = (log.len() as u32).to_le_bytes().to_vec();
    for txn in log {
        out.extend_from_slice(&(txn.len() as u32).to_le_bytes());
        out.extend_from_slice(txn);
    }
    out
}

pub fn decode_log(bytes: &[u8]) -> Vec<Vec<u8>> {
    let read_u32 = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let count = read_u32(0);
    let mut at = 4;
    let mut log = Vec::with_capacity(count);
    for _ in 0..count {
        let len = read_u32(at);
        log.push(bytes[at + 4..at + 4 + len].to_vec());
        at += 4 + len;
    }
    log
}

/// The logical state: every transaction ever applied, checkpointed or not.
pub fn logical_state(recovered: &Recovered) -> Vec<Vec<u8>> {
    let mut log = recovered
        .checkpoint
        .as_deref()
        .map(decode_log)
        .unwrap_or_default();
    log.extend(recovered.transactions.iter().cloned());
    log
}

/// Checkpoint the whole logical state into fresh extents.
pub fn checkpoint(store: &mut Store, log: &[Vec<u8>], fragmented: bool) -> Vec<PhysExtent> {
    let payload = encode_log(log);
    let (needed, _) = store.checkpoint_blocks_needed(payload.len());
    let extents = fresh_extents(store, needed, fragmented);
    store
        .write_checkpoint(&payload, &extents)
        .expect("checkpoint");
    extents
}

/// Deterministic payload `index` of `len` bytes.
pub fn payload(index: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (index.wrapping_mul(31) ^ i.wrapping_mul(7)) as u8)
        .collect()
}

/// Assert the image opens read-only and its structures verify.
pub fn assert_clean(media: &SimMedia) {
    let inspection = cowdax::store::inspect(media);
    assert!(inspection.is_healthy(), "image not healthy:\n{inspection}");
    open(media, Access::ReadOnly).expect("image opens");
}
