//! The FUSE adapter and mount daemon.
