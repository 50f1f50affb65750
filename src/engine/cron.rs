//! When a schedule is due (COMPAT.md "Triggers"): cron expressions (five
//! fields, or a preset) read on the wall clock of the schedule's IANA time
//! zone, `@every` intervals, one-time and manual schedules.
//!
//! Daylight saving: a local time the clock skips does not run that day; a
//! local time the clock shows twice runs once, at its first instant. So
//! `30 2 * * *` in Europe/Berlin has no run on the last Sunday of March and
//! one run on the last Sunday of October, and successive due times always
//! move forward.
//!
//! Written here rather than taken from a cron crate: the ones looked at run a
//! skipped time at the first instant after the gap (Vixie cron's rule), and
//! the original's field rules (numeric ranges, its presets, `@every`) would
//! have to be checked in front of them anyway. Time zones are `chrono-tz`.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// How far ahead a cron expression is searched for its next date. Every
/// expression that can match at all matches within eight years (29 February
/// of a given weekday needs at most 28, but such a field pair is an OR).
const SEARCH_YEARS: i64 = 8;
/// The longest `@every` interval (a year).
const MAX_INTERVAL_SECONDS: i64 = 366 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Cron,
    Interval,
    OneTime,
    Manual,
}

impl Kind {
    pub(crate) fn parse(raw: &str) -> Option<Self> {
        match raw {
            "cron" => Some(Self::Cron),
            "interval" => Some(Self::Interval),
            "one_time" => Some(Self::OneTime),
            "manual" => Some(Self::Manual),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Cron => "cron",
            Self::Interval => "interval",
            Self::OneTime => "one_time",
            Self::Manual => "manual",
        }
    }
}

/// A schedule's timing, checked.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub kind: Kind,
    pub tz: Tz,
    pub run_at: Option<DateTime<Utc>>,
    cron: Option<Cron>,
    interval: Option<Duration>,
}

/// A schedule's timing as sent: `schedule{type, expression, timezone, run_at}`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Raw<'a> {
    pub kind: Option<&'a str>,
    pub expression: Option<&'a str>,
    pub timezone: Option<&'a str>,
    /// RFC 3339, or a local date and time read in `timezone`.
    pub run_at: Option<&'a str>,
}

