//! The `ario-mlflow-worker` binary: all behaviour lives in the library (`src/cli.rs`).

fn main() -> std::process::ExitCode {
    ario_mlflow_worker::cli::main()
}
