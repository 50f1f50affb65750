//! `wait_until`: a durable timer. `run` only computes the wake-up time and
//! parks the step with that as its timeout; the engine keeps the due time in
//! the database, so the wait survives restarts, and its timeout sweep calls
//! `on_timeout`, which completes the step.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::{
    DateTime, LocalResult, NaiveDateTime, NaiveTime, SecondsFormat, TimeDelta, TimeZone, Utc,
};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{CATEGORY, is_template, ready, settled};
use crate::actions::params;
use crate::actions::seed::Attempt;
use crate::actions::{
    ActionSpec, BoxFuture, OutputSpec, ParamSpec, StepContext, StepHandler, StepOutcome,
};

const MAX_HOURS: i64 = 168;
const MAX_WAIT: TimeDelta = TimeDelta::hours(MAX_HOURS);
const WHEN: [&str; 3] = ["duration_seconds", "duration_hours", "until_time"];

static SPEC: LazyLock<ActionSpec> = LazyLock::new(|| ActionSpec {
    kind: "wait_until",
    name: "Wait Until",
    category: CATEGORY,
    description: "Pause the workflow for a duration or until a time (at most 168 hours). \
                  Give exactly one of duration_seconds, duration_hours or until_time. \
                  until_time is an ISO 8601 timestamp (with an offset or Z, or without one \
                  for a local time in `timezone`) or HH:MM[:SS] for its next occurrence in \
                  `timezone` (an IANA name, UTC by default). The wait is durable and \
                  survives restarts.",
    params: vec![
        ParamSpec::new("duration_seconds", "number", "Seconds to wait.")
            .range(Some(1.0), Some((MAX_HOURS * 3600) as f64)),
        ParamSpec::new("duration_hours", "number", "Hours to wait (more than 0).")
            .range(Some(0.0), Some(MAX_HOURS as f64)),
        ParamSpec::new(
            "until_time",
            "string",
            "When to wake: ISO 8601 (e.g. 2025-01-31T09:00:00Z, or 2025-01-31T09:00:00 in \
             `timezone`) or HH:MM[:SS] in `timezone`.",
        ),
        ParamSpec::new(
            "timezone",
            "string",
            "IANA time zone of a local until_time (e.g. Europe/Berlin).",
        )
        .default(json!("UTC")),
    ],
    outputs: vec![
        OutputSpec::new("waited", "boolean", "True once the timer fired."),
        OutputSpec::new(
            "scheduled_wake_time",
            "string",
            "When the step is due to wake (RFC 3339).",
        ),
        OutputSpec::new(
            "actual_wake_time",
            "string",
            "When it woke (RFC 3339), null while waiting.",
        ),
        OutputSpec::new(
            "wait_duration_seconds",
            "number",
            "The planned wait in seconds.",
        ),
    ],
    waits_for_event: true,
    // The longest wait plus a minute of slack, so the attempt's own timeout
    // never fires before the timer does.
    default_timeout_seconds: Some(MAX_HOURS as u64 * 3600 + 60),
});

/// The params as given (null is not given): which of the three is given
/// decides which one is judged, so their values are read in [`plan`],
/// after "exactly one".
#[derive(Deserialize)]
struct Params {
    duration_seconds: Option<Value>,
    duration_hours: Option<Value>,
    until_time: Option<Value>,
    timezone: Option<Value>,
}

impl Params {
    /// The given one of the three ways to say when, by name.
    fn when(&self) -> Vec<(&'static str, &Value)> {
        let when = [
            &self.duration_seconds,
            &self.duration_hours,
            &self.until_time,
        ];
        WHEN.into_iter()
            .zip(when)
            .filter_map(|(name, value)| Some((name, value.as_ref()?)))
            .collect()
    }
}

pub(crate) struct WaitUntil;

impl StepHandler for WaitUntil {
    fn spec(&self) -> &ActionSpec {
        &SPEC
    }

    fn validate(&self, params: &Map<String, Value>) -> Vec<String> {
        let submitted = params::submitted::<Params>(params);
        submitted.params.map_or_else(Vec::new, literal_problems)
    }

