//! The `fledge` binary at its edges: a corrupt or newer-schema data file is a clear error and a clean
//! exit, not a panic or a crash loop.

use std::process::Command;

use fledge_integration::fledge_bin;

fn serve(data: &std::path::Path) -> (bool, String) {
    let out = Command::new(fledge_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn corrupt_data_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fledge.db"), vec![0x42u8; 8192]).unwrap();
    let (ok, err) = serve(dir.path());
    assert!(!ok);
    assert!(err.contains("corrupt or not a fledge database"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn newer_schema_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fledge.db");
    let status = Command::new("python3")
        .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA user_version = 99'); c.commit()"])
        .arg(&db)
        .status()
        .unwrap();
    assert!(status.success());
    let (ok, err) = serve(dir.path());
    assert!(!ok);
    assert!(err.contains("newer than this fledge supports"), "{err}");
}
