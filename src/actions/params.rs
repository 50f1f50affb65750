//! Typed step parameters.
//!
//! Each action declares its params once, as a `#[derive(Deserialize)] struct
//! Params`, and reads a step's params into it in one go: [`read`] in `run`
//! (templates already resolved), [`submitted`] in `validate` (some values may
//! still be templates).
//!
//! - Fields are read in the order the struct declares them, so the problem a
//!   run reports is the first declared field's. Params the struct does not
//!   name are ignored, as they always were.
//! - A field's error is a sentence after the param's name ("cluster_id must
//!   be a string"): give fields the types below (or `Value`), not bare
//!   `String`, `bool` or `f64`, whose serde errors do not read that way.
//! - A field that is neither an `Option` nor `#[serde(default)]` is required:
//!   leaving it out says "<name> is required".

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};

use super::StepOutcome;
use crate::dag::template::is_template_value;

/// What a required text param that is null or blank says after its name.
const REQUIRED: &str = "is required";

/// The step's params at run time; a problem fails the step permanently.
pub(crate) fn read<P: DeserializeOwned>(params: &Map<String, Value>) -> Result<P, StepOutcome> {
    P::deserialize(Fields::new(params, &[])).map_err(|e| StepOutcome::permanent(e.to_string()))
}

/// The step's params at submit time, for `validate`.
pub(crate) struct Submitted<P> {
    /// The params, with the values that could not be read left out. `None`
    /// only when a required field could not be read even as a template.
    pub(crate) params: Option<P>,
    problems: Vec<(&'static str, String)>,
}

impl<P> Submitted<P> {
    /// The problems of these params' literal values, in declaration order.
    /// The generic checks already refuse a literal of the wrong JSON type
    /// (`params.x: must be …`), so an action names only the params whose
    /// own message says more, or says it as the action always has.
    pub(crate) fn problems_with(&self, names: &[&str]) -> Vec<String> {
        self.problems
            .iter()
            .filter(|(name, _)| names.contains(name))
            .map(|(name, message)| format!("{name} {message}"))
            .collect()
    }
}

/// Read unresolved params as far as they go: every field whose value cannot
/// be read is noted and left out, and the rest read again, so one pass
/// reports every field's problem. A template can only be judged once
/// rendered: its problem is not noted. A required param left out, null or
/// blank is the generic checks' to report; one left out is read as an
/// unresolved template, which the action's own checks let through as they
/// do every template.
pub(crate) fn submitted<P: DeserializeOwned>(params: &Map<String, Value>) -> Submitted<P> {
    let unresolved = json!("{{ unresolved }}");
    let mut params = params.clone();
    let mut left_out = Vec::new();
    let mut problems = Vec::new();
    loop {
        match P::deserialize(Fields::new(&params, &left_out)) {
            Ok(read) => {
                return Submitted {
                    params: Some(read),
                    problems,
                };
            }
            Err(ParamError::Field(name, message)) => {
                if !is_template_value(&params[name]) && message != REQUIRED {
                    problems.push((name, message));
                }
                left_out.push(name);
            }
            Err(ParamError::Missing(name)) if params.get(name) != Some(&unresolved) => {
                params.insert(name.to_owned(), unresolved.clone());
                left_out.retain(|n| *n != name);
            }
            Err(_) => {
                return Submitted {
                    params: None,
                    problems,
                };
            }
        }
    }
}

/// For `#[serde(default, deserialize_with = "params::given")]`: any value
/// the step gives, null included; `None` only when it is left out.
pub(crate) fn given<'de, D: Deserializer<'de>>(value: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(value).map(Some)
}

// ---------------------------------------------------------------------------
// Param types. Each refuses with a message that follows the param's name.

/// Text that must be given: a string, or a number or boolean taken as its
/// text (a pure template can yield one). Null and blank strings are "not
/// given"; lists and objects are refused.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Text(pub(crate) String);

/// Text that may be left out: as [`Text`], but absent, null and blank are
/// `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct OptText(pub(crate) Option<String>);

impl OptText {
    pub(crate) fn or(self, default: &str) -> String {
        self.0.unwrap_or_else(|| default.to_owned())
    }

