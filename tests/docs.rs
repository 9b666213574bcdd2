//! The documentation cannot drift from the code: the configuration reference is the output of
//! `config reference`, every environment variable the code reads is documented, the README stays
//! short, and every relative link in README.md and docs/ resolves.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_configuration_reference_is_generated_from_the_code() {
    let out = Command::new(env!("CARGO_BIN_EXE_ario-mlflow-worker"))
        .args(["config", "reference"])
        .env_remove("ARIO_MLFLOW_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let file = root().join("docs/configuration-reference.md");
    let written = read(&file);
    if generated != written {
        let first = generated
            .lines()
            .zip(written.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(generated.lines().count().min(written.lines().count()));
        panic!(
            "docs/configuration-reference.md differs from `config reference` (first at line {}):\n  code: {}\n  file: {}\nregenerate: cargo run -q -- config reference > docs/configuration-reference.md",
            first + 1,
            generated.lines().nth(first).unwrap_or("(end)"),
            written.lines().nth(first).unwrap_or("(end)")
        );
    }
}

/// Every `ARIO_MLFLOW_*` / `MLFLOW_*` name in the sources.
fn env_names_in_sources() -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = read(&path);
                for piece in text.split('"').skip(1).step_by(2) {
                    let is_name = (piece.starts_with("ARIO_MLFLOW_")
                        || piece.starts_with("MLFLOW_"))
                        && piece
                            .chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
                    // `MLFLOW_EXPERIMENT` is a trace-location type of MLflow's API, not a variable.
                    let is_name = is_name && !piece.ends_with('_') && piece != "MLFLOW_EXPERIMENT";
                    if is_name && !out.iter().any(|n| n == piece) {
                        out.push(piece.to_string());
                    }
                }
            }
        }
    }
    let mut names = Vec::new();
    walk(&root().join("src"), &mut names);
    names.sort();
    names
}

#[test]
fn every_environment_variable_the_code_reads_is_documented() {
    let docs: String = ["docs/configuration-reference.md", "docs/configuration.md"]
        .iter()
        .map(|f| read(&root().join(f)))
        .collect();
    let names = env_names_in_sources();
    assert!(names.len() > 40, "{names:?}");
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !docs.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "read by the code, in no configuration doc: {missing:?}"
    );
}

#[test]
fn the_readme_is_short_and_every_relative_link_resolves() {
    let readme = read(&root().join("README.md"));
    let lines = readme.lines().count();
    assert!(
        lines <= 200,
        "README.md has {lines} lines (at most 200: the rest goes to docs/)"
    );
    let mut files = vec![root().join("README.md")];
    for entry in std::fs::read_dir(root().join("docs")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "md") {
            files.push(entry.path());
        }
    }
    files.push(root().join("deploy/helm/ario-mlflow-worker/README.md"));
    let mut broken = Vec::new();
    for file in &files {
        let text = read(file);
        let dir = file.parent().unwrap();
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = &rest[..end];
            if target.starts_with("http")
                || target.starts_with('#')
                || target.starts_with("mailto:")
            {
                continue;
            }
            let path = target.split('#').next().unwrap_or("");
            if !path.is_empty() && !dir.join(path).exists() {
                broken.push(format!("{}: {target}", file.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:#?}");
}
