//! Jinja templating of step params, conditions and DAG outputs (DAG.md "Templating").
//!
//! The context is `{"params": {...}, "steps": {"<id>": {"outputs": {...}}}}`.
//!
//! One process-wide `minijinja` environment with chainable undefined values,
//! so `steps.skipped.outputs.x` is undefined rather than an error (a skipped
//! step has no outputs, DAG.md "Semantics").
//!
//! Renders are bounded: fuel bounds the instructions, a [`Budget`]
//! (`TEMPLATE_MAX_BYTES`) the memory (src/dag/template_bounds.rs).

use std::collections::BTreeSet;
use std::sync::LazyLock;

use minijinja::value::Kwargs;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value as JinjaValue};
use serde_json::Value;

use super::template_bounds::{self as bounds, Active};
pub use super::template_bounds::{Budget, DEFAULT_MAX_BYTES};
use super::template_meta;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// A variable path a template reads, for validation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reference {
    /// `params.<name>`
    Param(String),
    /// `steps.<id>`
    Step(String),
}

/// What a template reads, as far as can be told without running it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Analysis {
    /// `params.<name>` and `steps.<id>` lookups (dotted or with a literal
    /// subscript such as `steps['my-step']`), sorted, without duplicates.
    pub references: Vec<Reference>,
    /// Top-level variables other than `params`, `steps`, the environment's
    /// globals and the template's own variables: they always read as
    /// undefined (typically a typo such as `parms.x`), sorted.
    pub unknown_variables: Vec<String>,
}

/// Instructions one render may execute (minijinja's "fuel").
const TEMPLATE_FUEL: u64 = 200_000;

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    // A user's template runs on the engine's threads: bound its work so a
    // runaway loop fails the step instead of stalling the replica.
    env.set_fuel(Some(TEMPLATE_FUEL));
    // ... and what it builds (`TEMPLATE_MAX_BYTES`): checked built-ins, no
    // `debug()`, and every output measured before it is written.
    bounds::register(&mut env);
    env.set_formatter(bounds::format_output);
    // minijinja only ships `tojson` with its `json` feature; Jinja has it.
    env.add_filter("tojson", tojson);
    env
});

/// Jinja's `tojson(indent=None)`: JSON with `<`, `>`, `&` and `'` escaped
/// (as Jinja does; the result is still valid JSON).
fn tojson(
    value: &JinjaValue,
    indent: Option<JinjaValue>,
    kwargs: Kwargs,
) -> Result<JinjaValue, Error> {
    let indent = match indent {
        Some(indent) => Some(indent),
        None => kwargs.get("indent")?,
    };
    let indent = match indent {
        None => None,
        Some(v) => match bool::try_from(v.clone()) {
            Ok(true) => Some(2),
            Ok(false) => None,
            // Bounded: the indent string is allocated per level.
            Err(_) => Some(usize::try_from(v)?.min(16)),
        },
    };
    kwargs.assert_all_used()?;
    // Built only up to the budget: a small value can serialize huge.
    let json = bounds::json_capped(value, indent, bounds::remaining())?
        .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "cannot serialize to JSON"))?;
    let mut escaped = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => escaped.push_str("\\u003c"),
            '>' => escaped.push_str("\\u003e"),
            '&' => escaped.push_str("\\u0026"),
            '\'' => escaped.push_str("\\u0027"),
            _ => escaped.push(c),
        }
    }
    bounds::charge(escaped.len())?;
    Ok(JinjaValue::from_safe_string(escaped))
}

/// Whether a string is rendered at all: it holds an expression or a block.
/// The one test of "is this a template" in the service: validation, the
/// renderer and the actions' submit-time checks all ask it.
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

/// Whether a raw param value is a string that will be rendered: submit-time
/// checks see raw params and must let these through.
pub fn is_template_value(value: &Value) -> bool {
    value.as_str().is_some_and(is_template)
}

/// The source of the single expression when `s` (trimmed) is exactly one
/// `{{ expr }}`, with Jinja's whitespace-control markers (`{{-`, `-}}`) removed.
/// The caller still has to check that it compiles as an expression:
/// `{{ a }} x }}` passes this test but is text.
fn pure_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("{%") || inner.contains("{#") {
        return None;
    }
    let inner = inner.strip_prefix(['-', '+']).unwrap_or(inner);
    let inner = inner.strip_suffix(['-', '+']).unwrap_or(inner);
    closes_no_tag(inner).then_some(inner)
}

/// Whether `expr` has no `}}` that minijinja's lexer would take for the end
/// of a tag: outside string literals, with brackets balanced (a dict literal
/// such as `{'a': {'b': 1}}` is fine). minijinja 2.24 panics ("empty lexer
/// stack") when a standalone expression holds such a `}}` followed by more
/// text, so this must hold before it is parsed as an expression.
fn closes_no_tag(expr: &str) -> bool {
    let bytes = expr.as_bytes();
    let mut balance = 0isize;
    let mut quote = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if b == b'\\' {
                    i += 1;
                } else if b == q {
                    quote = None;
                }
            }
            None => match b {
                b'\'' | b'"' => quote = Some(b),
                b'}' if balance == 0 && bytes.get(i + 1) == Some(&b'}') => return false,
                b'(' | b'[' | b'{' => balance += 1,
                b')' | b']' | b'}' => balance -= 1,
                _ => {}
            },
        }
        i += 1;
    }
    true
}

fn error(e: Error) -> TemplateError {
    TemplateError(e.to_string())
}

fn jinja_context(context: &Value) -> JinjaValue {
    JinjaValue::from_serialize(context)
}

