//! `status`: the store's jobs per event type and state, parked jobs with their errors, chain
//! heads and cursors — read from the state directory, or, while a worker runs (it holds the
//! store; in Kafka mode its stores are its partitions'), asked of the worker's listener.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::error::{finish, CmdError};
use super::worker::{explain, open_local, LocalStore, WorkerArgs, WorkerClient};
use crate::server::jobs::WorkerStatus;
use crate::store::StoreReport;

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
    #[command(flatten)]
    #[allow(missing_docs)]
    pub worker: WorkerArgs,
}

/// `status`.
pub async fn status(args: StatusArgs) -> ExitCode {
    finish(show(&args).await)
}

async fn show(args: &StatusArgs) -> Result<ExitCode, CmdError> {
    super::connect::check_workspace_name(args.workspace.as_deref())?;
    let dir = super::connect::workspace_state_dir(&args.state_dir, args.workspace.as_ref());
    let why = if args.worker.url.is_some() {
        "--worker was given".to_string()
    } else {
        match open_local(&dir)? {
            LocalStore::Open(store) => {
                let report = store.report()?;
                print_local(args, &report);
                return Ok(ExitCode::SUCCESS);
            }
            LocalStore::AskWorker(why) => why,
        }
    };
    let client = WorkerClient::new(&args.worker, &args.state_dir).map_err(|e| explain(&why, e))?;
    let answer = client
        .status(args.workspace.as_deref())
        .await
        .map_err(|e| explain(&why, e))?;
    print_worker(args, client.base(), &answer);
    Ok(ExitCode::SUCCESS)
}

fn print_report(report: &StoreReport) {
    for (event, states) in &report.counts {
        println!("  {event:<18} {states:?}");
    }
    for p in &report.parked {
        println!("  PARKED {} — {}", p.job, p.error);
    }
    for (chain, head) in &report.chain_heads {
        println!("  chain {chain} → {head}");
    }
}

fn print_local(args: &StatusArgs, report: &StoreReport) {
    let workspace = args
        .workspace
        .as_deref()
        .unwrap_or(crate::mlflow::DEFAULT_WORKSPACE);
    let others = other_workspaces(args);
    if args.json {
        let mut doc = serde_json::to_value(report).unwrap_or_default();
        doc["workspace"] = workspace.into();
        doc["other_workspaces"] = others.into();
        println!("{doc}");
        return;
    }
    println!("{} jobs, store {} bytes", report.jobs, report.store_bytes);
    if !others.is_empty() {
        println!(
            "  MLflow workspace {workspace}; the stores of {} too (status --workspace NAME)",
            others.join(", ")
        );
    }
    print_report(report);
}

fn print_worker(args: &StatusArgs, base: &str, answer: &WorkerStatus) {
    if args.json {
        let mut doc = serde_json::to_value(answer).unwrap_or_default();
        doc["worker"] = base.into();
        println!("{doc}");
        return;
    }
    let jobs: usize = answer.stores.iter().map(|s| s.report.jobs).sum();
    println!(
        "worker at {base} ({} mode): {} store(s), {jobs} jobs",
        answer.mode,
        answer.stores.len()
    );
    if answer.stores.is_empty() && answer.mode == "kafka" {
        println!("  no partition owned by this instance right now (ask another member, or wait for the group to assign)");
    }
    if answer.mode == "guard" {
        println!("  a guard-only worker anchors nothing, so it holds no job store: its verdicts are at /v1/verify-status/ASSET");
    }
    for s in &answer.stores {
        let partition = s
            .partition
            .map(|p| format!(", partition {p}"))
            .unwrap_or_default();
        println!(
            "MLflow workspace {}{partition}: {} jobs, store {} bytes",
            s.workspace, s.report.jobs, s.report.store_bytes
        );
        print_report(&s.report);
    }
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
