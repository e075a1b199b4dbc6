//! The kinds of dirty (and alternative-format) transaction rows, and their shares.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// One way a transaction row departs from a clean row. A row has at most one kind.
///
/// The names (`Display`, `FromStr`, serde) are the ones the Spark jobs count rows under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirtyKind {
    /// One required field is empty.
    MissingValue,
    /// `start_time` or `end_time` is unparseable (`2026-13-45 99:00`, `yesterday`...).
    BadTimestamp,
    /// `total_amount` is not a number (`"12,50"`, `N/A`...).
    BadAmount,
    /// `total_amount` is negative.
    NegativeAmount,
    /// `end_time` is before `start_time`.
    EndBeforeStart,
    /// An exact copy of an earlier clean row of the same day (same transaction_id).
    DuplicateId,
    /// `vehicle_id` is not in `vehicles.csv`.
    UnknownVehicle,
    /// `pickup_location_id` is not in `locations.csv` (the dropoff is always known).
    UnknownLocation,
    /// `user_id` is not in `users.csv`.
    UnknownUser,
    /// Not dirty: a valid row whose two timestamps are written `yyyy-MM-dd'T'HH:mm:ss` or
    /// `MM/dd/yyyy HH:mm`. The jobs must parse it, not drop it.
    AltTimestampFormat,
}

impl DirtyKind {
    /// Every kind, in the order of the summary and of the CLI table.
    pub const ALL: [DirtyKind; 10] = [
        DirtyKind::MissingValue,
        DirtyKind::BadTimestamp,
        DirtyKind::BadAmount,
        DirtyKind::NegativeAmount,
        DirtyKind::EndBeforeStart,
        DirtyKind::DuplicateId,
        DirtyKind::UnknownVehicle,
        DirtyKind::UnknownLocation,
        DirtyKind::UnknownUser,
        DirtyKind::AltTimestampFormat,
    ];