/// The JSON form of a template value: undefined and none are null; a value
/// JSON cannot hold (e.g. a map with non-string keys) falls back to its
/// rendering. Measured against the budget before it is built.
fn to_json(value: &JinjaValue) -> Result<Value, Error> {
    bounds::to_json(value)
}

/// Evaluate a pure expression, or `None` when `s` is not one.
fn eval_pure(s: &str, ctx: &JinjaValue) -> Option<Result<JinjaValue, Error>> {
    let source = pure_expression(s)?;
    let expr = bounds::parse_expression(source)?;
    // `Environment` is covariant in its source lifetime, so the static one
    // can compile a borrowed string.
    let env: &Environment<'_> = &ENV;
    Some(bounds::eval(env, source, &expr, ctx.clone()))
}

fn render(s: &str, ctx: &JinjaValue) -> Result<String, Error> {
    let env: &Environment<'_> = &ENV;
    bounds::render(env, s, ctx.clone())
}

fn resolve_string(s: &str, ctx: &JinjaValue) -> Result<Value, TemplateError> {
    if !is_template(s) {
        return Ok(Value::String(s.to_owned()));
    }
    if let Some(value) = eval_pure(s, ctx) {
        return value.and_then(|v| to_json(&v)).map_err(error);
    }
    render(s, ctx).map(Value::String).map_err(error)
}

