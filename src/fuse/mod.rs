//! The FUSE adapter and mount daemon (fuser 0.18).
//!
//! * [`options`]: `-o` mount options — applied, ignored on purpose, or refused;
//! * [`adapter`]: [`adapter::CowdaxFs`], the `fuser::Filesystem` that
//!   translates requests into calls of the core ([`crate::fs::Fs`]);
//! * [`invalidator`]: [`CacheInvalidator`] for invalidating kernel caches;
//! * [`handles`]: open file handles;
//! * [`coherence`]: the page cache kept coherent with direct writes;
//! * [`acl`]: re-export of [`crate::fs::acl`] (the POSIX ACL format and
//!   rules live in the core);
//! * [`ioctl`]: cowdax's private ioctls, served from an
//!   [`ioctl::IoctlContext`] (imports run adapter → ioctl only);
//! * [`idle_poll`]: keeping idle CPUs polling while requests arrive fast;
//! * [`daemon`]: preflight checks, detaching, logging, serving, clean
//!   unmount on umount/SIGTERM/SIGINT.
//!
//! docs/FUSE.md describes the behaviour for users and integrators.

pub use crate::fs::acl;
pub mod adapter;
pub mod coherence;
pub mod daemon;
pub mod handles;
pub mod idle_poll;
pub mod invalidator;
pub mod ioctl;
pub mod options;

pub use adapter::CowdaxFs;
pub use daemon::{MountRequest, EXIT_MOUNT_FAILED, EXIT_USAGE};
pub use invalidator::CacheInvalidator;
pub use options::MountOptions;
