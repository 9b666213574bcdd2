//! The envelope key held by a PKCS#11 token (`ARIO_MLFLOW_SIGNER=pkcs11`): SoftHSM, YubiHSM,
//! Thales Luna, AWS CloudHSM, Google Cloud KMS through its PKCS#11 library — any module whose
//! token signs `CKM_EDDSA` with an Ed25519 (`CKK_EC_EDWARDS`) key.
//!
//! * The private key never leaves the token; the public key is read from the token's public
//!   object of the same label, and the pair is checked by one signature at start.
//! * Sessions are pooled: one per signature in flight, each logged in, kept for the next. A
//!   session that fails is dropped; the next signature looks the token up by label again and
//!   opens a new one — a token removed and put back (or moved to another slot) is picked up
//!   without a restart, and while it is away signing fails *transiently* (the job waits).
//! * Every signature is verified against the public key read at start before it is returned:
//!   a token swapped under the same labels cannot make this process publish a proof signed by
//!   another key (that is a permanent failure: the job parks, naming it).
//! * The PIN is held as a secret string: never logged, never in an error or in `Debug`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};

use crate::proof::{EnvelopeSigner, SignerFailure};

/// Idle sessions kept for the next signatures (more are opened under load, then closed).
const POOL: usize = 4;

/// The message signed once at start to check that the private key is the public key's.
const PAIR_CHECK: &[u8] = b"ario-mlflow-worker: PKCS#11 key pair check";

/// Where the key is: the module, the token and key labels, and the user PIN.
pub struct Pkcs11Config {
    /// Path of the PKCS#11 module (`ARIO_MLFLOW_PKCS11_MODULE`), e.g.
    /// `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The token's label (`ARIO_MLFLOW_PKCS11_TOKEN`).
    pub token: String,
    /// The key's label (`ARIO_MLFLOW_PKCS11_KEY`): its private and public objects.
    pub key: String,
    /// The user PIN (`ARIO_MLFLOW_PKCS11_PIN` or `…_PIN_FILE`).
    pub pin: AuthPin,
}

impl std::fmt::Debug for Pkcs11Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Config")
            .field("module", &self.module)
            .field("token", &self.token)
            .field("key", &self.key)
            .field("pin", &"<redacted>")
            .finish()
    }
}

/// Why the token's key cannot be used (at start: `run` exits 2 naming it).
#[derive(Debug, thiserror::Error)]
pub enum Pkcs11Error {
    /// The module cannot be loaded or initialised.
    #[error("cannot load the PKCS#11 module {module}: {cause} (ARIO_MLFLOW_PKCS11_MODULE)")]
    Module {
        /// The module path.
        module: PathBuf,
        /// What the loader said.
        cause: String,
    },
    /// No token with that label is present.
    #[error("no PKCS#11 token labelled {token:?} is present (tokens: {present}; ARIO_MLFLOW_PKCS11_TOKEN)")]
    NoToken {
        /// The label asked for.
        token: String,
        /// The labels present.
        present: String,
    },
    /// The token refused the PIN.
    #[error("the PKCS#11 token {token:?} refused the login: {cause} (ARIO_MLFLOW_PKCS11_PIN / _PIN_FILE)")]
    Login {
        /// The token.
        token: String,
        /// The token's answer (never the PIN).
        cause: String,
    },
    /// No usable key object under the label.
    #[error("PKCS#11 token {token:?}: {what} labelled {key:?} (ARIO_MLFLOW_PKCS11_KEY; an Ed25519 key pair: CKK_EC_EDWARDS, e.g. `pkcs11-tool --keypairgen --key-type EC:edwards25519 --label {key}`)")]
    NoKey {
        /// The token.
        token: String,
        /// The label.
        key: String,
        /// What is missing (`no Ed25519 private key`, `2 private keys`, …).
        what: String,
    },
    /// The public object's point is not an Ed25519 key.
    #[error("PKCS#11 token {token:?}: the public key labelled {key:?} is not an Ed25519 point: {reason}")]
    PublicKey {
        /// The token.
        token: String,
        /// The label.
        key: String,
        /// Why.
        reason: String,
    },
    /// The private key does not sign for the public key of the same label.
    #[error("PKCS#11 token {token:?}: the private key labelled {key:?} does not sign for the public key of that label (two pairs under one label?)")]
    Mismatch {
        /// The token.
        token: String,
        /// The label.
        key: String,
    },
    /// Another call failed.
    #[error("PKCS#11 token {token:?}: {step}: {cause}")]
    Token {
        /// The token.
        token: String,
        /// The call (`open a session`, `sign`, …).
        step: &'static str,
        /// The module's answer.
        cause: String,
    },
}

