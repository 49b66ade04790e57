//! Values written with units in the config file: durations, byte sizes,
//! percentages and HTTP status ranges.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

/// A duration written with a unit: `250ms`, `30s`, `5m`, `1h`, `1d`, or a
/// sum of those (`1m30s`); each part may have a decimal fraction (`1.5s`).
///
/// Units: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, `d`. A number without
/// a unit, a negative duration and a duration that does not fit a
/// [`std::time::Duration`] are refused. Converts into
/// [`std::time::Duration`]; the config model exposes plain
/// `std::time::Duration` fields and uses this type to parse them.
///
/// ```
/// use meshgate::config::Duration;
///
/// let d: Duration = "1m30s".parse().unwrap();
/// assert_eq!(std::time::Duration::from(d).as_secs(), 90);
/// assert!("30".parse::<Duration>().is_err());
/// assert!("-5s".parse::<Duration>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl fmt::Display for Duration {
    /// Writes the shortest exact form: `250ms`, `30s`, `1m30s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.0.as_nanos();
        if total == 0 {
            return f.write_str("0s");
        }
        const UNITS: [(u128, &str); 7] = [
            (86_400_000_000_000, "d"),
            (3_600_000_000_000, "h"),
            (60_000_000_000, "m"),
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
            (1, "ns"),
        ];
        let mut rest = total;
        for (size, unit) in UNITS {
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

/// Why a duration, size or percentage was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitError(String);

impl fmt::Display for UnitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UnitError {}

fn unit_error(msg: impl Into<String>) -> UnitError {
    UnitError(msg.into())
}

impl FromStr for Duration {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let invalid = || {
            unit_error(format!(
                "invalid duration {s:?} (expected e.g. \"250ms\", \"30s\", \"5m\")"
            ))
        };
        if text.is_empty() {
            return Err(invalid());
        }
        if text.starts_with('-') {
            return Err(unit_error(format!("negative duration {s:?}")));
        }
        let mut total: u128 = 0;
        let mut rest = text.strip_prefix('+').unwrap_or(text);
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let (number, after) = rest.split_at(digits);
            if number.is_empty() {
                return Err(invalid());
            }
            let unit_len = after
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            let scale: u128 = match unit {
                "ns" => 1,
                "us" | "µs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                "d" => 86_400_000_000_000,
                "" => {
                    return Err(unit_error(format!(
                        "duration {s:?} has no unit (use ns, us, ms, s, m, h or d, e.g. \"{number}s\")"
                    )));
                }
                other => {
                    return Err(unit_error(format!(
                        "unknown unit {other:?} in duration {s:?} (use ns, us, ms, s, m, h or d)"
                    )));
                }
            };
            total = total
                .checked_add(scaled(number, scale).ok_or_else(invalid_or_overflow(s, number))?)
                .ok_or_else(|| too_large(s))?;
            rest = after;
        }
        let secs = u64::try_from(total / 1_000_000_000).map_err(|_| too_large(s))?;
        // The remainder of a division by 10^9 always fits in u32.
        let nanos = (total % 1_000_000_000) as u32;
        Ok(Duration(std::time::Duration::new(secs, nanos)))
    }
}

fn too_large(s: &str) -> UnitError {
    unit_error(format!("duration {s:?} is too large"))
}

fn invalid_or_overflow<'a>(s: &'a str, number: &'a str) -> impl FnOnce() -> UnitError + 'a {
    move || {
        if number.matches('.').count() > 1 || number.starts_with('.') || number.ends_with('.') {
            unit_error(format!("invalid number {number:?} in duration {s:?}"))
        } else {
            too_large(s)
        }
    }
}

