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
