//! The store on a real mapping (`MmapMedia`, an image file in /dev/shm or
//! the temp directory): format, commit, checkpoint, reopen by a new mapping,
//! and a read-only open on a read-only mapping.

mod store_support;

use std::path::Path;
use std::sync::Arc;

use cowdax::media::{Media, MmapMedia, OpenMode};
use cowdax::store::{inspect, Access, FormatOptions, Store, BLOCK_SIZE};
use store_support::{decode_log, encode_log, payload};

fn scratch_dir() -> tempfile::TempDir {
    if Path::new("/dev/shm").is_dir() {
        if let Ok(dir) = tempfile::tempdir_in("/dev/shm") {
            return dir;
        }
    }
    tempfile::tempdir().expect("temp dir")
}

#[test]
fn image_file_round_trip_through_new_mappings() {
    let dir = scratch_dir();
    let path = dir.path().join("store.img");
    let mut log: Vec<Vec<u8>> = Vec::new();
    {
        let media: Arc<dyn Media> = Arc::new(MmapMedia::create(&path, 4 << 20).unwrap());
        let geometry = Store::format(media.clone(), &FormatOptions::default()).unwrap();
        assert_eq!(geometry.journal_blocks, 64);
        let (mut store, recovered) = Store::open(media, Access::ReadWrite).unwrap();
        assert!(recovered.was_clean);
        for i in 0..50 {
            log.push(payload(i, 1 + i * 17));
            store.commit(&log[i]).unwrap();
        }
        let pool = store.geometry().pool_start;
        let checkpoint = encode_log(&log);
        let (needed, _) = store.checkpoint_blocks_needed(checkpoint.len());
        store
            .write_checkpoint(
                &checkpoint,
                &[cowdax::store::PhysExtent {
                    start: pool + 10,
                    len: needed,
                }],
            )
            .unwrap();
        for i in 50..60 {
            log.push(payload(i, 300));
            store.commit(&log[i]).unwrap();
        }
        store.sync().unwrap();
        assert_eq!(store.durable_seq(), 60);
    }
    {
        let media: Arc<dyn Media> = Arc::new(MmapMedia::open(&path, OpenMode::ReadOnly).unwrap());
        let (mut store, recovered) = Store::open(media.clone(), Access::ReadOnly).unwrap();
        let mut state = decode_log(recovered.checkpoint.as_deref().unwrap());
        state.extend(recovered.transactions);
        assert_eq!(state, log);
        assert!(!recovered.was_clean);
        assert!(store.commit(b"no").is_err());
        let inspection = inspect(media.as_ref());
        assert!(inspection.is_healthy(), "{inspection}");
        assert_eq!(inspection.journal.unwrap().records, 10);
    }
    {
        let media: Arc<dyn Media> = Arc::new(MmapMedia::open(&path, OpenMode::ReadWrite).unwrap());
        let (mut store, _) = Store::open(media, Access::ReadWrite).unwrap();
        store.set_clean(true).unwrap();
    }
    let media: Arc<dyn Media> = Arc::new(MmapMedia::open(&path, OpenMode::ReadOnly).unwrap());
    let (store, recovered) = Store::open(media.clone(), Access::ReadOnly).unwrap();
    assert!(recovered.was_clean);
    assert_eq!(store.superblock().mount_count, 2);
    assert_eq!(media.len() / BLOCK_SIZE, store.geometry().total_blocks);
    assert!(inspect(media.as_ref()).is_healthy());
}
