//! The module boundaries of `docs/architecture.md` ("who may import whom"), as a test.
//!
//! Every `.rs` file under `src/` belongs to the top-level module its path names
//! (`src/profile/training.rs` → `profile`, `src/event.rs` → `event`). The test reads each file's
//! `crate::…` paths — in `use` items and inline, grouped (`crate::{a, b::c}`) or not, in code and
//! in unit tests alike; never in comments, doc links or string literals — and fails naming the
//! file, the line and the rule when a module reaches a module its rule forbids.
//!
//! The rules are one table, [`RULES`], so a change of design is one edit here and one row in
//! the architecture page.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What one module may import of the crate.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// Nothing but these modules (itself is always allowed).
    Only(&'static [&'static str]),
    /// Anything but these modules.
    Never(&'static [&'static str]),
}

/// The table: module → what it may import. Modules not listed may import anything.
const RULES: &[(&str, Rule, &str)] = &[
    (
        "proof",
        Rule::Only(&[]),
        "the kernel is pure and stands alone",
    ),
    (
        "profile",
        Rule::Only(&["proof"]),
        "the profile is pure: values in, values out, over the kernel",
    ),
    (
        "event",
        Rule::Only(&["profile"]),
        "change events are plain identities every source and the store share",
    ),
    (
        "feed",
        Rule::Never(&["anchor", "arweave"]),
        "sources only detect; they never build, sign or upload",
    ),
    (
        "verify",
        Rule::Never(&["store", "anchor"]),
        "verification needs no state and shares the profile, not the anchorer",
    ),
    (
        "mlflow",
        Rule::Never(&["arweave", "anchor", "feed", "store"]),
        "the MLflow client is an edge",
    ),
    (
        "arweave",
        Rule::Never(&["mlflow", "anchor", "feed", "store"]),
        "the Arweave client is an edge",
    ),
    (
        "store",
        Rule::Only(&["event", "telemetry"]),
        "the store only remembers plain data: it talks to no service and never imports the \
         anchorer (a signed job's record, `store::prepared`, is its own)",
    ),
    (
        "service",
        Rule::Never(&["cmd", "cli"]),
        "the service runs on a typed configuration; commands parse flags and print",
    ),
    (
        "cmd",
        Rule::Never(&["cli"]),
        "commands own their arguments; cli only composes them",
    ),
    (
        "server",
        Rule::Never(&["anchor", "arweave", "mlflow", "cmd"]),
        "the listener serves state (the live stores' jobs for status, parked jobs re-queued for retry) and hands webhooks to the feed; it never anchors",
    ),
    (
        "telemetry",
        Rule::Only(&[]),
        "metric names stand alone, so every layer may record",
    ),
    (
        "config",
        Rule::Only(&[]),
        "the config file works on any clap command, knowing none of them",
    ),
    (
        "guard",
        Rule::Never(&["store", "feed", "server", "cmd"]),
        "it re-verifies and signs its own events; it keeps no job state and serves nothing itself",
    ),
];

/// One `crate::<module>` reference found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CrateRef {
    /// 1-based line number.
    line: usize,
    /// The top-level module referenced.
    module: String,
}

