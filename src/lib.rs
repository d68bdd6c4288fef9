//! cowdax: a userspace DAX filesystem for persistent memory with reflink,
//! dedupe and copy-on-write, served over FUSE.
//!
//! Layers (each a module, top to bottom; see docs/DESIGN.md):
//! * [`cli`]: the `cowdax` command and its `mkfs.cowdax`/`fsck.cowdax` names;
//! * [`fuse`]: the FUSE adapter (fuser) and the mount daemon;
//! * [`fs`]: the filesystem core — POSIX-shaped, no FUSE types, no `unsafe`;
//! * [`store`]: on-media format, journal, checkpoints;
//! * [`media`]: the mapping and persistence — the only `unsafe`.

#![deny(unsafe_code)]

pub mod cli;
pub mod fs;
pub mod fuse;
pub mod ioctl_abi;
#[allow(unsafe_code)]
pub mod media;
pub mod store;