    /// The name the jobs count the kind under.
    pub fn name(self) -> &'static str {
        match self {
            DirtyKind::MissingValue => "missing_value",
            DirtyKind::BadTimestamp => "bad_timestamp",
            DirtyKind::BadAmount => "bad_amount",
            DirtyKind::NegativeAmount => "negative_amount",
            DirtyKind::EndBeforeStart => "end_before_start",
            DirtyKind::DuplicateId => "duplicate_id",
            DirtyKind::UnknownVehicle => "unknown_vehicle",
            DirtyKind::UnknownLocation => "unknown_location",
            DirtyKind::UnknownUser => "unknown_user",
            DirtyKind::AltTimestampFormat => "alt_timestamp_format",
        }
    }

    /// False only for `alt_timestamp_format`: its rows are valid and must be kept.
    pub fn is_invalid(self) -> bool {
        self != DirtyKind::AltTimestampFormat
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for DirtyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DirtyKind {
    type Err = Error;

    /// A kind by its name; an unknown name errs with the closest name ("did you mean").
    fn from_str(s: &str) -> Result<DirtyKind, Error> {
        let s = s.trim();
        if let Some(k) = DirtyKind::ALL.iter().find(|k| k.name() == s) {
            return Ok(*k);
        }
        let suggestion = DirtyKind::ALL
            .iter()
            .map(|k| {
                let d =
                    if s.len() >= 3 && k.name().starts_with(s) { 1 } else { strsim::damerau_levenshtein(s, k.name()) };
                (d, k.name())
            })
            .filter(|(d, name)| *d <= (name.len().max(s.len()) / 3).max(1))
            .min_by_key(|(d, _)| *d)
            .map(|(_, name)| name.to_string());
        Err(Error::UnknownKind { name: s.to_string(), suggestion })
    }
}

/// The share of each day's transactions written as each kind, each in `0.0..=1.0`. The
/// default is all zero: every row clean.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Shares([f64; DirtyKind::ALL.len()]);

impl Shares {
    /// The same share for every kind (`alt_timestamp_format` included): `Shares::all(0.01)`
    /// makes 1% of the rows of each of the 10 kinds, 10% in all.
    pub fn all(share: f64) -> Shares {
        Shares([share; DirtyKind::ALL.len()])
    }

    pub fn get(&self, kind: DirtyKind) -> f64 {
        self.0[kind.index()]
    }

    pub fn set(&mut self, kind: DirtyKind, share: f64) -> &mut Shares {
        self.0[kind.index()] = share;
        self
    }

    /// Builder form of [`Shares::set`].
    pub fn with(mut self, kind: DirtyKind, share: f64) -> Shares {
        self.set(kind, share);
        self
    }

    /// The sum of the shares.
    pub fn total(&self) -> f64 {
        self.0.iter().sum()
    }

    /// Every share is a number in `0..=1` and they sum to at most 1.
    pub fn validate(&self) -> Result<(), Error> {
        for kind in DirtyKind::ALL {
            let share = self.get(kind);
            if !(0.0..=1.0).contains(&share) {
                return Err(Error::ShareOutOfRange { kind, share });
            }
        }
        let total = self.total();
        if total > 1.0 + 1e-9 {
            return Err(Error::SharesTooLarge { total });
        }
        Ok(())
    }

    /// The exact number of rows of each kind among `transactions` rows:
    /// `round(share x transactions)`, half away from zero.
    pub fn counts(&self, transactions: u32) -> [u64; DirtyKind::ALL.len()] {
        self.0.map(|s| (s * f64::from(transactions)).round() as u64)
    }
}

/// Parses a share: a number in `0..=1` (`0.05`), or a percentage (`5%`).
pub fn parse_share(s: &str) -> Result<f64, Error> {
    let t = s.trim();
    let (num, scale) = match t.strip_suffix('%') {
        Some(p) => (p.trim(), 100.0),
        None => (t, 1.0),
    };
    let v: f64 = num.parse().map_err(|_| Error::BadShare(s.to_string()))?;
    let v = v / scale;
    if !v.is_finite() || !(0.0..=1.0).contains(&v) {
        return Err(Error::BadShare(s.to_string()));
    }
    Ok(v)
}

/// Parses `KIND=SHARE` (`bad_amount=0.02`).
pub fn parse_kind_share(s: &str) -> Result<(DirtyKind, f64), Error> {
    let Some((kind, share)) = s.split_once('=') else {
        return Err(Error::BadKindShare(s.to_string()));
    };
    Ok((kind.parse()?, parse_share(share)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for k in DirtyKind::ALL {
            assert_eq!(k.name().parse::<DirtyKind>().unwrap(), k);
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{}\"", k.name()));
        }
    }

    #[test]
    fn unknown_kind_suggests_the_closest() {
        let e = "bad_amout".parse::<DirtyKind>().unwrap_err();
        assert!(e.to_string().contains("did you mean `bad_amount`?"), "{e}");
        let e = "duplicate".parse::<DirtyKind>().unwrap_err();
        assert!(e.to_string().contains("did you mean `duplicate_id`?"), "{e}");
        let e = "zzz".parse::<DirtyKind>().unwrap_err();
        assert!(!e.to_string().contains("did you mean"), "{e}");
        assert!(e.to_string().contains("missing_value"), "{e}");
    }

    #[test]
    fn shares_parse_and_validate() {
        assert_eq!(parse_share("0.25").unwrap(), 0.25);
        assert_eq!(parse_share("5%").unwrap(), 0.05);
        assert!(parse_share("1.5").is_err());
        assert!(parse_share("-0.1").is_err());
        assert!(parse_share("NaN").is_err());
        assert!(parse_share("abc").is_err());
        assert_eq!(parse_kind_share("bad_amount=0.1").unwrap(), (DirtyKind::BadAmount, 0.1));
        assert!(matches!(parse_kind_share("bad_amount"), Err(Error::BadKindShare(_))));
        assert!(Shares::all(0.1).validate().is_ok());
        assert!(matches!(Shares::all(0.2).validate(), Err(Error::SharesTooLarge { .. })));
        assert!(matches!(
            Shares::default().with(DirtyKind::BadAmount, 1.2).validate(),
            Err(Error::ShareOutOfRange { kind: DirtyKind::BadAmount, .. })
        ));
    }

    #[test]
    fn counts_are_rounded_shares() {
        let s = Shares::default().with(DirtyKind::BadAmount, 0.015).with(DirtyKind::UnknownUser, 0.1);
        let c = s.counts(1000);
        assert_eq!(c[DirtyKind::BadAmount.index()], 15);
        assert_eq!(c[DirtyKind::UnknownUser.index()], 100);
        assert_eq!(c.iter().sum::<u64>(), 115);
        assert_eq!(Shares::default().with(DirtyKind::BadAmount, 0.5).counts(3)[DirtyKind::BadAmount.index()], 2);
    }
}
