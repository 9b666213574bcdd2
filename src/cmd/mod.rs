//! One file per command: each owns its clap arguments, takes them parsed and returns the process
//! exit status. `crate::cli` only composes them; nothing here imports it. Flag groups shared
//! by several commands live in [`connect`].

pub mod anchor;
pub mod connect;
pub mod devnet;
pub mod error;
pub mod export;
pub mod feed;
pub mod fetch;
pub mod guard;
pub mod keys_rotate;
pub mod keys_show;
pub mod retry;
pub mod run;
pub mod settings;
pub mod signer;
pub mod status;
pub mod surface;
pub mod upload;
pub mod verify;
pub mod verify_envelope;
pub mod wallet_show;
pub mod webhook;
pub mod worker;