    fn run(&self, ctx: StepContext) -> BoxFuture<'_, StepOutcome> {
        ready(settled(wait(&ctx, Utc::now())))
    }

    // `on_event` keeps the default (ignore): only the timer wakes the step.

    fn on_timeout(&self, outputs: &Map<String, Value>) -> StepOutcome {
        let mut outputs = outputs.clone();
        outputs.insert("waited".into(), json!(true));
        outputs.insert("actual_wake_time".into(), json!(rfc3339(Utc::now())));
        StepOutcome::completed(outputs)
    }
}

/// Only what the generic checks cannot do: "exactly one" (when none of
/// the given values is a template, which could still render to null),
/// duration_hours of exactly 0 (the range allows its min) and the format
/// of a literal until_time. Whether a timestamp is in the future is only
/// known at run time.
fn literal_problems(p: Params) -> Vec<String> {
    let mut errors = Vec::new();
    let given = p.when();
    if !given.iter().any(|(_, v)| is_template(v)) && given.len() != 1 {
        errors.push(exactly_one());
    }
    if p.duration_hours.as_ref().and_then(Value::as_f64) == Some(0.0) {
        errors.push("duration_hours must be greater than 0".into());
    }
    if let Some(Value::String(s)) = &p.until_time {
        if !crate::dag::template::is_template(s) && parse_until(s).is_none() {
            errors.push(bad_until_time(s));
        }
    }
    if let Some(Value::String(tz)) = &p.timezone {
        if !crate::dag::template::is_template(tz) && tz.parse::<Tz>().is_err() {
            errors.push(invalid_timezone(tz));
        }
    }
    errors
}

/// Park the step until its wake-up time, its timer's timeout.
fn wait(ctx: &StepContext, now: DateTime<Utc>) -> Attempt<StepOutcome> {
    let p: Params = params::read(&ctx.params)?;
    let wake = plan(&p, now).map_err(StepOutcome::permanent)?;
    let wait = wake - now;
    let mut outputs = Map::new();
    outputs.insert("waited".into(), json!(false));
    outputs.insert("scheduled_wake_time".into(), json!(rfc3339(wake)));
    outputs.insert("actual_wake_time".into(), Value::Null);
    outputs.insert("wait_duration_seconds".into(), seconds(wait));
    Ok(StepOutcome::AwaitEvent {
        external_id: format!("wait_until:{}", Uuid::new_v4()),
        outputs,
        // `plan` keeps the wait in (0, 168 h], so this cannot fail.
        timeout: Some(wait.to_std().unwrap_or(Duration::ZERO)),
    })
}

/// The wake-up time for `params` seen at `now`, millisecond precision.
fn plan(params: &Params, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let &[(key, value)] = params.when().as_slice() else {
        return Err(exactly_one());
    };
    let tz = match &params.timezone {
        None => Tz::UTC,
        Some(Value::String(name)) => name
            .trim()
            .parse::<Tz>()
            .map_err(|_| invalid_timezone(name))?,
        Some(other) => return Err(invalid_timezone(&other.to_string())),
    };
    let wake = match key {
        "duration_seconds" => {
            let secs = number(value).ok_or("duration_seconds must be a number")?;
            if secs < 1.0 {
                return Err("duration_seconds must be at least 1".into());
            }
            now + millis(secs * 1000.0)?
        }
        "duration_hours" => {
            let hours = number(value).ok_or("duration_hours must be a number")?;
            if hours <= 0.0 {
                return Err("duration_hours must be greater than 0".into());
            }
            now + millis(hours * 3_600_000.0)?
        }
        _ => {
            let text = value.as_str().ok_or("until_time must be a string")?;
            let at = match parse_until(text).ok_or_else(|| bad_until_time(text))? {
                Until::At(at) => at,
                Until::Local(local) => in_zone(tz, local),
                Until::Daily(time) => {
                    let local_today = now.with_timezone(&tz).date_naive();
                    let today = in_zone(tz, local_today.and_time(time));
                    if today > now {
                        today
                    } else {
                        in_zone(tz, (local_today + TimeDelta::days(1)).and_time(time))
                    }
                }
            };
            if at <= now {
                return Err(format!("until_time must be in the future, got {text}"));
            }
            at
        }
    };
    if wake - now > MAX_WAIT {
        return Err(format!("cannot wait more than {MAX_HOURS} hours"));
    }
    Ok(wake)
}