impl Spec {
    /// Check a schedule's timing. Each problem names its field
    /// (`schedule.expression: …`). `now` bounds `run_at`.
    pub(crate) fn parse(raw: &Raw<'_>, now: DateTime<Utc>) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let kind = match raw.kind {
            None => {
                errors.push("schedule.type: Field required".to_owned());
                None
            }
            Some(k) => Kind::parse(k).or_else(|| {
                errors.push(format!(
                    "schedule.type: must be one of cron, interval, one_time, manual (not '{k}')"
                ));
                None
            }),
        };
        let tz_name = raw.timezone.map(str::trim).filter(|t| !t.is_empty());
        let tz = match tz_name {
            None => Some(Tz::UTC),
            Some(name) => name.parse::<Tz>().ok().or_else(|| {
                errors.push(format!(
                    "schedule.timezone: unknown time zone '{name}' (an IANA name such as Europe/Berlin or UTC)"
                ));
                None
            }),
        };
        let expression = raw.expression.map(str::trim).filter(|e| !e.is_empty());
        let mut cron = None;
        let mut interval = None;
        let mut run_at = None;
        match kind {
            Some(Kind::Cron) => match expression {
                None => errors.push("schedule.expression: required for cron schedules".into()),
                Some(e) => match Cron::parse(e) {
                    Ok(c) => cron = Some(c),
                    Err(why) => errors.push(format!(
                        "schedule.expression: invalid cron expression '{e}': {why}"
                    )),
                },
            },
            Some(Kind::Interval) => match expression {
                None => errors.push("schedule.expression: required for interval schedules".into()),
                Some(e) => match parse_interval(e) {
                    Ok(d) => interval = Some(d),
                    Err(why) => errors.push(format!(
                        "schedule.expression: invalid interval '{e}': {why}"
                    )),
                },
            },
            Some(Kind::OneTime) => match (raw.run_at, tz) {
                (None, _) => errors.push("schedule.run_at: required for one_time schedules".into()),
                (Some(text), Some(tz)) => match parse_instant(text, tz) {
                    Ok(at) if at <= now => errors.push(format!(
                        "schedule.run_at: {} is in the past",
                        at.to_rfc3339()
                    )),
                    Ok(at) => run_at = Some(at),
                    Err(why) => errors.push(format!("schedule.run_at: {why}")),
                },
                (Some(_), None) => {}
            },
            Some(Kind::Manual) | None => {}
        }
        if let (Some(c), Some(tz), Some(e)) = (&cron, tz, expression) {
            if c.next_after(tz, now).is_none() {
                errors.push(format!(
                    "schedule.expression: '{e}' matches no date in the next {SEARCH_YEARS} years"
                ));
            }
        }
        match (kind, tz) {
            (Some(kind), Some(tz)) if errors.is_empty() => Ok(Self {
                kind,
                tz,
                run_at,
                cron,
                interval,
            }),
            _ => Err(errors),
        }
    }

    /// The first due time of a schedule created (or resumed) at `now`.
    pub(crate) fn first(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.kind {
            Kind::Cron => self.cron.as_ref()?.next_after(self.tz, now),
            Kind::Interval => Some(now + self.interval?),
            Kind::OneTime => self.run_at.filter(|at| *at > now),
            Kind::Manual => None,
        }
    }

    /// The due time after firing for `due` at `now`: the next one after
    /// `now`, so a schedule that missed several due times (every replica
    /// down) runs once for them all and then keeps its rhythm (an interval
    /// keeps its phase).
    pub(crate) fn after(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.kind {
            Kind::Cron => self.cron.as_ref()?.next_after(self.tz, due.max(now)),
            Kind::Interval => {
                let step = self.interval?;
                let mut next = due + step;
                if next <= now {
                    let behind = (now - due).num_milliseconds();
                    let steps = behind / step.num_milliseconds() + 1;
                    next = due + step * steps as i32;
                    if next <= now {
                        next += step;
                    }
                }
                Some(next)
            }
            Kind::OneTime | Kind::Manual => None,
        }
    }

    /// Up to `count` due times from `from` on: what `next-runs` shows.
    pub(crate) fn upcoming(
        &self,
        next: Option<DateTime<Utc>>,
        from: DateTime<Utc>,
        count: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(count);
        let mut at = match next {
            Some(n) if n > from || self.kind == Kind::Interval => Some(n),
            _ => self.first(from),
        };
        while let Some(t) = at {
            if out.len() >= count {
                break;
            }
            out.push(t);
            at = match self.kind {
                Kind::Cron => self.cron.as_ref().and_then(|c| c.next_after(self.tz, t)),
                Kind::Interval => self.interval.map(|d| t + d),
                _ => None,
            };
        }
        out
    }
}

/// `@every 1h30m`, `@every 30s` (the original's syntax; case-insensitive).
pub(crate) fn parse_interval(text: &str) -> Result<Duration, String> {
    let lower = text.trim().to_ascii_lowercase();
    let rest = lower
        .strip_prefix("@every")
        .ok_or("must look like @every 1h30m, @every 5m or @every 30s")?;
    if !rest.starts_with(char::is_whitespace) {
        return Err("must look like @every 1h30m, @every 5m or @every 30s".into());
    }
    let mut total: i64 = 0;
    let mut number = String::new();
    let mut last_unit = 0;
    let mut any = false;
    for c in rest.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let (rank, seconds) = match c {
            'h' => (1, 3600),
            'm' => (2, 60),
            's' => (3, 1),
            _ => return Err(format!("unexpected '{c}': use h, m and s, in that order")),
        };
        if number.is_empty() || rank <= last_unit {
            return Err("use a number before each of h, m and s, in that order".into());
        }
        let n: i64 = number.parse().map_err(|_| "the number is too large")?;
        total = n
            .checked_mul(seconds)
            .and_then(|v| v.checked_add(total))
            .ok_or("the interval is too long")?;
        number.clear();
        last_unit = rank;
        any = true;
    }
    if !number.is_empty() || !any {
        return Err("each number needs a unit (h, m or s)".into());
    }
    if total == 0 {
        return Err("must be greater than zero".into());
    }
    if total > MAX_INTERVAL_SECONDS {
        return Err("must be at most a year".into());
    }
    Ok(Duration::seconds(total))
}

