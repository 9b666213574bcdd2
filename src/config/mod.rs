//! The configuration file (`--config FILE` / `ARIO_MLFLOW_CONFIG`, TOML): every flag has a key,
//! and precedence is flag > environment > file > built-in default.
//!
//! The file is applied to the clap command before parsing, as the defaults of the arguments it
//! names, so clap itself keeps the order (a flag wins over its environment variable, which wins
//! over a default) and every value goes through the same parser as on the command line.
//!
//! Keys are the long flag names with `_` or `-` (`poll_interval`, `tracking-uri`). A table
//! groups keys under a prefix: `[kafka] brokers = …` is `kafka_brokers`; the keys of the
//! grouping tables `[mlflow]`, `[server]`, `[arweave]`, `[service]` are taken as written
//! (`[mlflow] tracking_uri`). Repeatable flags take arrays.
//! A key no command has, and a value its flag would refuse, is an error naming the key and the
//! file; a key of another command (e.g. `poll_interval` for `status`) is ignored, so one file
//! serves every command.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command};

mod reference;
pub use reference::reference;

/// The environment variable naming the file.
pub const CONFIG_ENV: &str = "ARIO_MLFLOW_CONFIG";

/// A bad configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the config file {path}: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        cause: std::io::Error,
    },
    /// Not TOML.
    #[error("config file {path}: not valid TOML: {cause}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// Cause.
        cause: String,
    },
    /// A key no command has.
    #[error("config file {path}: unknown key `{key}` (keys are the long flag names, e.g. `poll_interval` or `[kafka] brokers`; `ario-mlflow-worker config check` prints them)")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key as written.
        key: String,
    },
    /// A value the flag refuses.
    #[error("config file {path}: key `{key}`: {cause}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key as written.
        key: String,
        /// What the flag's parser said.
        cause: String,
    },
    /// `config check` of a command that does not exist.
    #[error("no command `{0}`")]
    NoCommand(String),
    /// `config check` of a command whose required settings are not all given.
    #[error("the configuration of `{command}` is not complete: {cause}")]
    Incomplete {
        /// The command.
        command: String,
        /// What clap said is missing.
        cause: String,
    },
}

/// What a flag's own parser said about a value from the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
struct Refusal(String);

/// Where the file is: `--config FILE` / `--config=FILE` anywhere in `argv`, else
/// `ARIO_MLFLOW_CONFIG`.
pub fn locate(argv: &[OsString]) -> Option<PathBuf> {
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        if a == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    std::env::var_os(CONFIG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Tables whose keys are taken as they are written (`[mlflow] tracking_uri`); any other table
/// is a prefix (`[kafka] brokers` → `kafka_brokers`).
pub const GROUPING_TABLES: [&str; 4] = ["mlflow", "server", "arweave", "service"];

/// Tables that are not flags: `[guard]` is the guard's assets policy (`guard::policy`), which
/// checks its own keys.
pub const RESERVED_TABLES: [&str; 1] = ["guard"];

/// One key of the file, resolved to an argument id.
#[derive(Debug, Clone)]
struct Setting {
    written: String,
    values: Vec<String>,
}

/// Reads `path` and applies it to `cmd` as argument defaults.
pub fn apply(cmd: Command, path: &Path) -> Result<Command, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
        path: path.to_path_buf(),
        cause,
    })?;
    warn_if_readable_secrets(path, &text);
    let settings = settings(&cmd, path, &text)?;
    validate(&cmd, path, &settings)?;
    Ok(apply_settings(cmd, &settings))
}