/// `number` (digits with at most one `.`) times `scale` nanoseconds, rounded
/// down to a whole nanosecond; `None` on a malformed number or overflow.
fn scaled(number: &str, scale: u128) -> Option<u128> {
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) if !w.is_empty() && !f.is_empty() && !f.contains('.') => (w, f),
        Some(_) => return None,
        None => (number, ""),
    };
    let whole: u128 = whole.parse().ok()?;
    let mut value = whole.checked_mul(scale)?;
    // Fraction digits beyond nanosecond precision cannot change the result.
    let mut unit = scale;
    for digit in frac.bytes() {
        unit /= 10;
        if unit == 0 {
            break;
        }
        value = value.checked_add(u128::from(digit - b'0') * unit)?;
    }
    Some(value)
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = Duration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with a unit, like \"250ms\", \"30s\" or \"5m\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                if v < 0 {
                    Err(E::custom(format!("negative duration \"{v}\"")))
                } else {
                    self.visit_u64(v.unsigned_abs())
                }
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Err(E::custom(format!(
                    "duration \"{v}\" has no unit (use ns, us, ms, s, m, h or d, e.g. \"{v}s\")"
                )))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                if v < 0.0 {
                    Err(E::custom(format!("negative duration \"{v}\"")))
                } else {
                    Err(E::custom(format!(
                        "duration \"{v}\" has no unit (use ns, us, ms, s, m, h or d, e.g. \"{v}s\")"
                    )))
                }
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// `#[serde(with = "duration")]` for `std::time::Duration` fields.
pub(crate) mod duration {
    use serde::{Deserialize, Deserializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<std::time::Duration, D::Error> {
        super::Duration::deserialize(d).map(Into::into)
    }
}

/// `#[serde(with = "opt_duration")]` for `Option<std::time::Duration>` fields.
pub(crate) mod opt_duration {
    use serde::{Deserialize, Deserializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<std::time::Duration>, D::Error> {
        Option::<super::Duration>::deserialize(d).map(|d| d.map(Into::into))
    }
}

/// A size in bytes: `512`, `512B`, `64KiB`, `1MiB`, `2GiB`, or decimal
/// `64kB`/`KB`, `10MB`, `1GB`.
///
/// Binary units (`KiB`, `MiB`, `GiB`, `TiB`) are powers of 1024, decimal
/// ones (`kB`, `MB`, `GB`, `TB`) powers of 1000. A bare integer is a count of
/// bytes. Negative sizes, fractions and sizes past `u64` are refused.
///
/// ```
/// use meshgate::config::ByteSize;
///
/// assert_eq!("64KiB".parse::<ByteSize>().unwrap().as_u64(), 65_536);
/// assert_eq!("1MB".parse::<ByteSize>().unwrap().as_u64(), 1_000_000);
/// assert!("1.5MiB".parse::<ByteSize>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// `n` kibibytes (1024 bytes each).
    pub const fn kib(n: u64) -> Self {
        ByteSize(n * 1024)
    }

    /// `n` mebibytes.
    pub const fn mib(n: u64) -> Self {
        ByteSize(n * 1024 * 1024)
    }

