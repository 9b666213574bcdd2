//! The Arweave edge: ANS-104 data items, the wallets that sign them, the Turbo upload client and
//! gateway reads (spec/arweave-turbo.md). Proofs leave through [`turbo`] and come back through
//! [`gateway`]; [`data_item`] is pure and shared with `devnet`, which checks items as Turbo would.

pub mod data_item;
pub mod deep_hash;
pub mod gateway;
pub mod http;
pub mod receipt;
pub mod signer;
pub mod tags;
pub mod turbo;
pub mod wallet;

pub use data_item::{DataItem, DataItemError};
pub use gateway::{Gateway, GatewayReader};
pub use receipt::Receipt;
pub use signer::{ItemSigner, SignatureType};
pub use tags::Tag;
pub use turbo::{TurboClient, TurboConfig, TurboError, UploadOutcome};
pub use wallet::Wallet;
