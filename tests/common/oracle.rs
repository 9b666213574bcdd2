//! The independent ANS-104 oracle: `node shared/tools/ans104/verify_dataitem.mjs` (arbundles,
//! the library Turbo verifies with) run on items devnet accepted. Needs node + npm; prints a
//! notice and skips when node is absent, except under CI, where it is required.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn node_present() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The oracle script in a scratch copy with arbundles installed, or `None` without node.
pub fn script() -> Option<PathBuf> {
    static SCRIPT: OnceLock<Option<PathBuf>> = OnceLock::new();
    SCRIPT
        .get_or_init(|| {
            if !node_present() {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "node is required under CI for the ANS-104 oracle"
                );
                eprintln!("NOTICE: node not found; ANS-104 oracle SKIPPED");
                return None;
            }
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ans104-oracle");
            // Test binaries run in parallel lanes (scripts/test): one installs.
            let _one_process = super::ExclusiveFile::lock(&dir.with_extension("lock"));
            if !dir.join("node_modules/arbundles/package.json").exists() {
                std::fs::create_dir_all(&dir).unwrap();
                for name in ["package.json", "verify_dataitem.mjs", "make_dataitem.mjs"] {
                    let from = super::shared_dir().join("tools/ans104").join(name);
                    std::fs::write(dir.join(name), std::fs::read(&from).unwrap()).unwrap();
                }
                let out = Command::new("npm")
                    .args([
                        "install",
                        "--no-audit",
                        "--no-fund",
                        "--loglevel=error",
                        "arbundles@0.11.2",
                    ])
                    .current_dir(&dir)
                    .output()
                    .expect("npm must be installed alongside node for the ANS-104 oracle");
                assert!(
                    out.status.success(),
                    "npm install arbundles failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Some(dir.join("verify_dataitem.mjs"))
        })
        .clone()
}

/// Checks every `<id>.bin` in `items_dir` with the oracle: each must be `valid` and
/// `strictValid`, with the id we stored it under. Returns how many were checked.
pub fn check_items(items_dir: &Path) -> usize {
    let Some(script) = script() else { return 0 };
    let mut files: Vec<PathBuf> = std::fs::read_dir(items_dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "bin"))
        .collect();
    files.sort();
    for file in &files {
        // Output goes to a file: node may cut large output short on a pipe when it exits.
        let report_path = file.with_extension("oracle.json");
        let report_file = std::fs::File::create(&report_path).unwrap();
        let out = Command::new("node")
            .arg(&script)
            .arg(file)
            .stdout(report_file)
            .output()
            .unwrap();
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap_or_else(|e| {
                panic!(
                    "oracle output for {}: {e}: {}",
                    file.display(),
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        let _ = std::fs::remove_file(&report_path);
        assert_eq!(
            report["valid"],
            serde_json::json!(true),
            "{}: {report}",
            file.display()
        );
        assert_eq!(
            report["strictValid"],
            serde_json::json!(true),
            "{}: {report}",
            file.display()
        );
        let stem = file.file_stem().unwrap().to_string_lossy();
        assert_eq!(
            report["id"].as_str(),
            Some(stem.as_ref()),
            "{}",
            file.display()
        );
    }
    println!("ANS-104 oracle (arbundles verify_dataitem.mjs): {} items accepted by devnet checked, all valid + strictValid", files.len());
    files.len()
}