    /// The size in bytes.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The size in bytes as a `usize`, saturating on 32-bit targets.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        for (size, unit) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl FromStr for ByteSize {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if text.starts_with('-') {
            return Err(unit_error(format!("negative size {s:?}")));
        }
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        if number.is_empty() || unit.starts_with('.') {
            return Err(unit_error(format!(
                "invalid size {s:?} (expected a whole number with a unit, e.g. \"64KiB\", \"1MiB\")"
            )));
        }
        let scale: u64 = match unit.trim_start() {
            "" | "B" => 1,
            "kB" | "KB" => 1_000,
            "KiB" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "GB" => 1_000_000_000,
            "GiB" => 1 << 30,
            "TB" => 1_000_000_000_000,
            "TiB" => 1 << 40,
            other => {
                return Err(unit_error(format!(
                    "unknown unit {other:?} in size {s:?} (use B, KiB, MiB, GiB, TiB, kB, MB, GB or TB)"
                )));
            }
        };
        let too_large = || unit_error(format!("size {s:?} is too large"));
        let n: u64 = number.parse().map_err(|_| too_large())?;
        n.checked_mul(scale).map(ByteSize).ok_or_else(too_large)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size like \"64KiB\" or \"1MiB\", or a number of bytes")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("negative size \"{v}\"")))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ByteSize, E> {
                Err(E::custom(format!(
                    "invalid size \"{v}\" (expected a whole number with a unit, e.g. \"64KiB\", \"1MiB\")"
                )))
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A percentage from 0 to 100 inclusive: `10`, `12.5`, or `"12.5%"`.
///
/// ```
/// use meshgate::config::Percent;
///
/// let p: Percent = "12.5%".parse().unwrap();
/// assert_eq!(p.as_ratio(), 0.125);
/// assert!("101".parse::<Percent>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Percent(f64);

impl Percent {
    /// `value` percent, or an error when it is not in 0..=100 (or not a number).
    pub fn new(value: f64) -> Result<Self, UnitError> {
        if value.is_nan() || !(0.0..=100.0).contains(&value) {
            Err(unit_error(format!(
                "percentage {value} is out of range 0-100"
            )))
        } else {
            Ok(Percent(value))
        }
    }

    /// The percentage, 0 to 100.
    pub fn get(self) -> f64 {
        self.0
    }

    /// The percentage as a ratio, 0.0 to 1.0.
    pub fn as_ratio(self) -> f64 {
        self.0 / 100.0
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", self.0)
    }
}

impl FromStr for Percent {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let number = text.strip_suffix('%').unwrap_or(text).trim_end();
        let value: f64 = number
            .parse()
            .map_err(|_| unit_error(format!("invalid percentage {s:?} (expected 0-100)")))?;
        Percent::new(value)
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PercentVisitor;

        impl Visitor<'_> for PercentVisitor {
            type Value = Percent;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a percentage from 0 to 100")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Percent, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Percent, E> {
                if v > 100 {
                    Err(E::custom(format!("percentage {v} is out of range 0-100")))
                } else {
                    // At most 100: exact in an f64.
                    Ok(Percent(v as f64))
                }
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Percent, E> {
                if v < 0 {
                    Err(E::custom(format!("percentage {v} is out of range 0-100")))
                } else {
                    self.visit_u64(v.unsigned_abs())
                }
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Percent, E> {
                Percent::new(v).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(PercentVisitor)
    }
}

impl Serialize for Percent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0)
    }
}

/// A set of HTTP status codes: `200`, `"200-299"` or `"2xx"`.
///
/// ```
/// use meshgate::config::StatusRange;
///
/// let r: StatusRange = "2xx".parse().unwrap();
/// assert!(r.contains(204) && !r.contains(301));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusRange {
    /// The first code in the range.
    pub first: u16,
    /// The last code in the range (inclusive).
    pub last: u16,
}

impl StatusRange {
    /// Whether `status` is in the range.
    pub fn contains(&self, status: u16) -> bool {
        (self.first..=self.last).contains(&status)
    }

    fn single(code: u64) -> Result<Self, UnitError> {
        match u16::try_from(code) {
            Ok(c @ 100..=599) => Ok(StatusRange { first: c, last: c }),
            _ => Err(unit_error(format!(
                "invalid HTTP status {code} (expected 100-599)"
            ))),
        }
    }
}

impl fmt::Display for StatusRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl FromStr for StatusRange {
    type Err = UnitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let invalid = || {
            unit_error(format!(
                "invalid status range {s:?} (expected e.g. 200, \"200-299\" or \"2xx\")"
            ))
        };
        if let Some(class) = text.strip_suffix("xx").or_else(|| text.strip_suffix("XX")) {
            let digit: u16 = class.parse().map_err(|_| invalid())?;
            if !(1..=5).contains(&digit) {
                return Err(invalid());
            }
            return Ok(StatusRange {
                first: digit * 100,
                last: digit * 100 + 99,
            });
        }
        if let Some((a, b)) = text.split_once('-') {
            let a = StatusRange::single(a.trim().parse().map_err(|_| invalid())?)?;
            let b = StatusRange::single(b.trim().parse().map_err(|_| invalid())?)?;
            if a.first > b.first {
                return Err(invalid());
            }
            return Ok(StatusRange {
                first: a.first,
                last: b.first,
            });
        }
        StatusRange::single(text.parse().map_err(|_| invalid())?)
    }
}

impl<'de> Deserialize<'de> for StatusRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RangeVisitor;

        impl Visitor<'_> for RangeVisitor {
            type Value = StatusRange;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an HTTP status, a range \"200-299\" or a class \"2xx\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<StatusRange, E> {
                v.parse().map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StatusRange, E> {
                StatusRange::single(v).map_err(E::custom)
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StatusRange, E> {
                StatusRange::single(u64::try_from(v).unwrap_or(0)).map_err(E::custom)
            }
        }

        deserializer.deserialize_any(RangeVisitor)
    }
}

