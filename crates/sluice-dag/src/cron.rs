//! Why a cron expression is wrong, field by field.
//!
//! Croner decides what is valid; its messages do not say where ("Component error: Number out
//! of bounds."). When croner rejects an expression, [`explain`] reads the five fields itself
//! and names the first problem with its field, its value and what the field allows:
//! `hour 25 is out of range 0-23`.

use crate::diagnostic::quoted;

/// One of the five fields.
struct Field {
    name: &'static str,
    min: u64,
    max: u64,
    /// Names of the values from `min` (`JAN` is 1, `SUN` is 0), and what they are.
    names: &'static [&'static str],
    names_are: &'static str,
    /// Characters this field allows besides digits, `*`, `,`, `-` and `/` (and the letters of
    /// its names).
    special: &'static str,
}

const MONTHS: &[&str] = &["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const FIELDS: [Field; 5] = [
    Field { name: "minute", min: 0, max: 59, names: &[], names_are: "", special: "" },
    Field { name: "hour", min: 0, max: 23, names: &[], names_are: "", special: "" },
    Field { name: "day-of-month", min: 1, max: 31, names: &[], names_are: "", special: "LW?" },
    Field { name: "month", min: 1, max: 12, names: MONTHS, names_are: "a month name (JAN-DEC)", special: "" },
    Field { name: "day-of-week", min: 0, max: 7, names: DAYS, names_are: "a day name (SUN-SAT)", special: "L#?+" },
];

/// Why croner rejected the five `fields` (with `error`): the part of the message after
/// `invalid cron expression "...": `. The first problem this reading finds; else croner's
/// message, after the field it is about when that field alone is rejected (`rejects` asks
/// croner about an expression).
pub(crate) fn explain(fields: &[&str], error: &str, rejects: impl Fn(&str) -> bool) -> String {
    // Croner judges each field on its own: find the first it rejects alone, so that the
    // message never blames a field croner takes (it takes a few this reading would not,
    // such as `JAN` as a day of the week, which it reads as 1).
    let alone =
        |i: usize| (0..fields.len()).map(|j| if j == i { fields[i] } else { "*" }).collect::<Vec<_>>().join(" ");
    match (0..fields.len().min(FIELDS.len())).find(|&i| rejects(&alone(i))) {
        Some(i) => FIELDS[i]
            .check(fields[i])
            .err()
            .unwrap_or_else(|| format!("{} {}: {error}", FIELDS[i].name, quoted(fields[i]))),
        None => error.to_string(),
    }
}

impl Field {
    fn check(&self, written: &str) -> Result<(), String> {
        // A day of the week may start with `+` (day of month *and* day of week).
        let text = if self.special.contains('+') { written.strip_prefix('+').unwrap_or(written) } else { written };
        if let Some(c) = text.chars().find(|c| !self.may_hold(*c)) {
            return Err(format!(
                "{} {} holds {c:?}, which a {} field cannot hold",
                self.name,
                quoted(written),
                self.name
            ));
        }
        if text == "*" || (text == "?" && self.special.contains('?')) {
            return Ok(());
        }
        text.split(',').filter(|item| !item.is_empty()).try_for_each(|item| self.item(item))
    }

    fn may_hold(&self, c: char) -> bool {
        c.is_ascii_digit()
            || "*,-/".contains(c)
            || (c != '+' && self.special.contains(c.to_ascii_uppercase()))
            || (c.is_ascii_alphabetic() && !self.names.is_empty())
    }

    /// One item of a list: `*/s`, `a-b/s`, `a-b`, `a`, or a special form.
    fn item(&self, item: &str) -> Result<(), String> {
        let name = self.name;
        if item == "*" || item == "?" {
            return Err(format!("{name} {} cannot be part of a list", quoted(item)));
        }
        if let Some((range, step)) = item.split_once('/') {
            if step.contains('/') {
                return Err(format!("{name} {} has more than one `/`", quoted(item)));
            }
            let start = match range {
                "*" => self.min,
                "" => {
                    return Err(format!("{name} {} has no start; write {}", quoted(item), quoted(&format!("*/{step}"))))
                }
                r if r.contains('-') => self.range(r)?.0,
                r => {
                    self.value(r)?;
                    return Err(format!(
                        "{name} {}: a step needs a range; write {}",
                        quoted(item),
                        quoted(&format!("{r}-{}/{step}", self.max))
                    ));
                }
            };
            let step = step.parse::<u64>().map_err(|_| {
                if step.chars().all(|c| c.is_ascii_digit()) && !step.is_empty() {
                    self.step_out_of_range(step)
                } else {
                    format!("{name} step {} is not a number", quoted(step))
                }
            })?;
            // Croner counts in 16 bits: a step that would carry the value past them fails.
            if step == 0 || start + step > u64::from(u16::MAX) {
                return Err(self.step_out_of_range(&step.to_string()));
            }
            return Ok(());
        }
        if self.special.contains('#') {
            if let Some((value, nth)) = item.split_once('#') {
                if !matches!(nth.parse::<u64>(), Ok(1..=5)) {
                    return Err(format!("{name} {}: the week of the month is out of range 1-5", quoted(item)));
                }
                return self.single_or_range(value);
            }
        }
        if self.special.contains('W') {
            if let Some(day) = item.strip_suffix(['W', 'w']) {
                return if day.eq_ignore_ascii_case("L") { Ok(()) } else { self.value(day).map(|_| ()) };
            }
        }
        if self.special.contains('L') {
            if item.eq_ignore_ascii_case("L") {
                return Ok(());
            }
            if let Some(value) = item.strip_suffix(['L', 'l']) {
                if self.special.contains('#') {
                    // `5L`: the last Friday of the month; one day, not a range.
                    if value.contains('-') {
                        return Err(format!("{name} {}: `L` takes one day, not a range", quoted(item)));
                    }
                    return self.value(value).map(|_| ());
                }
                return Err(format!("{name} {}: write `L` alone for the last day of the month", quoted(item)));
            }
        }
        self.single_or_range(item)
    }

