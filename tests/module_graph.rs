//! The files of src/ import each other one way: tools/modgraph.py finds no
//! import cycle (docs/DESIGN.md §3 shows the layers it computes).

use std::process::Command;

#[test]
fn imports_between_the_files_of_src_run_one_way() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .arg(format!("{root}/tools/modgraph.py"))
        .arg(format!("{root}/src"))
        .output()
        .expect("run python3 tools/modgraph.py");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "import cycles in src/:\n{stderr}");
    assert!(
        stderr.contains("no import cycles"),
        "modgraph said: {stderr}"
    );
}
