//! cowdax: a userspace DAX filesystem for persistent memory with reflink,
//! dedupe and copy-on-write, served over FUSE.
//!
//! Layers (each a module, top to bottom; see docs/DESIGN.md):
//! * [`cli`]: the `cowdax` command and its `mkfs.cowdax`/`fsck.cowdax` names;
//! * [`fuse`]: the FUSE adapter (fuser) and the mount daemon;
//! * [`fs`]: the filesystem core — POSIX-shaped, no FUSE types, no `unsafe`;
//! * [`store`]: on-media format, journal, checkpoints;
//! * [`media`]: the mapping and persistence — the only `unsafe`.
//!
//! Beside them: [`size`], the one grammar of size arguments and options, and
//! [`ioctl_abi`], the private ioctl ABI (a workspace crate).

#![deny(unsafe_code)]

pub mod cli;
pub mod fs;
pub mod fuse;
/// The private ioctl ABI, a workspace crate of its own (`ioctl-abi/`) that
/// the LD_PRELOAD shim shares.
pub use cowdax_ioctl_abi as ioctl_abi;
#[allow(unsafe_code)]
pub mod media;
pub mod size;
pub mod store;
