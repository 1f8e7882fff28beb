//! Sizes, durations and timestamps, printed and parsed the way the docker CLI does (go-units).

use anyhow::{bail, Context, Result};

const DECIMAL: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
const BINARY: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

/// Formats like Go's `%.{precision}g`: significant digits, trailing zeros dropped.
fn format_g(value: f64, precision: usize) -> String {
    if value == 0.0 {
        return "0".into();
    }
    let exp = value.abs().log10().floor() as i32;
    // Values here are below 1000 after scaling, so the exponent form is never needed in practice.
    let decimals = (precision as i32 - 1 - exp).max(0) as usize;
    let mut s = format!("{value:.decimals$}");
    // Rounding can add a digit (999.95 -> "1000.0"); Go keeps the significant digits only.
    if s.contains('.') {
        while s.ends_with('0') {
            s.pop();
        }
        if s.ends_with('.') {
            s.pop();
        }
    }
    s
}

fn custom_size(size: f64, base: f64, units: &[&str], precision: usize) -> String {
    let mut size = size;
    let mut i = 0;
    while size >= base && i < units.len() - 1 {
        size /= base;
        i += 1;
    }
    format!("{}{}", format_g(size, precision), units[i])
}

/// Decimal size with `precision` significant digits: `4.26MB` (go-units `HumanSizeWithPrecision`).
pub fn human_size_precision(size: f64, precision: usize) -> String {
    custom_size(size, 1000.0, &DECIMAL, precision)
}

/// Decimal size as `docker images` and `docker stats` I/O columns print it.
pub fn human_size(size: f64) -> String {
    human_size_precision(size, 3)
}

/// Binary size as the stats memory column prints it: `1.5MiB` (go-units `BytesSize`).
pub fn bytes_size(size: f64) -> String {
    custom_size(size, 1024.0, &BINARY, 4)
}

/// Parses a memory size as `docker run -m` does: `32m`, `1g`, `512k`, `1024` (bytes), all binary.
pub fn parse_ram(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .with_context(|| format!("invalid size: '{s}'"))?;
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => bail!("invalid size: '{s}'"),
    };
    if value < 0.0 {
        bail!("invalid size: '{s}'");
    }
    Ok((value * mult) as i64)
}

/// How long ago, in words, as `docker ps` CREATED prints it (go-units `HumanDuration`).
pub fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    if secs < 1 {
        return "Less than a second".into();
    }
    if secs == 1 {
        return "1 second".into();
    }
    if secs < 60 {
        return format!("{secs} seconds");
    }
    let minutes = secs / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    // go-units rounds hours to the nearest, then derives days, weeks, months from them.
    let hours = (secs as f64 / 3600.0 + 0.5) as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", secs / 3600 / 24 / 365)
}

/// `2 hours ago` from a unix timestamp.
pub fn time_ago(created: i64, now: i64) -> String {
    format!("{} ago", human_duration(now - created))
}

/// Parses a Go duration such as `10s`, `1h30m`, `1.5h`, `300ms` into seconds.
pub fn parse_go_duration(s: &str) -> Result<f64> {
    let mut rest = s.trim();
    if rest.is_empty() {
        bail!("invalid duration: '{s}'");
    }
    if rest == "0" {
        return Ok(0.0);
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .with_context(|| format!("invalid duration: '{s}': missing unit"))?;
        let value: f64 = rest[..n]
            .parse()
            .with_context(|| format!("invalid duration: '{s}'"))?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => bail!("invalid duration: '{s}': unknown unit '{other}'"),
        };
        total += value * mult;
        rest = &rest[u..];
    }
    Ok(total)
}

/// Parses a `--since`/`--until` value into a unix timestamp (seconds, with fraction) as docker
/// does: a unix timestamp, an RFC 3339 time or date, or a duration before `now`.
pub fn parse_timestamp(value: &str, now: f64) -> Result<f64> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return Ok(secs);
    }
    if let Ok(d) = parse_go_duration(v) {
        return Ok(now - d);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Ok(t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9);
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S") {
        return Ok(t.and_utc().timestamp() as f64);
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc().timestamp() as f64);
        }
    }
    bail!("invalid time value: '{value}'")
}

