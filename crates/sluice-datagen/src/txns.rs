//! One day of rental transactions: clean rows, and exact numbers of rows of each dirty kind at
//! random places, streamed to a writer.

use std::io::{self, Write};

use chrono::{Datelike, NaiveDate};

use crate::dims::{Dimensions, HOUR_WEIGHTS, LOCATION_ID, USER_ID, VEHICLE_ID};
use crate::fmt::{push2, push4, push_cents, push_id, push_ts, TsStyle};
use crate::kinds::DirtyKind;
use crate::rng::Rng;

pub(crate) const TRANSACTIONS_HEADER: &str =
    "transaction_id,user_id,vehicle_id,pickup_location_id,dropoff_location_id,start_time,end_time,total_amount\n";

/// Unparseable timestamps for `bad_timestamp` rows.
const BAD_TIMESTAMPS: &[&str] =
    &["2026-13-45 99:00", "yesterday", "0000-00-00 00:00:00", "12/45/2026 10:00", "not a date"];

/// How many clean rows `duplicate_id` rows copy from (a uniform sample of the earlier ones).
const RESERVOIR: usize = 4096;

/// A transaction as generated, before it is written (clean, or spoiled by a kind).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Txn {
    seq: u32,
    user: u32,
    vehicle: u32,
    pickup: u32,
    dropoff: u32,
    /// Seconds since 1970-01-01 00:00:00 (zone-less).
    start: i64,
    end: i64,
    cents: i64,
}

enum Ts {
    Empty,
    At(i64, TsStyle),
    Text(&'static str),
}

enum Amount {
    Empty,
    Cents(i64),
    /// A decimal comma, quoted: `"12,50"`.
    Comma(i64),
    /// A currency sign: `$12.50`.
    Dollar(i64),
    Text(&'static str),
}

/// What is written for a transaction: `None` is an empty field.
struct Row {
    seq: Option<u32>,
    user: Option<u32>,
    vehicle: Option<u32>,
    pickup: Option<u32>,
    dropoff: Option<u32>,
    start: Ts,
    end: Ts,
    amount: Amount,
}

impl Row {
    fn clean(t: &Txn, style: TsStyle) -> Row {
        Row {
            seq: Some(t.seq),
            user: Some(t.user),
            vehicle: Some(t.vehicle),
            pickup: Some(t.pickup),
            dropoff: Some(t.dropoff),
            start: Ts::At(t.start, style),
            end: Ts::At(t.end, style),
            amount: Amount::Cents(t.cents),
        }
    }

    fn write(&self, b: &mut Vec<u8>, id_prefix: &[u8]) {
        if let Some(seq) = self.seq {
            b.extend_from_slice(id_prefix);
            let mut buf = itoa::Buffer::new();
            let s = buf.format(seq);
            for _ in s.len()..7 {
                b.push(b'0');
            }
            b.extend_from_slice(s.as_bytes());
        }
        for (id, (prefix, width)) in
            [(self.user, USER_ID), (self.vehicle, VEHICLE_ID), (self.pickup, LOCATION_ID), (self.dropoff, LOCATION_ID)]
        {
            b.push(b',');
            if let Some(n) = id {
                push_id(b, prefix, n, width);
            }
        }
        for ts in [&self.start, &self.end] {
            b.push(b',');
            match ts {
                Ts::Empty => {}
                Ts::At(secs, style) => push_ts(b, *secs, *style),
                Ts::Text(s) => b.extend_from_slice(s.as_bytes()),
            }
        }
        b.push(b',');
        match self.amount {
            Amount::Empty => {}
            Amount::Cents(c) => push_cents(b, c, b'.'),
            Amount::Comma(c) => {
                b.push(b'"');
                push_cents(b, c, b',');
                b.push(b'"');
            }
            Amount::Dollar(c) => {
                b.push(b'$');
                push_cents(b, c, b'.');
            }
            Amount::Text(s) => b.extend_from_slice(s.as_bytes()),
        }
        b.push(b'\n');
    }
}

struct DayGen<'a> {
    dims: &'a Dimensions,
    rng: Rng,
    /// The date's 00:00:00 in seconds since 1970-01-01.
    day_start: i64,
}

impl DayGen<'_> {
    /// A clean transaction. `whole_minutes`: times without seconds (for `MM/dd/yyyy HH:mm`).
    fn txn(&mut self, seq: u32, whole_minutes: bool) -> Txn {
        let rng = &mut self.rng;
        let users = self.dims.users;
        // Some regulars: 40% of rentals by the first fifth of the users.
        let user = if rng.percent(40) { 1 + rng.below((users / 5).max(1)) } else { 1 + rng.below(users) };
        let vehicle = 1 + rng.below(self.dims.rates.len() as u32);
        let pickup = 1 + rng.below(self.dims.locations);
        let dropoff = if rng.percent(75) { pickup } else { 1 + rng.below(self.dims.locations) };
        let hour = rng.weighted(&HOUR_WEIGHTS) as i64;
        let minute = i64::from(rng.below(60));
        let second = if whole_minutes { 0 } else { i64::from(rng.below(60)) };
        let start = self.day_start + hour * 3600 + minute * 60 + second;
        // A few hours to a few days, in whole minutes.
        let minutes = match rng.weighted(&[25, 55, 20]) {
            0 => rng.range(120, 720),
            1 => rng.range(721, 3 * 1440),
            _ => rng.range(3 * 1440 + 1, 7 * 1440),
        };
        let end = start + i64::from(minutes) * 60;
        let days = i64::from(minutes.div_ceil(1440).max(1));
        let cents = i64::from(self.dims.rates[vehicle as usize - 1]) * days;
        Txn { seq, user, vehicle, pickup, dropoff, start, end, cents }
    }

