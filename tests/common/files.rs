//! Hashing a directory tree on disk, as an independent check of what a store holds.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

/// `{relative path: sha256 hex}` of every regular file under `root` (none if missing),
/// skipping MLflow's `registered_model_meta` and s3s-fs's own bookkeeping files.
pub fn checksums(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                pending.push(path);
            } else if name != "registered_model_meta" && !name.starts_with(".s3s") {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                let bytes = std::fs::read(&path).unwrap();
                out.insert(rel, hex::encode(Sha256::digest(&bytes)));
            }
        }
    }
    out
}
