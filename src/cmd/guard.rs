//! `guard`: only the guard and the listener (no anchoring), until a signal.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::error::{finish, CmdError};
use super::settings::{anchorer, AnchorSettings};
use super::surface::{load_guard, surface_config, GuardArgs, ServerArgs};
use crate::service::shutdown;
use crate::service::surface::{Surface, SurfaceParts};

/// Arguments of `guard`.
#[derive(Debug, Args)]
pub struct GuardCommandArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub anchor: AnchorSettings,
    /// Where the guard keeps its state (the management secret, kept outcomes, events).
    #[arg(long, env = "ARIO_MLFLOW_STATE_DIR", default_value = "ario-state")]
    pub state_dir: PathBuf,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub server: ServerArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub guard: GuardArgs,
}

/// `guard`: only the guard and the listener (no anchoring), until a signal.
pub async fn guard(args: GuardCommandArgs, config: Option<&std::path::Path>) -> ExitCode {
    finish(run_guard(args, config).await)
}

async fn run_guard(
    args: GuardCommandArgs,
    config: Option<&std::path::Path>,
) -> Result<ExitCode, CmdError> {
    let surface_config = surface_config(&args.server, &args.state_dir)?;
    let anchorer = anchorer(&args.anchor)?;
    let parts = load_guard(
        config,
        &args.guard,
        &args.anchor,
        &anchorer.mlflow,
        &anchorer.turbo,
        &args.state_dir,
    )
    .await?
    .ok_or_else(|| {
        CmdError::usage("the guard needs a policy: --config FILE (or ARIO_MLFLOW_CONFIG) with a [guard] table and [[guard.asset]] entries")
    })?;
    let stop = shutdown::on_signal();
    let surface = Surface::start(
        &surface_config,
        &anchorer.mlflow,
        SurfaceParts {
            turbo: Some(anchorer.turbo.clone()),
            guard: Some(parts),
            mode: "guard",
            ..Default::default()
        },
        &stop,
    )
    .await?;
    while !stop.is_cancelled() {
        surface.health.tick();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stop.cancelled() => {}
        }
    }
    surface.stop().await;
    Ok(ExitCode::SUCCESS)
}
