//! Fast CSV field formatting into a byte buffer: ids, timestamps, amounts. No allocation.

/// How a timestamp is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TsStyle {
    /// `yyyy-MM-dd HH:mm:ss`, the standard format.
    Standard,
    /// `yyyy-MM-dd'T'HH:mm:ss`.
    Iso,
    /// `MM/dd/yyyy HH:mm` (whole minutes only).
    Us,
}

pub(crate) fn push2(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&[b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8]);
}

pub(crate) fn push4(b: &mut Vec<u8>, v: u32) {
    push2(b, v / 100);
    push2(b, v % 100);
}

/// `prefix` then `n` zero-padded to at least `width` digits (`V00042`).
pub(crate) fn push_id(b: &mut Vec<u8>, prefix: u8, n: u32, width: usize) {
    b.push(prefix);
    let mut buf = itoa::Buffer::new();
    let s = buf.format(n);
    for _ in s.len()..width {
        b.push(b'0');
    }
    b.extend_from_slice(s.as_bytes());
}

pub(crate) fn push_u32(b: &mut Vec<u8>, n: u32) {
    b.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Cents as a decimal amount with two decimals (`-12.50`), with `sep` as the decimal separator.
pub(crate) fn push_cents(b: &mut Vec<u8>, cents: i64, sep: u8) {
    if cents < 0 {
        b.push(b'-');
    }
    let c = cents.unsigned_abs();
    b.extend_from_slice(itoa::Buffer::new().format(c / 100).as_bytes());
    b.push(sep);
    push2(b, (c % 100) as u32);
}

/// The civil date of a day count since 1970-01-01 (H. Hinnant's algorithm).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A date as `yyyy-MM-dd`.
pub(crate) fn push_date(b: &mut Vec<u8>, days: i64) {
    let (y, m, d) = civil_from_days(days);
    push4(b, y as u32);
    b.push(b'-');
    push2(b, m);
    b.push(b'-');
    push2(b, d);
}

/// A time (seconds since 1970-01-01 00:00:00, zone-less) in the given style.
pub(crate) fn push_ts(b: &mut Vec<u8>, secs: i64, style: TsStyle) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    match style {
        TsStyle::Standard | TsStyle::Iso => {
            push4(b, y as u32);
            b.push(b'-');
            push2(b, m);
            b.push(b'-');
            push2(b, d);
            b.push(if style == TsStyle::Iso { b'T' } else { b' ' });
        }
        TsStyle::Us => {
            push2(b, m);
            b.push(b'/');
            push2(b, d);
            b.push(b'/');
            push4(b, y as u32);
            b.push(b' ');
        }
    }
    push2(b, sod / 3600);
    b.push(b':');
    push2(b, sod / 60 % 60);
    if style != TsStyle::Us {
        b.push(b':');
        push2(b, sod % 60);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, NaiveDateTime};

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut b = Vec::new();
        f(&mut b);
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn timestamps_match_chrono() {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
        for secs in [0i64, 59, 86_399, 951_782_400, 1_772_323_199, 1_772_323_200, 4_102_444_800, -86_401] {
            let t: NaiveDateTime = epoch + chrono::Duration::seconds(secs);
            assert_eq!(s(|b| push_ts(b, secs, TsStyle::Standard)), t.format("%Y-%m-%d %H:%M:%S").to_string());
            assert_eq!(s(|b| push_ts(b, secs, TsStyle::Iso)), t.format("%Y-%m-%dT%H:%M:%S").to_string());
            assert_eq!(s(|b| push_ts(b, secs, TsStyle::Us)), t.format("%m/%d/%Y %H:%M").to_string());
        }
        // Every day over several leap years.
        let mut d = NaiveDate::from_ymd_opt(1999, 12, 1).unwrap();
        for n in 0..(365 * 10) {
            let days = (d - epoch.date()).num_days();
            assert_eq!(s(|b| push_date(b, days)), d.format("%Y-%m-%d").to_string(), "day {n}");
            d = d.succ_opt().unwrap();
        }
    }

    #[test]
    fn ids_and_amounts() {
        assert_eq!(s(|b| push_id(b, b'V', 42, 5)), "V00042");
        assert_eq!(s(|b| push_id(b, b'L', 123_456, 4)), "L123456");
        assert_eq!(s(|b| push_cents(b, 12_345, b'.')), "123.45");
        assert_eq!(s(|b| push_cents(b, 5, b'.')), "0.05");
        assert_eq!(s(|b| push_cents(b, -4_200, b'.')), "-42.00");
        assert_eq!(s(|b| push_cents(b, 1_250, b',')), "12,50");
    }
}