impl Pkcs11Error {
    /// Whether the same call may succeed later without an operator: the token away, a session
    /// or device error. A refused PIN, a missing key, a wrong pair or module are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Pkcs11Error::NoToken { .. } => true,
            Pkcs11Error::Token { cause, .. } => cause.starts_with("transient: "),
            _ => false,
        }
    }
}

/// A logged-in session and the private key's handle in it.
struct Pooled {
    session: Session,
    key: ObjectHandle,
}

/// The key on the token, behind the [`EnvelopeSigner`] interface.
pub struct Pkcs11Signer {
    module: Arc<Module>,
    config: Pkcs11Config,
    public: [u8; 32],
    verifying: VerifyingKey,
}

/// A loaded PKCS#11 module, one per path for the process (PKCS#11 wants one initialisation per
/// application; dropping a context finalises the module under every session): its context and
/// every signer's idle sessions. When a token is not found — removed, or put back after SoftHSM
/// or a device stopped listing it — the module is finalised and initialised again, so the slot
/// list is read afresh; signing holds the read side, so no signature is in flight then.
struct Module {
    path: PathBuf,
    state: RwLock<ModuleState>,
}

struct ModuleState {
    /// `None` only when initialising it again failed (the next signature tries again).
    context: Option<Pkcs11>,
    /// Bumped by each re-initialisation.
    generation: u64,
    /// Idle sessions per (token, key) label.
    idle: Mutex<HashMap<(String, String), Vec<Pooled>>>,
}

impl ModuleState {
    /// The initialised context.
    fn context(&self, config: &Pkcs11Config) -> Result<&Pkcs11, Pkcs11Error> {
        self.context.as_ref().ok_or_else(|| Pkcs11Error::Token {
            token: config.token.clone(),
            step: "use the module",
            cause: "transient: the module could not be initialised again; retrying".into(),
        })
    }
}

impl Module {
    /// The module at `path`, loaded and initialised on first use.
    fn get(path: &Path) -> Result<Arc<Module>, CkError> {
        static MODULES: OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> = OnceLock::new();
        let mut modules = MODULES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(m) = modules.get(path) {
            return Ok(m.clone());
        }
        let module = Arc::new(Module {
            path: path.to_path_buf(),
            state: RwLock::new(ModuleState {
                context: Some(load(path)?),
                generation: 0,
                idle: Mutex::new(HashMap::new()),
            }),
        });
        modules.insert(path.to_path_buf(), module.clone());
        Ok(module)
    }

    /// Finalises and initialises the module again, unless another caller did since
    /// `generation` was seen.
    fn reinitialize(&self, generation: u64) -> Result<(), CkError> {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        if state.generation != generation {
            return Ok(());
        }
        // Every session goes first, then the last context handle (C_Finalize on drop).
        state.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
        state.context = None;
        state.generation += 1;
        state.context = Some(load(&self.path)?);
        tracing::info!(module = %self.path.display(), "pkcs11: module initialised again (the token list is read afresh)");
        Ok(())
    }
}

/// Loads and initialises the module.
fn load(path: &Path) -> Result<Pkcs11, CkError> {
    let c = Pkcs11::new(path)?;
    match c.initialize(CInitializeArgs::OsThreads) {
        Ok(()) | Err(CkError::AlreadyInitialized) => Ok(c),
        Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(c),
        Err(e) => Err(e),
    }
}

impl std::fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("config", &self.config)
            .field("public_key", &hex::encode(self.public))
            .finish()
    }
}

