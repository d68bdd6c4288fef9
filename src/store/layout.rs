//! The region's layout in blocks: the block size, the bounds on the
//! journal ring and the pool, a run of physical blocks, and a formatted
//! region's geometry. The bottom of the store: it imports nothing, so the
//! superblock, journal and checkpoint codecs and the store itself
//! (store/mod.rs, which re-exports all of it) depend on it and never on
//! each other for it.

pub const BLOCK_SIZE: u64 = 4096;
/// Smallest journal ring accepted (explicit `journal_bytes`).
pub const MIN_JOURNAL_BLOCKS: u64 = 4;
/// Largest journal ring (256 MiB).
pub const MAX_JOURNAL_BLOCKS: u64 = 65536;
/// Default journal size bounds: 1/64 of the region clamped to [256 KiB, 256 MiB].
pub const DEFAULT_JOURNAL_MIN_BLOCKS: u64 = 64;
pub const DEFAULT_JOURNAL_DIVISOR: u64 = 64;
/// The pool must have at least this many blocks.
pub const MIN_POOL_BLOCKS: u64 = 16;

/// A run of physical blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysExtent {
    pub start: u64,
    pub len: u64,
}

/// Geometry of a formatted region, in blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub block_size: u64,
    pub total_blocks: u64,
    pub journal_start: u64,
    pub journal_blocks: u64,
    pub pool_start: u64,
}