/// Unix time now, in seconds.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Formats nanoseconds since the epoch like Go's RFC3339Nano in local time.
pub fn rfc3339_nano(nanos: i64) -> String {
    use chrono::TimeZone;
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000) as u32;
    let Some(t) = chrono::Local.timestamp_opt(secs, frac).single() else {
        return nanos.to_string();
    };
    let mut s = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    if frac != 0 {
        let f = format!("{frac:09}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    let offset = t.offset().local_minus_utc();
    if offset == 0 {
        s.push('Z');
    } else {
        let sign = if offset < 0 { '-' } else { '+' };
        let o = offset.abs();
        s.push_str(&format!("{sign}{:02}:{:02}", o / 3600, (o % 3600) / 60));
    }
    s
}

/// `2024-01-02 15:04:05 +0000 UTC`, the way docker prints `CreatedAt`.
pub fn go_time(secs: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_opt(secs, 0).single() {
        // Go prints the zone's abbreviation, which chrono does not know except for UTC.
        Some(t) if t.offset().local_minus_utc() == 0 => {
            t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string()
        }
        Some(t) => t.format("%Y-%m-%d %H:%M:%S %z %z").to_string(),
        None => secs.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(4_261_000.0), "4.26MB");
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size(648.0), "648B");
        assert_eq!(human_size(1_200.0), "1.2kB");
        assert_eq!(human_size(7_800_000.0), "7.8MB");
        assert_eq!(human_size(1_000_000_000.0), "1GB");
        assert_eq!(bytes_size(1_572_864.0), "1.5MiB");
        assert_eq!(bytes_size(1024.0 * 1024.0 * 1024.0 * 23.4), "23.4GiB");
        assert_eq!(bytes_size(0.0), "0B");
        assert_eq!(bytes_size(1234.0), "1.205KiB");
    }

    #[test]
    fn ram() {
        assert_eq!(parse_ram("32m").unwrap(), 32 << 20);
        assert_eq!(parse_ram("1g").unwrap(), 1 << 30);
        assert_eq!(parse_ram("1G").unwrap(), 1 << 30);
        assert_eq!(parse_ram("512k").unwrap(), 512 << 10);
        assert_eq!(parse_ram("100mb").unwrap(), 100 << 20);
        assert_eq!(parse_ram("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_ram("4096").unwrap(), 4096);
        assert_eq!(parse_ram("1MiB").unwrap(), 1 << 20);
        assert!(parse_ram("lots").is_err());
        assert!(parse_ram("3x").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(1), "1 second");
        assert_eq!(human_duration(2), "2 seconds");
        assert_eq!(human_duration(59), "59 seconds");
        assert_eq!(human_duration(60), "About a minute");
        assert_eq!(human_duration(119), "About a minute");
        assert_eq!(human_duration(120), "2 minutes");
        assert_eq!(human_duration(3599), "59 minutes");
        assert_eq!(human_duration(3600), "About an hour");
        assert_eq!(human_duration(2 * 3600), "2 hours");
        assert_eq!(human_duration(47 * 3600), "47 hours");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(15 * 86400), "2 weeks");
        assert_eq!(human_duration(90 * 86400), "3 months");
        assert_eq!(human_duration(3 * 365 * 86400), "3 years");
        assert_eq!(time_ago(100, 102), "2 seconds ago");
    }

    #[test]
    fn go_durations_and_timestamps() {
        assert_eq!(parse_go_duration("10s").unwrap(), 10.0);
        assert_eq!(parse_go_duration("1h30m").unwrap(), 5400.0);
        assert_eq!(parse_go_duration("1.5h").unwrap(), 5400.0);
        assert_eq!(parse_go_duration("300ms").unwrap(), 0.3);
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("5x").is_err());
        assert_eq!(parse_timestamp("42m", 10_000.0).unwrap(), 10_000.0 - 2520.0);
        assert_eq!(parse_timestamp("1700000000", 0.0).unwrap(), 1_700_000_000.0);
        assert_eq!(
            parse_timestamp("2013-01-02T13:23:37Z", 0.0).unwrap(),
            1_357_133_017.0
        );
        assert_eq!(parse_timestamp("2013-01-02", 0.0).unwrap(), 1_357_084_800.0);
        assert!(parse_timestamp("yesterday", 0.0).is_err());
    }
}