impl Pkcs11Signer {
    /// Loads the module, finds the token and the key pair, and checks the pair with one
    /// signature.
    pub fn open(config: Pkcs11Config) -> Result<Pkcs11Signer, Pkcs11Error> {
        let module = Module::get(&config.module).map_err(|e| Pkcs11Error::Module {
            module: config.module.clone(),
            cause: e.to_string(),
        })?;
        let public = {
            let state = module.state.read().unwrap_or_else(|p| p.into_inner());
            let pooled = open_session(state.context(&config)?, &config)?;
            let public = read_public(&pooled.session, &config)?;
            give_back(&state, &config, pooled);
            public
        };
        let verifying = VerifyingKey::from_bytes(&public).map_err(|e| Pkcs11Error::PublicKey {
            token: config.token.clone(),
            key: config.key.clone(),
            reason: e.to_string(),
        })?;
        let signer = Pkcs11Signer {
            module,
            config,
            public,
            verifying,
        };
        match signer.sign_message(PAIR_CHECK) {
            Ok(_) => Ok(signer),
            Err(f) if f.message.contains("does not verify") => Err(Pkcs11Error::Mismatch {
                token: signer.config.token.clone(),
                key: signer.config.key.clone(),
            }),
            Err(f) => Err(Pkcs11Error::Token {
                token: signer.config.token.clone(),
                step: "sign the pair check",
                cause: f.message,
            }),
        }
    }

    fn failure(&self, message: String, transient: bool) -> SignerFailure {
        SignerFailure {
            message: format!("PKCS#11 token {:?}: {message}", self.config.token),
            transient,
        }
    }
}

impl EnvelopeSigner for Pkcs11Signer {
    fn public_key(&self) -> [u8; 32] {
        self.public
    }

    fn sign_message(&self, message: &[u8]) -> Result<[u8; 64], SignerFailure> {
        let mechanism = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
        // A pooled session may have died with the token (removed, reset), and a token put back
        // may need the module initialised again to be listed: one more try after that.
        let mut tries = 0;
        loop {
            tries += 1;
            let state = self.module.state.read().unwrap_or_else(|p| p.into_inner());
            let generation = state.generation;
            let taken = take(&state, &self.config);
            let (pooled, attempt) = match taken {
                Ok(pooled) => {
                    let signed = pooled.session.sign(&mechanism, pooled.key, message);
                    (
                        Some(pooled),
                        signed.map_err(|e| (transient(&e), e.to_string())),
                    )
                }
                Err(e) => (None, Err((e.is_transient(), e.to_string()))),
            };
            match attempt {
                Ok(bytes) => {
                    let Ok(signature) = <[u8; 64]>::try_from(bytes.as_slice()) else {
                        return Err(self.failure(
                            format!("the token answered a {}-byte signature", bytes.len()),
                            false,
                        ));
                    };
                    if self
                        .verifying
                        .verify(message, &Signature::from_bytes(&signature))
                        .is_err()
                    {
                        return Err(self.failure(
                            format!(
                                "the signature does not verify under the public key {} read at start (the key labelled {:?} changed?); nothing was signed with another key",
                                hex::encode(self.public),
                                self.config.key
                            ),
                            false,
                        ));
                    }
                    if let Some(pooled) = pooled {
                        give_back(&state, &self.config, pooled);
                    }
                    return Ok(signature);
                }
                Err((transient, cause)) => {
                    drop(pooled);
                    drop(state);
                    if transient && tries < 2 {
                        tracing::debug!(error = %cause, "pkcs11: signing failed; initialising the module again and retrying once");
                        if let Err(e) = self.module.reinitialize(generation) {
                            return Err(
                                self.failure(format!("initialise the module again: {e}"), true)
                            );
                        }
                        continue;
                    }
                    return Err(self.failure(cause, transient));
                }
            }
        }
    }
}

/// An idle session of `config`'s key, or a new one.
fn take(state: &ModuleState, config: &Pkcs11Config) -> Result<Pooled, Pkcs11Error> {
    let idle = state
        .idle
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_mut(&(config.token.clone(), config.key.clone()))
        .and_then(Vec::pop);
    match idle {
        Some(p) => Ok(p),
        None => open_session(state.context(config)?, config),
    }
}

