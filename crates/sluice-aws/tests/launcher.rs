//! The emulator launcher's own tests (`tests/tooling/test_moto_launcher.py`: moto and Sluice's
//! additions to it, driven with boto3), run as part of `cargo test` so that the one test command
//! covers the tooling the AWS tests stand on.

mod support;

use std::process::{Command, Stdio};

#[test]
fn moto_launcher_self_test_passes() {
    let root = support::workspace_root();
    let python = support::ensure_venv(&root);
    let o = Command::new(python)
        .arg("tests/tooling/test_moto_launcher.py")
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .expect("python runs");
    let report = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "the launcher's self-test failed:\n{}\n{report}", String::from_utf8_lossy(&o.stdout));
    assert!(report.contains("\nOK") && !report.contains("Ran 0 tests"), "{report}");
}
