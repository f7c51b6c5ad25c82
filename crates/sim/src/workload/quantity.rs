//! The resource-usage annotations: a Kubernetes quantity (`250m`, `2`, `512Mi`, `1G`) or a linear
//! ramp `<from>..<to>` (e.g. `100m..2`, `64Mi..1Gi`) that climbs from `from` at container start to
//! `to` after the ramp duration (annotation `sim.pmp.dev/usage-ramp`, default 60s), then stays there.

use std::time::Duration;

/// A parsed usage annotation.
#[derive(Debug, Clone, PartialEq)]
pub enum Usage {
    /// Constant usage; the text is reported as written.
    Constant(String),
    /// Linear ramp between two values in base units (cores or bytes).
    Ramp { from: f64, to: f64 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {0:?} (expected e.g. 250m, 2, 512Mi, or a ramp like 100m..2)")]
pub struct QuantityError(pub String);

/// Which resource a value measures; decides how a ramp's current value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Cpu,
    Memory,
}

/// Parses a quantity into base units (cores for CPU, bytes for memory).
pub fn parse_quantity(text: &str) -> Result<f64, QuantityError> {
    let text = text.trim();
    let err = || QuantityError(text.to_owned());
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    if number.is_empty() {
        return Err(err());
    }
    let value: f64 = number.parse().map_err(|_| err())?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(err()),
    };
    let result = value * factor;
    if result.is_finite() {
        Ok(result)
    } else {
        Err(err())
    }
}

/// Parses a usage annotation: a quantity or a `from..to` ramp.
pub fn parse_usage(text: &str) -> Result<Usage, QuantityError> {
    let text = text.trim();
    match text.split_once("..") {
        Some((from, to)) => Ok(Usage::Ramp {
            from: parse_quantity(from).map_err(|_| QuantityError(text.to_owned()))?,
            to: parse_quantity(to).map_err(|_| QuantityError(text.to_owned()))?,
        }),
        None => {
            parse_quantity(text)?;
            Ok(Usage::Constant(text.to_owned()))
        }
    }
}

impl Usage {
    /// The value `running_for` after container start, as a quantity string.
    pub fn at(&self, resource: Resource, running_for: Duration, ramp: Duration) -> String {
        match self {
            Usage::Constant(text) => text.clone(),
            Usage::Ramp { from, to } => {
                let fraction = if ramp.is_zero() {
                    1.0
                } else {
                    (running_for.as_secs_f64() / ramp.as_secs_f64()).min(1.0)
                };
                format_quantity(resource, from + (to - from) * fraction)
            }
        }
    }

    /// Whether the value still changes after `running_for`.
    pub fn changes_after(&self, running_for: Duration, ramp: Duration) -> bool {
        matches!(self, Usage::Ramp { from, to } if from != to && running_for < ramp)
    }
}

/// Writes a value the way metrics-server does: CPU in millicores, memory in KiB.
pub fn format_quantity(resource: Resource, value: f64) -> String {
    match resource {
        Resource::Cpu => format!("{}m", (value * 1000.0).round().max(0.0) as u64),
        Resource::Memory => format!("{}Ki", (value / 1024.0).round().max(0.0) as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_and_binary_suffixes() {
        assert_eq!(parse_quantity("250m"), Ok(0.25));
        assert_eq!(parse_quantity("2"), Ok(2.0));
        assert_eq!(parse_quantity("512Mi"), Ok(512.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("1G"), Ok(1e9));
        assert!(parse_quantity("lots").is_err());
        assert!(parse_quantity("12Qi").is_err());
        assert!(parse_quantity("").is_err());
    }

    #[test]
    fn a_constant_is_reported_as_written() {
        let usage = parse_usage("250m").unwrap();
        assert_eq!(
            usage.at(
                Resource::Cpu,
                Duration::from_secs(5),
                Duration::from_secs(60)
            ),
            "250m"
        );
        assert!(!usage.changes_after(Duration::ZERO, Duration::from_secs(60)));
    }

    #[test]
    fn a_ramp_climbs_linearly_then_holds() {
        let cpu = parse_usage("100m..2").unwrap();
        let ramp = Duration::from_secs(60);
        assert_eq!(cpu.at(Resource::Cpu, Duration::ZERO, ramp), "100m");
        assert_eq!(
            cpu.at(Resource::Cpu, Duration::from_secs(30), ramp),
            "1050m"
        );
        assert_eq!(
            cpu.at(Resource::Cpu, Duration::from_secs(600), ramp),
            "2000m"
        );
        assert!(cpu.changes_after(Duration::from_secs(30), ramp));
        assert!(!cpu.changes_after(Duration::from_secs(60), ramp));

        let memory = parse_usage("64Mi..128Mi").unwrap();
        assert_eq!(memory.at(Resource::Memory, ramp, ramp), "131072Ki");
        assert!(parse_usage("64Mi..lots").is_err());
    }
}
