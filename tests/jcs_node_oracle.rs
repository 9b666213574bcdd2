//! RFC 8785 number formatting and canonical documents checked against JavaScript itself.
//!
//! JCS is defined as ECMAScript's `Number.prototype.toString` for numbers and `JSON.stringify`
//! with UTF-16-sorted keys for the rest, so node is an independent oracle. When node is absent
//! the tests print a notice and skip — except under CI (`CI` set), where node is required.

mod common;

use std::path::Path;
use std::process::Command;

use ario_mlflow_worker::proof::jcs;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value};

/// Minimum doubles checked (the floor is 100,000).
const DOUBLES: usize = 120_000;
const DOCUMENTS: usize = 3_000;

fn node_available() -> bool {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => true,
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "node is required under CI for the JCS oracle tests"
            );
            eprintln!(
                "NOTICE: node not found; JCS oracle comparison SKIPPED (install node to run it)"
            );
            false
        }
    }
}

/// Runs the oracle script over `lines` and returns its output lines.
fn run_oracle(mode: &str, lines: &[String]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.txt"), dir.path().join("out.txt"));
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/jcs_oracle.mjs");
    let status = Command::new("node")
        .arg(&script)
        .arg(mode)
        .arg(&input)
        .arg(&output)
        .status()
        .unwrap();
    assert!(status.success(), "node oracle failed: {status}");
    let out = std::fs::read_to_string(&output).unwrap();
    let result: Vec<String> = out.lines().map(str::to_owned).collect();
    assert_eq!(result.len(), lines.len(), "oracle answered every line");
    result
}

/// Doubles from every region that number formatting can get wrong.
fn interesting_doubles(rng: &mut StdRng) -> Vec<f64> {
    let mut xs = Vec::with_capacity(DOUBLES);
    let two53 = 9_007_199_254_740_992f64;
    for k in -300i64..=300 {
        for base in [two53, 2.0 * two53, 1e21, 1e-7, 1e-6, 1e15, 1e16, 1e17] {
            let bits = f64::to_bits(base) as i64 + k;
            xs.push(f64::from_bits(bits as u64));
            xs.push(-f64::from_bits(bits as u64));
        }
        xs.push(two53 + k as f64);
    }
    for e in -324..=308 {
        for mantissa in [1, 5] {
            let x: f64 = format!("{mantissa}e{e}").parse().unwrap();
            if x.is_finite() {
                xs.push(x);
            }
        }
    }
    xs.extend([
        0.0,
        -0.0,
        f64::MIN_POSITIVE,
        f64::MAX,
        f64::MIN,
        f64::EPSILON,
        5e-324,
        0.1 + 0.2,
    ]);
    while xs.len() < DOUBLES {
        let x = match xs.len() % 6 {
            // Uniform bit patterns: every exponent range, subnormals included.
            0 | 1 => f64::from_bits(rng.random::<u64>()),
            // Subnormals.
            2 => f64::from_bits(rng.random_range(1u64..(1u64 << 52))),
            // Integers of every magnitude up to 2^64.
            3 => (rng.random::<u64>() >> rng.random_range(0..64)) as f64,
            // Short decimals like metrics and prices.
            4 => {
                rng.random_range(-1_000_000i64..1_000_000) as f64
                    / 10f64.powi(rng.random_range(0..8))
            }
            // Python round(x, 6) style values.
            _ => (rng.random::<f64>() * 1e6).round() / 1e6,
        };
        if x.is_finite() {
            xs.push(x);
        }
    }
    xs
}

#[test]
fn number_formatting_matches_javascript_string_of_x() {
    if !node_available() {
        return;
    }
    let mut rng = StdRng::seed_from_u64(0x8785);
    let xs = interesting_doubles(&mut rng);
    let lines: Vec<String> = xs.iter().map(|x| format!("{:016x}", x.to_bits())).collect();
    let expected = run_oracle("numbers", &lines);
    let mut mismatches = Vec::new();
    for (x, js) in xs.iter().zip(&expected) {
        let ours = jcs::format_number(*x).unwrap();
        if ours != *js {
            mismatches.push(format!(
                "{x:e} bits={:016x}: ours {ours} js {js}",
                x.to_bits()
            ));
        }
    }
    eprintln!(
        "JCS number oracle: {} doubles compared with node String(x), {} mismatches",
        xs.len(),
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "first mismatches: {:#?}",
        &mismatches[..mismatches.len().min(10)]
    );
}

fn random_string(rng: &mut StdRng) -> String {
    let len = rng.random_range(0..12);
    (0..len)
        .map(|_| match rng.random_range(0..6) {
            0 => char::from_u32(rng.random_range(0..0x20)).unwrap(),
            1 => ['"', '\\', '/', '\u{7f}', '\u{2028}', '\u{2029}', '\u{feff}']
                [rng.random_range(0..7)],
            2 => char::from_u32(rng.random_range(0x80..0xD800)).unwrap(),
            3 => char::from_u32(rng.random_range(0xE000..0x10000)).unwrap(),
            4 => char::from_u32(rng.random_range(0x10000..0x110000)).unwrap_or('x'),
            _ => char::from_u32(rng.random_range(0x20..0x7f)).unwrap(),
        })
        .collect()
}

fn random_value(rng: &mut StdRng, depth: usize) -> Value {
    let leaf = depth >= 5 || rng.random_bool(0.5);
    match rng.random_range(0..if leaf { 5 } else { 7 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => jcs::number(f64::from_bits(rng.random::<u64>()))
            .unwrap_or(Value::from(rng.random::<i64>())),
        3 => Value::from(rng.random_range(-1_000_000i64..1_000_000) as f64 / 1000.0),
        4 => Value::String(random_string(rng)),
        5 => Value::Array(
            (0..rng.random_range(0..5))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => Value::Object(
            (0..rng.random_range(0..6))
                .map(|_| (random_string(rng), random_value(rng, depth + 1)))
                .collect::<Map<_, _>>(),
        ),
    }
}

#[test]
fn canonical_documents_match_javascript() {
    if !node_available() {
        return;
    }
    let mut rng = StdRng::seed_from_u64(8785);
    let docs: Vec<Value> = (0..DOCUMENTS).map(|_| random_value(&mut rng, 0)).collect();
    let lines: Vec<String> = docs
        .iter()
        .map(|d| serde_json::to_string(d).unwrap())
        .collect();
    let expected = run_oracle("documents", &lines);
    let mut mismatches = 0;
    for ((doc, js), text) in docs.iter().zip(&expected).zip(&lines) {
        let ours = jcs::canonicalize_to_string(doc).unwrap();
        if ours != *js {
            mismatches += 1;
            eprintln!("input {text}\n ours {ours}\n js   {js}");
        }
        // Canonical output re-parses to the same canonical output.
        assert_eq!(
            jcs::canonicalize_to_string(&jcs::parse(ours.as_bytes()).unwrap()).unwrap(),
            ours
        );
    }
    eprintln!(
        "JCS document oracle: {} random documents compared with node, {mismatches} mismatches",
        docs.len()
    );
    assert_eq!(mismatches, 0);
}
