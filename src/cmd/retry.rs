//! `retry`: re-queues a parked job (or every one) — in the store when no worker holds it (the
//! next run picks it up), or through a running worker's listener (its pipeline is woken).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::error::{finish, CmdError};
use super::worker::{explain, open_local, LocalStore, WorkerArgs, WorkerClient};
use crate::server::jobs::RetryRequest;

/// Arguments of `retry`.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The job key (dedupe key) to retry, e.g. `mv/model/3`.
    #[arg(required_unless_present = "all_parked")]
    pub job_key: Option<String>,
    /// Retry every parked job.
    #[arg(long)]
    pub all_parked: bool,
    /// The sled state store.
    #[arg(long, env = "ARIO_MLFLOW_STATE_DIR", default_value = "ario-state")]
    pub state_dir: PathBuf,
    /// The MLflow workspace whose store to open (`<state-dir>/workspaces/NAME`; the default
    /// workspace's is the state directory itself).
    #[arg(long, env = "MLFLOW_WORKSPACE", value_name = "NAME")]
    pub workspace: Option<String>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub worker: WorkerArgs,
}

/// `retry`.
pub async fn retry(args: RetryArgs) -> ExitCode {
    finish(requeue(&args).await)
}

async fn requeue(args: &RetryArgs) -> Result<ExitCode, CmdError> {
    super::connect::check_workspace_name(args.workspace.as_deref())?;
    let key = if args.all_parked {
        None
    } else {
        args.job_key.as_deref()
    };
    let dir = super::connect::workspace_state_dir(&args.state_dir, args.workspace.as_ref());
    let why = if args.worker.url.is_some() {
        "--worker was given".to_string()
    } else {
        match open_local(&dir)? {
            LocalStore::Open(store) => {
                let n = store.requeue_parked(key)?;
                store.flush().await?;
                return Ok(report(n, "the next run/backfill picks them up"));
            }
            LocalStore::AskWorker(why) => why,
        }
    };
    let client = WorkerClient::new(&args.worker, &args.state_dir).map_err(|e| explain(&why, e))?;
    let answer = client
        .retry(&RetryRequest {
            job: key.map(str::to_string),
            all_parked: key.is_none(),
            workspace: args.workspace.clone(),
        })
        .await
        .map_err(|e| explain(&why, e))?;
    Ok(report(
        answer.requeued,
        &format!("the worker at {} is anchoring them", client.base()),
    ))
}

fn report(n: usize, next: &str) -> ExitCode {
    if n == 0 {
        eprintln!("no parked job matched");
        return ExitCode::from(1);
    }
    println!("re-queued {n} job(s); {next}");
    ExitCode::SUCCESS
}
