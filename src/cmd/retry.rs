//! `retry`: re-queues a parked job (or every one) for the running service or the next run.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::error::{finish, CmdError};
use crate::anchor::pipeline::retry as retry_jobs;
use crate::store::Store;

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
}

/// `retry`.
pub fn retry(args: &RetryArgs) -> ExitCode {
    finish(requeue(args))
}

fn requeue(args: &RetryArgs) -> Result<ExitCode, CmdError> {
    super::connect::check_workspace_name(args.workspace.as_deref())?;
    let store = Store::open(&super::connect::workspace_state_dir(
        &args.state_dir,
        args.workspace.as_ref(),
    ))?;
    let key = if args.all_parked {
        None
    } else {
        args.job_key.as_deref()
    };
    let n = retry_jobs(&store, key)?;
    futures::executor::block_on(store.flush())?;
    if n == 0 {
        eprintln!("no parked job matched");
        return Ok(ExitCode::from(1));
    }
    println!("re-queued {n} job(s); the running service (or the next run/backfill) picks them up");
    Ok(ExitCode::SUCCESS)
}
