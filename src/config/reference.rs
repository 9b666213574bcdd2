//! `config reference`: every setting of every command — flag, environment variable, config file
//! key, default, values, and its help — as Markdown, generated from the clap definitions (so
//! `docs/configuration-reference.md` cannot drift: a test compares it with this output).

use std::collections::BTreeMap;

use clap::{Arg, Command};

use super::{is_secret, is_setting};

/// One setting as documented: the same flag taken by several commands is one row when it means
/// the same there (same environment variable, default and help).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    flag: String,
    env: String,
    key: String,
    default: String,
    values: String,
    help: String,
    hidden: bool,
    secret: bool,
}

fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn row(a: &Arg) -> Row {
    let long = a.get_long().unwrap_or(a.get_id().as_str());
    let aliases: Vec<String> = a
        .get_visible_aliases()
        .unwrap_or_default()
        .into_iter()
        .map(|s| format!("`--{s}`"))
        .collect();
    let mut flag = format!("`--{long}`");
    if let Some(short) = a.get_short() {
        flag = format!("`-{short}`, {flag}");
    }
    if !aliases.is_empty() {
        flag = format!("{flag} (alias {})", aliases.join(", "));
    }
    let default: Vec<String> = a
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().to_string())
        .collect();
    let values: Vec<String> = if a.get_action().takes_values() {
        a.get_possible_values()
            .iter()
            .filter(|v| !v.is_hide_set())
            .map(|v| format!("`{}`", v.get_name()))
            .collect()
    } else {
        Vec::new()
    };
    let help = a
        .get_long_help()
        .or_else(|| a.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    Row {
        flag,
        env: a
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default(),
        key: format!("`{}`", long.replace('-', "_")),
        default: if default.is_empty() || !a.get_action().takes_values() {
            String::new()
        } else {
            format!("`{}`", default.join(","))
        },
        values: values.join(" "),
        help: cell(&help),
        hidden: a.is_hide_set(),
        secret: is_secret(a),
    }
}

/// The reference of `cmd` (the whole CLI) as Markdown.
pub fn reference(cmd: &Command) -> String {
    fn walk(cmd: &Command, path: &str, rows: &mut BTreeMap<Row, Vec<String>>) {
        for a in cmd.get_arguments().filter(|a| is_setting(a)) {
            rows.entry(row(a)).or_default().push(path.to_string());
        }
        for sc in cmd.get_subcommands() {
            let name = if path.is_empty() {
                sc.get_name().to_string()
            } else {
                format!("{path} {}", sc.get_name())
            };
            walk(sc, &name, rows);
        }
    }
    let mut cmd = cmd.clone();
    cmd.build();
    let mut rows: BTreeMap<Row, Vec<String>> = BTreeMap::new();
    walk(&cmd, "", &mut rows);
    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from the command-line definitions by `ario-mlflow-worker config reference`\n\
         (`tests/docs.rs` fails when this file and the code differ: regenerate it with\n\
         `cargo run -q -- config reference > docs/configuration-reference.md`).\n\n\
         Every setting is a flag, most have an environment variable, and every flag is a key of\n\
         the configuration file (`--config FILE` / `ARIO_MLFLOW_CONFIG`; the long flag name with\n\
         `_`, tables group prefixes: `[kafka] brokers` is `kafka_brokers`). Precedence: flag >\n\
         environment > file > default. `config check --command CMD` prints a command's effective\n\
         configuration (secrets commented out) as a file that loads back. *secret*: never shown\n\
         by `--help`, `config check` or the logs; *env/file only*: not listed by `--help`.\n\n\
         | flag | environment | file key | default | values | commands | meaning |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for (r, commands) in &rows {
        let commands: Vec<String> = commands
            .iter()
            .map(|c| {
                if c.is_empty() {
                    "(all)".to_string()
                } else {
                    format!("`{c}`")
                }
            })
            .collect();
        let mut notes = Vec::new();
        if r.secret {
            notes.push("*secret*");
        }
        if r.hidden {
            notes.push("*env/file only*");
        }
        let help = if notes.is_empty() {
            r.help.clone()
        } else {
            format!("{} {}", notes.join(", "), r.help)
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.flag,
            r.env,
            r.key,
            r.default,
            r.values,
            commands.join(" "),
            help.trim()
        ));
    }
    out
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
        /// Runs.
        Run {
            /// Seconds | between polls.
            #[arg(long, env = "DEMO_POLL", default_value_t = 5.0)]
            poll_interval: f64,
            /// The secret.
            #[arg(long, env = "DEMO_SECRET", hide_env_values = true)]
            secret: Option<String>,
        },
        /// Also polls.
        Backfill {
            /// Seconds | between polls.
            #[arg(long, env = "DEMO_POLL", default_value_t = 5.0)]
            poll_interval: f64,
            /// Only in the environment.
            #[arg(long, env = "DEMO_HIDDEN", hide = true)]
            hidden: Option<String>,
        },
    }

    #[test]
    fn one_row_per_setting_with_the_commands_that_take_it() {
        use clap::CommandFactory;
        let text = reference(&Demo::command());
        let poll: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("--poll-interval"))
            .collect();
        assert_eq!(poll.len(), 1, "{text}");
        assert!(
            poll[0].contains("`DEMO_POLL`")
                && poll[0].contains("`poll_interval`")
                && poll[0].contains("`5`")
                && poll[0].contains("`run` `backfill`")
                && poll[0].contains("Seconds \\| between polls"),
            "{}",
            poll[0]
        );
        assert!(text.contains("*secret* The secret"), "{text}");
        assert!(
            text.contains("*env/file only* Only in the environment"),
            "{text}"
        );
    }
}
