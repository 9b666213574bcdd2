//! A real PKCS#11 token: Debian's SoftHSM2 (`softhsm2`, with OpenSC's `pkcs11-tool`), its
//! configuration and token directory in a temporary directory of the test's own
//! (`SOFTHSM2_CONF`), tokens initialised and keys generated with the vendors' own tools.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// SoftHSM's module on Debian.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// The user PIN of every test token.
pub const PIN: &str = "4711-test-pin";

/// A SoftHSM installation of the test's own.
pub struct Hsm {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
}

fn show(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Hsm {
    /// SoftHSM with an empty token directory; `None` (with a notice) where SoftHSM is not
    /// installed outside CI — under CI (`.ci/run` installs it) a missing SoftHSM fails.
    pub fn start() -> Option<Hsm> {
        if !Path::new(MODULE).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "SoftHSM2 is not installed ({MODULE}): .ci/run installs softhsm2 and opensc"
            );
            eprintln!("NOTICE: SoftHSM2 not installed; PKCS#11 test SKIPPED (CI installs it)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tokens")).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        Some(Hsm { dir, conf })
    }

    fn tool(&self, program: &str, args: &[&str]) -> Output {
        let out = Command::new(program)
            .args(args)
            .env("SOFTHSM2_CONF", &self.conf)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(out.status.success(), "{program} {args:?}: {}", show(&out));
        out
    }

    /// A new token labelled `label` (user PIN [`PIN`]); returns its directory.
    pub fn init_token(&self, label: &str) -> PathBuf {
        let before = self.token_dirs();
        self.tool(
            "softhsm2-util",
            &[
                "--init-token",
                "--free",
                "--label",
                label,
                "--pin",
                PIN,
                "--so-pin",
                "so-0815",
            ],
        );
        self.token_dirs()
            .into_iter()
            .find(|d| !before.contains(d))
            .expect("the new token's directory")
    }

    fn token_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path().join("tokens"))
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect()
    }

    /// An Ed25519 key pair generated inside token `token`, labelled `key` (it never leaves).
    pub fn generate(&self, token: &str, key: &str) {
        self.tool(
            "pkcs11-tool",
            &[
                "--module",
                MODULE,
                "--token-label",
                token,
                "--login",
                "--pin",
                PIN,
                "--keypairgen",
                "--key-type",
                "EC:edwards25519",
                "--label",
                key,
            ],
        );
    }

    /// Deletes the objects labelled `key` (private and public) from token `token`.
    pub fn delete(&self, token: &str, key: &str) {
        for kind in ["privkey", "pubkey"] {
            self.tool(
                "pkcs11-tool",
                &[
                    "--module",
                    MODULE,
                    "--token-label",
                    token,
                    "--login",
                    "--pin",
                    PIN,
                    "--delete-object",
                    "--type",
                    kind,
                    "--label",
                    key,
                ],
            );
        }
    }

    /// What a worker needs to sign with key `key` of token `token`: the PIN in a 0600 file.
    pub fn env(&self, token: &str, key: &str) -> Vec<(&'static str, String)> {
        let pin_file = self.dir.path().join("pin");
        std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        vec![
            ("SOFTHSM2_CONF", self.conf.display().to_string()),
            ("ARIO_MLFLOW_SIGNER", "pkcs11".into()),
            ("ARIO_MLFLOW_PKCS11_MODULE", MODULE.into()),
            ("ARIO_MLFLOW_PKCS11_TOKEN", token.into()),
            ("ARIO_MLFLOW_PKCS11_KEY", key.into()),
            (
                "ARIO_MLFLOW_PKCS11_PIN_FILE",
                pin_file.display().to_string(),
            ),
        ]
    }
}
