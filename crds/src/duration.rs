//! Durations as users write them in a fault (`500ms`, `5m`, `1h30m`).
//!
//! The API keeps durations as strings so that `kubectl get -o yaml` shows what the user wrote.
//! The API server checks their shape with [`DURATION_PATTERN`] and, through CEL, their size;
//! this module turns them into a [`std::time::Duration`] for the engine, with the same grammar.

use std::time::Duration;

use kube::core::{Message, Rule};

/// The OpenAPI pattern every duration field carries: one or more `<digits><unit>` groups, the
/// unit being `ms`, `s`, `m` or `h`. It is a subset of Go's `time.ParseDuration`, so the CEL
/// `duration()` function the API server evaluates reads these strings the same way we do.
pub const DURATION_PATTERN: &str = "^([0-9]+(ms|s|m|h))+$";

/// The longest duration any field accepts: a year. Longer ones are almost surely typos, and the
/// API server's CEL cannot even represent durations past about 292 years.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// [`MAX_DURATION`] as users write it, for messages and CEL rules.
pub const MAX_DURATION_TEXT: &str = "8760h";

/// The CEL rule for durations that must not be zero (a zero delay or fault duration does
/// nothing). A regex rather than `duration(self)`, so a malformed string gets only the
/// pattern's error, not a second, cryptic conversion error.
pub(crate) fn positive_duration() -> Rule {
    Rule::new("!self.matches('^(0+(ms|s|m|h))+$')").message("must be greater than zero")
}

/// The CEL rule behind [`MAX_DURATION`]; skipped when the pattern already failed.
pub(crate) fn bounded_duration() -> Rule {
    Rule::new(format!(
        "!self.matches('{DURATION_PATTERN}') || duration(self) <= duration('{MAX_DURATION_TEXT}')"
    ))
    .message(Message::Message(format!(
        "must be at most {MAX_DURATION_TEXT} (a year)"
    )))
}

/// Why a duration string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Nothing to read.
    #[error("empty duration; write e.g. 500ms, 30s, 5m or 1h30m")]
    Empty,
    /// A unit (or anything else) came where a number was expected.
    #[error("expected a number at byte {at} of {input:?}; write e.g. 500ms, 30s, 5m or 1h30m")]
    MissingNumber {
        /// The whole input.
        input: String,
        /// Byte offset of the offending character.
        at: usize,
    },
    /// A number with no unit, or with a unit we do not know.
    #[error("unknown or missing unit {unit:?} in {input:?}; use ms, s, m or h")]
    BadUnit {
        /// The whole input.
        input: String,
        /// What stood where the unit should be (empty when the input ended).
        unit: String,
    },
    /// The total does not fit in a `Duration` of milliseconds.
    #[error("duration {input:?} is too long")]
    Overflow {
        /// The whole input.
        input: String,
    },
}

/// Reads a duration such as `500ms`, `30s`, `5m`, `2h` or `1m30s` (groups add up).
///
/// Accepts exactly the strings [`DURATION_PATTERN`] accepts: whole numbers only, no sign, no
/// spaces, no bare numbers, so `"5"` is rejected rather than guessed as seconds.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    let bytes = input.as_bytes();
    let overflow = || DurationError::Overflow {
        input: input.to_owned(),
    };
    let mut total_ms: u64 = 0;
    let mut pos = 0;
    while pos < bytes.len() {
        let digits = bytes[pos..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            return Err(DurationError::MissingNumber {
                input: input.to_owned(),
                at: pos,
            });
        }
        let number: u64 = input[pos..pos + digits].parse().map_err(|_| overflow())?;
        pos += digits;
        let unit_len = bytes[pos..]
            .iter()
            .take_while(|b| b.is_ascii_alphabetic())
            .count();
        let unit = &input[pos..pos + unit_len];
        let ms_per_unit = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => {
                return Err(DurationError::BadUnit {
                    input: input.to_owned(),
                    unit: unit.to_owned(),
                });
            }
        };
        pos += unit_len;
        total_ms = number
            .checked_mul(ms_per_unit)
            .and_then(|ms| ms.checked_add(total_ms))
            .ok_or_else(overflow)?;
    }
    Ok(Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_unit_and_sums_groups() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("0s", Duration::ZERO),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("2h", Duration::from_secs(7_200)),
            ("1m30s", Duration::from_secs(90)),
            ("1h30m15s250ms", Duration::from_millis(5_415_250)),
            ("1s1s", Duration::from_secs(2)),
            ("007s", Duration::from_secs(7)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        let cases = [
            ("5", "unit"),
            ("5x", "unit"),
            ("5sec", "unit"),
            ("1.5s", "unit"),
            ("10us", "unit"),
            ("s", "number"),
            ("-5s", "number"),
            (" 5s", "number"),
            ("5s ", "number"),
            ("5m ", "number"),
            ("99999999999999999999h", "too long"),
            ("18446744073709551615h", "too long"),
        ];
        for (input, reason) in cases {
            let err = parse_duration(input).expect_err(input).to_string();
            assert!(err.contains(reason), "{input}: {err}");
        }
    }

    #[test]
    fn max_duration_text_is_max_duration() {
        assert_eq!(parse_duration(MAX_DURATION_TEXT), Ok(MAX_DURATION));
    }

    #[test]
    fn agrees_with_the_schema_pattern() {
        let pattern = regex::Regex::new(DURATION_PATTERN).unwrap();
        for input in [
            "500ms", "5m", "1h30m", "1s1s", "", "5", "1.5s", "5sec", "-1s", "5mm", "1ms5",
        ] {
            assert_eq!(
                pattern.is_match(input),
                parse_duration(input).is_ok(),
                "{input}"
            );
        }
    }
}