/// An instant from RFC 3339 text, or from a date and time without offset
/// read on the wall clock of `tz` (the earlier instant of a repeated time).
pub(crate) fn parse_instant(text: &str, tz: Tz) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let local = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .ok_or_else(|| {
        format!("'{text}' is not a date and time (RFC 3339, such as 2026-05-01T09:00:00Z)")
    })?;
    match tz.from_local_datetime(&local) {
        LocalResult::Single(at) => Ok(at.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Ok(first.with_timezone(&Utc)),
        LocalResult::None => Err(format!(
            "{local} does not exist in {tz} (the clocks skip it for daylight saving)"
        )),
    }
}

/// A five-field cron expression: minute, hour, day of month, month, day of
/// week. Each field is `*`, a number, a range `a-b`, a step `*/n`, `a-b/n`
/// or `a/n`, or a list of those; months and weekdays may be named
/// (`JAN`, `MON`); 0 and 7 are Sunday. Presets: `@yearly`, `@annually`,
/// `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`, `@every_minute`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// Whether the day-of-month / day-of-week field starts with `*`: when
    /// both are restricted a day matching either runs (cron's rule).
    any_day: bool,
    any_weekday: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Cron {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let expanded = match text.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *".to_owned(),
            "@monthly" => "0 0 1 * *".to_owned(),
            "@weekly" => "0 0 * * 0".to_owned(),
            "@daily" | "@midnight" => "0 0 * * *".to_owned(),
            "@hourly" => "0 * * * *".to_owned(),
            "@every_minute" => "* * * * *".to_owned(),
            p if p.starts_with("@every") => {
                return Err("an @every interval is a schedule of type interval".into());
            }
            p if p.starts_with('@') => {
                return Err(format!(
                    "unknown preset '{text}' (use @yearly, @monthly, @weekly, @daily, @hourly or @every_minute)"
                ));
            }
            _ => text.to_owned(),
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            ));
        }
        let minutes = field(fields[0], "minute", 0, 59, &[])?;
        let hours = field(fields[1], "hour", 0, 23, &[])?;
        let days = field(fields[2], "day of month", 1, 31, &[])?;
        let months = field(fields[3], "month", 1, 12, &MONTHS)?;
        let mut weekdays = field(fields[4], "day of week", 0, 7, &WEEKDAYS)?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1; // 7 is Sunday too
        }
        Ok(Self {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: (weekdays & 0x7f) as u8,
            any_day: fields[2].starts_with('*'),
            any_weekday: fields[4].starts_with('*'),
        })
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().num_days_from_sunday()) != 0;
        match (self.any_day, self.any_weekday) {
            (false, false) => dom || dow,
            _ => dom && dow,
        }
    }

    /// The first instant strictly after `after` whose wall-clock time in
    /// `tz` matches; see the module docs for daylight saving.
    pub(crate) fn next_after(&self, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Local times map to instants in order (a repeated time to its
        // first instant), so the search starts on `after`'s own local date.
        let start = after.with_timezone(&tz).date_naive();
        let last = start + Duration::days(366 * SEARCH_YEARS + 2);
        let mut date = start;
        while date <= last {
            if self.day_matches(date) {
                for hour in (0..24).filter(|h| self.hours & (1 << h) != 0) {
                    for minute in (0..60).filter(|m| self.minutes & (1 << m) != 0) {
                        let Some(local) = date.and_hms_opt(hour, minute, 0) else {
                            continue;
                        };
                        let at = match tz.from_local_datetime(&local) {
                            LocalResult::Single(at) => at,
                            LocalResult::Ambiguous(first, _) => first,
                            LocalResult::None => continue, // skipped by the clocks
                        };
                        let at = at.with_timezone(&Utc);
                        if at > after {
                            return Some(at);
                        }
                    }
                }
            }
            date = date.succ_opt()?;
        }
        None
    }
}

