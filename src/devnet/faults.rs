//! Fault injection for devnet, per route: HTTP errors (with `Retry-After`), connection resets,
//! delays (timeouts), and "404 for the first N reads" of each id. Rules come from `--fault`
//! flags or the admin endpoint; each may fire a limited number of times and/or with a
//! probability.
//!
//! Flag grammar: `ROUTE:SPEC[xCOUNT][@PROBABILITY]` where ROUTE is `upload`, `status`, `raw`,
//! `info` or `any`, and SPEC is `CODE` or `CODE/RETRY_AFTER_SECS` (e.g. `503`, `429/2`),
//! `reset`, `delay=MS`, `notfound-first=N`, or `alter` (`raw` only: serve the payload with one
//! hex digit changed, as a dishonest gateway would). Examples: `upload:503x3`, `upload:429/1@0.3`,
//! `raw:reset x2`, `raw:notfound-first=2`, `upload:delay=1500`.

use serde::{Deserialize, Serialize};

/// The route a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultRoute {
    /// `POST /tx…`
    Upload,
    /// `GET /v1/tx/{id}/status`
    Status,
    /// `GET /raw/{id}`
    Raw,
    /// `GET /v1/info`
    Info,
    /// Every route.
    Any,
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this HTTP status (and `Retry-After` seconds when given).
    Status {
        /// HTTP status code.
        code: u16,
        /// `Retry-After` header value in seconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<u64>,
    },
    /// Drop the connection mid-response.
    Reset,
    /// Wait before handling the request (combine with a client timeout for timeouts).
    Delay {
        /// Milliseconds.
        ms: u64,
    },
    /// `/raw/{id}` answers 404 for the first `n` reads of each id (propagation delay).
    NotFoundFirst {
        /// Reads that fail per id.
        n: u32,
    },
    /// `/raw/{id}` serves altered bytes (one hex digit in the second half changed).
    Alter,
}

/// One fault rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRule {
    /// Route it applies to.
    pub route: FaultRoute,
    /// What it does.
    #[serde(flatten)]
    pub kind: FaultKind,
    /// Fire at most this many more times (unlimited when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Chance of firing per matching request (1.0 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
}

/// Why a `--fault` spec does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultSpecError {
    /// No `:`.
    #[error("expected ROUTE:SPEC, e.g. upload:503x3")]
    NoRoute,
    /// A route devnet does not have.
    #[error("unknown route {0:?} (upload, status, raw, info, any)")]
    UnknownRoute(String),
    /// A number that does not parse.
    #[error("bad {what} {value:?}")]
    BadNumber {
        /// `probability`, `count`, `delay`, `read count` or `Retry-After`.
        what: &'static str,
        /// As written.
        value: String,
    },
    /// A probability outside 0..=1.
    #[error("probability {0} is not within 0..=1")]
    Probability(f64),
    /// A status that is not 4xx or 5xx.
    #[error("status {0} is not an error status")]
    NotAnErrorStatus(u16),
    /// Nothing devnet can inject.
    #[error("unknown fault {0:?}")]
    UnknownFault(String),
}

fn bad(what: &'static str, value: &str) -> FaultSpecError {
    FaultSpecError::BadNumber {
        what,
        value: value.to_string(),
    }
}

impl FaultRule {
    /// Parses the `--fault` flag grammar (module docs).
    pub fn parse(text: &str) -> Result<FaultRule, FaultSpecError> {
        let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let (route, rest) = text.split_once(':').ok_or(FaultSpecError::NoRoute)?;
        let route = match route {
            "upload" => FaultRoute::Upload,
            "status" => FaultRoute::Status,
            "raw" => FaultRoute::Raw,
            "info" => FaultRoute::Info,
            "any" => FaultRoute::Any,
            other => return Err(FaultSpecError::UnknownRoute(other.to_string())),
        };
        let (rest, probability) = match rest.rsplit_once('@') {
            Some((r, p)) => {
                let p: f64 = p.parse().map_err(|_| bad("probability", p))?;
                if !(0.0..=1.0).contains(&p) {
                    return Err(FaultSpecError::Probability(p));
                }
                (r, Some(p))
            }
            None => (rest, None),
        };
        let (spec, count) = match rest.rsplit_once('x') {
            Some((s, n))
                if !s.is_empty() && n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() =>
            {
                (s, Some(n.parse().map_err(|_| bad("count", n))?))
            }
            _ => (rest, None),
        };
        let kind = if spec == "reset" {
            FaultKind::Reset
        } else if spec == "alter" {
            FaultKind::Alter
        } else if let Some(ms) = spec.strip_prefix("delay=") {
            FaultKind::Delay {
                ms: ms.parse().map_err(|_| bad("delay", ms))?,
            }
        } else if let Some(n) = spec.strip_prefix("notfound-first=") {
            FaultKind::NotFoundFirst {
                n: n.parse().map_err(|_| bad("read count", n))?,
            }
        } else {
            let (code, retry_after) = match spec.split_once('/') {
                Some((c, r)) => (c, Some(r.parse().map_err(|_| bad("Retry-After", r))?)),
                None => (spec, None),
            };
            let code: u16 = code
                .parse()
                .map_err(|_| FaultSpecError::UnknownFault(spec.to_string()))?;
            if !(400..=599).contains(&code) {
                return Err(FaultSpecError::NotAnErrorStatus(code));
            }
            FaultKind::Status { code, retry_after }
        };
        Ok(FaultRule {
            route,
            kind,
            count,
            probability,
        })
    }
}

