//! On-media format and the crash-safe metadata store (DESIGN.md §4):
//! two superblocks, a journal ring of checksummed transactions, and
//! checkpoints written to fresh pool blocks and published by a superblock
//! switch.
//!
//! The store is a *log + snapshot* container: transaction payloads and the
//! checkpoint payload are opaque bytes defined by the filesystem core
//! (`crate::fs`). The store guarantees:
//! * `commit(p)` appends `p` as one transaction; after a crash, recovery
//!   yields a prefix of the committed transactions (in order), each whole or
//!   absent; every transaction covered by a completed `sync` (or committed on
//!   byte-persistent media, where commit fences) is in that prefix.
//! * `write_checkpoint(p, extents)` atomically replaces the checkpoint with
//!   `p` and empties the journal: after a crash, recovery yields either the old
//!   checkpoint + the journal as it was, or the new checkpoint + nothing.
//!
//! Layout (block numbers, 4 KiB blocks):
//! `| 0: superblock A | 1: superblock B | 2..2+J: journal ring | pool … |`
//! The pool holds file data and checkpoint blocks; which pool blocks are in
//! use is derived by the core (extent maps + checkpoint extents).

pub const BLOCK_SIZE: u64 = 4096;

/// A run of physical blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysExtent {
    pub start: u64,
    pub len: u64,
}

/// Options for `mkfs`.
#[derive(Clone, Debug, Default)]
pub struct FormatOptions {
    /// Volume label (at most 63 bytes of UTF-8).
    pub label: String,
    /// Journal size in bytes (rounded up to blocks); `None` picks a default
    /// scaled to the region size.
    pub journal_bytes: Option<u64>,
    /// Fixed UUID (tests); `None` generates a random one.
    pub uuid: Option<[u8; 16]>,
}

use std::sync::Arc;

use crate::media::{Media, MediaError};

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Media(#[from] MediaError),
    /// The region holds no cowdax filesystem (no valid superblock magic).
    #[error("not a cowdax filesystem{0}")]
    NotCowdax(String),
    /// A cowdax filesystem that this version cannot read.
    #[error("unsupported cowdax format: {0}")]
    Unsupported(String),
    /// A structure failed validation (checksum, bounds, sequence).
    #[error("corrupt filesystem: {0}")]
    Corrupt(String),
    /// The region cannot hold a filesystem with these options.
    #[error("{0}")]
    TooSmall(String),
    /// The journal has no room for this transaction: checkpoint first.
    #[error("journal full")]
    JournalFull,
    /// One transaction larger than the journal can ever hold.
    #[error("transaction of {0} bytes exceeds the journal's limit")]
    TransactionTooLarge(usize),
    /// The extents given for a checkpoint are too few or too fragmented.
    #[error("checkpoint needs {needed} blocks in at most {max_extents} extents")]
    CheckpointSpace { needed: u64, max_extents: usize },
    /// Opened read-only.
    #[error("filesystem opened read-only")]
    ReadOnly,
    /// Placeholder on development branches only; never on main.
    #[error("not implemented yet")]
    NotImplemented,
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Geometry of a formatted region, in blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub block_size: u64,
    pub total_blocks: u64,
    pub journal_start: u64,
    pub journal_blocks: u64,
    pub pool_start: u64,
}

/// What `Store::open` recovered, for the core to rebuild its state from.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The current checkpoint payload (`None` on a freshly formatted region).
    pub checkpoint: Option<Vec<u8>>,
    /// Pool blocks holding the checkpoint (descriptor included): in use.
    pub checkpoint_extents: Vec<PhysExtent>,
    /// Transaction payloads to replay on top of the checkpoint, in order.
    pub transactions: Vec<Vec<u8>>,
    /// The filesystem was unmounted cleanly last time.
    pub was_clean: bool,
}

/// Read-only or read-write access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// The crash-safe metadata store. Not internally synchronised: the core
/// wraps it in a mutex.
pub struct Store {
    media: Arc<dyn Media>,
}

impl Store {
    /// Write a fresh filesystem (both superblocks, empty journal, no
    /// checkpoint) to `media`. Overwrites whatever was there.
    pub fn format(media: Arc<dyn Media>, opts: &FormatOptions) -> Result<Geometry> {
        let _ = (media, opts);
        Err(StoreError::NotImplemented)
    }

    /// Validate the superblocks, load the checkpoint and read the journal.
    /// With `Access::ReadWrite` also marks the filesystem as mounted (not
    /// clean). With `Access::ReadOnly` nothing is ever written.
    pub fn open(media: Arc<dyn Media>, access: Access) -> Result<(Store, Recovered)> {
        let _ = (media, access);
        Err(StoreError::NotImplemented)
    }

    pub fn media(&self) -> &Arc<dyn Media> {
        &self.media
    }

    pub fn geometry(&self) -> Geometry {
        unreachable!("placeholder")
    }

    /// Append one transaction. Persisted before return; also fenced (durable)
    /// when the media is byte-persistent. Returns its sequence number.
    pub fn commit(&mut self, payload: &[u8]) -> Result<u64> {
        let _ = payload;
        Err(StoreError::NotImplemented)
    }

    /// Make every committed transaction durable.
    pub fn sync(&mut self) -> Result<()> {
        Err(StoreError::NotImplemented)
    }

    /// Sequence number of the last committed transaction.
    pub fn last_seq(&self) -> u64 {
        0
    }

    /// Every transaction with a sequence number ≤ this is durable.
    pub fn durable_seq(&self) -> u64 {
        0
    }

    /// Bytes still free in the journal ring (for the core's checkpoint policy).
    pub fn journal_free_bytes(&self) -> u64 {
        0
    }

    /// Capacity of the journal ring in bytes.
    pub fn journal_capacity_bytes(&self) -> u64 {
        0
    }

    /// Largest payload one transaction may carry.
    pub fn max_transaction_bytes(&self) -> usize {
        0
    }

    /// Pool blocks a checkpoint of `payload_len` bytes needs (descriptor
    /// included), and the most extents they may be spread over.
    pub fn checkpoint_blocks_needed(&self, payload_len: usize) -> (u64, usize) {
        let _ = payload_len;
        (0, 0)
    }

    /// Write `payload` as the new checkpoint into `extents` (freshly
    /// allocated pool blocks, never the live checkpoint's), publish it by a
    /// superblock switch and empty the journal. Returns the old checkpoint's
    /// extents, which are free once this returns.
    pub fn write_checkpoint(
        &mut self,
        payload: &[u8],
        extents: &[PhysExtent],
    ) -> Result<Vec<PhysExtent>> {
        let _ = (payload, extents);
        Err(StoreError::NotImplemented)
    }

    /// Record a clean unmount (call after a final checkpoint) or, with
    /// `false`, that the filesystem is in use.
    pub fn set_clean(&mut self, clean: bool) -> Result<()> {
        let _ = clean;
        Err(StoreError::NotImplemented)
    }
}
