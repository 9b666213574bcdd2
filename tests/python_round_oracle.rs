//! Metric rounding checked against CPython's own `round(x, 6)` (and `round(x, 2)` for latency)
//! on 100,000+ doubles: random bit patterns, exact ties (k/128), values near 10^k, metric-like
//! decimals. Skips with a notice without python3, except under CI.

use std::process::Command;

use ario_mlflow_worker::profile::round::python_round;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[test]
fn python_round_matches_cpython() {
    if Command::new("python3").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3 is required under CI"
        );
        eprintln!("NOTICE: python3 not found; rounding oracle SKIPPED");
        return;
    }
    let mut rng = StdRng::seed_from_u64(6);
    let mut xs: Vec<f64> = (1..2000)
        .map(|k| k as f64 / 128.0 / 10f64.powi(rng.random_range(0..4)))
        .collect();
    while xs.len() < 110_000 {
        let x = match xs.len() % 4 {
            0 => f64::from_bits(rng.random::<u64>()),
            1 => rng.random::<f64>() * 10f64.powi(rng.random_range(-8..12)),
            2 => (rng.random_range(-10_000_000i64..10_000_000) as f64 + 0.5) / 1e7,
            _ => -(rng.random::<f64>()),
        };
        if x.is_finite() {
            xs.push(x);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(
        &input,
        xs.iter()
            .map(|x| format!("{:016x}\n", x.to_bits()))
            .collect::<String>(),
    )
    .unwrap();
    let script = "import struct,sys\nfor line in open(sys.argv[1]):\n    x=struct.unpack('>d',bytes.fromhex(line.strip()))[0]\n    print(round(x,6).hex(), round(x,2).hex())\n";
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut mismatches = 0;
    for (x, line) in xs.iter().zip(text.lines()) {
        let (r6, r2) = line.split_once(' ').unwrap();
        for (nd, expected) in [(6, r6), (2, r2)] {
            let ours = python_round(*x, nd);
            if hex_float(ours) != expected {
                mismatches += 1;
                if mismatches < 10 {
                    eprintln!("x={x:e}: ours round(x,{nd})={ours:e}, python {expected}");
                }
            }
        }
    }
    println!("rounding oracle: {} doubles × round(x,6) and round(x,2) compared with CPython, {mismatches} mismatches", xs.len());
    assert_eq!(text.lines().count(), xs.len());
    assert_eq!(mismatches, 0);
}

/// Python's `float.hex()` form, to compare exactly.
fn hex_float(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0x0.0p+0".into()
        } else {
            "0x0.0p+0".into()
        };
    }
    let bits = x.to_bits();
    let sign = if bits >> 63 == 1 { "-" } else { "" };
    let exp = ((bits >> 52) & 0x7ff) as i64;
    let mant = bits & ((1u64 << 52) - 1);
    let (lead, e) = if exp == 0 {
        (0, -1022)
    } else {
        (1, exp - 1023)
    };
    let m = format!("{mant:013x}");
    format!("{sign}0x{lead}.{m}p{}{e}", if e >= 0 { "+" } else { "" })
}
