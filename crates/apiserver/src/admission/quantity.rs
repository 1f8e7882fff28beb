//! Kubernetes `resource.Quantity`: parsing, exact arithmetic and the canonical string
//! form upstream serializes (`0.5` → `500m`, `1024Mi` → `1Gi`, `1e3` stays `1e3`).
//!
//! Written here rather than taken from a crate: k8s-openapi keeps quantities as strings,
//! and the few quantity crates either lose precision (f64) or do not reproduce upstream's
//! canonical form, which users see in `kubectl get -o yaml` and in quota messages.
//! Values are kept as an `i128` count of nano-units, so every comparison and sum is exact
//! down to upstream's smallest unit (`1n`; finer values round up, as upstream does).

use std::cmp::Ordering;
use std::fmt;

/// How a quantity was written, which its canonical form keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `500m`, `2k`, `1`.
    DecimalSI,
    /// `128Mi`, `1Gi`.
    BinarySI,
    /// `1e3`, `5E-3`.
    DecimalExponent,
}

#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    nanos: i128,
    pub format: Format,
}

/// Upstream's message for a string that is not a quantity.
pub const QUANTITY_ERROR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("{QUANTITY_ERROR}")]
    Format,
    #[error("quantity is too large")]
    TooLarge,
}

const NANO: i128 = 1_000_000_000;

fn pow10(e: u32) -> Option<i128> {
    10i128.checked_pow(e)
}

impl Quantity {
    pub fn zero(format: Format) -> Quantity {
        Quantity { nanos: 0, format }
    }

    /// An integer count (`pods=2`).
    pub fn from_int(n: i64) -> Quantity {
        Quantity {
            nanos: n as i128 * NANO,
            format: Format::DecimalSI,
        }
    }

    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        let (negative, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(num_end);
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && frac.is_empty() || frac.contains('.') {
            return Err(QuantityError::Format);
        }
        let (format, exp10, binary_pow): (Format, i32, u32) = match suffix {
            "" => (Format::DecimalSI, 0, 0),
            "n" => (Format::DecimalSI, -9, 0),
            "u" => (Format::DecimalSI, -6, 0),
            "m" => (Format::DecimalSI, -3, 0),
            "k" => (Format::DecimalSI, 3, 0),
            "M" => (Format::DecimalSI, 6, 0),
            "G" => (Format::DecimalSI, 9, 0),
            "T" => (Format::DecimalSI, 12, 0),
            "P" => (Format::DecimalSI, 15, 0),
            "E" => (Format::DecimalSI, 18, 0),
            "Ki" => (Format::BinarySI, 0, 1),
            "Mi" => (Format::BinarySI, 0, 2),
            "Gi" => (Format::BinarySI, 0, 3),
            "Ti" => (Format::BinarySI, 0, 4),
            "Pi" => (Format::BinarySI, 0, 5),
            "Ei" => (Format::BinarySI, 0, 6),
            s if s.starts_with(['e', 'E']) => {
                let e = &s[1..];
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(QuantityError::Format);
                }
                let e: i32 = e.parse().map_err(|_| QuantityError::TooLarge)?;
                (Format::DecimalExponent, e, 0)
            }
            _ => return Err(QuantityError::Format),
        };
        let digits = format!("{whole}{frac}");
        let digits = digits.trim_start_matches('0');
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| QuantityError::TooLarge)?
        };
        let mut value = mantissa
            .checked_mul(1024i128.pow(binary_pow))
            .ok_or(QuantityError::TooLarge)?;
        // value × 10^(exp10 + 9 - frac digits) nano-units, rounded up when it has more
        // precision than a nano.
        let shift = exp10 + 9 - frac.len() as i32;
        if shift >= 0 {
            let p = pow10(shift as u32).ok_or(QuantityError::TooLarge)?;
            value = value.checked_mul(p).ok_or(QuantityError::TooLarge)?;
        } else if value != 0 {
            value = match pow10((-shift) as u32) {
                Some(p) => (value + p - 1) / p,
                None => 1,
            };
        }
        Ok(Quantity {
            nanos: if negative { -value } else { value },
            format,
        })
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// The value in thousandths, rounded up (upstream's `MilliValue`).
    pub fn milli_value(&self) -> i128 {
        div_ceil(self.nanos, 1_000_000)
    }

    pub fn add(&self, other: &Quantity) -> Quantity {
        Quantity {
            nanos: self.nanos.saturating_add(other.nanos),
            format: if self.nanos == 0 && other.nanos != 0 {
                other.format
            } else {
                self.format
            },
        }
    }

    /// The ratio `self / other` as a float, for `maxLimitRequestRatio` messages.
    pub fn ratio(&self, other: &Quantity) -> f64 {
        self.nanos as f64 / other.nanos as f64
    }
}