/// `#[serde(with = "status_code")]`: one HTTP status code, 100-599.
pub(crate) mod status_code {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
        let code = u64::deserialize(d)?;
        match u16::try_from(code) {
            Ok(c @ 100..=599) => Ok(c),
            _ => Err(D::Error::custom(format!(
                "invalid HTTP status {code} (expected 100-599)"
            ))),
        }
    }
}

/// `#[serde(with = "status_codes")]`: a list of HTTP status codes.
pub(crate) mod status_codes {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
        let codes = Vec::<u64>::deserialize(d)?;
        codes
            .into_iter()
            .map(|code| match u16::try_from(code) {
                Ok(c @ 100..=599) => Ok(c),
                _ => Err(D::Error::custom(format!(
                    "invalid HTTP status {code} (expected 100-599)"
                ))),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration as Std;

    #[test]
    fn durations() {
        let ok = |s: &str| Std::from(s.parse::<Duration>().unwrap());
        assert_eq!(ok("250ms"), Std::from_millis(250));
        assert_eq!(ok("30s"), Std::from_secs(30));
        assert_eq!(ok("5m"), Std::from_secs(300));
        assert_eq!(ok("1h"), Std::from_secs(3600));
        assert_eq!(ok("1d"), Std::from_secs(86_400));
        assert_eq!(ok("1m30s"), Std::from_secs(90));
        assert_eq!(ok("1.5s"), Std::from_millis(1500));
        assert_eq!(ok("0.000000001s"), Std::from_nanos(1));
        assert_eq!(ok("0.0000000019s"), Std::from_nanos(1));
        assert_eq!(ok("0s"), Std::ZERO);
        assert_eq!(ok("10us"), Std::from_micros(10));
        for bad in ["", "30", "s", "-1s", "1.2.3s", ".5s", "5.s", "3x", "1 s"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            "99999999999999999999999d"
                .parse::<Duration>()
                .unwrap_err()
                .to_string(),
            "duration \"99999999999999999999999d\" is too large"
        );
        assert_eq!(
            "18446744073709551616s"
                .parse::<Duration>()
                .unwrap_err()
                .to_string(),
            "duration \"18446744073709551616s\" is too large"
        );
        assert!("18446744073709551615s".parse::<Duration>().is_ok());
    }

    #[test]
    fn duration_display_round_trips() {
        for s in ["250ms", "30s", "1m30s", "1d2h", "1ns", "0s"] {
            assert_eq!(s.parse::<Duration>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn sizes() {
        let ok = |s: &str| s.parse::<ByteSize>().unwrap().as_u64();
        assert_eq!(ok("512"), 512);
        assert_eq!(ok("64KiB"), 65_536);
        assert_eq!(ok("1MiB"), 1 << 20);
        assert_eq!(ok("1GiB"), 1 << 30);
        assert_eq!(ok("10MB"), 10_000_000);
        assert_eq!(ok("8 KiB"), 8192);
        for bad in ["", "KiB", "-1KiB", "1.5MiB", "1kib", "1XB"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?} parsed");
        }
        assert!("17179869184GiB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize::kib(64).to_string(), "64KiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }

    #[test]
    fn percents() {
        assert_eq!("0".parse::<Percent>().unwrap().get(), 0.0);
        assert_eq!("100%".parse::<Percent>().unwrap().get(), 100.0);
        assert_eq!("12.5 %".parse::<Percent>().unwrap().as_ratio(), 0.125);
        for bad in ["-1", "100.01", "NaN", "ten", "", "inf"] {
            assert!(bad.parse::<Percent>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn status_ranges() {
        assert_eq!(
            "2xx".parse::<StatusRange>().unwrap(),
            StatusRange {
                first: 200,
                last: 299
            }
        );
        assert_eq!(
            "200-399".parse::<StatusRange>().unwrap(),
            StatusRange {
                first: 200,
                last: 399
            }
        );
        for bad in ["6xx", "0xx", "99", "600", "300-200", "abc"] {
            assert!(bad.parse::<StatusRange>().is_err(), "{bad:?} parsed");
        }
    }
}
