//! devnet's item store: every accepted data item kept on disk, so a restart loses nothing.
//!
//! `items/<id>.bin` holds the exact item bytes; `items/<id>.json` its metadata (status, upload
//! count, tags). Both are written to a temporary file, fsynced and renamed into place. On open
//! the index is rebuilt from the metadata files; a `.bin` without metadata (crash between the
//! two writes) is re-parsed. Methods are synchronous: callers run them on a blocking thread.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::arweave::DataItem;

/// Metadata of one stored item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredItem {
    /// Data item id.
    pub id: String,
    /// ANS-104 signature type.
    pub signature_type: u16,
    /// base64url(SHA-256(owner)).
    pub owner_address: String,
    /// Whole item size in bytes.
    pub size: usize,
    /// Offset of the data section.
    pub data_offset: usize,
    /// Data section size.
    pub data_len: usize,
    /// Tags as (name, value) text.
    pub tags: Vec<(String, String)>,
    /// Turbo status `info`: `new`, `pending`, `permanent` or `failed`.
    pub info: String,
    /// How many times the item was POSTed and accepted.
    pub uploads: u32,
    /// When it was first accepted (ms since the epoch).
    pub first_seen_ms: u64,
}

impl StoredItem {
    /// The item's `Content-Type` tag.
    pub fn content_type(&self) -> Option<&str> {
        self.tags
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("Content-Type"))
            .map(|(_, v)| v.as_str())
    }

    /// Turbo's `status` for the `info` value.
    pub fn status(&self) -> &'static str {
        match self.info.as_str() {
            "permanent" => "FINALIZED",
            "failed" => "FAILED",
            _ => "CONFIRMED",
        }
    }
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// File system error.
    #[error("devnet store {path}: {source}")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Unknown id.
    #[error("no such item {0}")]
    NotFound(String),
}

/// The on-disk item store.
#[derive(Debug)]
pub struct ItemStore {
    dir: PathBuf,
    index: Mutex<BTreeMap<String, StoredItem>>,
}

impl ItemStore {
    /// Opens (creating) `data_dir/items` and rebuilds the index.
    pub fn open(data_dir: &Path) -> Result<ItemStore, StoreError> {
        let dir = data_dir.join("items");
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut index = BTreeMap::new();
        let entries = std::fs::read_dir(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "bin") {
                continue;
            }
            let meta_path = path.with_extension("json");
            let meta = std::fs::read(&meta_path)
                .ok()
                .and_then(|b| serde_json::from_slice::<StoredItem>(&b).ok());
            let meta = match meta {
                Some(m) => m,
                None => match std::fs::read(&path)
                    .ok()
                    .and_then(|b| DataItem::parse(&b).ok())
                {
                    Some(item) => describe(&item, 1, now_ms()),
                    None => {
                        tracing::warn!(path = %path.display(), "devnet: skipping unreadable stored item");
                        continue;
                    }
                },
            };
            index.insert(meta.id.clone(), meta);
        }
        Ok(ItemStore {
            dir,
            index: Mutex::new(index),
        })
    }

    /// Stores an accepted item (bytes written once) and counts the upload.
    pub fn put(&self, item: &DataItem, bytes: &[u8]) -> Result<StoredItem, StoreError> {
        let id = item.id();
        let bin = self.dir.join(format!("{id}.bin"));
        if !bin.exists() {
            write_atomic(&bin, bytes)?;
        }
        let mut index = self.lock();
        let meta = match index.get(&id) {
            Some(existing) => StoredItem {
                uploads: existing.uploads + 1,
                ..existing.clone()
            },
            None => describe(item, 1, now_ms()),
        };
        self.write_meta(&meta)?;
        index.insert(id, meta.clone());
        Ok(meta)
    }

    /// Metadata of one item.
    pub fn get(&self, id: &str) -> Option<StoredItem> {
        self.lock().get(id).cloned()
    }

    /// Every item's metadata, ordered by id.
    pub fn list(&self) -> Vec<StoredItem> {
        self.lock().values().cloned().collect()
    }

    /// The whole stored item bytes.
    pub fn item_bytes(&self, id: &str) -> Result<Vec<u8>, StoreError> {
        if self.get(id).is_none() {
            return Err(StoreError::NotFound(id.to_string()));
        }
        let path = self.dir.join(format!("{id}.bin"));
        std::fs::read(&path).map_err(|source| StoreError::Io { path, source })
    }

    /// The data section (what `/raw/{id}` serves).
    pub fn data(&self, id: &str) -> Result<(StoredItem, Vec<u8>), StoreError> {
        let meta = self
            .get(id)
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        let bytes = self.item_bytes(id)?;
        let data = bytes.get(meta.data_offset..).unwrap_or_default().to_vec();
        Ok((meta, data))
    }

    /// Moves an item through the status lifecycle (`new` → `pending` → `permanent`, or `failed`).
    pub fn set_info(&self, id: &str, info: &str) -> Result<StoredItem, StoreError> {
        let mut index = self.lock();
        let meta = index
            .get_mut(id)
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        meta.info = info.to_string();
        let meta = meta.clone();
        self.write_meta(&meta)?;
        Ok(meta)
    }

    /// Directory holding `<id>.bin` files (for the ANS-104 oracle).
    pub fn items_dir(&self) -> &Path {
        &self.dir
    }

    fn write_meta(&self, meta: &StoredItem) -> Result<(), StoreError> {
        let path = self.dir.join(format!("{}.json", meta.id));
        let body = serde_json::to_vec_pretty(meta).map_err(|e| StoreError::Io {
            path: path.clone(),
            source: e.into(),
        })?;
        write_atomic(&path, &body)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, StoredItem>> {
        self.index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn describe(item: &DataItem, uploads: u32, first_seen_ms: u64) -> StoredItem {
    StoredItem {
        id: item.id(),
        signature_type: item.signature_type.code(),
        owner_address: item.owner_address(),
        size: item.header_len() + item.data.len(),
        data_offset: item.header_len(),
        data_len: item.data.len(),
        tags: item
            .tags
            .iter()
            .map(|t| (t.name_str().into_owned(), t.value_str().into_owned()))
            .collect(),
        info: "new".into(),
        uploads,
        first_seen_ms,
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension(format!("tmp{}", fastrand::u64(..)));
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}