fn div_ceil(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && a > 0 {
        q + 1
    } else {
        q
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Quantity) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Quantity) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Quantity) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl fmt::Display for Quantity {
    /// Upstream's `CanonicalizeBytes`: binary only for exact multiples of 1024, else the
    /// largest power-of-1000 suffix that keeps an integer mantissa.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        if self.format == Format::BinarySI
            && self.nanos.abs() >= 1024 * NANO
            && self.nanos % NANO == 0
        {
            let mut n = self.nanos / NANO;
            let mut k = 0;
            while k < 6 && n % 1024 == 0 {
                n /= 1024;
                k += 1;
            }
            let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][k];
            return write!(f, "{n}{suffix}");
        }
        let mut n = self.nanos;
        let mut exp = -9;
        while exp < 18 && n % 1000 == 0 {
            n /= 1000;
            exp += 3;
        }
        if self.format == Format::DecimalExponent {
            return match exp {
                0 => write!(f, "{n}"),
                e => write!(f, "{n}e{e}"),
            };
        }
        let suffix = match exp {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            0 => "",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            _ => "E",
        };
        write!(f, "{n}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_every_suffix_and_compares_exactly() {
        assert_eq!(q("500m"), q("0.5"));
        assert_eq!(q("1"), q("1000m"));
        assert_eq!(q("1k"), q("1000"));
        assert_eq!(q("1Ki"), q("1024"));
        assert_eq!(q("1Mi"), q("1048576"));
        assert_eq!(q("1Gi"), q("1024Mi"));
        assert_eq!(q("1e3"), q("1k"));
        assert_eq!(q("1E3"), q("1000"));
        assert_eq!(q("1E"), q("1000P"));
        assert_eq!(q("5e-3"), q("5m"));
        assert_eq!(q("+2"), q("2"));
        assert_eq!(q("1n"), q("0.000000001"));
        assert!(q("-1").is_negative());
        assert!(q("100m") < q("1"));
        assert!(q("129Mi") > q("128M"));
        assert!(q(".5").milli_value() == 500);
        // Finer than a nano rounds up.
        assert_eq!(q("0.0000000001"), q("1n"));
        for bad in [
            "", "abc", "1.2.3", "1x", "Mi", "1e", "1Kib", "1 ", "--1", ".",
        ] {
            assert_eq!(Quantity::parse(bad), Err(QuantityError::Format), "{bad:?}");
        }
    }

    #[test]
    fn canonical_form_matches_upstream() {
        for (input, canonical) in [
            ("0.5", "500m"),
            ("1000m", "1"),
            ("1.5", "1500m"),
            ("1500", "1500"),
            ("2000", "2k"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("0.5Ki", "512"),
            ("1e3", "1e3"),
            ("1200e0", "1200"),
            ("0", "0"),
            ("0Mi", "0"),
            ("100Mi", "100Mi"),
            ("128M", "128M"),
            ("0.1", "100m"),
            ("-2", "-2"),
        ] {
            assert_eq!(q(input).to_string(), canonical, "{input}");
        }
    }

    #[test]
    fn sums_keep_the_first_nonzero_format() {
        let zero = Quantity::zero(Format::DecimalSI);
        let sum = zero.add(&q("512Mi")).add(&q("512Mi"));
        assert_eq!(sum.to_string(), "1Gi");
        assert_eq!(q("1").add(&q("500m")).to_string(), "1500m");
        assert!((q("2").ratio(&q("500m")) - 4.0).abs() < 1e-9);
    }
}
