//! Python's `round(x, ndigits)`, exactly: the plugin normalizes metrics to 6 digits and
//! latencies to 2 before hashing, so the payload bytes depend on this to the last bit.

/// Python's `round(x, ndigits)` for a finite double: round half to even on the *exact* binary
/// value, then back to the nearest double (CPython: `_Py_dg_dtoa` mode 3, then `strtod`).
/// Non-finite values and zero come back unchanged.
pub fn python_round(x: f64, ndigits: usize) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    // The exact decimal expansion: a double has at most 1074 fraction digits.
    let exact = format!("{:.1080}", x.abs());
    let (int_part, frac) = exact.split_once('.').unwrap_or((&exact, ""));
    let (kept, rest) = frac.split_at(ndigits.min(frac.len()));
    let mut digits: Vec<u8> = int_part
        .bytes()
        .chain(kept.bytes())
        .map(|b| b - b'0')
        .collect();
    let rest = rest.as_bytes();
    let round_up = match rest.first() {
        Some(b'6'..=b'9') => true,
        Some(b'5') => {
            rest[1..].iter().any(|&d| d != b'0') || digits.last().is_some_and(|d| d % 2 == 1)
        }
        _ => false,
    };
    if round_up {
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, 1);
                break;
            }
            i -= 1;
            if digits[i] == 9 {
                digits[i] = 0;
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    let text: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
    let (i, f) = text.split_at(text.len() - kept.len());
    let magnitude: f64 = format!(
        "{}.{}e0",
        if i.is_empty() { "0" } else { i },
        if f.is_empty() { "0" } else { f }
    )
    .parse()
    .unwrap_or(x.abs());
    magnitude.copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_round_is_half_even_on_the_exact_binary_value() {
        assert_eq!(python_round(2.675, 2), 2.67, "2.675 is really 2.67499999…");
        assert_eq!(
            python_round(0.0078125, 6),
            0.007812,
            "an exact tie rounds to even"
        );
        assert_eq!(
            python_round(0.0234375, 6),
            0.023438,
            "an exact tie rounds to even (up)"
        );
        assert_eq!(python_round(0.9733333333, 6), 0.973333);
        assert_eq!(python_round(-1.23456789, 6), -1.234568);
        assert_eq!(
            python_round(999999.9999995, 6),
            999999.999999,
            "just below the tie in binary (Python agrees)"
        );
        assert_eq!(python_round(999999.9999996, 6), 1000000.0);
        assert_eq!(python_round(1e-7, 6), 0.0);
        assert_eq!(python_round(1e300, 6), 1e300);
        assert_eq!(python_round(5e-324, 6), 0.0);
        assert_eq!(python_round(0.5, 0), 0.0);
        assert_eq!(python_round(1.5, 0), 2.0);
    }
}
