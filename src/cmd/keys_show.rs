//! `keys show`: prints the envelope public key and where it came from, creating the key files
//! on first use (so the key can be published through a trusted channel before any proof).

use std::process::ExitCode;

use crate::cli::KeyArgs;
use crate::keys::EnvelopeKey;

/// Runs the command.
pub fn run(args: &KeyArgs) -> ExitCode {
    match EnvelopeKey::load_or_create(args.signing_key.as_deref(), args.key_dir.as_deref()) {
        Ok(key) => {
            if args.json {
                let doc = serde_json::json!({
                    "public_key": key.public_key_hex(),
                    "source": key.source().to_string(),
                });
                println!("{doc}");
            } else {
                println!("public_key: {}", key.public_key_hex());
                println!("source:     {}", key.source());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