/// A parsed `until_time`.
enum Until {
    At(DateTime<Utc>),
    /// A timestamp without an offset: a local time in `timezone`.
    Local(NaiveDateTime),
    /// `HH:MM[:SS]`: the next time the clock of `timezone` shows it.
    Daily(NaiveTime),
}

fn parse_until(text: &str) -> Option<Until> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(Until::At(at.with_timezone(&Utc)));
    }
    if let Some(local) = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
    {
        return Some(Until::Local(local));
    }
    ["%H:%M:%S", "%H:%M"]
        .iter()
        .find_map(|format| NaiveTime::parse_from_str(text, format).ok())
        .map(Until::Daily)
}

/// A local time of `tz` as an instant. A time a daylight-saving change
/// repeats is its first occurrence; one it skips is taken an hour later (as
/// Python's `zoneinfo` with `fold=0`, which the original used).
fn in_zone(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at.with_timezone(&Utc),
        LocalResult::None => tz
            .from_local_datetime(&(local + TimeDelta::hours(1)))
            .earliest()
            .map_or_else(|| local.and_utc(), |at| at.with_timezone(&Utc)),
    }
}

/// A number, also from a numeric string (a template embedded in text
/// renders to a string).
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok().filter(|f: &f64| f.is_finite()),
        _ => None,
    }
}

/// Whole milliseconds; rejects what would overflow before the 168 h check.
fn millis(ms: f64) -> Result<TimeDelta, String> {
    if ms > MAX_WAIT.num_milliseconds() as f64 {
        return Err(format!("cannot wait more than {MAX_HOURS} hours"));
    }
    Ok(TimeDelta::milliseconds(ms.round() as i64))
}