    /// The row for a transaction of a kind (`None`: clean).
    fn row(&mut self, seq: u32, kind: Option<DirtyKind>) -> (Txn, Row) {
        use DirtyKind::*;
        let style = match kind {
            Some(AltTimestampFormat) if self.rng.percent(50) => TsStyle::Iso,
            Some(AltTimestampFormat) => TsStyle::Us,
            _ => TsStyle::Standard,
        };
        let t = self.txn(seq, style == TsStyle::Us);
        let mut row = Row::clean(&t, style);
        let rng = &mut self.rng;
        let unknown = |rng: &mut Rng, known: u32| known.saturating_add(1 + rng.below(1000));
        match kind {
            None | Some(AltTimestampFormat) | Some(DuplicateId) => {}
            Some(MissingValue) => match rng.below(8) {
                0 => row.seq = None,
                1 => row.user = None,
                2 => row.vehicle = None,
                3 => row.pickup = None,
                4 => row.dropoff = None,
                5 => row.start = Ts::Empty,
                6 => row.end = Ts::Empty,
                _ => row.amount = Amount::Empty,
            },
            Some(BadTimestamp) => {
                let text = Ts::Text(rng.pick(BAD_TIMESTAMPS));
                if rng.percent(50) {
                    row.start = text;
                } else {
                    row.end = text;
                }
            }
            Some(BadAmount) => {
                row.amount = match rng.below(4) {
                    0 => Amount::Comma(t.cents),
                    1 => Amount::Dollar(t.cents),
                    2 => Amount::Text("N/A"),
                    _ => Amount::Text("unknown"),
                }
            }
            Some(NegativeAmount) => row.amount = Amount::Cents(-t.cents),
            Some(EndBeforeStart) => row.end = Ts::At(t.start - (t.end - t.start), TsStyle::Standard),
            Some(UnknownVehicle) => row.vehicle = Some(unknown(rng, self.dims.rates.len() as u32)),
            Some(UnknownLocation) => row.pickup = Some(unknown(rng, self.dims.locations)),
            Some(UnknownUser) => row.user = Some(unknown(rng, self.dims.users)),
        }
        (t, row)
    }
}

/// `T20260301-`: a day's transaction ids are `T{yyyyMMdd}-{n:07}`, unique across dates.
fn id_prefix(date: NaiveDate) -> [u8; 10] {
    let mut b = Vec::with_capacity(10);
    b.push(b'T');
    push4(&mut b, date.year() as u32);
    push2(&mut b, date.month());
    push2(&mut b, date.day());
    b.push(b'-');
    b.try_into().expect("10 bytes")
}

/// The date as `yyyymmdd`, the number a day's random stream is keyed with.
pub(crate) fn date_number(date: NaiveDate) -> u64 {
    date.year() as u64 * 10_000 + u64::from(date.month()) * 100 + u64::from(date.day())
}

/// Writes a day's `rental_transactions.csv`: `transactions` rows, of which `counts[k]` of kind
/// `k` (in `DirtyKind::ALL` order), the others clean.
pub(crate) fn write_day(
    w: &mut impl Write,
    dims: &Dimensions,
    seed: u64,
    date: NaiveDate,
    transactions: u32,
    counts: &[u64; DirtyKind::ALL.len()],
) -> io::Result<()> {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid");
    let mut gen = DayGen {
        dims,
        rng: Rng::new(seed, b"txns\0\0\0\0", date_number(date)),
        day_start: (date - epoch).num_days() * 86_400,
    };
    let prefix = id_prefix(date);

    // Remaining rows per class: 0 is clean, 1 + k is kind k. Each row draws its class with
    // probability remaining/left, which places exactly the asked numbers uniformly at random.
    let mut remaining = [0u32; 1 + DirtyKind::ALL.len()];
    for (r, c) in remaining[1..].iter_mut().zip(counts) {
        *r = *c as u32;
    }
    remaining[0] = transactions - remaining[1..].iter().sum::<u32>();
    let dup_class = 1 + DirtyKind::DuplicateId.index();
    let duplicates = remaining[dup_class] > 0;

    let mut reservoir: Vec<Txn> = Vec::new();
    let mut cleans_seen: u32 = 0;
    let mut seq: u32 = 0;
    let mut line = Vec::with_capacity(256);
    w.write_all(TRANSACTIONS_HEADER.as_bytes())?;
    for i in 0..transactions {
        let class = if i == 0 && duplicates {
            0 // a duplicate always has an earlier clean row to copy
        } else {
            let mut r = gen.rng.below(transactions - i);
            let mut c = 0;
            while r >= remaining[c] {
                r -= remaining[c];
                c += 1;
            }
            c
        };
        remaining[class] -= 1;
        line.clear();
        if class == dup_class {
            let t = reservoir[gen.rng.below(reservoir.len() as u32) as usize];
            Row::clean(&t, TsStyle::Standard).write(&mut line, &prefix);
        } else {
            seq += 1;
            let kind = class.checked_sub(1).map(|k| DirtyKind::ALL[k]);
            let (t, row) = gen.row(seq, kind);
            row.write(&mut line, &prefix);
            if class == 0 && duplicates {
                // Algorithm R: a uniform sample of the clean rows so far.
                cleans_seen += 1;
                if reservoir.len() < RESERVOIR {
                    reservoir.push(t);
                } else {
                    let j = gen.rng.below(cleans_seen) as usize;
                    if j < RESERVOIR {
                        reservoir[j] = t;
                    }
                }
            }
        }
        w.write_all(&line)?;
    }
    Ok(())
}