/// One field as a bit set of its allowed values.
fn field(text: &str, name: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| format!("{name}: step '{s}' is not a number"))?;
                if step == 0 {
                    return Err(format!("{name}: a step must be at least 1"));
                }
                (r, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                value(a, name, min, max, names)?,
                value(b, name, min, max, names)?,
            )
        } else {
            let v = value(range, name, min, max, names)?;
            // `a/n` runs from a to the end of the range.
            (v, if part.contains('/') { max } else { v })
        };
        if lo > hi {
            return Err(format!("{name}: range {lo}-{hi} runs backwards"));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

fn value(text: &str, name: &str, min: u32, max: u32, names: &[&str]) -> Result<u32, String> {
    if text.is_empty() {
        return Err(format!("{name}: empty value"));
    }
    let lower = text.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        // Months are named from 1, weekdays from 0.
        return Ok(i as u32 + min);
    }
    let v: u32 = text
        .parse()
        .map_err(|_| format!("{name}: '{text}' is not a number"))?;
    if v < min || v > max {
        return Err(format!("{name}: {v} is outside {min}-{max}"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn runs(expr: &str, tz: &str, from: &str, n: usize) -> Vec<String> {
        let cron = Cron::parse(expr).unwrap();
        let tz: Tz = tz.parse().unwrap();
        let mut at = utc(from);
        let mut out = Vec::new();
        for _ in 0..n {
            at = cron.next_after(tz, at).unwrap();
            out.push(at.with_timezone(&tz).to_rfc3339());
        }
        out
    }

    #[test]
    fn a_daily_time_in_the_spring_gap_is_skipped_that_day() {
        // Europe/Berlin: 2026-03-29 02:00 CET -> 03:00 CEST.
        assert_eq!(
            runs("30 2 * * *", "Europe/Berlin", "2026-03-27T12:00:00Z", 3),
            [
                "2026-03-28T02:30:00+01:00",
                "2026-03-30T02:30:00+02:00",
                "2026-03-31T02:30:00+02:00"
            ]
        );
    }

    #[test]
    fn a_repeated_autumn_time_runs_once() {
        // Europe/Berlin: 2026-10-25 03:00 CEST -> 02:00 CET; 02:30 happens twice.
        assert_eq!(
            runs("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00Z", 3),
            [
                "2026-10-25T02:30:00+02:00",
                "2026-10-26T02:30:00+01:00",
                "2026-10-27T02:30:00+01:00"
            ]
        );
        // Every 30 minutes through the repeated hour: 02:00 and 02:30 once
        // each (their first instants), then 03:00 CET two hours later.
        assert_eq!(
            runs("*/30 * * * *", "Europe/Berlin", "2026-10-24T23:10:00Z", 5),
            [
                "2026-10-25T01:30:00+02:00",
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T03:00:00+01:00",
                "2026-10-25T03:30:00+01:00"
            ]
        );
    }

    #[test]
    fn the_wall_clock_holds_across_the_change_and_new_york_differs() {
        // 09:00 local, whatever the offset.
        assert_eq!(
            runs("0 9 * * 1-5", "America/New_York", "2026-03-06T00:00:00Z", 3),
            [
                "2026-03-06T09:00:00-05:00",
                "2026-03-09T09:00:00-04:00",
                "2026-03-10T09:00:00-04:00"
            ]
        );
        assert_eq!(
            runs("0 9 * * *", "UTC", "2026-03-06T09:00:00Z", 1),
            ["2026-03-07T09:00:00+00:00"]
        );
    }

    #[test]
    fn fields_lists_steps_names_and_presets() {
        assert_eq!(
            runs("0 0 1 JAN,jul *", "UTC", "2026-01-01T00:00:00Z", 2),
            ["2026-07-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"]
        );
        assert_eq!(
            runs("15/20 3 * * 7", "UTC", "2026-03-01T00:00:00Z", 4),
            [
                "2026-03-01T03:15:00+00:00",
                "2026-03-01T03:35:00+00:00",
                "2026-03-01T03:55:00+00:00",
                "2026-03-08T03:15:00+00:00"
            ]
        );
        // Day of month OR day of week when both are restricted.
        assert_eq!(
            runs("0 0 13 * 5", "UTC", "2026-03-01T00:00:00Z", 3),
            [
                "2026-03-06T00:00:00+00:00",
                "2026-03-13T00:00:00+00:00",
                "2026-03-20T00:00:00+00:00"
            ]
        );
        assert_eq!(Cron::parse("@daily"), Cron::parse("0 0 * * *"));
        assert_eq!(Cron::parse("@Hourly"), Cron::parse("0 * * * *"));
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "a * * * *",
            "@often",
            "@every 5m",
        ] {
            assert!(Cron::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn intervals_in_the_originals_syntax() {
        assert_eq!(
            parse_interval("@every 1h30m").unwrap(),
            Duration::minutes(90)
        );
        assert_eq!(parse_interval("@EVERY 30s").unwrap(), Duration::seconds(30));
        assert_eq!(parse_interval("@every 1s").unwrap(), Duration::seconds(1));
        for bad in [
            "@every",
            "@every 0s",
            "@every 5",
            "@every 5x",
            "@every 1m1h",
            "every 5m",
            "@every5m",
        ] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_interval_keeps_its_phase_after_missed_runs() {
        let now = utc("2026-01-01T00:00:00Z");
        let spec = Spec::parse(
            &Raw {
                kind: Some("interval"),
                expression: Some("@every 10s"),
                ..Raw::default()
            },
            now,
        )
        .unwrap();
        let due = utc("2026-01-01T00:00:10Z");
        assert_eq!(spec.after(due, due), Some(utc("2026-01-01T00:00:20Z")));
        // Down from 00:00:10 to 00:01:03: one run for everything missed,
        // then 00:01:10, on the original phase.
        assert_eq!(
            spec.after(due, utc("2026-01-01T00:01:03Z")),
            Some(utc("2026-01-01T00:01:10Z"))
        );
        assert_eq!(
            spec.after(due, utc("2026-01-01T00:01:10Z")),
            Some(utc("2026-01-01T00:01:20Z"))
        );
    }

    #[test]
    fn bad_timing_names_the_field() {
        let now = utc("2026-01-01T00:00:00Z");
        let err = |raw: Raw<'_>| Spec::parse(&raw, now).unwrap_err().join("; ");
        assert!(
            err(Raw {
                kind: Some("cron"),
                expression: Some("61 * * * *"),
                ..Raw::default()
            })
            .starts_with("schedule.expression: invalid cron expression")
        );
        assert!(
            err(Raw {
                kind: Some("cron"),
                ..Raw::default()
            })
            .starts_with("schedule.expression:")
        );
        assert!(
            err(Raw {
                kind: Some("cron"),
                expression: Some("0 0 30 2 *"),
                ..Raw::default()
            })
            .contains("matches no date")
        );
        assert!(
            err(Raw {
                kind: Some("interval"),
                expression: Some("@every 0s"),
                ..Raw::default()
            })
            .starts_with("schedule.expression: invalid interval")
        );
        assert!(
            err(Raw {
                kind: Some("cron"),
                expression: Some("* * * * *"),
                timezone: Some("Mars/Olympus"),
                ..Raw::default()
            })
            .starts_with("schedule.timezone: unknown time zone")
        );
        assert!(
            err(Raw {
                kind: Some("one_time"),
                ..Raw::default()
            })
            .starts_with("schedule.run_at:")
        );
        assert!(
            err(Raw {
                kind: Some("one_time"),
                run_at: Some("2025-01-01T00:00:00Z"),
                ..Raw::default()
            })
            .contains("in the past")
        );
        assert!(
            err(Raw {
                kind: Some("one_time"),
                run_at: Some("tomorrow"),
                ..Raw::default()
            })
            .starts_with("schedule.run_at:")
        );
        assert!(
            err(Raw {
                kind: Some("one_time"),
                run_at: Some("2026-03-29T02:30"),
                timezone: Some("Europe/Berlin"),
                ..Raw::default()
            })
            .contains("does not exist")
        );
        assert!(
            err(Raw {
                kind: Some("hourly"),
                ..Raw::default()
            })
            .starts_with("schedule.type:")
        );
        // A local run_at is read in the schedule's zone.
        let spec = Spec::parse(
            &Raw {
                kind: Some("one_time"),
                run_at: Some("2026-07-01T09:00"),
                timezone: Some("Europe/Berlin"),
                ..Raw::default()
            },
            now,
        )
        .unwrap();
        assert_eq!(spec.run_at, Some(utc("2026-07-01T07:00:00Z")));
        assert_eq!(spec.first(now), spec.run_at);
        assert_eq!(spec.after(utc("2026-07-01T07:00:00Z"), now), None);
    }
}
