//! One error type for every command: what went wrong, said once on stderr as `error: …`, and
//! the exit status it leaves with — 2 when the command could not start (a flag, a file, a
//! setting, a service not usable), 1 when it ran and the work failed.

use std::error::Error;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::service::ServiceError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// A flag or setting is wrong; the message says which and what to give instead (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A file the command was pointed at cannot be read (exit 2).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's answer.
        #[source]
        source: std::io::Error,
    },
    /// A file the command writes cannot be written (exit 2).
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's answer.
        #[source]
        source: std::io::Error,
    },
    /// Something the command needs could not be set up: a client, a key, a store, a service
    /// that refused (exit 2).
    #[error(transparent)]
    Setup(Box<dyn Error + Send + Sync>),
    /// The service stopped with an error (its own exit status).
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// The command ran and its work failed: an upload refused, a read that found nothing
    /// (exit 1).
    #[error(transparent)]
    Failed(Box<dyn Error + Send + Sync>),
}

impl CmdError {
    /// A wrong flag or setting.
    pub fn usage(message: impl Into<String>) -> CmdError {
        CmdError::Usage(message.into())
    }

    /// The work failed with `e` (exit 1).
    pub fn failed(e: impl Into<Box<dyn Error + Send + Sync>>) -> CmdError {
        CmdError::Failed(e.into())
    }

    /// Reading `path` failed with `source`.
    pub fn read(path: impl Into<PathBuf>, source: std::io::Error) -> CmdError {
        CmdError::Read {
            path: path.into(),
            source,
        }
    }

    /// Writing `path` failed with `source`.
    pub fn write(path: impl Into<PathBuf>, source: std::io::Error) -> CmdError {
        CmdError::Write {
            path: path.into(),
            source,
        }
    }

    /// The process exit status for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CmdError::Usage(_)
            | CmdError::Read { .. }
            | CmdError::Write { .. }
            | CmdError::Setup(_) => ExitCode::from(2),
            CmdError::Service(e) => ExitCode::from(e.exit_code()),
            CmdError::Failed(_) => ExitCode::from(1),
        }
    }
}

/// A command's outcome as its exit status: an error is printed once as `error: …`.
pub fn finish(outcome: Result<ExitCode, CmdError>) -> ExitCode {
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// Library errors met while setting a command up: exit 2, their message as it is.
macro_rules! setup_errors {
    ($($error:ty),* $(,)?) => {
        $(impl From<$error> for CmdError {
            fn from(e: $error) -> CmdError {
                CmdError::Setup(Box::new(e))
            }
        })*
    };
}

setup_errors!(
    crate::config::ConfigError,
    crate::store::StoreError,
    crate::mlflow::MlflowError,
    crate::feed::kafka::KafkaSetupError,
    crate::verify::VerifyError,
    crate::arweave::http::HttpSetupError,
    crate::arweave::wallet::WalletError,
    crate::arweave::gateway::GatewayError,
    crate::arweave::turbo::TurboError,
    crate::arweave::data_item::DataItemError,
    crate::keys::KeyError,
    crate::keys::Pkcs11Error,
    crate::server::ListenError,
    crate::guard::GuardError,
    crate::guard::policy::PolicyError,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_status_follows_the_kind_of_failure() {
        assert_eq!(CmdError::usage("x").exit_code(), ExitCode::from(2));
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let read = CmdError::read("/nope", io);
        assert_eq!(read.exit_code(), ExitCode::from(2));
        assert!(read.to_string().starts_with("cannot read /nope: "));
        assert_eq!(CmdError::failed("gone").exit_code(), ExitCode::from(1));
        let stopped = CmdError::from(ServiceError::Stopped("the consumer".into()));
        assert_eq!(stopped.exit_code(), ExitCode::from(1));
        let setup = CmdError::from(crate::store::StoreError::Journal("j".into()));
        assert_eq!(setup.exit_code(), ExitCode::from(2));
    }
}