/// Seconds as JSON: an integer when whole, else with millisecond precision.
fn seconds(wait: TimeDelta) -> Value {
    let ms = wait.num_milliseconds();
    if ms % 1000 == 0 {
        json!(ms / 1000)
    } else {
        json!(ms as f64 / 1000.0)
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn exactly_one() -> String {
    "exactly one of duration_seconds, duration_hours or until_time must be given".into()
}

fn bad_until_time(text: &str) -> String {
    format!(
        "until_time must be an ISO 8601 timestamp (e.g. 2025-01-31T09:00:00Z, or without \
         an offset for a local time in `timezone`) or HH:MM[:SS], got '{text}'"
    )
}

fn invalid_timezone(name: &str) -> String {
    format!("Invalid timezone: '{name}'")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::EventAction;
    use crate::actions::builtin::test_util::{ctx, params, permanent};

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn plan_at(value: Value, now: &str) -> Result<String, String> {
        let p: Params = params::read(&params(value)).unwrap();
        plan(&p, at(now)).map(rfc3339)
    }

    const NOW: &str = "2025-01-31T10:00:00Z";

    #[test]
    fn durations() {
        assert_eq!(
            plan_at(json!({"duration_seconds": 90}), NOW),
            Ok("2025-01-31T10:01:30.000Z".into())
        );
        assert_eq!(
            plan_at(json!({"duration_seconds": "1.5"}), NOW),
            Ok("2025-01-31T10:00:01.500Z".into())
        );
        assert_eq!(
            plan_at(json!({"duration_hours": 0.5}), NOW),
            Ok("2025-01-31T10:30:00.000Z".into())
        );
        assert_eq!(
            plan_at(json!({"duration_hours": 168}), NOW),
            Ok("2025-02-07T10:00:00.000Z".into())
        );
    }

    #[test]
    fn until_time() {
        assert_eq!(
            plan_at(json!({"until_time": "2025-01-31T12:00:00+01:00"}), NOW),
            Ok("2025-01-31T11:00:00.000Z".into())
        );
        // HH:MM later today, or tomorrow when already past (or now).
        assert_eq!(
            plan_at(json!({"until_time": "10:30"}), NOW),
            Ok("2025-01-31T10:30:00.000Z".into())
        );
        assert_eq!(
            plan_at(json!({"until_time": "09:15:30"}), NOW),
            Ok("2025-02-01T09:15:30.000Z".into())
        );
        assert_eq!(
            plan_at(json!({"until_time": "10:00"}), NOW),
            Ok("2025-02-01T10:00:00.000Z".into())
        );
    }

    #[test]
    fn local_times_are_read_in_the_time_zone() {
        // A timestamp without an offset is UTC by default.
        assert_eq!(
            plan_at(json!({"until_time": "2025-01-31T12:00:00"}), NOW),
            Ok("2025-01-31T12:00:00.000Z".into())
        );
        assert_eq!(
            plan_at(
                json!({"until_time": "2025-01-31T12:00", "timezone": "Europe/Berlin"}),
                NOW
            ),
            Ok("2025-01-31T11:00:00.000Z".into())
        );
        // 10:00 UTC is 19:00 in Tokyo: 20:30 is today there, 08:00 tomorrow.
        assert_eq!(
            plan_at(
                json!({"until_time": "20:30", "timezone": "Asia/Tokyo"}),
                NOW
            ),
            Ok("2025-01-31T11:30:00.000Z".into())
        );
        assert_eq!(
            plan_at(
                json!({"until_time": "08:00", "timezone": "Asia/Tokyo"}),
                NOW
            ),
            Ok("2025-01-31T23:00:00.000Z".into())
        );
        // An offset wins over the time zone.
        assert_eq!(
            plan_at(
                json!({"until_time": "2025-01-31T12:00:00Z", "timezone": "Asia/Tokyo"}),
                NOW
            ),
            Ok("2025-01-31T12:00:00.000Z".into())
        );
        // New York springs forward on 2025-03-09 at 02:00: 02:30 does not
        // exist and is 03:30 EDT; 01:30 on 2025-11-02 happens twice, the
        // first (EDT) counts.
        assert_eq!(
            plan_at(
                json!({"until_time": "2025-03-09T02:30:00", "timezone": "America/New_York"}),
                "2025-03-08T12:00:00Z"
            ),
            Ok("2025-03-09T07:30:00.000Z".into())
        );
        assert_eq!(
            plan_at(
                json!({"until_time": "2025-11-02T01:30:00", "timezone": "America/New_York"}),
                "2025-11-01T12:00:00Z"
            ),
            Ok("2025-11-02T05:30:00.000Z".into())
        );
    }

    #[test]
    fn rejects_bad_waits() {
        let err = |v| plan_at(v, NOW).unwrap_err();
        assert_eq!(err(json!({})), exactly_one());
        assert_eq!(
            err(json!({"duration_seconds": 5, "until_time": "10:30"})),
            exactly_one()
        );
        assert_eq!(
            err(json!({"duration_seconds": 0.5})),
            "duration_seconds must be at least 1"
        );
        assert_eq!(
            err(json!({"duration_seconds": "soon"})),
            "duration_seconds must be a number"
        );
        assert_eq!(
            err(json!({"duration_hours": 0})),
            "duration_hours must be greater than 0"
        );
        assert_eq!(
            err(json!({"duration_hours": 168.01})),
            "cannot wait more than 168 hours"
        );
        assert_eq!(
            err(json!({"duration_seconds": 1e300})),
            "cannot wait more than 168 hours"
        );
        assert_eq!(
            err(json!({"until_time": "2025-02-08T10:00:01Z"})),
            "cannot wait more than 168 hours"
        );
        assert_eq!(
            err(json!({"until_time": "2025-01-31T09:59:59Z"})),
            "until_time must be in the future, got 2025-01-31T09:59:59Z"
        );
        assert_eq!(
            err(json!({"until_time": "10:30", "timezone": "Mars/Olympus"})),
            "Invalid timezone: 'Mars/Olympus'"
        );
        assert_eq!(
            err(json!({"until_time": "2025-01-31T09:00:00"})),
            "until_time must be in the future, got 2025-01-31T09:00:00"
        );
        assert_eq!(err(json!({"until_time": "25:00"})), bad_until_time("25:00"));
    }

    #[tokio::test]
    async fn run_parks_the_step_until_wake_time() {
        let before = Utc::now();
        let outcome = WaitUntil.run(ctx(json!({"duration_seconds": 60}))).await;
        let StepOutcome::AwaitEvent {
            external_id,
            outputs,
            timeout,
        } = outcome
        else {
            panic!("expected AwaitEvent, got {outcome:?}");
        };
        assert!(external_id.starts_with("wait_until:"));
        assert!(Uuid::parse_str(&external_id["wait_until:".len()..]).is_ok());
        assert_eq!(timeout, Some(Duration::from_secs(60)));
        assert_eq!(outputs["waited"], json!(false));
        assert_eq!(outputs["actual_wake_time"], json!(null));
        assert_eq!(outputs["wait_duration_seconds"], json!(60));
        let wake = at(outputs["scheduled_wake_time"].as_str().unwrap());
        let expected = before + TimeDelta::seconds(60);
        assert!((wake - expected).abs() < TimeDelta::seconds(2));
    }

    #[tokio::test]
    async fn run_fails_permanently_on_bad_params() {
        let err = permanent(WaitUntil.run(ctx(json!({"duration_hours": -1}))).await);
        assert_eq!(err, "duration_hours must be greater than 0");
    }

    #[test]
    fn timeout_wakes_and_events_are_ignored() {
        let waiting = params(json!({"waited": false, "actual_wake_time": null,
                                    "scheduled_wake_time": "2025-01-31T10:01:30.000Z",
                                    "wait_duration_seconds": 90}));
        let StepOutcome::Completed { outputs } = WaitUntil.on_timeout(&waiting) else {
            panic!("on_timeout must complete");
        };
        assert_eq!(outputs["waited"], json!(true));
        assert_eq!(
            outputs["scheduled_wake_time"],
            waiting["scheduled_wake_time"]
        );
        assert_eq!(outputs["wait_duration_seconds"], json!(90));
        let woke = at(outputs["actual_wake_time"].as_str().unwrap());
        assert!((Utc::now() - woke).abs() < TimeDelta::seconds(5));
        assert_eq!(
            WaitUntil.on_event(&json!({"status": "COMPLETED"}), &waiting),
            EventAction::Ignore
        );
    }

    #[test]
    fn validate() {
        let check = |v| WaitUntil.validate(&params(v));
        assert!(check(json!({"duration_seconds": 5})).is_empty());
        assert!(check(json!({"until_time": "08:00"})).is_empty());
        assert_eq!(check(json!({})), [exactly_one()]);
        assert_eq!(
            check(json!({"duration_seconds": 5, "duration_hours": 1})),
            [exactly_one()]
        );
        // A template might render to null, so "exactly one" waits for run.
        assert!(
            check(json!({"duration_seconds": "{{ params.s }}", "duration_hours": 1})).is_empty()
        );
        assert_eq!(
            check(json!({"duration_hours": 0})),
            ["duration_hours must be greater than 0"]
        );
        assert_eq!(
            check(json!({"until_time": "noon"})),
            [bad_until_time("noon")]
        );
        assert!(check(json!({"until_time": "{{ params.when }}"})).is_empty());
        assert_eq!(
            check(json!({"until_time": "08:00", "timezone": "Nowhere/Else"})),
            ["Invalid timezone: 'Nowhere/Else'"]
        );
        assert!(check(json!({"until_time": "08:00", "timezone": "Asia/Kolkata"})).is_empty());
        assert_eq!(SPEC.default_timeout_seconds, Some(604_860));
        assert!(SPEC.waits_for_event);
    }
}