fn resolve_in(value: &Value, ctx: &JinjaValue) -> Result<Value, TemplateError> {
    Ok(match value {
        Value::String(s) => resolve_string(s, ctx)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| resolve_in(v, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), resolve_in(v, ctx)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

/// Resolve every string in `value` (recursively through objects and lists).
/// A string that is exactly one expression yields the typed value; any other
/// string renders to a string; an undefined value is null in a pure
/// expression and the empty string inside text.
///
/// Everything the renders build counts against `budget`; past it the
/// resolution fails with an error naming `TEMPLATE_MAX_BYTES`.
pub fn resolve(value: &Value, context: &Value, budget: &Budget) -> Result<Value, TemplateError> {
    // Converting the context is the costly part; skip it when nothing renders.
    if !contains_template(value) {
        return Ok(value.clone());
    }
    let _active: Active<'_> = bounds::enter(budget);
    resolve_in(value, &jinja_context(context))
}

/// Whether any string inside `value` renders ([`is_template`]): when none
/// does, resolving it needs no context at all.
pub fn contains_template(value: &Value) -> bool {
    match value {
        Value::String(s) => is_template(s),
        Value::Array(items) => items.iter().any(contains_template),
        Value::Object(map) => map.values().any(contains_template),
        _ => false,
    }
}

/// Evaluate a `condition`: Jinja truthiness plus the strings "true"/"false"
/// (any case); undefined is false; blank is true.
///
/// A string without `{{` or `{%` is a literal: `true`/`1`/`yes` are true,
/// `false`/`0`/`no` false, anything else non-empty true (the original's rule).
///
/// What the condition builds counts against `budget`, as in [`resolve`].
pub fn condition(expr: &str, context: &Value, budget: &Budget) -> Result<bool, TemplateError> {
    let text = expr.trim();
    if text.is_empty() {
        return Ok(true);
    }
    if !is_template(text) {
        return Ok(literal_truth(text));
    }
    let _active: Active<'_> = bounds::enter(budget);
    let ctx = jinja_context(context);
    let outcome = match eval_pure(text, &ctx) {
        Some(value) => value.map(|v| value_truth(&v)),
        None => render(text, &ctx).map(|s| string_truth(&s)),
    };
    outcome.or_else(|e| {
        // An operation on an undefined value (`steps.skipped.outputs.n + 1`)
        // is "undefined", and undefined is false in a condition (DAG.md).
        if is_undefined_error(&e) {
            Ok(false)
        } else {
            Err(error(e))
        }
    })
}

/// minijinja reports most operations on undefined values as invalid
/// operations naming the `undefined` operand, not as undefined errors.
fn is_undefined_error(e: &Error) -> bool {
    match e.kind() {
        ErrorKind::UndefinedError => true,
        ErrorKind::InvalidOperation => e.detail().is_some_and(|d| d.contains("undefined")),
        _ => false,
    }
}

fn literal_truth(text: &str) -> bool {
    !matches!(
        text.to_ascii_lowercase().as_str(),
        "false" | "0" | "no" | ""
    )
}

/// Truthiness of an evaluated value: strings by [`string_truth`], the rest
/// by Jinja rules (undefined, none, 0, empty collections are false).
fn value_truth(value: &JinjaValue) -> bool {
    match value.as_str() {
        Some(s) => string_truth(s),
        None => value.is_true(),
    }
}

/// Truthiness of a string: "true"/"false" (any case), "none", "" and the
/// renderings of empty collections are false, numeric strings are true when
/// not zero, any other text is true.
fn string_truth(s: &str) -> bool {
    let text = s.trim().to_ascii_lowercase();
    match text.as_str() {
        "true" => true,
        "false" | "none" | "" | "[]" | "{}" => false,
        _ => text.parse::<f64>().ok().is_none_or(|n| n != 0.0),
    }
}

/// Check that `template` parses and list the `params.*` / `steps.*` it reads.
pub fn references(template: &str) -> Result<Vec<Reference>, TemplateError> {
    analyze(template).map(|a| a.references)
}

/// Check that `template` parses and report what it reads. A string that is
/// not a template (see [`is_template`]) reads nothing.
pub fn analyze(template: &str) -> Result<Analysis, TemplateError> {
    if !is_template(template) {
        return Ok(Analysis::default());
    }
    // Parsed, not compiled: compiling folds constant expressions, and
    // `("a" * 10**8) ~ ...` would be built right here, inside the request.
    let tree = bounds::parse_template(template)
        .map_err(|e| TemplateError(format!("template does not parse: {e}")))?;
    let mut references = BTreeSet::new();
    let mut unknown = BTreeSet::new();
    // Attribute chains on undeclared variables come as dotted paths:
    // `params.x`, `steps.a.outputs.y`.
    for path in template_meta::undeclared_variables(&tree) {
        let mut parts = path.split('.');
        let root = parts.next().unwrap_or_default();
        match (root, parts.next()) {
            ("params", Some(name)) => {
                references.insert(Reference::Param(name.to_owned()));
            }
            ("steps", Some(id)) => {
                references.insert(Reference::Step(id.to_owned()));
            }
            ("params" | "steps", None) => {}
            _ if is_global(root) => {}
            _ => {
                unknown.insert(root.to_owned());
            }
        }
    }
    references.extend(subscript_references(template));
    Ok(Analysis {
        references: references.into_iter().collect(),
        unknown_variables: unknown.into_iter().collect(),
    })
}

fn is_global(name: &str) -> bool {
    ENV.globals().any(|(global, _)| global == name)
}

/// `params['x']` / `steps["a-b"]` lookups, which minijinja's analysis
/// reports as a bare `params` / `steps`. Step ids that are not identifiers
/// (`deploy-1`, `1st`) can only be read this way. Only the inside of
/// `{{ }}` and `{% %}` is scanned.
fn subscript_references(template: &str) -> Vec<Reference> {
    let mut out = Vec::new();
    for code in code_segments(template) {
        for root in ["params", "steps"] {
            for (at, _) in code.match_indices(root) {
                let before = code[..at].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.') {
                    continue;
                }
                if let Some(key) = literal_subscript(&code[at + root.len()..]) {
                    out.push(match root {
                        "params" => Reference::Param(key.to_owned()),
                        _ => Reference::Step(key.to_owned()),
                    });
                }
            }
        }
    }
    out
}

/// The text between `{{`/`}}` and `{%`/`%}` pairs.
fn code_segments(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find(['{']) {
        let after = &rest[start + 1..];
        let close = match after.chars().next() {
            Some('{') => "}}",
            Some('%') => "%}",
            _ => {
                rest = after;
                continue;
            }
        };
        let body = &after[1..];
        let end = body.find(close).unwrap_or(body.len());
        out.push(&body[..end]);
        rest = &body[(end + close.len()).min(body.len())..];
    }
    out
}

/// `['key']` or `["key"]` (with optional spaces) at the start of `s`.
fn literal_subscript(s: &str) -> Option<&str> {
    let s = s.trim_start().strip_prefix('[')?.trim_start();
    let quote = s.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let s = &s[1..];
    let end = s.find(quote)?;
    let key = &s[..end];
    let rest = s[end + 1..].trim_start();
    (rest.starts_with(']') && !key.contains('\\')).then_some(key)
}

/// The references of every template string inside `value` (sorted, without
/// duplicates); the first template that does not parse is the error, with
/// its path below `path`.
pub fn references_in(value: &Value, path: &str) -> Result<Vec<Reference>, TemplateError> {
    let mut out = BTreeSet::new();
    for (at, tpl) in templates_in(value, path) {
        let refs = references(tpl).map_err(|e| TemplateError(format!("{at}: {e}")))?;
        out.extend(refs);
    }
    Ok(out.into_iter().collect())
}

/// Every template string inside `value`, with its JSON path below `path`
/// (`steps.a.params` + `config.replicas`, list items by index).
pub fn templates_in<'a>(value: &'a Value, path: &str) -> Vec<(String, &'a str)> {
    let mut out = Vec::new();
    collect_templates(value, path, &mut out);
    out
}

fn collect_templates<'a>(value: &'a Value, path: &str, out: &mut Vec<(String, &'a str)>) {
    match value {
        Value::String(s) if is_template(s) => out.push((path.to_owned(), s)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_templates(item, &format!("{path}.{i}"), out);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                collect_templates(item, &format!("{path}.{key}"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ctx() -> Value {
        json!({
            "params": {
                "n": 5, "f": 1.5, "b": true, "s": "text", "zero": 0,
                "o": {"a": [1, 2]}, "empty": [], "t": "TRUE", "no": "false", "none_str": "None",
            },
            "steps": {
                "a": {"outputs": {"x": 3, "healthy": true, "name": "alpha", "flag": "False"}},
                "my-step": {"outputs": {"y": "why"}},
            },
        })
    }

    fn budget() -> Budget {
        Budget::new(DEFAULT_MAX_BYTES)
    }

    fn r(v: Value) -> Value {
        resolve(&v, &ctx(), &budget()).unwrap()
    }

    fn cond(s: &str) -> bool {
        condition(s, &ctx(), &budget()).unwrap()
    }

    fn refs(s: &str) -> Vec<Reference> {
        references(s).unwrap()
    }

    fn p(s: &str) -> Reference {
        Reference::Param(s.into())
    }

    fn st(s: &str) -> Reference {
        Reference::Step(s.into())
    }

    // ---- resolve ----

    #[test]
    fn non_strings_and_plain_strings_are_unchanged() {
        assert_eq!(r(json!(1)), json!(1));
        assert_eq!(r(json!(null)), json!(null));
        assert_eq!(r(json!(true)), json!(true));
        assert_eq!(r(json!("plain {# no #} } {")), json!("plain {# no #} } {"));
        assert_eq!(r(json!("just }} braces")), json!("just }} braces"));
    }

    #[test]
    fn pure_expressions_keep_their_type() {
        assert_eq!(r(json!("{{ params.n }}")), json!(5));
        assert_eq!(r(json!("{{ params.f }}")), json!(1.5));
        assert_eq!(r(json!("{{ params.b }}")), json!(true));
        assert_eq!(r(json!("{{ params.o }}")), json!({"a": [1, 2]}));
        assert_eq!(r(json!("{{ params.o.a }}")), json!([1, 2]));
        assert_eq!(r(json!("{{ params.s }}")), json!("text"));
        assert_eq!(r(json!("  {{params.n}}  ")), json!(5));
        assert_eq!(r(json!("{{- params.n -}}")), json!(5));
        assert_eq!(r(json!("{{ steps.a.outputs.x }}")), json!(3));
        assert_eq!(r(json!("{{ steps['my-step'].outputs.y }}")), json!("why"));
    }

    #[test]
    fn pure_expressions_compute_typed_values() {
        assert_eq!(r(json!("{{ params.n + 1 }}")), json!(6));
        assert_eq!(r(json!("{{ params.n > 3 }}")), json!(true));
        assert_eq!(r(json!("{{ params.o.a | length }}")), json!(2));
        assert_eq!(r(json!("{{ [params.n, params.s] }}")), json!([5, "text"]));
        assert_eq!(r(json!("{{ {'k': params.n} }}")), json!({"k": 5}));
        assert_eq!(r(json!("{{ none }}")), json!(null));
    }

    #[test]
    fn undefined_is_null_in_a_pure_expression() {
        assert_eq!(r(json!("{{ params.missing }}")), json!(null));
        assert_eq!(r(json!("{{ steps.missing.outputs.x }}")), json!(null));
        assert_eq!(
            r(json!("{{ steps.a.outputs.x.deeper.still }}")),
            json!(null)
        );
        assert_eq!(
            r(json!("{{ steps.missing.outputs.x | default(7) }}")),
            json!(7)
        );
    }

    #[test]
    fn mixed_text_renders_to_a_string() {
        assert_eq!(r(json!("n={{ params.n }}")), json!("n=5"));
        assert_eq!(r(json!("{{ params.n }}{{ params.n }}")), json!("55"));
        assert_eq!(r(json!("[{{ steps.missing.outputs.x }}]")), json!("[]"));
        assert_eq!(
            r(json!("{% if params.b %}yes{% else %}no{% endif %}")),
            json!("yes")
        );
        assert_eq!(
            r(json!("{% for i in params.o.a %}{{ i }},{% endfor %}")),
            json!("1,2,")
        );
        // Jinja's own rendering of values.
        assert_eq!(
            r(json!("v: {{ params.b }} {{ none }} {{ params.f }}")),
            json!("v: True None 1.5")
        );
    }

    #[test]
    fn text_that_looks_pure_but_is_not_an_expression_renders() {
        assert_eq!(r(json!("{{ params.n }} x }}")), json!("5 x }}"));
        assert_eq!(r(json!("{{ params.n }}}}")), json!("5}}"));
        assert_eq!(r(json!("{{ params.n -}} x }}")), json!("5x }}"));
        assert_eq!(r(json!("{{ '}}' ~ params.n }}")), json!("}}5"));
        assert_eq!(
            r(json!("{{ {'a': {'b': params.n}} }}")),
            json!({"a": {"b": 5}})
        );
        assert!(references("{{ a }} x }}").is_ok());
        assert!(condition("{{ params.zero }} x }}", &ctx(), &budget()).unwrap());
    }

    #[test]
    fn resolves_recursively() {
        let v = json!({
            "a": "{{ params.n }}",
            "b": ["{{ params.s }}", 1, {"c": "x{{ params.n }}"}],
            "d": {"e": null, "f": "{{ steps.a.outputs.healthy }}"},
        });
        assert_eq!(
            r(v),
            json!({"a": 5, "b": ["text", 1, {"c": "x5"}], "d": {"e": null, "f": true}})
        );
    }

    #[test]
    fn tojson_filter_is_available() {
        assert_eq!(
            r(json!("x={{ params.o | tojson }}")),
            json!(r#"x={"a":[1,2]}"#)
        );
        assert_eq!(
            r(json!("{{ params.o.a | tojson(indent=2) }}")),
            json!("[\n  1,\n  2\n]")
        );
        assert_eq!(
            r(json!("{{ params.o.a | tojson(1) }}")),
            json!("[\n 1,\n 2\n]")
        );
        assert_eq!(
            r(json!("{{ \"<a'&>\" | tojson }}")),
            json!(r#""\u003ca\u0027\u0026\u003e""#)
        );
    }

    #[test]
    fn resolve_errors() {
        let e = resolve(&json!({"k": "{{ params.n + }}"}), &ctx(), &budget()).unwrap_err();
        assert!(e.0.contains("syntax error"), "{e}");
        assert!(resolve(&json!("{{ params.n | nosuchfilter }}"), &ctx(), &budget()).is_err());
        assert!(resolve(&json!("x {% if %}"), &ctx(), &budget()).is_err());
    }

    // ---- condition ----

    #[test]
    fn blank_condition_is_true() {
        assert!(cond(""));
        assert!(cond("   "));
    }

    #[test]
    fn literal_conditions() {
        for t in ["true", "TRUE", "True", "1", "yes", "YES", "anything"] {
            assert!(cond(t), "{t}");
        }
        for f in ["false", "False", "FALSE", "0", "no", "No"] {
            assert!(!cond(f), "{f}");
        }
    }

    #[test]
    fn expression_conditions_use_jinja_truthiness() {
        assert!(cond("{{ steps.a.outputs.healthy }}"));
        assert!(cond("{{ params.n > 3 }}"));
        assert!(!cond("{{ params.n > 30 }}"));
        assert!(!cond("{{ params.zero }}"));
        assert!(!cond("{{ params.empty }}"));
        assert!(cond("{{ params.o }}"));
        assert!(cond("{{ params.s }}"));
        assert!(!cond("{{ none }}"));
        assert!(cond("{{ params.n == 5 and params.b }}"));
    }

    #[test]
    fn expression_conditions_accept_boolean_like_strings() {
        assert!(cond("{{ params.t }}"));
        assert!(!cond("{{ params.no }}"));
        assert!(!cond("{{ steps.a.outputs.flag }}"));
        assert!(!cond("{{ params.none_str }}"));
        assert!(!cond("{{ '0' }}"));
        assert!(!cond("{{ '0.0' }}"));
        assert!(cond("{{ '2' }}"));
        assert!(!cond("{{ '' }}"));
    }

    #[test]
    fn rendered_conditions_use_string_truthiness() {
        assert!(cond("{% if params.b %}true{% endif %}"));
        assert!(!cond("{% if not params.b %}true{% endif %}"));
        assert!(!cond(" {{ params.zero }} "));
        assert!(!cond("{{ params.no }}{{ '' }}"));
        assert!(cond("{{ params.n }}{{ params.n }}"));
        assert!(!cond("{{ params.empty }}{{ '' }}"));
    }

    #[test]
    fn undefined_is_false_in_a_condition() {
        assert!(!cond("{{ steps.missing.outputs.ok }}"));
        assert!(!cond("{{ params.missing }}"));
        assert!(!cond("{{ steps.missing.outputs.n > 1 }}"));
        assert!(!cond("{{ steps.missing.outputs.n + 1 > 1 }}"));
        assert!(!cond("x{{ steps.missing.outputs.n + 1 }}"));
    }

    #[test]
    fn condition_syntax_error_is_an_error() {
        assert!(condition("{{ params.n > }}", &ctx(), &budget()).is_err());
        assert!(condition("{% if %}x", &ctx(), &budget()).is_err());
        assert!(condition("{{ params.n | nosuchfilter }}", &ctx(), &budget()).is_err());
    }

    // ---- references ----

    #[test]
    fn references_lists_params_and_steps() {
        assert_eq!(refs("plain"), vec![]);
        assert_eq!(refs("{{ params.cluster_id }}"), vec![p("cluster_id")]);
        assert_eq!(
            refs("{{ steps.deploy.outputs.id }} on {{ params.c }} {{ params.c }}"),
            vec![p("c"), st("deploy")]
        );
        assert_eq!(
            refs("{% if steps.h.outputs.ok %}{{ params.a | default(params.b) }}{% endif %}"),
            vec![p("a"), p("b"), st("h")]
        );
        assert_eq!(refs("{{ steps.a }}"), vec![st("a")]);
    }

    #[test]
    fn references_with_literal_subscripts() {
        assert_eq!(refs("{{ params['x'] }}"), vec![p("x")]);
        assert_eq!(
            refs(r#"{{ steps["my-step"].outputs.y }} {{ steps[ 'b' ] }}"#),
            vec![st("b"), st("my-step")]
        );
        // Text outside tags and dynamic subscripts are not references.
        assert_eq!(refs("params['x'] {{ params[name] }}"), vec![]);
        assert_eq!(refs("{{ myparams['x'] }}"), vec![]);
    }

    #[test]
    fn references_ignore_template_locals_and_globals() {
        let a = analyze(
            "{% set y = params.n %}{{ y }}{% for s in range(3) %}{{ s }}{{ loop.index }}{% endfor %}",
        )
        .unwrap();
        assert_eq!(a.references, vec![p("n")]);
        assert!(a.unknown_variables.is_empty(), "{a:?}");
    }

    #[test]
    fn analyze_reports_unknown_variables() {
        let a = analyze("{{ parms.x }} {{ steps.my-step.outputs.y }}").unwrap();
        assert_eq!(a.unknown_variables, vec!["parms", "step"]);
        assert_eq!(a.references, vec![st("my")]);
    }

    #[test]
    fn references_reports_syntax_errors() {
        let e = references("{{ params.x + }}").unwrap_err();
        assert!(
            e.0.starts_with("template does not parse: syntax error"),
            "{e}"
        );
        assert!(references("{% if x %}").is_err());
        assert!(references("{{ unclosed").is_err());
    }

    #[test]
    fn templates_in_walks_values_with_paths() {
        let v = json!({"a": "{{ x }}", "b": [1, "{% if y %}{% endif %}", "no"], "c": {"d": "t{{ z }}"}});
        let got = templates_in(&v, "steps.s.params");
        assert_eq!(
            got,
            vec![
                ("steps.s.params.a".to_owned(), "{{ x }}"),
                ("steps.s.params.b.1".to_owned(), "{% if y %}{% endif %}"),
                ("steps.s.params.c.d".to_owned(), "t{{ z }}"),
            ]
        );
    }

    #[test]
    fn references_in_collects_from_every_string() {
        let v = json!({"a": "{{ params.x }}", "b": ["{{ steps.s.outputs.y }}", "{{ params.x }}"], "c": 1});
        assert_eq!(references_in(&v, "p").unwrap(), vec![p("x"), st("s")]);
        let bad = json!({"a": ["ok", "{{ x + }}"]});
        let e = references_in(&bad, "steps.s.params").unwrap_err();
        assert!(
            e.0.starts_with("steps.s.params.a.1: template does not parse:"),
            "{e}"
        );
    }

    #[test]
    fn a_runaway_template_runs_out_of_fuel_instead_of_hanging() {
        let ctx = serde_json::json!({"params": {}, "steps": {}});
        let t = "{% for a in range(1000) %}{% for b in range(1000) %}x{% endfor %}{% endfor %}";
        let err = resolve(&Value::String(t.into()), &ctx, &budget()).unwrap_err();
        assert!(err.0.contains("fuel"), "{err}");
    }
}

#[cfg(test)]
mod bomb_tests {
    //! Templates that build far more than they compute (the instructions
    //! are few, the memory huge): each must fail quickly with an error
    //! naming the limit, not exhaust memory.

    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::*;

    fn ctx() -> Value {
        json!({"params": {"s": "abc", "n": 3, "items": [1, 2, 3]}, "steps": {}})
    }

    /// Resolve `template` under the default limit and return its error,
    /// checking it names the limit and came quickly.
    fn bomb(template: &str) -> String {
        let started = Instant::now();
        let result = resolve(
            &Value::String(template.into()),
            &ctx(),
            &Budget::new(DEFAULT_MAX_BYTES),
        );
        let elapsed = started.elapsed();
        let err = result.expect_err(template).0;
        assert!(err.contains("TEMPLATE_MAX_BYTES"), "{template}: {err}");
        assert!(
            elapsed < Duration::from_secs(1),
            "{template}: took {elapsed:?}"
        );
        err
    }

    fn ok(template: &str) -> Value {
        resolve(
            &Value::String(template.into()),
            &ctx(),
            &Budget::new(DEFAULT_MAX_BYTES),
        )
        .unwrap_or_else(|e| panic!("{template}: {e}"))
    }

    #[test]
    fn concat_doubling_in_a_namespace_loop() {
        // The reported bomb: 2^40 bytes in forty iterations.
        let err = bomb(
            "{% set ns = namespace(x=\"a\") %}{% for i in range(40) %}\
             {% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x|length }}",
        );
        assert!(err.contains("1048576 bytes"), "{err}");
        bomb(
            "{% set ns = namespace(x='a') %}{% for i in range(40) %}{% set ns.x = ns.x + ns.x %}{% endfor %}",
        );
        // Pure expressions go through the same checks.
        bomb("{{ params.s ~ params.s ~ ('x' * 600000) ~ ('y' * 600000) }}");
    }

    #[test]
    fn doubling_through_macro_recursion() {
        bomb(
            "{% macro f(s, n) %}{% if n %}{{ f(s ~ s, n - 1) }}{% else %}{{ s|length }}{% endif %}\
             {% endmacro %}{{ f('a', 40) }}",
        );
    }

    #[test]
    fn string_repetition() {
        bomb("{{ 'a' * 1000000000 }}");
        // minijinja's own cap is 100 MB: still far too much.
        bomb("{{ 'a' * 100000000 }}");
        bomb("{{ ('ab' * 600000)|length }}");
        bomb("x{{ 'a' * 10**9 }}");
        // ... and compiling does not build it either (constant folding).
        bomb("{{ ('a' * 100000000) ~ ('a' * 100000000) }}");
        let started = Instant::now();
        assert!(analyze("{{ ('a' * 100000000) ~ ('a' * 100000000) }}").is_ok());
        assert!(references("{{ [1] * 10**18 == [1] * 10**18 }}").is_ok());
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn list_repetition_and_doubling() {
        bomb("{{ [1] * 1000000000 }}");
        bomb("{{ ([1] * 1000000000)|length }}");
        bomb("{{ (['x' * 1000] * 2000)|join }}");
        bomb(
            "{% set ns = namespace(l=[1]) %}{% for i in range(60) %}\
             {% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}",
        );
        // Building a list one item at a time (there is no `append`).
        bomb(
            "{% set ns = namespace(l=[]) %}{% for i in range(20000) %}\
             {% set ns.l = ns.l + [i ~ 'padding-padding-padding'] %}{% endfor %}{{ ns.l|length }}",
        );
    }

    #[test]
    fn nested_sharing_counts_at_its_rendered_size() {
        // `[x, x]` forty times shares memory but renders (and compares)
        // as 2^40 items.
        bomb(
            "{% set ns = namespace(x=[1], y=[1]) %}{% for i in range(40) %}\
             {% set ns.x = [ns.x, ns.x] %}{% set ns.y = [ns.y, ns.y] %}{% endfor %}{{ ns.x == ns.y }}",
        );
        bomb(
            "{% set ns = namespace(x={'a': 1}) %}{% for i in range(40) %}\
             {% set ns.x = {'l': ns.x, 'r': ns.x} %}{% endfor %}{{ ns.x|tojson|length }}",
        );
        bomb(
            "{% set ns = namespace(x=[1]) %}{% for i in range(40) %}\
             {% set ns.x = dict(a=ns.x, b=ns.x) %}{% endfor %}{{ ns.x|pprint|length }}",
        );
        bomb(
            "{% set ns = namespace(x=[1]) %}{% for i in range(40) %}\
             {% set ns.x = ns.x|zip(ns.x)|list %}{% endfor %}{{ ns.x|string|length }}",
        );
    }

    #[test]
    fn replace_growth() {
        bomb("{{ ('a' * 1000)|replace('a', 'b' * 10000) }}");
        bomb(
            "{% set ns = namespace(s='a') %}{% for i in range(30) %}\
             {% set ns.s = ns.s|replace('a', 'aa') %}{% endfor %}{{ ns.s|length }}",
        );
        bomb("{{ ('a' * 1000)|replace('', 'x' * 10000) }}");
    }

    #[test]
    fn join_of_a_big_list() {
        bomb("{{ range(1000)|join('x' * 100000) }}");
        bomb("{{ range(40000)|join('-' * 30) }}");
    }

    #[test]
    fn format_padding_and_precision() {
        bomb("{{ '%999999999s'|format('a') }}");
        bomb("{{ '%.999999999f'|format(1.5) }}");
        bomb("{{ '%*s'|format(999999999, 'a') }}");
        bomb("{{ '%(a)s%(a)s%(a)s'|format({'a': 'x' * 400000}) }}");
    }

    #[test]
    fn indent_and_split() {
        bomb("{{ ('a\\n' * 1000)|indent(1000000) }}");
        bomb("{{ ('a\\n' * 1000)|indent(width=1000000) }}");
        bomb("{{ (',' * 400000)|split(',')|length }}");
        bomb("{{ ('\\n' * 400000)|lines|length }}");
        bomb("{{ [1]|batch(1000000000, 0)|list }}");
        bomb("{{ [1]|slice(1000000000)|list }}");
    }

    #[test]
    fn range_size() {
        bomb("{{ range(100000) }}");
        bomb("{{ range(50000)|list|length }}");
        // Lazy: looping over a range lists nothing.
        assert_eq!(ok("{% for i in range(10000) %}{% endfor %}ok"), json!("ok"));
    }

    #[test]
    fn output_and_captures() {
        let text = "x".repeat(1000);
        bomb(&format!("{{% for i in range(2000) %}}{text}{{% endfor %}}"));
        bomb(&format!(
            "{{% set c %}}{{% for i in range(2000) %}}{text}{{% endfor %}}{{% endset %}}{{{{ c|length }}}}"
        ));
        bomb(
            "{% filter upper %}{% for i in range(2000) %}{{ 'x' * 1000 }}{% endfor %}{% endfilter %}",
        );
        bomb(
            "{% macro m() %}{% for i in range(2000) %}{{ 'x' * 1000 }}{% endfor %}{% endmacro %}\
             {{ m()|length }}",
        );
    }

    #[test]
    fn one_budget_covers_every_string_of_a_value() {
        // Three strings of 400 KB each: fine alone, too much together.
        let one = "{{ 'x' * 400000 }}";
        assert!(ok(one).as_str().is_some_and(|s| s.len() == 400_000));
        let err = resolve(
            &json!({"a": one, "b": [one, one]}),
            &ctx(),
            &Budget::new(DEFAULT_MAX_BYTES),
        )
        .unwrap_err();
        assert!(err.0.contains("TEMPLATE_MAX_BYTES"), "{err}");
    }

    #[test]
    fn the_limit_is_the_setting() {
        let small = Budget::new(100);
        let err = resolve(&json!("{{ 'x' * 200 }}"), &ctx(), &small).unwrap_err();
        assert!(err.0.contains("TEMPLATE_MAX_BYTES (100 bytes)"), "{err}");
        let big = Budget::new(10_000_000);
        let v = resolve(&json!("{{ ('x' * 2000000)|length }}"), &ctx(), &big).unwrap();
        assert_eq!(v, json!(2_000_000));
        // A condition is bounded the same way.
        let err = condition("{{ ('x' * 200)|length > 1 }}", &ctx(), &small).unwrap_err();
        assert!(err.0.contains("TEMPLATE_MAX_BYTES"), "{err}");
    }

    #[test]
    fn a_namespace_cannot_hold_itself() {
        // Rendering a namespace that holds itself recursed until the stack
        // overflowed and aborted the process.
        for t in [
            "{% set ns = namespace() %}{% set ns.a = ns %}{{ ns }}",
            "{% set ns = namespace() %}{% set ns.a = [ns] %}{{ ns }}",
            "{% set ns = namespace() %}{% set ns.a = {'k': ns} %}{{ ns }}",
            "{% set ns = namespace() %}{% set ns.a = dict(k=ns) %}{{ ns }}",
            "{% set ns = namespace() %}{% set n2 = namespace(k=ns) %}{% set ns.a = n2 %}{{ ns }}",
            "{% set ns = namespace() %}{% set ns.a = nothing|default(k=ns) %}{{ ns }}",
            "{% set ns = namespace() %}{% for i in [1] %}{% set ns.a = loop.cycle(ns) %}{% endfor %}{{ ns }}",
        ] {
            let err = resolve(&Value::String(t.into()), &ctx(), &budget()).unwrap_err();
            assert!(err.0.contains("cannot hold a namespace"), "{t}: {err}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let err = resolve(
            &json!(
                "{% set ns = namespace(x=1) %}{% for i in range(1000) %}\
                 {% set ns.x = [ns.x] %}{% endfor %}{{ ns.x|length }}"
            ),
            &ctx(),
            &Budget::new(100_000_000),
        )
        .unwrap_err();
        assert!(err.0.contains("nested more than 256 deep"), "{err}");
    }

    #[test]
    fn debug_is_not_available() {
        let secret = json!({"params": {"token": "hunter2"}, "steps": {}});
        for t in ["{{ debug() }}", "x {{ debug(params) }}", "{{ debug }}"] {
            match resolve(&Value::String(t.into()), &secret, &budget()) {
                Err(e) => assert!(!e.0.contains("hunter2"), "{t}: {e}"),
                Ok(v) => {
                    assert!(!v.to_string().contains("hunter2"), "{t}: {v}");
                    assert!(
                        v.is_null() || v == json!("x ") || v == json!(""),
                        "{t}: {v}"
                    );
                }
            }
        }
        let err = resolve(&json!("{{ debug() }}"), &secret, &budget()).unwrap_err();
        assert!(err.0.contains("unknown"), "{err}");
        assert!(!is_global("debug"));
    }

    fn budget() -> Budget {
        Budget::new(DEFAULT_MAX_BYTES)
    }

    #[test]
    fn ordinary_templates_render_as_minijinja_renders_them() {
        let context = json!({
            "params": {"name": "llama", "n": 3, "tags": ["a", "b", "c"], "o": {"k": "v", "z": 2},
                       "models": [{"id": 1, "ok": true}, {"id": 2, "ok": false}, {"id": 3, "ok": true}]},
            "steps": {"a": {"outputs": {"x": 5}}},
        });
        let mut plain = Environment::new();
        plain.set_undefined_behavior(UndefinedBehavior::Chainable);
        for t in [
            "Deploying {{ params.name }} ({{ params.n }} replicas)",
            "{{ params.name ~ '-' ~ params.n }}/{{ params.name + '!' }}/{{ params.n * 2 }}/{{ 'ab' * 3 }}",
            "{{ params.tags|join(', ') }} {{ params.tags[1:] }} {{ params.name[::-1] }} {{ params.tags[-1] }}",
            "{% for t in params.tags %}{{ loop.index }}={{ t|upper }}{% if not loop.last %},{% endif %}{% endfor %}",
            "{% set ns = namespace(total=0, names='') %}{% for m in params.models %}\
             {% set ns.total = ns.total + m.id %}{% set ns.names = ns.names ~ m.id %}{% endfor %}\
             {{ ns.total }}:{{ ns.names }}",
            "{{ params.models|selectattr('ok')|map(attribute='id')|list }} {{ params.o|dictsort }}",
            "{{ params.o|items|list }} {{ [1, 2] + [3] }} {{ ([1, 2] * 2)|list }} {{ {'a': [1, {'b': 2}]} }}",
            "{% macro row(x, sep='|') %}[{{ x }}{{ sep }}]{% endmacro %}{{ row(1) }}{{ row(2, sep=';') }}",
            "{% macro wrap() %}<{{ caller() }}>{% endmacro %}{% call wrap() %}in{% endcall %}",
            "{% set c %}captured {{ params.n }}{% endset %}{{ c|upper }}",
            "{% filter upper %}shout {{ params.name }}{% endfilter %}",
            "{{ '%s-%05d'|format(params.name, params.n) }} {{ 'a\\nb'|indent(2, true) }}",
            "{{ 'a,b,,c'|split(',')|list }} {{ 'x y'|replace('y', 'z') }} {{ params.tags|reverse|list }}",
            "{{ range(3)|list }} {{ dict(a=1, b=[2]) }} {{ params.models|groupby('ok')|length }}",
            "{{ params.tags|batch(2)|list }} {{ params.tags|slice(2)|list }} {{ params.tags|zip([1, 2])|list }}",
            "{{ params.tags|pprint }} {{ params.o|string }} {{ (1, 'a') }}",
            "{% for k, v in params.o|items %}{{ k }}{{ v }}{% endfor %}{% with a = 1 %}{{ a }}{% endwith %}",
            "{% for m in params.models if m.ok %}{{ loop.cycle('x', 'y') }}{{ m.id }}{% else %}none{% endfor %}",
            "{{ steps.a.outputs.x }} {{ steps.nope.outputs.x }}|{{ nothing|default('dflt') }}",
            "{% raw %}{{ not rendered }}{% endraw %} {{ 7 // 2 }} {{ 2 ** 10 }} {{ -(params.n) }} {{ 'b' in 'abc' }}",
            "{{ params.tags|first }}{{ params.tags|last }}{{ params.tags|length }}{{ params.models|map(attribute='id')|sum }}",
            "{{ params.models|sort(attribute='id', reverse=true)|map(attribute='id')|join }} {{ [3, 1, 2]|unique|list }}",
            "{% block b %}in a block{% endblock %} {{ self.b() }}\n  {%- if true -%}  trimmed  {%- endif %}\n",
            "{% autoescape true %}{{ '<a>' }}{{ '<b>'|safe }}{{ ['<c>']|join }}{% endautoescape %}{{ '<d>'|escape }}",
        ] {
            let expected = plain
                .render_str(t, &context)
                .unwrap_or_else(|e| panic!("{t}: {e}"));
            assert_eq!(
                resolve(&Value::String(t.into()), &context, &budget()).unwrap(),
                Value::String(expected),
                "{t}"
            );
        }
        // Pure expressions keep their type.
        assert_eq!(
            resolve(&json!("{{ params.tags + ['d'] }}"), &context, &budget()).unwrap(),
            json!(["a", "b", "c", "d"])
        );
        assert_eq!(
            resolve(&json!("{{ params.o }}"), &context, &budget()).unwrap(),
            json!({"k": "v", "z": 2})
        );
    }

    #[test]
    fn a_context_bigger_than_the_limit_can_still_be_read() {
        let big = "y".repeat(2 * DEFAULT_MAX_BYTES);
        let context = json!({"params": {"big": big, "list": vec![1; 100_000]}, "steps": {}});
        let b = budget();
        assert_eq!(
            resolve(&json!("{{ params.big|length }}"), &context, &b).unwrap(),
            json!(2 * DEFAULT_MAX_BYTES)
        );
        assert_eq!(
            resolve(&json!("{{ params.list|length }}"), &context, &b).unwrap(),
            json!(100_000)
        );
        assert_eq!(
            resolve(&json!("{{ params.big[:3] }}"), &context, &b).unwrap(),
            json!("yyy")
        );
        // ... but not copied into the output.
        let err = resolve(&json!("{{ params.big }}"), &context, &b).unwrap_err();
        assert!(err.0.contains("TEMPLATE_MAX_BYTES"), "{err}");
    }
}
