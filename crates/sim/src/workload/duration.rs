//! Parsing of the Go-style durations used in `sim.pmp.dev/*` annotations: `1s`, `500ms`, `2m`,
//! `1h`, `1m30s`, `1.5s`. Units: `h`, `m`, `s`, `ms`. A bare `0` is zero. No sign, no spaces.

use std::time::Duration;

/// Why an annotation's duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration")]
    Empty,
    #[error("missing unit in {0:?} (use h, m, s or ms, e.g. 1m30s)")]
    MissingUnit(String),
    #[error("unknown unit {unit:?} in {input:?} (use h, m, s or ms)")]
    UnknownUnit { input: String, unit: String },
    #[error("invalid number in {0:?}")]
    BadNumber(String),
    #[error("duration {0:?} is too large")]
    TooLarge(String),
}

/// Parses a duration such as `1m30s` or `500ms`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| DurationError::MissingUnit(text.to_owned()))?;
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() || number.starts_with('.') && number.len() == 1 {
            return Err(DurationError::BadNumber(text.to_owned()));
        }
        let value: f64 = number
            .parse()
            .map_err(|_| DurationError::BadNumber(text.to_owned()))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let seconds_per_unit = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => {
                return Err(DurationError::UnknownUnit {
                    input: text.to_owned(),
                    unit: unit.to_owned(),
                });
            }
        };
        total += value * seconds_per_unit;
        rest = next;
    }
    Duration::try_from_secs_f64(total).map_err(|_| DurationError::TooLarge(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h2m3s"), Ok(Duration::from_secs(3723)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(" 0 "), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn rejects_bad_values_without_panicking() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("10"),
            Err(DurationError::MissingUnit(_))
        ));
        assert!(matches!(
            parse_duration("3d"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("s"),
            Err(DurationError::MissingUnit(_) | DurationError::BadNumber(_))
        ));
        assert!(matches!(
            parse_duration("1..2s"),
            Err(DurationError::BadNumber(_))
        ));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1e400h").is_err());
        assert!(parse_duration("99999999999999999999999h").is_err());
    }
}