    fn single_or_range(&self, item: &str) -> Result<(), String> {
        if item.contains('-') {
            self.range(item).map(|_| ())
        } else {
            self.value(item).map(|_| ())
        }
    }

    /// `a-b`, both in range and in order.
    fn range(&self, item: &str) -> Result<(u64, u64), String> {
        let name = self.name;
        if let Some(negative) = item.strip_prefix('-') {
            if !negative.is_empty() && negative.chars().all(|c| c.is_ascii_digit()) {
                return Err(format!("{name} {item} is out of range {}-{}", self.min, self.max));
            }
        }
        let parts: Vec<&str> = item.split('-').collect();
        let [a, b] = parts[..] else {
            return Err(format!("{name} {} is not a range; write `first-last`", quoted(item)));
        };
        if a.is_empty() || b.is_empty() {
            return Err(format!("{name} {} is not a range; write `first-last`", quoted(item)));
        }
        let start = self.value(a)?;
        // `SUN` ends a range as 7 (`MON-SUN`), as croner reads it.
        let end = if self.names == DAYS && b.eq_ignore_ascii_case("SUN") { 7 } else { self.value(b)? };
        if start > end {
            return Err(format!("{name} range {item} is reversed: write the smaller value first"));
        }
        Ok((start, end))
    }

    /// A number or a name, within the field's range.
    fn value(&self, token: &str) -> Result<u64, String> {
        let name = self.name;
        let (min, max) = (self.min, self.max);
        if !token.is_empty() && token.chars().all(|c| c.is_ascii_digit()) {
            return match token.parse::<u64>() {
                Ok(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(format!("{name} {token} is out of range {min}-{max}")),
            };
        }
        if let Some(i) = self.names.iter().position(|n| n.eq_ignore_ascii_case(token)) {
            return Ok(min + i as u64);
        }
        Err(if self.names.is_empty() {
            format!("{name} {} is not a number in range {min}-{max}", quoted(token))
        } else {
            format!("{name} {} is neither a number ({min}-{max}) nor {}", quoted(token), self.names_are)
        })
    }

    fn step_out_of_range(&self, step: &str) -> String {
        format!("{} step {step} is out of range 1-{}", self.name, self.max)
    }
}

#[cfg(test)]
mod tests {
    use croner::parser::{CronParser, Seconds, Year};

    use super::*;

    /// Over many random fields, every field croner rejects is explained by this reading.
    #[test]
    fn every_field_croner_rejects_is_explained_by_the_field_checker() {
        let parser = CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build();
        let tokens = [
            "0", "1", "5", "7", "9", "12", "24", "31", "60", "*", "-", "/", ",", "L", "W", "#", "?", "+", "MON", "sun",
            "JAN", "dec", "X", "l", "w",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut disagreements = Vec::new();
        for _ in 0..10_000 {
            let i = next(5);
            let text: String = (0..1 + next(5)).map(|_| tokens[next(tokens.len())]).collect();
            let mut fields = vec!["*"; 5];
            fields[i] = &text;
            let expr = fields.join(" ");
            // Where croner rejects a field, this reading says why (else the message would be
            // croner's own); where croner takes it, it is never blamed (see `explain`).
            if let Err(e) = parser.parse(&expr) {
                let why = explain(&fields, &e.to_string(), |p| parser.parse(p).is_err());
                if FIELDS[i].check(&text).is_ok() || !why.starts_with(FIELDS[i].name) {
                    disagreements.push(format!("{expr:?}: {why}"));
                }
            }
        }
        disagreements.sort();
        disagreements.dedup();
        assert!(
            disagreements.is_empty(),
            "{} disagreements:\n{}",
            disagreements.len(),
            disagreements[..disagreements.len().min(40)].join("\n")
        );
    }
}