/// Removes comments and the contents of string and char literals, keeping line breaks, so what
/// is left is code only.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let keep_newlines = |out: &mut String, text: &[u8]| {
        for &c in text {
            if c == b'\n' {
                out.push('\n');
            }
        }
    };
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let start = i;
            let mut depth = 0usize;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            keep_newlines(&mut out, &b[start..i.min(b.len())]);
        } else if c == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            // Raw string r"…" / r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c as char);
                i += 1;
                continue;
            }
            let start = j;
            j += 1;
            'raw: while j < b.len() {
                if b[j] == b'"' && (0..hashes).all(|h| b.get(j + 1 + h) == Some(&b'#')) {
                    j += 1 + hashes;
                    break 'raw;
                }
                j += 1;
            }
            keep_newlines(&mut out, &b[start..j.min(b.len())]);
            out.push_str("\"\"");
            i = j;
        } else if c == b'"' {
            let start = i;
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            keep_newlines(&mut out, &b[start..i.min(b.len())]);
            out.push_str("\"\"");
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a): skip only the former.
            let rest = &b[i + 1..];
            let close = if rest.first() == Some(&b'\\') {
                rest.iter().skip(2).position(|&x| x == b'\'').map(|p| p + 2)
            } else {
                std::str::from_utf8(rest)
                    .ok()
                    .and_then(|s| s.chars().next())
                    .map(char::len_utf8)
                    .filter(|&n| rest.get(n) == Some(&b'\''))
            };
            match close {
                Some(n) => i += n + 2,
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            // Copy one UTF-8 character.
            let len = match c {
                0x00..=0x7f => 1,
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            out.push_str(std::str::from_utf8(&b[i..(i + len).min(b.len())]).unwrap_or(" "));
            i += len;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every `crate::<module>` reference in `src`, grouped imports expanded to their first names.
fn crate_refs(src: &str) -> Vec<CrateRef> {
    let code = code_only(src);
    let chars: Vec<char> = code.chars().collect();
    let line_of = |pos: usize| chars[..pos].iter().filter(|&&c| c == '\n').count() + 1;
    let mut out = Vec::new();
    let mut i = 0;
    while i + 7 <= chars.len() {
        let is_crate = chars[i..i + 7].iter().collect::<String>() == "crate::"
            && (i == 0 || !(is_ident(chars[i - 1]) || chars[i - 1] == '$'));
        if !is_crate {
            i += 1;
            continue;
        }
        let mut j = i + 7;
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        if chars.get(j) == Some(&'{') {
            // crate::{a, b::{c, d}, e}: the first name of each top-level segment.
            let mut depth = 0;
            let mut at_segment_start = true;
            let mut k = j;
            while k < chars.len() {
                match chars[k] {
                    '{' => {
                        depth += 1;
                        if depth == 1 {
                            at_segment_start = true;
                        }
                    }
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => at_segment_start = true,
                    c if depth == 1 && at_segment_start && is_ident(c) => {
                        let start = k;
                        while k < chars.len() && is_ident(chars[k]) {
                            k += 1;
                        }
                        out.push(CrateRef {
                            line: line_of(start),
                            module: chars[start..k].iter().collect(),
                        });
                        at_segment_start = false;
                        continue;
                    }
                    _ => {}
                }
                k += 1;
            }
            i = k;
        } else {
            let start = j;
            while j < chars.len() && is_ident(chars[j]) {
                j += 1;
            }
            if j > start {
                out.push(CrateRef {
                    line: line_of(start),
                    module: chars[start..j].iter().collect(),
                });
            }
            i = j;
        }
    }
    out
}

/// The top-level module a file under `src/` belongs to (`None` for `lib.rs`/`main.rs`).
fn module_of(src_dir: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src_dir).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_string())
}

/// What `module` breaks by importing `target`, if anything.
fn breach(module: &str, target: &str) -> Option<(Rule, &'static str)> {
    if module == target || target == "self" {
        return None;
    }
    let (_, rule, why) = RULES.iter().find(|(m, _, _)| *m == module)?;
    let forbidden = match rule {
        Rule::Only(allowed) => !allowed.contains(&target),
        Rule::Never(denied) => denied.contains(&target),
    };
    forbidden.then_some((*rule, *why))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// Every breach in `files`, as the lines a person reads.
fn breaches(src_dir: &Path, files: &[(PathBuf, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (path, text) in files {
        let Some(module) = module_of(src_dir, path) else {
            continue;
        };
        for r in crate_refs(text) {
            if let Some((rule, why)) = breach(&module, &r.module) {
                let allowed = match rule {
                    Rule::Only([]) => "nothing of the crate".to_string(),
                    Rule::Only(list) => format!("only {}", list.join(", ")),
                    Rule::Never(list) => format!("anything but {}", list.join(", ")),
                };
                found.push(format!(
                    "{}:{}: `{module}` imports `{}`, but `{module}` may import {allowed} ({why})",
                    path.strip_prefix(src_dir.parent().unwrap_or(src_dir))
                        .unwrap_or(path)
                        .display(),
                    r.line,
                    r.module,
                ));
            }
        }
    }
    found
}

#[test]
fn every_module_keeps_to_its_import_rules() {
    let src_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rust_files(&src_dir, &mut paths);
    let files: Vec<(PathBuf, String)> = paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            (p, text)
        })
        .collect();
    // The rules must name modules that exist, or a rename would make them vacuous.
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|(p, _)| module_of(&src_dir, p))
        .collect();
    for (module, rule, _) in RULES {
        assert!(
            modules.contains(*module),
            "the rules name `{module}`, which is not a module under src/ (update the table)"
        );
        let named = match rule {
            Rule::Only(list) | Rule::Never(list) => *list,
        };
        for other in named {
            assert!(
                modules.contains(*other),
                "the rule for `{module}` names `{other}`, which is not a module under src/"
            );
        }
    }
    let refs: usize = files.iter().map(|(_, t)| crate_refs(t).len()).sum();
    println!(
        "import rules: {} files, {} modules, {refs} crate:: references checked against {} rules",
        files.len(),
        modules.len(),
        RULES.len()
    );
    assert!(
        refs > 100,
        "only {refs} crate:: references found: is the scanner broken?"
    );
    let found = breaches(&src_dir, &files);
    assert!(
        found.is_empty(),
        "{} import-rule breach(es):\n  {}",
        found.len(),
        found.join("\n  ")
    );
}

