//! Data-path behaviour through the kernel: mmap coherence with read/write,
//! files beyond 4 GiB, and large directories.

mod fuse_support;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use fuse_support::*;

/// mmap needs `unsafe` in Rust (the crate allows it only in the media
/// layer), so the mapping side of this test is a small Python program.
const MMAP_COHERENCE_PY: &str = r#"
import mmap, os, sys
path = sys.argv[1]
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, 1 << 20)
shared = mmap.mmap(fd, 1 << 20, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
shared[4096:4101] = b"store"
assert os.pread(fd, 5, 4096) == b"store", "read does not see a shared store"
os.pwrite(fd, b"write", 8192)
assert shared[8192:8197] == b"write", "mapping does not see a write"
shared.flush()
shared.close()
private = mmap.mmap(fd, 1 << 20, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE)
private[0:7] = b"private"
assert os.pread(fd, 7, 0) == bytes(7), "a private store leaked into the file"
assert private[4096:4101] == b"store"
private.close()
os.close(fd)
print("ok")
"#;

#[test]
fn shared_and_private_mmap_are_coherent_with_read_and_write() {
    let mut t = TestFs::new(128 << 20);
    t.mount("");
    let path = t.path("mapped");
    let output = run_ok(
        std::process::Command::new("python3")
            .arg("-c")
            .arg(MMAP_COHERENCE_PY)
            .arg(&path),
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "ok");
    // Shared stores reach the media: they survive a remount.
    t.unmount();
    t.mount("");
    let content = std::fs::read(&path).unwrap();
    assert_eq!(&content[4096..4101], b"store");
    assert_eq!(&content[8192..8197], b"write");
    assert_eq!(&content[0..7], &[0u8; 7]);
    t.finish();
}

#[test]
fn sparse_file_beyond_four_gibibytes() {
    let mut t = TestFs::new(128 << 20);
    t.mount("");
    let path = t.path("huge");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let far: u64 = (4 << 30) + (512 << 20) + 123;
    file.seek(SeekFrom::Start(far)).unwrap();
    file.write_all(b"beyond 4 GiB").unwrap();
    let size = far + 12;
    assert_eq!(file.metadata().unwrap().len(), size);
    let mut tail = [0u8; 12];
    file.read_exact_at(&mut tail, far).unwrap();
    assert_eq!(&tail, b"beyond 4 GiB");
    let mut hole = [1u8; 4096];
    file.read_exact_at(&mut hole, 1 << 32).unwrap();
    assert!(hole.iter().all(|&b| b == 0));
    // Only the written block is allocated.
    let blocks = std::os::unix::fs::MetadataExt::blocks(&file.metadata().unwrap());
    assert!(blocks <= 64, "sparse file allocated {blocks} sectors");
    drop(file);
    t.unmount();
    t.mount("");
    let mut file = File::open(&path).unwrap();
    assert_eq!(file.metadata().unwrap().len(), size);
    file.seek(SeekFrom::Start(far)).unwrap();
    let mut again = String::new();
    file.read_to_string(&mut again).unwrap();
    assert_eq!(again, "beyond 4 GiB");
    drop(file);
    t.finish();
}

#[test]
fn ten_thousand_files_in_one_directory() {
    let mut t = TestFs::new(256 << 20);
    t.mount("");
    let dir = t.path("many");
    std::fs::create_dir(&dir).unwrap();
    const COUNT: usize = 10_000;
    for i in 0..COUNT {
        File::create(dir.join(format!("f{i:05}"))).unwrap();
    }
    let names: std::collections::HashSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), COUNT);
    assert!(names.contains("f00000") && names.contains("f09999"));
    assert!(dir.join("f05000").exists());
    t.unmount();
    t.mount("");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), COUNT);
    for i in (0..COUNT).step_by(2) {
        std::fs::remove_file(dir.join(format!("f{i:05}"))).unwrap();
    }
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), COUNT / 2);
    t.finish();
}

#[test]
fn large_sequential_io_round_trips() {
    let mut t = TestFs::new(256 << 20);
    t.mount("");
    let data: Vec<u8> = (0..(24u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(t.path("seq"), &data).unwrap();
    assert!(std::fs::read(t.path("seq")).unwrap() == data);
    t.finish();
}
