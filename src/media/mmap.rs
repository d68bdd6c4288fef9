//! `MmapMedia`: the real mapping of an image file, block device, devdax
//! device or file on a DAX filesystem. (Placeholder on the skeleton branch.)

use std::path::Path;

use super::{Counters, Media, MediaError, MediaKind, Result};

/// Read-only mappings never write (fsck -n, dump); read-write ones may.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    ReadOnly,
    ReadWrite,
}

/// A mapped region.
pub struct MmapMedia {
    len: u64,
}

impl MmapMedia {
    /// Open and map `path`, detecting its kind (devdax, DAX file, block
    /// device, regular file) and logging it.
    pub fn open(path: &Path, mode: OpenMode) -> Result<MmapMedia> {
        let _ = mode;
        Err(MediaError::Open {
            path: path.display().to_string(),
            msg: "not implemented".into(),
        })
    }
}

impl Media for MmapMedia {
    fn len(&self) -> u64 {
        self.len
    }
    fn kind(&self) -> MediaKind {
        MediaKind::File
    }
    fn describe(&self) -> String {
        String::new()
    }
    fn read(&self, _off: u64, _buf: &mut [u8]) -> Result<()> {
        Ok(())
    }
    fn write(&self, _off: u64, _data: &[u8]) -> Result<()> {
        Ok(())
    }
    fn write_zeroes(&self, _off: u64, _len: u64) -> Result<()> {
        Ok(())
    }
    fn copy_within(&self, _src: u64, _dst: u64, _len: u64) -> Result<()> {
        Ok(())
    }
    fn store_u64(&self, _off: u64, _value: u64) -> Result<()> {
        Ok(())
    }
    fn load_u64(&self, _off: u64) -> Result<u64> {
        Ok(0)
    }
    fn persist(&self, _off: u64, _len: u64) -> Result<()> {
        Ok(())
    }
    fn fence(&self) -> Result<()> {
        Ok(())
    }
    fn with_slice(&self, _off: u64, _len: u64, _f: &mut dyn FnMut(&[u8])) -> Result<()> {
        Ok(())
    }
    fn counters(&self) -> Counters {
        Counters::default()
    }
}