/// What to do with one request after consulting the rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    /// Total delay before answering.
    pub delay_ms: u64,
    /// A status or reset that replaces the normal answer.
    pub terminal: Option<FaultKind>,
    /// Largest "404 for the first N reads" in force (raw route).
    pub not_found_first: Option<u32>,
    /// Serve altered payload bytes.
    pub alter: bool,
}

/// The active rules.
#[derive(Debug, Default)]
pub struct FaultTable {
    rules: Vec<FaultRule>,
}

impl FaultTable {
    /// A table holding `rules`.
    pub fn new(rules: Vec<FaultRule>) -> Self {
        FaultTable { rules }
    }

    /// Adds a rule.
    pub fn add(&mut self, rule: FaultRule) {
        self.rules.push(rule);
    }

    /// Removes every rule.
    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The rules in force.
    pub fn rules(&self) -> &[FaultRule] {
        &self.rules
    }

    /// Decides the faults for one request on `route`, consuming counts of rules that fire.
    pub fn plan(&mut self, route: FaultRoute) -> FaultPlan {
        let mut plan = FaultPlan::default();
        for rule in self
            .rules
            .iter_mut()
            .filter(|r| r.route == route || r.route == FaultRoute::Any)
        {
            if let FaultKind::NotFoundFirst { n } = rule.kind {
                plan.not_found_first = Some(plan.not_found_first.unwrap_or(0).max(n));
                continue;
            }
            if rule.kind == FaultKind::Alter {
                if rule.count != Some(0) && rule.probability.is_none_or(|p| fastrand::f64() < p) {
                    if let Some(c) = rule.count.as_mut() {
                        *c -= 1;
                    }
                    plan.alter = true;
                }
                continue;
            }
            let terminal = matches!(rule.kind, FaultKind::Status { .. } | FaultKind::Reset);
            if terminal && plan.terminal.is_some() {
                continue;
            }
            if rule.count == Some(0) || rule.probability.is_some_and(|p| fastrand::f64() >= p) {
                continue;
            }
            if let Some(c) = rule.count.as_mut() {
                *c -= 1;
            }
            match &rule.kind {
                FaultKind::Delay { ms } => plan.delay_ms += ms,
                other => plan.terminal = Some(other.clone()),
            }
        }
        self.rules.retain(|r| r.count != Some(0));
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_grammar_parses_every_kind() {
        let r = FaultRule::parse("upload:429/2x3@0.5").unwrap();
        assert_eq!(r.route, FaultRoute::Upload);
        assert_eq!(
            r.kind,
            FaultKind::Status {
                code: 429,
                retry_after: Some(2)
            }
        );
        assert_eq!((r.count, r.probability), (Some(3), Some(0.5)));
        assert_eq!(
            FaultRule::parse("raw:reset").unwrap().kind,
            FaultKind::Reset
        );
        assert_eq!(
            FaultRule::parse("any:delay=150x1").unwrap().kind,
            FaultKind::Delay { ms: 150 }
        );
        assert_eq!(
            FaultRule::parse("raw:notfound-first=3").unwrap().kind,
            FaultKind::NotFoundFirst { n: 3 }
        );
        for bad in [
            "upload",
            "nope:503",
            "upload:200",
            "upload:503@2",
            "upload:teapot",
            "raw:delay=x",
        ] {
            assert!(FaultRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counts_are_consumed_and_exhausted_rules_removed() {
        let mut t = FaultTable::new(vec![
            FaultRule::parse("upload:503x2").unwrap(),
            FaultRule::parse("upload:delay=5").unwrap(),
        ]);
        for _ in 0..2 {
            let plan = t.plan(FaultRoute::Upload);
            assert_eq!(
                plan.terminal,
                Some(FaultKind::Status {
                    code: 503,
                    retry_after: None
                })
            );
            assert_eq!(plan.delay_ms, 5);
        }
        assert_eq!(t.plan(FaultRoute::Upload).terminal, None);
        assert_eq!(t.rules().len(), 1);
        assert_eq!(t.plan(FaultRoute::Raw), FaultPlan::default());
    }
}
