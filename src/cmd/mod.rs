//! One file per command: each takes its parsed arguments and returns the process exit status.

pub mod keys_show;
pub mod verify_envelope;