#[test]
fn the_scanner_sees_grouped_and_inline_paths_but_not_comments_or_strings() {
    let src = r####"
//! A doc that mentions crate::anchor is not an import.
use crate::{proof::jcs, mlflow::{Run, Dataset}, profile};
use crate::arweave::Tag;
/// [`crate::store::Store`] in a doc link is not an import either.
fn f() -> String {
    let _ = "crate::feed in a string";
    let _ = r#"crate::feed in a raw string"#;
    let _ = 'c';
    /* crate::verify in a block comment */
    crate::keys::x();
    format!("{}", 1)
}
fn g<'a>(x: &'a str) -> &'a str { let _ = crate::event::ChangeEvent::x; x }
"####;
    let found: Vec<(usize, String)> = crate_refs(src)
        .into_iter()
        .map(|r| (r.line, r.module))
        .collect();
    assert_eq!(
        found,
        [
            (3, "proof".to_string()),
            (3, "mlflow".to_string()),
            (3, "profile".to_string()),
            (4, "arweave".to_string()),
            (11, "keys".to_string()),
            (14, "event".to_string()),
        ]
    );
}

#[test]
fn a_breach_is_reported_with_its_file_line_and_rule() {
    let src_dir = Path::new("/repo/src");
    let files = vec![
        (
            src_dir.join("profile/training.rs"),
            "use crate::proof::jcs;\nuse crate::mlflow::Run;\n".to_string(),
        ),
        (
            src_dir.join("feed/poller.rs"),
            "use crate::{store::Store, anchor::Anchorer};\n".to_string(),
        ),
        (
            src_dir.join("verify/mod.rs"),
            "use crate::profile::training;\n".to_string(),
        ),
    ];
    let found = breaches(src_dir, &files);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].starts_with("src/profile/training.rs:2: `profile` imports `mlflow`"),
        "{}",
        found[0]
    );
    assert!(found[0].contains("may import only proof"), "{}", found[0]);
    assert!(
        found[1].starts_with("src/feed/poller.rs:1: `feed` imports `anchor`"),
        "{}",
        found[1]
    );
}

/// Every `Result<…>` in `code` whose error type is a bare `String`: (1-based line, the type).
fn stringly_results(code: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("Result<") {
        let start = from + at;
        from = start + "Result<".len();
        if code[..start]
            .chars()
            .next_back()
            .is_some_and(|c| is_ident(c) && c != ':')
        {
            continue; // e.g. `TryResult<`
        }
        let (mut depth, mut last_comma, mut end) = (1usize, None, None);
        for (i, c) in code[from..].char_indices() {
            match c {
                '<' => depth += 1,
                '>' if code[from..from + i].ends_with('-') => {} // `->` inside a fn type
                '>' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(from + i);
                        break;
                    }
                }
                ',' if depth == 1 => last_comma = Some(from + i),
                _ => {}
            }
        }
        let (Some(end), Some(comma)) = (end, last_comma) else {
            continue;
        };
        if code[comma + 1..end].trim() == "String" {
            let line = code[..start].matches('\n').count() + 1;
            out.push((
                line,
                code[start..=end]
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            ));
        }
    }
    out
}

#[test]
fn library_errors_are_types_not_strings() {
    let src_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rust_files(&src_dir, &mut paths);
    let mut found = Vec::new();
    for p in &paths {
        let text = std::fs::read_to_string(p).unwrap();
        for (line, ty) in stringly_results(&code_only(&text)) {
            found.push(format!("{}:{line}: {ty}", p.display()));
        }
    }
    assert!(
        found.is_empty(),
        "an error is a type (a thiserror enum of the module), never a bare String \
         (docs/architecture.md §9):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_error_scan_sees_string_errors_and_nothing_else() {
    let code =
        "fn a() -> Result<(), String> {}\nfn b() -> Result<BTreeMap<String, String>, E> {}\n\
                fn c() -> std::io::Result<String> {}\nfn d() -> Result<Vec<u8>,\n String> {}\n\
                fn e(f: impl Fn() -> Result<u8, E>) -> Result<u8, String> {}";
    let found = stringly_results(code);
    assert_eq!(
        found.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        [1, 4, 6],
        "{found:?}"
    );
}

#[test]
fn no_source_file_grows_past_700_lines() {
    // One concern per file (docs/architecture.md §8): a file past this is doing several things.
    const LIMIT: usize = 700;
    let src_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    rust_files(&src_dir, &mut paths);
    let long: Vec<String> = paths
        .iter()
        .filter_map(|p| {
            let lines = std::fs::read_to_string(p).ok()?.lines().count();
            (lines > LIMIT).then(|| format!("{}: {lines} lines", p.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "split along its seams (at most {LIMIT} lines a file):\n{}",
        long.join("\n")
    );
}
