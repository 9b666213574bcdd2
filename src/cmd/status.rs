//! `status`: the store's jobs per event type and state, parked jobs with their errors, chain
//! heads and cursors.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::error::finish;
use crate::store::{JobState, Store};

/// Arguments of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The sled state store.
    #[arg(long, env = "ARIO_MLFLOW_STATE_DIR", default_value = "ario-state")]
    pub state_dir: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `status`.
pub fn status(args: &StatusArgs) -> ExitCode {
    let store = match Store::open(&args.state_dir) {
        Ok(s) => s,
        Err(e) => return finish(Err(e.into())),
    };
    let jobs = store.jobs().unwrap_or_default();
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for j in &jobs {
        *counts
            .entry(j.event.event_type().to_string())
            .or_default()
            .entry(j.state.name().to_string())
            .or_default() += 1;
    }
    let parked: Vec<serde_json::Value> = jobs
        .iter()
        .filter_map(|j| match &j.state {
            JobState::Parked { error } => {
                Some(serde_json::json!({"job": j.key, "error": error, "attempts": j.attempts}))
            }
            _ => None,
        })
        .collect();
    let chains: BTreeMap<String, String> = store
        .chain_heads()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, h)| (k, h.head))
        .collect();
    let cursors: BTreeMap<String, serde_json::Value> =
        store.cursors().unwrap_or_default().into_iter().collect();
    let doc = serde_json::json!({
        "jobs": jobs.len(), "counts": counts, "parked": parked, "chain_heads": chains,
        "cursors": cursors, "store_bytes": store.size_on_disk(),
    });
    if args.json {
        println!("{doc}");
    } else {
        println!("{} jobs, store {} bytes", jobs.len(), store.size_on_disk());
        for (event, states) in &counts {
            println!("  {event:<18} {states:?}");
        }
        for p in &parked {
            println!(
                "  PARKED {} — {}",
                p["job"].as_str().unwrap_or(""),
                p["error"].as_str().unwrap_or("")
            );
        }
        for (chain, head) in &chains {
            println!("  chain {chain} → {head}");
        }
    }
    ExitCode::SUCCESS
}