    pub(crate) fn or_default(self) -> String {
        self.0.unwrap_or_default()
    }
}

/// The text of a value: `Ok(None)` when not given, `Err` for a structure.
fn text_of(value: Value) -> Result<Option<String>, &'static str> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s)),
        value @ (Value::Number(_) | Value::Bool(_)) => Ok(Some(value.to_string())),
        Value::Array(_) | Value::Object(_) => Err("must be a string"),
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match text_of(Value::deserialize(d)?) {
            Ok(Some(text)) => Ok(Self(text)),
            Ok(None) => Err(de::Error::custom(REQUIRED)),
            Err(problem) => Err(de::Error::custom(problem)),
        }
    }
}

impl<'de> Deserialize<'de> for OptText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Through `Option`, so a field left out is `None` without a
        // `#[serde(default)]`.
        let value = Option::<Value>::deserialize(d)?.unwrap_or(Value::Null);
        text_of(value).map(Self).map_err(de::Error::custom)
    }
}

/// A value taken as text whatever its type: strings as they are, anything
/// else as its JSON (the control actions' params; a pure template can yield
/// any value). The value itself is kept for checks of literal strings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(transparent)]
pub(crate) struct AnyText(pub(crate) Value);

impl AnyText {
    /// The text of a value given, else `default`.
    pub(crate) fn or(given: Option<Self>, default: &str) -> String {
        given.map_or_else(|| default.to_owned(), |t| t.text())
    }

    pub(crate) fn text(&self) -> String {
        match &self.0 {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// A number, kept as the JSON number to forward (an integer stays an
/// integer); a numeric string (a template embedded in text renders to one)
/// is read as its number.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Number(pub(crate) Value);

impl Number {
    pub(crate) fn as_f64(&self) -> f64 {
        self.0.as_f64().unwrap_or(f64::NAN)
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let number = match Value::deserialize(d)? {
            n @ Value::Number(_) => Some(n),
            Value::String(s) => {
                let s = s.trim();
                if let Ok(i) = s.parse::<i64>() {
                    Some(json!(i))
                } else {
                    s.parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .map(|f| json!(f))
                }
            }
            _ => None,
        };
        number
            .map(Self)
            .ok_or_else(|| de::Error::custom("must be a number"))
    }
}

/// A boolean; the strings `"true"` and `"false"`, in any case, too.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bool(pub(crate) bool);

impl<'de> Deserialize<'de> for Bool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Bool(b) => Ok(Self(b)),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(Self(true)),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(Self(false)),
            _ => Err(de::Error::custom("must be a boolean")),
        }
    }
}

/// A JSON object.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Object(pub(crate) Map<String, Value>);

impl<'de> Deserialize<'de> for Object {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Object(map) => Ok(Self(map)),
            _ => Err(de::Error::custom("must be an object")),
        }
    }
}

// ---------------------------------------------------------------------------
// The deserializer: the step's params as the fields of a struct.

/// Why a struct could not be read.
#[derive(Debug)]
enum ParamError {
    /// The field's value was refused with this message.
    Field(&'static str, String),
    /// A required field was left out.
    Missing(&'static str),
    Other(String),
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field(name, message) => write!(f, "{name} {message}"),
            Self::Missing(name) => write!(f, "{name} {REQUIRED}"),
            Self::Other(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ParamError {}

impl de::Error for ParamError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Self::Other(message.to_string())
    }

    fn missing_field(field: &'static str) -> Self {
        Self::Missing(field)
    }
}

/// The params map read as a struct, field by field in the struct's order.
#[derive(Clone, Copy)]
struct Fields<'a> {
    params: &'a Map<String, Value>,
    left_out: &'a [&'static str],
}

