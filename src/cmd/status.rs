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
    /// The MLflow workspace whose store to open (`<state-dir>/workspaces/NAME`; the default
    /// workspace's is the state directory itself).
    #[arg(long, env = "MLFLOW_WORKSPACE", value_name = "NAME")]
    pub workspace: Option<String>,
}

/// `status`.
pub fn status(args: &StatusArgs) -> ExitCode {
    if let Err(e) = super::connect::check_workspace_name(args.workspace.as_deref()) {
        return finish(Err(e));
    }
    let dir = super::connect::workspace_state_dir(&args.state_dir, args.workspace.as_ref());
    let store = match Store::open(&dir) {
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
        "workspace": args.workspace.as_deref().unwrap_or(crate::mlflow::DEFAULT_WORKSPACE),
        "other_workspaces": other_workspaces(args),
    });
    if args.json {
        println!("{doc}");
    } else {
        println!("{} jobs, store {} bytes", jobs.len(), store.size_on_disk());
        let others = &doc["other_workspaces"];
        if let Some(list) = others.as_array().filter(|l| !l.is_empty()) {
            let names: Vec<&str> = list.iter().filter_map(|v| v.as_str()).collect();
            println!(
                "  MLflow workspace {}; the stores of {} too (status --workspace NAME)",
                doc["workspace"].as_str().unwrap_or(""),
                names.join(", ")
            );
        }
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

/// The other MLflow workspaces with a store under the state directory (`status --workspace`).
fn other_workspaces(args: &StatusArgs) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(args.state_dir.join("workspaces"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| Some(n) != args.workspace.as_ref())
        .collect();
    if args
        .workspace
        .as_ref()
        .is_some_and(|w| w != crate::mlflow::DEFAULT_WORKSPACE)
    {
        names.push(crate::mlflow::DEFAULT_WORKSPACE.to_string());
    }
    names.sort();
    names
}