/// Keeps a session for the next signature (up to [`POOL`] per key).
fn give_back(state: &ModuleState, config: &Pkcs11Config, pooled: Pooled) {
    let mut idle = state.idle.lock().unwrap_or_else(|p| p.into_inner());
    let sessions = idle
        .entry((config.token.clone(), config.key.clone()))
        .or_default();
    if sessions.len() < POOL {
        sessions.push(pooled);
    }
}

/// `CKA_EC_PARAMS` of Ed25519 as RFC 8410 tokens name the curve: the printable string
/// `edwards25519` (what SoftHSM and OpenSC write).
const ED25519_PARAMS: &[u8] = b"\x13\x0cedwards25519";

/// Imports the Ed25519 key of `seed` into the token as a non-extractable key pair labelled
/// `config.key` (a key kept until now in a file moves into the HSM without a rotation: the
/// same public key, the same signatures). Refuses when the label is taken. Returns the public
/// key, checked by a signature through the token.
pub fn import(config: Pkcs11Config, seed: &[u8; 32]) -> Result<[u8; 32], Pkcs11Error> {
    let public = ed25519_dalek::SigningKey::from_bytes(seed)
        .verifying_key()
        .to_bytes();
    {
        let module = Module::get(&config.module).map_err(|e| Pkcs11Error::Module {
            module: config.module.clone(),
            cause: e.to_string(),
        })?;
        let state = module.state.read().unwrap_or_else(|p| p.into_inner());
        let context = state.context(&config)?;
        let slot = find_slot(context, &config)?;
        let session = context
            .open_rw_session(slot)
            .map_err(|e| token_error(&config, "open a read-write session", e))?;
        match session.login(UserType::User, Some(&config.pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => {
                return Err(Pkcs11Error::Login {
                    token: config.token.clone(),
                    cause: e.to_string(),
                })
            }
        }
        let taken = session
            .find_objects(&[Attribute::Label(config.key.as_bytes().to_vec())])
            .map_err(|e| token_error(&config, "look the label up", e))?;
        if !taken.is_empty() {
            return Err(Pkcs11Error::NoKey {
                token: config.token.clone(),
                key: config.key.clone(),
                what: format!(
                    "{} objects already (import under a new label; nothing was written)",
                    taken.len()
                ),
            });
        }
        let label = Attribute::Label(config.key.as_bytes().to_vec());
        let mut point = vec![0x04, 0x20];
        point.extend_from_slice(&public);
        session
            .create_object(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::EC_EDWARDS),
                Attribute::Token(true),
                Attribute::Verify(true),
                Attribute::EcParams(ED25519_PARAMS.to_vec()),
                Attribute::EcPoint(point),
                label.clone(),
            ])
            .map_err(|e| token_error(&config, "write the public key", e))?;
        session
            .create_object(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::KeyType(KeyType::EC_EDWARDS),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::EcParams(ED25519_PARAMS.to_vec()),
                Attribute::Value(seed.to_vec()),
                label,
            ])
            .map_err(|e| token_error(&config, "write the private key", e))?;
    }
    let signer = Pkcs11Signer::open(config)?;
    Ok(signer.public_key())
}

/// Errors that may pass without an operator: the token away, a session or device lost.
fn transient(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::SessionCount
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::DeviceMemory
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::UserNotLoggedIn
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid
                | RvError::FunctionFailed
                | RvError::GeneralError
                | RvError::SlotIdInvalid,
            _
        )
    )
}

fn token_error(config: &Pkcs11Config, step: &'static str, e: CkError) -> Pkcs11Error {
    let cause = if transient(&e) {
        format!("transient: {e}")
    } else {
        e.to_string()
    };
    Pkcs11Error::Token {
        token: config.token.clone(),
        step,
        cause,
    }
}

/// The slot of the token labelled `config.token`, looked up now.
fn find_slot(context: &Pkcs11, config: &Pkcs11Config) -> Result<Slot, Pkcs11Error> {
    let slots = context
        .get_slots_with_token()
        .map_err(|e| token_error(config, "list the slots", e))?;
    let mut present = Vec::new();
    for slot in slots {
        let Ok(info) = context.get_token_info(slot) else {
            continue;
        };
        let label = info.label().trim_end().to_string();
        if label == config.token {
            return Ok(slot);
        }
        present.push(format!("{label:?}"));
    }
    Err(Pkcs11Error::NoToken {
        token: config.token.clone(),
        present: if present.is_empty() {
            "none".into()
        } else {
            present.join(", ")
        },
    })
}

