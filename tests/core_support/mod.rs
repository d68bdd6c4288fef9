//! Helpers shared by the core tests.
#![allow(dead_code)]

use std::sync::Arc;

use cowdax::fs::{Creds, Fs, OpenOptions};
use cowdax::media::SimMedia;
use cowdax::store::{FormatOptions, BLOCK_SIZE};

pub const ROOT_CREDS: Creds = Creds { uid: 0, gid: 0 };

pub fn format_opts(journal_bytes: Option<u64>) -> FormatOptions {
    FormatOptions {
        label: "core-test".into(),
        journal_bytes,
        uuid: Some([0x42; 16]),
    }
}

/// A freshly formatted SimMedia of `blocks` blocks.
pub fn formatted(blocks: u64, journal_bytes: Option<u64>) -> SimMedia {
    let sim = SimMedia::new(blocks * BLOCK_SIZE);
    Fs::mkfs(
        Arc::new(sim.clone()),
        &format_opts(journal_bytes),
        ROOT_CREDS,
    )
    .expect("mkfs");
    sim
}

pub fn open(sim: &SimMedia) -> Fs {
    Fs::open(Arc::new(sim.clone()), OpenOptions::default()).expect("open")
}

/// Scrub must report no violated invariant.
pub fn assert_clean(fs: &Fs) {
    let report = fs.scrub().expect("scrub runs");
    assert!(
        report.errors.is_empty(),
        "scrub found errors: {:#?}",
        report.errors
    );
}

/// Deterministic pseudo-random bytes.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// SimMedia that claims page-cache backing: commits are not fenced (group
/// commit); fsync/sync and the data-before-metadata fences make things
/// durable.
#[derive(Clone)]
pub struct PageCacheSim(pub SimMedia);

use cowdax::media::{Counters, Media, MediaKind};

impl Media for PageCacheSim {
    fn len(&self) -> u64 {
        self.0.len()
    }
    fn kind(&self) -> MediaKind {
        MediaKind::File
    }
    fn describe(&self) -> String {
        format!("page-cache flavoured {}", self.0.describe())
    }
    fn read(&self, off: u64, buf: &mut [u8]) -> cowdax::media::Result<()> {
        self.0.read(off, buf)
    }
    fn write(&self, off: u64, data: &[u8]) -> cowdax::media::Result<()> {
        self.0.write(off, data)
    }
    fn write_zeroes(&self, off: u64, len: u64) -> cowdax::media::Result<()> {
        self.0.write_zeroes(off, len)
    }
    fn copy_within(&self, src: u64, dst: u64, len: u64) -> cowdax::media::Result<()> {
        self.0.copy_within(src, dst, len)
    }
    fn store_u64(&self, off: u64, value: u64) -> cowdax::media::Result<()> {
        self.0.store_u64(off, value)
    }
    fn load_u64(&self, off: u64) -> cowdax::media::Result<u64> {
        self.0.load_u64(off)
    }
    fn persist(&self, off: u64, len: u64) -> cowdax::media::Result<()> {
        self.0.persist(off, len)
    }
    fn fence(&self) -> cowdax::media::Result<()> {
        self.0.fence()
    }
    fn with_slice(
        &self,
        off: u64,
        len: u64,
        f: &mut dyn FnMut(&[u8]),
    ) -> cowdax::media::Result<()> {
        self.0.with_slice(off, len, f)
    }
    fn counters(&self) -> Counters {
        self.0.counters()
    }
}