impl<'a> Fields<'a> {
    fn new(params: &'a Map<String, Value>, left_out: &'a [&'static str]) -> Self {
        Self { params, left_out }
    }
}

impl<'de> Deserializer<'de> for Fields<'de> {
    type Error = ParamError;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ParamError> {
        visitor.visit_map(Entries {
            fields: fields.iter(),
            fields_of: self,
            current: None,
        })
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, ParamError> {
        Err(ParamError::Other(
            "params are read into a struct with named fields".into(),
        ))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

struct Entries<'de> {
    fields: std::slice::Iter<'static, &'static str>,
    fields_of: Fields<'de>,
    current: Option<(&'static str, &'de Value)>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = ParamError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ParamError> {
        let Fields { params, left_out } = self.fields_of;
        for &name in self.fields.by_ref() {
            if left_out.contains(&name) {
                continue;
            }
            if let Some(value) = params.get(name) {
                self.current = Some((name, value));
                return seed.deserialize(name.into_deserializer()).map(Some);
            }
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ParamError> {
        let (name, value) = self
            .current
            .take()
            .ok_or_else(|| ParamError::Other("a value was read before its name".into()))?;
        seed.deserialize(value)
            .map_err(|e| ParamError::Field(name, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::builtin::test_util::params;

    #[derive(Debug, Deserialize)]
    struct Params {
        id: Text,
        name: OptText,
        count: Option<Number>,
        force: Option<Bool>,
        config: Option<Object>,
        #[serde(default, deserialize_with = "given")]
        body: Option<Value>,
    }

    fn error(value: Value) -> StepOutcome {
        read::<Params>(&params(value)).unwrap_err()
    }

    #[test]
    fn text_params_accept_scalars_and_refuse_structures() {
        let p: Params = read(&params(json!({"id": 5, "name": " ", "extra": {}}))).unwrap();
        assert_eq!(p.id, Text("5".into()));
        assert_eq!(p.name, OptText(None));
        for missing in [json!({}), json!({"id": null}), json!({"id": " "})] {
            assert_eq!(error(missing), StepOutcome::permanent("id is required"));
        }
        assert_eq!(
            error(json!({"id": {}})),
            StepOutcome::permanent("id must be a string")
        );
        assert_eq!(
            error(json!({"id": "x", "name": [1]})),
            StepOutcome::permanent("name must be a string")
        );
    }

    #[test]
    fn number_params_keep_their_json_type() {
        let count = |v: Value| {
            read::<Params>(&params(json!({"id": "x", "count": v}))).map(|p| p.count.map(|n| n.0))
        };
        assert_eq!(count(json!(5)), Ok(Some(json!(5))));
        assert_eq!(count(json!(1.5)), Ok(Some(json!(1.5))));
        assert_eq!(count(json!("7")), Ok(Some(json!(7))));
        assert_eq!(count(json!(null)), Ok(None));
        for bad in [json!("x"), json!({})] {
            assert_eq!(
                count(bad),
                Err(StepOutcome::permanent("count must be a number"))
            );
        }
    }

    #[test]
    fn booleans_objects_and_given_values() {
        let p: Params = read(&params(
            json!({"id": "x", "force": "TRUE", "config": {"a": 1}, "body": null}),
        ))
        .unwrap();
        assert_eq!(p.force, Some(Bool(true)));
        assert_eq!(p.config.unwrap().0["a"], 1);
        assert_eq!(p.body, Some(Value::Null));
        let p: Params = read(&params(json!({"id": "x"}))).unwrap();
        assert_eq!(p.body, None);
        assert_eq!(
            error(json!({"id": "x", "force": 1})),
            StepOutcome::permanent("force must be a boolean")
        );
        assert_eq!(
            error(json!({"id": "x", "config": []})),
            StepOutcome::permanent("config must be an object")
        );
    }

    #[test]
    fn the_first_declared_field_with_a_problem_is_reported() {
        assert_eq!(
            error(json!({"config": 1, "count": "x", "id": "i"})),
            StepOutcome::permanent("count must be a number")
        );
    }

    #[test]
    fn submitted_params_report_every_literal_problem_and_let_templates_through() {
        let s = submitted::<Params>(&params(json!({
            "count": "{{ params.n }}", "force": 3, "config": [], "body": "{{ x }}"
        })));
        assert_eq!(
            s.problems_with(&["count", "force", "config"]),
            ["force must be a boolean", "config must be an object"]
        );
        assert!(s.problems_with(&["id"]).is_empty());
        let p = s
            .params
            .expect("a missing required param reads as a template");
        assert_eq!(p.id, Text("{{ unresolved }}".into()));
        assert_eq!((p.count, p.force), (None, None));
        assert_eq!(p.body, Some(json!("{{ x }}")));
    }
}