/// A read-only session on the token, logged in, with the private key found.
fn open_session(context: &Pkcs11, config: &Pkcs11Config) -> Result<Pooled, Pkcs11Error> {
    let slot = find_slot(context, config)?;
    let session = context
        .open_ro_session(slot)
        .map_err(|e| token_error(config, "open a session", e))?;
    match session.login(UserType::User, Some(&config.pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
        Err(e) if transient(&e) => return Err(token_error(config, "log in", e)),
        Err(e) => {
            return Err(Pkcs11Error::Login {
                token: config.token.clone(),
                cause: e.to_string(),
            })
        }
    }
    let key = only_object(&session, config, ObjectClass::PRIVATE_KEY, "private key")?;
    Ok(Pooled { session, key })
}

/// The one Ed25519 object of `class` labelled `config.key`.
fn only_object(
    session: &Session,
    config: &Pkcs11Config,
    class: ObjectClass,
    what: &str,
) -> Result<ObjectHandle, Pkcs11Error> {
    let found = session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::KeyType(KeyType::EC_EDWARDS),
            Attribute::Label(config.key.as_bytes().to_vec()),
        ])
        .map_err(|e| token_error(config, "find the key", e))?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(Pkcs11Error::NoKey {
            token: config.token.clone(),
            key: config.key.clone(),
            what: format!("no Ed25519 {what}"),
        }),
        many => Err(Pkcs11Error::NoKey {
            token: config.token.clone(),
            key: config.key.clone(),
            what: format!("{} Ed25519 {what}s (one expected)", many.len()),
        }),
    }
}

/// The 32-byte public key of the pair: the public object's `CKA_EC_POINT` (a DER OCTET STRING
/// around the point, as PKCS#11 3.0 says, or the raw point some modules return).
fn read_public(session: &Session, config: &Pkcs11Config) -> Result<[u8; 32], Pkcs11Error> {
    let handle = only_object(session, config, ObjectClass::PUBLIC_KEY, "public key")?;
    let attributes = session
        .get_attributes(handle, &[AttributeType::EcPoint])
        .map_err(|e| token_error(config, "read the public key", e))?;
    let point = attributes.into_iter().find_map(|a| match a {
        Attribute::EcPoint(p) => Some(p),
        _ => None,
    });
    let bad = |reason: String| Pkcs11Error::PublicKey {
        token: config.token.clone(),
        key: config.key.clone(),
        reason,
    };
    let point = point.ok_or_else(|| bad("it has no CKA_EC_POINT".into()))?;
    ed25519_point(&point)
        .ok_or_else(|| bad(format!("{} bytes: {}", point.len(), hex::encode(&point))))
}

/// `04 20 <32 bytes>` (DER OCTET STRING) or the 32 bytes themselves.
fn ed25519_point(bytes: &[u8]) -> Option<[u8; 32]> {
    match bytes {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest.try_into().ok(),
        raw if raw.len() == 32 => raw.try_into().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_point_is_read_wrapped_or_raw_and_nothing_else() {
        let point = [7u8; 32];
        let mut wrapped = vec![0x04, 0x20];
        wrapped.extend_from_slice(&point);
        assert_eq!(ed25519_point(&wrapped), Some(point));
        assert_eq!(ed25519_point(&point), Some(point));
        assert_eq!(ed25519_point(&wrapped[..33]), None);
        assert_eq!(ed25519_point(&[0x04, 0x21, 1, 2]), None);
    }

    #[test]
    fn the_pin_is_never_in_debug() {
        let config = Pkcs11Config {
            module: "/nowhere.so".into(),
            token: "t".into(),
            key: "k".into(),
            pin: AuthPin::new("s3cret-pin".into()),
        };
        assert!(!format!("{config:?}").contains("s3cret"));
        let e = Pkcs11Signer::open(config).unwrap_err();
        assert!(matches!(e, Pkcs11Error::Module { .. }), "{e}");
        assert!(!e.to_string().contains("s3cret"));
        assert!(!e.is_transient());
    }
}