/// The file's keys, resolved to argument ids.
fn settings(
    cmd: &Command,
    path: &Path,
    text: &str,
) -> Result<BTreeMap<String, Setting>, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Toml {
            path: path.to_path_buf(),
            cause: e.to_string(),
        })?;
    let ids = all_ids(cmd);
    let mut out = BTreeMap::new();
    let bad = |key: &str, cause: String| ConfigError::BadValue {
        path: path.to_path_buf(),
        key: key.to_string(),
        cause,
    };
    let mut put = |written: String, candidates: Vec<String>, value: &toml::Value| {
        let Some(id) = candidates.into_iter().find_map(|c| ids.get(&c).cloned()) else {
            return Err(ConfigError::UnknownKey {
                path: path.to_path_buf(),
                key: written,
            });
        };
        let values = match value {
            toml::Value::Array(items) => items
                .iter()
                .map(|v| {
                    scalar(v).ok_or_else(|| {
                        bad(
                            &written,
                            "array items must be strings, numbers or booleans".into(),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            v => vec![scalar(v).ok_or_else(|| {
                bad(
                    &written,
                    "must be a string, number, boolean or array".into(),
                )
            })?],
        };
        out.insert(id, Setting { written, values });
        Ok(())
    };
    for (key, value) in &table {
        if RESERVED_TABLES.contains(&key.as_str()) {
            continue;
        }
        let norm = key.replace('-', "_");
        match value {
            toml::Value::Table(inner) => {
                for (k, v) in inner {
                    let k_norm = k.replace('-', "_");
                    if v.is_table() {
                        return Err(ConfigError::UnknownKey {
                            path: path.to_path_buf(),
                            key: format!("{key}.{k}"),
                        });
                    }
                    let mut candidates = vec![format!("{norm}_{k_norm}")];
                    if GROUPING_TABLES.contains(&norm.as_str()) {
                        candidates.push(k_norm.clone());
                    }
                    put(format!("{key}.{k}"), candidates, v)?;
                }
            }
            v => put(key.clone(), vec![norm], v)?,
        }
    }
    Ok(out)
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Every key the file may use — each argument's id and its long flag name with `_` — mapped to
/// the argument id, over every command (globals included), minus clap's own.
fn all_ids(cmd: &Command) -> BTreeMap<String, String> {
    fn walk(cmd: &Command, ids: &mut BTreeMap<String, String>) {
        for a in cmd.get_arguments() {
            if is_setting(a) {
                let id = a.get_id().to_string();
                if let Some(long) = a.get_long() {
                    ids.insert(long.replace('-', "_"), id.clone());
                }
                ids.insert(id.clone(), id);
            }
        }
        for sc in cmd.get_subcommands() {
            walk(sc, ids);
        }
    }
    let mut ids = BTreeMap::new();
    walk(cmd, &mut ids);
    ids
}

fn is_setting(a: &Arg) -> bool {
    let id = a.get_id().as_str();
    !matches!(id, "help" | "version" | "config") && !a.is_positional()
}

/// Runs each value through the parser of every argument with that id (so a value is refused
/// with the flag's own message).
fn validate(
    cmd: &Command,
    path: &Path,
    settings: &BTreeMap<String, Setting>,
) -> Result<(), ConfigError> {
    fn walk(
        cmd: &Command,
        path: &Path,
        settings: &BTreeMap<String, Setting>,
    ) -> Result<(), ConfigError> {
        for a in cmd.get_arguments() {
            let Some(s) = settings.get(a.get_id().as_str()) else {
                continue;
            };
            let multiple = takes_many(a);
            if s.values.len() > 1 && !multiple {
                return Err(ConfigError::BadValue {
                    path: path.to_path_buf(),
                    key: s.written.clone(),
                    cause: "takes one value, not an array".into(),
                });
            }
            if let Err(cause) = probe(cmd, a, &s.values) {
                return Err(ConfigError::BadValue {
                    path: path.to_path_buf(),
                    key: s.written.clone(),
                    cause: cause.to_string(),
                });
            }
        }
        for sc in cmd.get_subcommands() {
            walk(sc, path, settings)?;
        }
        Ok(())
    }
    walk(cmd, path, settings)
}

/// Parses `--flag value…` with the command the argument belongs to, so the value meets the
/// flag's own parser; only errors about the value count (not a missing required argument).
fn probe(cmd: &Command, a: &Arg, values: &[String]) -> Result<(), Refusal> {
    use clap::error::ErrorKind;
    let Some(long) = a.get_long() else {
        return Ok(());
    };
    let mut argv: Vec<String> = vec![cmd.get_name().to_string()];
    if matches!(a.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        match values.first().map(String::as_str) {
            Some("true") => argv.push(format!("--{long}")),
            Some("false") => {}
            other => return Err(Refusal(format!("must be true or false, not {other:?}"))),
        }
    } else {
        for v in values {
            argv.push(format!("--{long}={v}"));
        }
    }
    match cmd.clone().try_get_matches_from(argv) {
        Ok(_) => Ok(()),
        Err(e) => match e.kind() {
            ErrorKind::MissingRequiredArgument
            | ErrorKind::MissingSubcommand
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            | ErrorKind::ArgumentConflict
            | ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion => Ok(()),
            _ => Err(Refusal(
                e.to_string()
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim_start_matches("error: ")
                    .to_string(),
            )),
        },
    }
}

fn takes_many(a: &Arg) -> bool {
    matches!(a.get_action(), ArgAction::Append)
        || a.get_num_args().is_some_and(|n| n.max_values() > 1)
        || a.get_value_delimiter().is_some()
}

fn apply_settings(cmd: Command, settings: &BTreeMap<String, Setting>) -> Command {
    let ids: Vec<String> = cmd
        .get_arguments()
        .filter(|a| settings.contains_key(a.get_id().as_str()))
        .map(|a| a.get_id().to_string())
        .collect();
    let mut cmd = cmd;
    for id in ids {
        let values = settings[&id].values.clone();
        cmd = cmd.mut_arg(id.as_str(), move |a| {
            let a = a.required(false);
            if values.len() == 1 {
                a.default_value(values[0].clone())
            } else {
                a.default_values(values)
            }
        });
    }
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|sc| sc.get_name().to_string())
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(name.as_str(), |sc| apply_settings(sc, settings));
    }
    cmd
}

/// Whether an argument holds a secret (its environment value is hidden in `--help`).
fn is_secret(a: &Arg) -> bool {
    a.is_hide_env_values_set()
}

/// Secrets in a file others can read: say so (the value itself is never printed).
fn warn_if_readable_secrets(path: &Path, text: &str) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    #[cfg(unix)]
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        use std::os::unix::fs::PermissionsExt;
        let secretish = [
            "signing_key",
            "password",
            "token",
            "webhook_secret",
            "pkcs11_pin",
        ];
        let has = text.lines().any(|l| {
            secretish
                .iter()
                .any(|s| l.trim_start().replace('-', "_").starts_with(s))
        });
        if has {
            if let Ok(meta) = std::fs::metadata(path) {
                if meta.permissions().mode() & 0o077 != 0 {
                    eprintln!(
                        "warning: config file {} holds a secret and is readable by others (chmod 600 it, or pass secrets through the environment)",
                        path.display()
                    );
                }
            }
        }
    }
}

/// `config check`: the effective configuration of `command` (from the environment and the
/// file; no other flags), as TOML with where each value came from, secrets redacted.
pub fn check(cmd: Command, config: Option<&Path>, command: &str) -> Result<String, ConfigError> {
    let (cmd, from_file) = match config {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|cause| ConfigError::Read {
                path: p.to_path_buf(),
                cause,
            })?;
            let ids: std::collections::BTreeSet<String> =
                settings(&cmd, p, &text)?.into_keys().collect();
            (apply(cmd, p)?, ids)
        }
        None => (cmd, Default::default()),
    };
    let mut cmd = cmd;
    cmd.build();
    let sub = cmd
        .find_subcommand(command)
        .cloned()
        .ok_or_else(|| ConfigError::NoCommand(command.to_string()))?;
    let matches =
        sub.clone()
            .try_get_matches_from([command])
            .map_err(|e| ConfigError::Incomplete {
                command: command.to_string(),
                cause: e.to_string().lines().next().unwrap_or("").to_string(),
            })?;
    let mut out = format!(
        "# effective configuration of `{command}` — flag > environment > {} > default\n",
        config
            .map(|p| format!("file {}", p.display()))
            .unwrap_or_else(|| "(no config file)".into())
    );
    for a in sub.get_arguments().filter(|a| is_setting(a)) {
        let id = a.get_id().as_str();
        let raw: Vec<String> = matches
            .get_raw(id)
            .map(|vs| vs.map(|v| v.to_string_lossy().to_string()).collect())
            .unwrap_or_default();
        let source = match matches.value_source(id) {
            Some(clap::parser::ValueSource::EnvVariable) => format!(
                "env {}",
                a.get_env()
                    .map(|e| e.to_string_lossy().to_string())
                    .unwrap_or_default()
            ),
            Some(clap::parser::ValueSource::DefaultValue) => {
                if from_file.contains(id) {
                    "file".into()
                } else {
                    "default".into()
                }
            }
            Some(clap::parser::ValueSource::CommandLine) => "flag".into(),
            _ => "unset".into(),
        };
        let shown = |v: &str| {
            if is_secret(a) {
                "\"<redacted>\"".to_string()
            } else {
                toml::Value::String(v.to_string()).to_string()
            }
        };
        let value = match raw.len() {
            0 => "# unset".to_string(),
            1 if !takes_many(a) => shown(&raw[0]),
            _ => format!(
                "[{}]",
                raw.iter().map(|v| shown(v)).collect::<Vec<_>>().join(", ")
            ),
        };
        let key = a
            .get_long()
            .map(|l| l.replace('-', "_"))
            .unwrap_or_else(|| id.to_string());
        if raw.is_empty() {
            out.push_str(&format!("# {key} (unset)\n"));
        } else if is_secret(a) {
            // Commented out: the output stays a config file that loads (a `<redacted>` value
            // would be taken as the secret).
            out.push_str(&format!("# {key} = {value}  # {source}\n"));
        } else {
            out.push_str(&format!("{key} = {value}  # {source}\n"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Demo {
        #[command(subcommand)]
        cmd: Sub,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Sub {
        Run {
            #[arg(long, default_value_t = 5.0)]
            poll_interval: f64,
            #[arg(long, env = "DEMO_CONFIG_BROKERS")]
            kafka_brokers: Option<String>,
            #[arg(long = "model")]
            models: Vec<String>,
            #[arg(long)]
            dry_run: bool,
        },
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    fn parse(cmd: Command, argv: &[&str]) -> Demo {
        use clap::FromArgMatches;
        Demo::from_arg_matches(&cmd.try_get_matches_from(argv).unwrap()).unwrap()
    }

    #[test]
    fn file_values_are_defaults_under_flags() {
        use clap::CommandFactory;
        let f = file("poll_interval = 2.5\ndry_run = true\n[kafka]\nbrokers = \"b:9092\"\n[x]\nmodel = [\"a\", \"b\"]\n");
        let err = apply(Demo::command(), f.path()).unwrap_err().to_string();
        assert!(err.contains("unknown key `x.model`"), "{err}");
        let f = file("poll_interval = 2.5\ndry-run = true\nmodel = [\"a\", \"b\"]\n[kafka]\nbrokers = \"b:9092\"\n");
        let cmd = apply(Demo::command(), f.path()).unwrap();
        let Sub::Run {
            poll_interval,
            kafka_brokers,
            models,
            dry_run,
        } = parse(cmd.clone(), &["demo", "run"]).cmd;
        assert_eq!(
            (poll_interval, kafka_brokers.as_deref(), models, dry_run),
            (
                2.5,
                Some("b:9092"),
                vec!["a".to_string(), "b".to_string()],
                true
            )
        );
        let Sub::Run { poll_interval, .. } =
            parse(cmd, &["demo", "run", "--poll-interval", "9"]).cmd;
        assert_eq!(poll_interval, 9.0, "a flag wins over the file");
    }

    #[test]
    fn bad_values_and_unknown_keys_name_the_key_and_the_file() {
        use clap::CommandFactory;
        let f = file("poll_interval = \"soon\"\n");
        let err = apply(Demo::command(), f.path()).unwrap_err().to_string();
        assert!(
            err.contains("key `poll_interval`") && err.contains(&f.path().display().to_string()),
            "{err}"
        );
        let f = file("poll_intervall = 1\n");
        let err = apply(Demo::command(), f.path()).unwrap_err().to_string();
        assert!(err.contains("unknown key `poll_intervall`"), "{err}");
        let f = file("poll_interval = [1, 2]\n");
        assert!(apply(Demo::command(), f.path())
            .unwrap_err()
            .to_string()
            .contains("one value"));
        let f = file("not toml at all = = \n");
        assert!(matches!(
            apply(Demo::command(), f.path()),
            Err(ConfigError::Toml { .. })
        ));
    }

    #[test]
    fn the_file_is_found_by_flag_then_environment() {
        let argv: Vec<OsString> = ["w", "run", "--config=/etc/ario.toml"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(locate(&argv), Some(PathBuf::from("/etc/ario.toml")));
        let argv: Vec<OsString> = ["w", "--config", "a.toml", "run"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(locate(&argv), Some(PathBuf::from("a.toml")));
    }
}
