//! What a template render may build: `TEMPLATE_MAX_BYTES` (API.md
//! "Configuration").
//!
//! minijinja's fuel bounds the instructions a render runs, not the memory it
//! builds: `~` doubling a string in a loop, `'a' * 10**8`, `replace`,
//! `indent(10**9)`, `join` with a huge joiner, `[x, x]` nested forty times
//! (a list that shares memory but renders, compares and serializes as 2^40
//! items) all build gigabytes in a handful of instructions. minijinja has no
//! hook for memory, so every way a template builds something goes through
//! a check here, and each check charges the bytes it builds to one
//! [`Budget`] per render. A render that goes past the budget fails with an
//! error naming the setting; the budget is cumulative, so it bounds the
//! render however the values are kept (variables, namespace attributes,
//! lists, recursion).
//!
//! The paths, and how each is bounded:
//!
//! * Operators the VM runs itself (`~`, `+`, `*`, slices, list and map
//!   literals, method calls) have no hook, so templates are compiled from a
//!   rewritten syntax tree ([`rewrite_template`]) where each becomes a call
//!   to a check filter (names no template can spell). `*` is checked before
//!   it builds anything (minijinja itself allows a 100 MB string); the others
//!   are charged right after: what they built is at most the size of their
//!   operands, which exist already and are bounded (the render's own values
//!   by this budget, the context by what the database holds), so the
//!   overshoot before the error is bounded too.
//! * The rewrite also keeps the compiler from folding constants that would
//!   build anything big at compile time (`("a" * 10**8) ~ ...` in the source
//!   was built while the template compiled): `*` is never a constant any more.
//! * Text a template outputs, into its result or into a capture (`{% set %}`
//!   blocks, macro calls, `{% filter %}`): every `{{ }}` goes through the
//!   environment's formatter ([`format_output`]), which measures before it
//!   writes, and literal text is rewritten into `{{ }}` of a constant.
//! * Built-in filters and functions are registered again under their own
//!   names, wrapped ([`register`]): those that can grow a value (`replace`,
//!   `indent`, `join`, `format`, `split`, `batch`, `pprint`, `string`, ...)
//!   check the size of what they will build first, and every result is
//!   charged. `range()` stays lazy (what lists it is charged) but may not be
//!   longer than the budget could list.
//! * Lists and maps are charged by their *logical* size (what rendering or
//!   serializing them walks), not the memory they share, so `[x, x]`
//!   nested in a loop runs out of budget like the string it renders to
//!   would. That also bounds the time of comparisons, hashing and sorting.
//! * A typed result (a template that is one `{{ expression }}`) is
//!   serialized through a counting writer before it becomes JSON.
//! * Namespaces are the one mutable value; a namespace that holds itself
//!   (`{% set ns.a = ns %}` or `ns.a = [ns]`) made rendering it recurse until
//!   the stack overflowed and aborted the process. A namespace attribute
//!   therefore cannot hold a namespace or another object whose content the
//!   engine cannot check (a macro, a loop, keyword arguments), and no list or
//!   map a render builds can hold one either, so values stay acyclic. Lists
//!   and maps a render builds also nest at most [`MAX_DEPTH`] deep, so
//!   rendering, comparing or dropping them cannot overflow the stack.
//!
//! What stays unchecked is bounded otherwise: tests (`is ...`) and
//! comparisons only answer booleans; `{% set %}` and loop variables keep
//! values that were charged when they were built; fuel bounds how many
//! instructions run, and each one works on operands of bounded size.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::io;
use std::sync::LazyLock;

use minijinja::machinery::ast::{self, CallArg, CallType, Expr, Spanned, Stmt};
use minijinja::machinery::{self, CodeGenerator, Vm, WhitespaceConfig};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, ObjectRepr, Rest, ValueKind};
use minijinja::{
    AutoEscape, Environment, Error, ErrorKind, Expression, Output, State, Value, context,
    escape_formatter, filters, functions,
};

/// `TEMPLATE_MAX_BYTES` when it is not set.
pub const DEFAULT_MAX_BYTES: usize = 1_048_576;

/// What one item of a list or map costs beyond its content: the size of a
/// template value.
const SLOT: usize = std::mem::size_of::<Value>();

/// How deep the lists and maps a render builds may nest (the context is
/// JSON, nested at most 128 deep).
const MAX_DEPTH: usize = 256;

/// HTML escaping turns one byte into at most six (`&quot;`).
const ESCAPE_FACTOR: usize = 6;

/// Names of the check filters the rewrite inserts; a template cannot spell
/// them (`x|~` does not parse), and calling them would only check anyway.
const CONCAT: &str = "~";
const ADD: &str = "+";
const MUL: &str = "*";
const SLICE: &str = "[:]";
const BUILT: &str = "[]";
const ATTRIBUTE: &str = "ns.=";

/// What the renders that share it may build. One budget covers everything
/// rendered for one purpose (a step's params, a DAG's outputs), because all
/// of it is kept at the same time.
#[derive(Debug)]
pub struct Budget {
    max_bytes: usize,
    spent: Cell<usize>,
}

impl Budget {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            spent: Cell::new(0),
        }
    }
}

thread_local! {
    /// `(max_bytes, spent)` of the render running on this thread. A render
    /// runs synchronously on one thread (filters and functions included), so
    /// the checks find their budget here.
    static CURRENT: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
}

/// The budget of the renders on this thread until dropped.
pub(super) struct Active<'a> {
    budget: &'a Budget,
    previous: Option<(usize, usize)>,
}

pub(super) fn enter(budget: &Budget) -> Active<'_> {
    let previous = CURRENT.replace(Some((budget.max_bytes, budget.spent.get())));
    Active { budget, previous }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        if let Some((_, spent)) = CURRENT.replace(self.previous) {
            self.budget.spent.set(spent);
        }
    }
}

/// `(max_bytes, spent)`; outside a render (never, in practice) each check
/// stands alone against the default.
fn current() -> (usize, usize) {
    CURRENT.get().unwrap_or((DEFAULT_MAX_BYTES, 0))
}

pub(super) fn remaining() -> usize {
    let (max, spent) = current();
    max.saturating_sub(spent)
}

/// Record `bytes` built; an error once the render has built more than its
/// budget.
pub(super) fn charge(bytes: usize) -> Result<(), Error> {
    let (max, spent) = current();
    let spent = spent.saturating_add(bytes);
    if CURRENT.get().is_some() {
        CURRENT.set(Some((max, spent)));
    }
    if spent > max { Err(too_big()) } else { Ok(()) }
}

fn too_big() -> Error {
    let (max, _) = current();
    Error::new(
        ErrorKind::InvalidOperation,
        format!(
            "template exceeds TEMPLATE_MAX_BYTES ({max} bytes): a render may build at most \
             that much (its output and the strings and lists it makes on the way)"
        ),
    )
}

fn too_deep() -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("template builds lists or maps nested more than {MAX_DEPTH} deep"),
    )
}

fn opaque_inside() -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        "a list, map or namespace attribute cannot hold a namespace, macro, loop or \
         keyword arguments",
    )
}

// ---- measuring -------------------------------------------------------------

/// A `fmt::Write` that keeps (or only counts) what is written and fails once
/// it is past `cap`.
struct Capped {
    text: Option<String>,
    len: usize,
    cap: usize,
    over: bool,
}

impl Capped {
    fn new(keep: bool, cap: usize) -> Self {
        Self {
            text: keep.then(String::new),
            len: 0,
            cap,
            over: false,
        }
    }
}

impl fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.len = self.len.saturating_add(s.len());
        if self.len > self.cap {
            self.over = true;
            return Err(fmt::Error);
        }
        if let Some(text) = &mut self.text {
            text.push_str(s);
        }
        Ok(())
    }
}

impl io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.len = self.len.saturating_add(buf.len());
        if self.len > self.cap {
            self.over = true;
            return Err(io::Error::other("over the template budget"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How long `value` renders, measured without keeping the text; an error
/// past `cap`.
fn display_len(value: &Value, cap: usize) -> Result<usize, Error> {
    if let Some(s) = value.as_str() {
        return if s.len() > cap {
            Err(too_big())
        } else {
            Ok(s.len())
        };
    }
    let mut w = Capped::new(false, cap);
    match write!(w, "{value}") {
        Ok(()) => Ok(w.len),
        Err(_) if w.over => Err(too_big()),
        Err(_) => Err(Error::new(
            ErrorKind::InvalidOperation,
            "value cannot be rendered",
        )),
    }
}

/// The text of `value` (Display, or pretty Debug for `pprint`), built only
/// up to `cap`.
fn render_capped(value: &Value, pretty_debug: bool, cap: usize) -> Result<String, Error> {
    let mut w = Capped::new(true, cap);
    let written = if pretty_debug {
        write!(w, "{value:#?}")
    } else {
        write!(w, "{value}")
    };
    match written {
        Ok(()) => Ok(w.text.unwrap_or_default()),
        Err(_) if w.over => Err(too_big()),
        Err(_) => Err(Error::new(
            ErrorKind::InvalidOperation,
            "value cannot be rendered",
        )),
    }
}

/// The JSON text of `value`, built only up to `cap` (`None`: not JSON).
pub(super) fn json_capped(
    value: &Value,
    indent: Option<usize>,
    cap: usize,
) -> Result<Option<String>, Error> {
    let mut bytes = CappedBytes {
        bytes: Vec::new(),
        cap,
        over: false,
    };
    let result = match indent {
        None => serde_json::to_writer(&mut bytes, value),
        Some(width) => {
            let spaces = " ".repeat(width);
            let formatter = serde_json::ser::PrettyFormatter::with_indent(spaces.as_bytes());
            let mut ser = serde_json::Serializer::with_formatter(&mut bytes, formatter);
            serde::Serialize::serialize(value, &mut ser)
        }
    };
    match result {
        Ok(()) => Ok(String::from_utf8(bytes.bytes).ok()),
        Err(_) if bytes.over => Err(too_big()),
        Err(_) => Ok(None),
    }
}

struct CappedBytes {
    bytes: Vec<u8>,
    cap: usize,
    over: bool,
}

impl io::Write for CappedBytes {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > self.cap {
            self.over = true;
            return Err(io::Error::other("over the template budget"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A value whose content the checks cannot vouch for: a namespace (the one
/// mutable value), keyword arguments (a map the engine builds unchecked), a
/// macro or a loop. Maps from the context, literals and `dict()` are plain
/// `BTreeMap`s.
fn is_opaque(value: &Value) -> bool {
    value
        .as_object()
        .is_some_and(|o| o.repr() == ObjectRepr::Map)
        && value
            .downcast_object_ref::<BTreeMap<Value, Value>>()
            .is_none()
}

/// The logical size of `value`: every item a slot, plus the bytes of its
/// strings, through every level (what rendering or serializing it walks).
/// Stops with an error once past `cap`, so the walk costs at most that.
/// An opaque value is walked at the top (its attributes) and refused
/// inside, and nesting past [`MAX_DEPTH`] is refused.
fn deep_size(value: &Value, cap: usize) -> Result<usize, Error> {
    fn walk(value: &Value, depth: usize, total: &mut usize, cap: usize) -> Result<(), Error> {
        *total = total.saturating_add(SLOT);
        if *total > cap {
            return Err(too_big());
        }
        match value.kind() {
            ValueKind::String => {
                *total = total.saturating_add(value.as_str().map_or(0, str::len));
            }
            ValueKind::Bytes => {
                *total = total.saturating_add(value.as_bytes().map_or(0, <[u8]>::len));
            }
            ValueKind::Seq | ValueKind::Iterable => {
                if depth >= MAX_DEPTH {
                    return Err(too_deep());
                }
                if let Ok(items) = value.try_iter() {
                    for item in items {
                        walk(&item, depth + 1, total, cap)?;
                    }
                }
            }
            ValueKind::Map => {
                if is_opaque(value) && depth > 0 {
                    return Err(opaque_inside());
                }
                if depth >= MAX_DEPTH {
                    return Err(too_deep());
                }
                if let Some(pairs) = value.as_object().and_then(|o| o.try_iter_pairs()) {
                    for (key, item) in pairs {
                        walk(&key, depth + 1, total, cap)?;
                        walk(&item, depth + 1, total, cap)?;
                    }
                }
            }
            _ => {}
        }
        if *total > cap {
            return Err(too_big());
        }
        Ok(())
    }
    let mut total = 0;
    walk(value, 0, &mut total, cap)?;
    Ok(total)
}

/// What building `value` out of values that exist already cost: the bytes
/// of a string, a slot per item of a list or map (the items are shared).
fn shallow_size(value: &Value, cap: usize) -> Result<usize, Error> {
    let size = match value.kind() {
        ValueKind::String => value.as_str().map_or(0, str::len),
        ValueKind::Bytes => value.as_bytes().map_or(0, <[u8]>::len),
        ValueKind::Seq | ValueKind::Iterable | ValueKind::Map if is_opaque(value) => {
            return deep_size(value, cap);
        }
        ValueKind::Seq | ValueKind::Iterable | ValueKind::Map => {
            let items = match value.len() {
                Some(n) => n,
                None => {
                    let most = cap / SLOT + 1;
                    value.try_iter().map_or(0, |items| items.take(most).count())
                }
            };
            items.saturating_mul(SLOT)
        }
        _ => 0,
    };
    if size > cap { Err(too_big()) } else { Ok(size) }
}

fn charge_deep(value: &Value) -> Result<(), Error> {
    charge(deep_size(value, remaining())?)
}

fn charge_shallow(value: &Value) -> Result<(), Error> {
    charge(shallow_size(value, remaining())?)
}

fn escapes(state: &State, value: &Value) -> bool {
    !matches!(state.auto_escape(), AutoEscape::None) && !value.is_safe()
}

// ---- output ---------------------------------------------------------------

/// The environment's formatter: every `{{ }}` (and, after the rewrite, all
/// literal text) is measured against the budget before it is written,
/// whether into the result or into a capture.
pub(super) fn format_output(out: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
    let factor = if escapes(state, value) {
        ESCAPE_FACTOR
    } else {
        1
    };
    let len = display_len(value, remaining() / factor)?;
    charge(len * factor)?;
    escape_formatter(out, state, value)
}

/// The JSON form of a typed result, measured before it is built.
pub(super) fn to_json(value: &Value) -> Result<serde_json::Value, Error> {
    if value.is_undefined() || value.is_none() {
        return Ok(serde_json::Value::Null);
    }
    let mut w = Capped::new(false, remaining());
    let json = match serde_json::to_writer(&mut w, value) {
        Ok(()) => {
            charge(w.len)?;
            serde_json::to_value(value).ok()
        }
        Err(_) if w.over => return Err(too_big()),
        Err(_) => None,
    };
    match json {
        Some(json) => Ok(json),
        // Not JSON (a map with non-string keys, say): its rendering.
        None => {
            let text = render_capped(value, false, remaining())?;
            charge(text.len())?;
            Ok(serde_json::Value::String(text))
        }
    }
}

// ---- compiling and running --------------------------------------------------

const TEMPLATE_NAME: &str = "<string>";

/// The syntax tree of a template (as `Environment::template_from_str` would
/// parse it; nothing is compiled or evaluated).
pub(super) fn parse_template(source: &str) -> Result<Stmt<'_>, Error> {
    machinery::parse(
        source,
        TEMPLATE_NAME,
        SyntaxConfig,
        WhitespaceConfig::default(),
    )
}

/// Render `source` (checked: see the module docs) with `root` as context.
pub(super) fn render(env: &Environment<'_>, source: &str, root: Value) -> Result<String, Error> {
    let tree = rewrite_template(&parse_template(source)?);
    let mut codegen = CodeGenerator::new(TEMPLATE_NAME, source);
    codegen.compile_stmt(&tree);
    let (instructions, blocks) = codegen.finish();
    let mut rendered = String::new();
    let mut out = machinery::make_string_output(&mut rendered);
    let (_, state) = Vm::new(env).eval(&instructions, root, &blocks, &mut out, AutoEscape::None)?;
    // The state holds the macro closures; dropping it breaks their cycles.
    drop(state);
    Ok(rendered)
}

/// Parse `source` as one expression (`None` when it is not one).
pub(super) fn parse_expression(source: &str) -> Option<Expr<'_>> {
    machinery::parse_expr(source).ok()
}

/// Evaluate an expression [`parse_expression`] returned.
pub(super) fn eval(
    env: &Environment<'_>,
    source: &str,
    expr: &Expr<'_>,
    root: Value,
) -> Result<Value, Error> {
    let expr = rewrite_expr(expr);
    let mut codegen = CodeGenerator::new("<expression>", source);
    codegen.compile_expr(&expr);
    let instructions = codegen.finish().0;
    let blocks = BTreeMap::new();
    let mut discarded = String::new();
    let mut out = machinery::make_string_output(&mut discarded);
    let (value, state) =
        Vm::new(env).eval(&instructions, root, &blocks, &mut out, AutoEscape::None)?;
    drop(state);
    Ok(value.unwrap_or(Value::UNDEFINED))
}

// ---- the rewrite ------------------------------------------------------------

fn spanned<T>(node: T, span: machinery::Span) -> Spanned<T> {
    Spanned::new(node, span)
}

/// `value|<check>`, the check being one of the filters above.
fn check<'a>(name: &'static str, value: Expr<'a>) -> Expr<'a> {
    let span = value.span();
    Expr::Filter(spanned(
        ast::Filter {
            name,
            expr: Some(value),
            args: Vec::new(),
        },
        span,
    ))
}

/// A copy of a template's syntax tree in which everything that builds goes
/// through a check (see the module docs).
fn rewrite_template<'a>(stmt: &Stmt<'a>) -> Stmt<'a> {
    rewrite_stmt(stmt)
}

fn rewrite_stmts<'a>(stmts: &[Stmt<'a>]) -> Vec<Stmt<'a>> {
    stmts.iter().map(rewrite_stmt).collect()
}

fn rewrite_stmt<'a>(stmt: &Stmt<'a>) -> Stmt<'a> {
    match stmt {
        Stmt::Template(t) => Stmt::Template(spanned(
            ast::Template {
                children: rewrite_stmts(&t.children),
            },
            t.span(),
        )),
        Stmt::EmitExpr(e) => Stmt::EmitExpr(spanned(
            ast::EmitExpr {
                expr: rewrite_expr(&e.expr),
            },
            e.span(),
        )),
        // Literal text becomes `{{ "<text>" }}` so the formatter counts it.
        Stmt::EmitRaw(raw) => Stmt::EmitExpr(spanned(
            ast::EmitExpr {
                expr: Expr::Const(spanned(
                    ast::Const {
                        value: Value::from_safe_string(raw.raw.to_owned()),
                    },
                    raw.span(),
                )),
            },
            raw.span(),
        )),
        Stmt::ForLoop(f) => Stmt::ForLoop(spanned(
            ast::ForLoop {
                target: copy_target(&f.target),
                iter: rewrite_expr(&f.iter),
                filter_expr: f.filter_expr.as_ref().map(rewrite_expr),
                recursive: f.recursive,
                body: rewrite_stmts(&f.body),
                else_body: rewrite_stmts(&f.else_body),
            },
            f.span(),
        )),
        Stmt::IfCond(c) => Stmt::IfCond(spanned(
            ast::IfCond {
                expr: rewrite_expr(&c.expr),
                true_body: rewrite_stmts(&c.true_body),
                false_body: rewrite_stmts(&c.false_body),
            },
            c.span(),
        )),
        Stmt::WithBlock(w) => Stmt::WithBlock(spanned(
            ast::WithBlock {
                assignments: w
                    .assignments
                    .iter()
                    .map(|(target, value)| (copy_target(target), assigned(target, value)))
                    .collect(),
                body: rewrite_stmts(&w.body),
            },
            w.span(),
        )),
        Stmt::Set(s) => Stmt::Set(spanned(
            ast::Set {
                target: copy_target(&s.target),
                expr: assigned(&s.target, &s.expr),
            },
            s.span(),
        )),
        Stmt::SetBlock(s) => Stmt::SetBlock(spanned(
            ast::SetBlock {
                target: copy_target(&s.target),
                filter: s.filter.as_ref().map(rewrite_expr),
                body: rewrite_stmts(&s.body),
            },
            s.span(),
        )),
        Stmt::AutoEscape(a) => Stmt::AutoEscape(spanned(
            ast::AutoEscape {
                enabled: rewrite_expr(&a.enabled),
                body: rewrite_stmts(&a.body),
            },
            a.span(),
        )),
        Stmt::FilterBlock(f) => Stmt::FilterBlock(spanned(
            ast::FilterBlock {
                filter: rewrite_expr(&f.filter),
                body: rewrite_stmts(&f.body),
            },
            f.span(),
        )),
        Stmt::Block(b) => Stmt::Block(spanned(
            ast::Block {
                name: b.name,
                required: b.required,
                body: rewrite_stmts(&b.body),
            },
            b.span(),
        )),
        Stmt::Import(i) => Stmt::Import(spanned(
            ast::Import {
                expr: rewrite_expr(&i.expr),
                name: copy_target(&i.name),
            },
            i.span(),
        )),
        Stmt::FromImport(i) => Stmt::FromImport(spanned(
            ast::FromImport {
                expr: rewrite_expr(&i.expr),
                names: i
                    .names
                    .iter()
                    .map(|(name, alias)| (copy_target(name), alias.as_ref().map(copy_target)))
                    .collect(),
            },
            i.span(),
        )),
        Stmt::Extends(e) => Stmt::Extends(spanned(
            ast::Extends {
                name: rewrite_expr(&e.name),
            },
            e.span(),
        )),
        Stmt::Include(i) => Stmt::Include(spanned(
            ast::Include {
                name: rewrite_expr(&i.name),
                ignore_missing: i.ignore_missing,
            },
            i.span(),
        )),
        Stmt::Macro(m) => Stmt::Macro(rewrite_macro(m)),
        Stmt::CallBlock(c) => Stmt::CallBlock(spanned(
            ast::CallBlock {
                call: rewrite_call(&c.call),
                macro_decl: rewrite_macro(&c.macro_decl),
            },
            c.span(),
        )),
        Stmt::Do(d) => Stmt::Do(spanned(
            ast::Do {
                call: rewrite_call(&d.call),
            },
            d.span(),
        )),
    }
}

fn rewrite_macro<'a>(m: &Spanned<ast::Macro<'a>>) -> Spanned<ast::Macro<'a>> {
    spanned(
        ast::Macro {
            name: m.name,
            args: m.args.iter().map(copy_target).collect(),
            defaults: m.defaults.iter().map(rewrite_expr).collect(),
            body: rewrite_stmts(&m.body),
        },
        m.span(),
    )
}

fn rewrite_call<'a>(c: &Spanned<ast::Call<'a>>) -> Spanned<ast::Call<'a>> {
    spanned(
        ast::Call {
            expr: rewrite_expr(&c.expr),
            args: c.args.iter().map(rewrite_arg).collect(),
        },
        c.span(),
    )
}

fn rewrite_arg<'a>(arg: &CallArg<'a>) -> CallArg<'a> {
    match arg {
        CallArg::Pos(e) => CallArg::Pos(rewrite_expr(e)),
        CallArg::Kwarg(name, e) => CallArg::Kwarg(name, rewrite_expr(e)),
        CallArg::PosSplat(e) => CallArg::PosSplat(rewrite_expr(e)),
        CallArg::KwargSplat(e) => CallArg::KwargSplat(rewrite_expr(e)),
    }
}

/// The value of an assignment: checked when it goes into a namespace
/// attribute (`{% set ns.x = ... %}`).
fn assigned<'a>(target: &Expr<'a>, value: &Expr<'a>) -> Expr<'a> {
    let value = rewrite_expr(value);
    if matches!(target, Expr::GetAttr(_)) {
        check(ATTRIBUTE, value)
    } else {
        value
    }
}

/// An assignment target (a name, a namespace attribute, or a list of them
/// to unpack into), copied as is: the compiler only accepts these forms.
fn copy_target<'a>(target: &Expr<'a>) -> Expr<'a> {
    match target {
        Expr::Var(v) => Expr::Var(spanned(ast::Var { id: v.id }, v.span())),
        Expr::List(l) => Expr::List(spanned(
            ast::List {
                items: l.items.iter().map(copy_target).collect(),
            },
            l.span(),
        )),
        Expr::GetAttr(g) => Expr::GetAttr(spanned(
            ast::GetAttr {
                expr: copy_target(&g.expr),
                name: g.name,
            },
            g.span(),
        )),
        other => rewrite_expr(other),
    }
}

fn rewrite_opt<'a>(e: &Option<Expr<'a>>) -> Option<Expr<'a>> {
    e.as_ref().map(rewrite_expr)
}

fn rewrite_expr<'a>(expr: &Expr<'a>) -> Expr<'a> {
    match expr {
        Expr::Var(v) => Expr::Var(spanned(ast::Var { id: v.id }, v.span())),
        Expr::Const(c) => Expr::Const(spanned(
            ast::Const {
                value: c.value.clone(),
            },
            c.span(),
        )),
        Expr::Slice(s) => check(
            SLICE,
            Expr::Slice(spanned(
                ast::Slice {
                    expr: rewrite_expr(&s.expr),
                    start: rewrite_opt(&s.start),
                    stop: rewrite_opt(&s.stop),
                    step: rewrite_opt(&s.step),
                },
                s.span(),
            )),
        ),
        Expr::UnaryOp(u) => Expr::UnaryOp(spanned(
            ast::UnaryOp {
                op: match u.op {
                    ast::UnaryOpKind::Not => ast::UnaryOpKind::Not,
                    ast::UnaryOpKind::Neg => ast::UnaryOpKind::Neg,
                },
                expr: rewrite_expr(&u.expr),
            },
            u.span(),
        )),
        Expr::BinOp(b) => rewrite_binop(b),
        Expr::Compare(c) => Expr::Compare(spanned(
            ast::Compare {
                expr: rewrite_expr(&c.expr),
                ops: c
                    .ops
                    .iter()
                    .map(|op| ast::CompareOp {
                        op: op.op,
                        expr: rewrite_expr(&op.expr),
                    })
                    .collect(),
            },
            c.span(),
        )),
        Expr::IfExpr(i) => Expr::IfExpr(spanned(
            ast::IfExpr {
                test_expr: rewrite_expr(&i.test_expr),
                true_expr: rewrite_expr(&i.true_expr),
                false_expr: rewrite_opt(&i.false_expr),
            },
            i.span(),
        )),
        Expr::Filter(f) => Expr::Filter(spanned(
            ast::Filter {
                name: f.name,
                expr: rewrite_opt(&f.expr),
                args: f.args.iter().map(rewrite_arg).collect(),
            },
            f.span(),
        )),
        Expr::Test(t) => Expr::Test(spanned(
            ast::Test {
                name: t.name,
                expr: rewrite_expr(&t.expr),
                args: t.args.iter().map(rewrite_arg).collect(),
            },
            t.span(),
        )),
        Expr::GetAttr(g) => Expr::GetAttr(spanned(
            ast::GetAttr {
                expr: rewrite_expr(&g.expr),
                name: g.name,
            },
            g.span(),
        )),
        Expr::GetItem(g) => Expr::GetItem(spanned(
            ast::GetItem {
                expr: rewrite_expr(&g.expr),
                subscript_expr: rewrite_expr(&g.subscript_expr),
            },
            g.span(),
        )),
        Expr::Call(c) => {
            let call = Expr::Call(rewrite_call(c));
            match c.identify_call() {
                // Globals are checked where they are registered; macros
                // return their output, which the formatter counted.
                CallType::Function(_) | CallType::Block(_) => call,
                // A method (`loop.cycle(...)`) may hand back its arguments,
                // keyword arguments included.
                CallType::Method(..) | CallType::Object(_) => check(BUILT, call),
            }
        }
        Expr::List(l) => check(
            BUILT,
            Expr::List(spanned(
                ast::List {
                    items: l.items.iter().map(rewrite_expr).collect(),
                },
                l.span(),
            )),
        ),
        Expr::Map(m) => check(
            BUILT,
            Expr::Map(spanned(
                ast::Map {
                    keys: m.keys.iter().map(rewrite_expr).collect(),
                    values: m.values.iter().map(rewrite_expr).collect(),
                },
                m.span(),
            )),
        ),
    }
}

fn rewrite_binop<'a>(b: &Spanned<ast::BinOp<'a>>) -> Expr<'a> {
    use ast::BinOpKind as K;
    let left = rewrite_expr(&b.left);
    let right = rewrite_expr(&b.right);
    // `*` is checked before it builds: `left|*(right)`.
    if matches!(b.op, K::Mul) {
        return Expr::Filter(spanned(
            ast::Filter {
                name: MUL,
                expr: Some(left),
                args: vec![CallArg::Pos(right)],
            },
            b.span(),
        ));
    }
    let op = b.op;
    let checked = match op {
        K::Add => Some(ADD),
        K::Concat => Some(CONCAT),
        _ => None,
    };
    let node = Expr::BinOp(spanned(ast::BinOp { op, left, right }, b.span()));
    match checked {
        Some(name) => check(name, node),
        None => node,
    }
}

// ---- the checks and the wrapped built-ins ------------------------------------

/// `a * b` as minijinja computes it, once the size is known to fit.
static OPERATORS: LazyLock<Environment<'static>> = LazyLock::new(Environment::empty);
static MULTIPLY: LazyLock<Option<Expression<'static, 'static>>> =
    LazyLock::new(|| OPERATORS.compile_expression("a * b").ok());

/// An error raised by a helper evaluation, without the helper's location
/// (the template's is attached where it propagates).
fn relocated(e: Error) -> Error {
    match e.detail() {
        Some(detail) => Error::new(e.kind(), detail.to_owned()),
        None => Error::from(e.kind()),
    }
}

fn multiply(a: Value, b: Value) -> Result<Value, Error> {
    fn times(n: &Value) -> Option<f64> {
        (n.kind() == ValueKind::Number)
            .then(|| f64::try_from(n.clone()).ok())
            .flatten()
    }
    for (item, n) in [(&a, &b), (&b, &a)] {
        let Some(n) = times(n) else { continue };
        if n.is_nan() || n < 1.0 {
            break;
        }
        let one = match item.kind() {
            ValueKind::String => item.as_str().map_or(0, str::len),
            ValueKind::Seq | ValueKind::Iterable => deep_size(item, remaining())?,
            _ => continue,
        };
        let total = one as f64 * n;
        if total > remaining() as f64 {
            return Err(too_big());
        }
        charge(total as usize)?;
        break;
    }
    let Some(expr) = MULTIPLY.as_ref() else {
        return Err(Error::new(ErrorKind::InvalidOperation, "cannot multiply"));
    };
    expr.eval(context! { a => a, b => b }).map_err(relocated)
}

/// What a wrapped built-in is charged after it ran.
#[derive(Clone, Copy, Debug)]
enum After {
    /// Answers a number or a boolean, or hands back (part of) an argument.
    Pass,
    /// Builds a string, or a list or map of values that exist already.
    Shallow,
    /// Builds a list or map that may hold the same value more than once.
    Deep,
}

/// What a wrapped built-in checks before it runs.
#[derive(Clone, Copy, Debug)]
enum Before {
    Nothing,
    Display,
    Replace,
    Indent,
    Join,
    Format,
    Split,
    Lines,
    Count,
}

/// Every built-in filter minijinja registers (its `builtins` feature), and
/// how it is checked. A unit test compares this list with minijinja's.
const FILTERS: &[(&str, Before, After)] = &[
    ("abs", Before::Nothing, After::Pass),
    ("attr", Before::Nothing, After::Pass),
    ("batch", Before::Count, After::Deep),
    ("bool", Before::Nothing, After::Pass),
    ("capitalize", Before::Nothing, After::Shallow),
    ("chain", Before::Nothing, After::Deep),
    ("count", Before::Nothing, After::Pass),
    ("d", Before::Nothing, After::Pass),
    ("default", Before::Nothing, After::Pass),
    ("dictsort", Before::Nothing, After::Shallow),
    ("e", Before::Nothing, After::Shallow),
    ("escape", Before::Nothing, After::Shallow),
    ("first", Before::Nothing, After::Pass),
    ("float", Before::Nothing, After::Pass),
    ("format", Before::Format, After::Shallow),
    ("groupby", Before::Nothing, After::Deep),
    ("indent", Before::Indent, After::Shallow),
    ("int", Before::Nothing, After::Pass),
    ("items", Before::Nothing, After::Shallow),
    ("join", Before::Join, After::Shallow),
    ("last", Before::Nothing, After::Pass),
    ("length", Before::Nothing, After::Pass),
    ("lines", Before::Lines, After::Deep),
    ("list", Before::Nothing, After::Shallow),
    ("lower", Before::Nothing, After::Shallow),
    ("map", Before::Nothing, After::Shallow),
    ("max", Before::Nothing, After::Pass),
    ("min", Before::Nothing, After::Pass),
    ("pprint", Before::Nothing, After::Shallow),
    ("reject", Before::Nothing, After::Shallow),
    ("rejectattr", Before::Nothing, After::Shallow),
    ("replace", Before::Replace, After::Shallow),
    ("reverse", Before::Nothing, After::Shallow),
    ("round", Before::Nothing, After::Pass),
    ("safe", Before::Nothing, After::Shallow),
    ("select", Before::Nothing, After::Shallow),
    ("selectattr", Before::Nothing, After::Shallow),
    ("slice", Before::Count, After::Deep),
    ("sort", Before::Nothing, After::Shallow),
    ("split", Before::Split, After::Deep),
    ("string", Before::Display, After::Shallow),
    ("sum", Before::Nothing, After::Pass),
    ("title", Before::Nothing, After::Shallow),
    ("trim", Before::Nothing, After::Shallow),
    ("unique", Before::Nothing, After::Shallow),
    ("upper", Before::Nothing, After::Shallow),
    ("zip", Before::Nothing, After::Deep),
];

/// minijinja's own filter `name`.
fn builtin_filter(name: &str) -> Option<Value> {
    Some(match name {
        "abs" => Value::from_function(filters::abs),
        "attr" => Value::from_function(filters::attr),
        "batch" => Value::from_function(filters::batch),
        "bool" => Value::from_function(filters::bool),
        "capitalize" => Value::from_function(filters::capitalize),
        "chain" => Value::from_function(filters::chain),
        "count" | "length" => Value::from_function(filters::length),
        "d" | "default" => Value::from_function(filters::default),
        "dictsort" => Value::from_function(filters::dictsort),
        "e" | "escape" => Value::from_function(filters::escape),
        "first" => Value::from_function(filters::first),
        "float" => Value::from_function(filters::float),
        "format" => Value::from_function(filters::format),
        "groupby" => Value::from_function(filters::groupby),
        "indent" => Value::from_function(filters::indent),
        "int" => Value::from_function(filters::int),
        "items" => Value::from_function(filters::items),
        "join" => Value::from_function(filters::join),
        "last" => Value::from_function(filters::last),
        "lines" => Value::from_function(filters::lines),
        "list" => Value::from_function(filters::list),
        "lower" => Value::from_function(filters::lower),
        "map" => Value::from_function(filters::map),
        "max" => Value::from_function(filters::max),
        "min" => Value::from_function(filters::min),
        "pprint" => Value::from_function(filters::pprint),
        "reject" => Value::from_function(filters::reject),
        "rejectattr" => Value::from_function(filters::rejectattr),
        "replace" => Value::from_function(filters::replace),
        "reverse" => Value::from_function(filters::reverse),
        "round" => Value::from_function(filters::round),
        "safe" => Value::from_function(filters::safe),
        "select" => Value::from_function(filters::select),
        "selectattr" => Value::from_function(filters::selectattr),
        "slice" => Value::from_function(filters::slice),
        "sort" => Value::from_function(filters::sort),
        "split" => Value::from_function(filters::split),
        "string" => Value::from_function(filters::string),
        "sum" => Value::from_function(filters::sum),
        "title" => Value::from_function(filters::title),
        "trim" => Value::from_function(filters::trim),
        "unique" => Value::from_function(filters::unique),
        "upper" => Value::from_function(filters::upper),
        "zip" => Value::from_function(filters::zip),
        _ => return None,
    })
}

/// The text a string argument becomes (filters render other values).
fn text_of(value: &Value, cap: usize) -> Result<std::borrow::Cow<'_, str>, Error> {
    match value.as_str() {
        Some(s) => Ok(std::borrow::Cow::Borrowed(s)),
        None if value.is_undefined() || value.is_none() => Ok(std::borrow::Cow::Borrowed("")),
        None => render_capped(value, false, cap).map(std::borrow::Cow::Owned),
    }
}

/// A keyword argument given to a call (`indent(width=...)`), or the
/// positional argument at `index`.
fn argument(args: &[Value], index: usize, keyword: &str) -> Option<Value> {
    let kwargs = args.last().and_then(|v| Kwargs::try_from(v.clone()).ok());
    let positional = match &kwargs {
        Some(_) => &args[..args.len() - 1],
        None => args,
    };
    positional
        .get(index)
        .cloned()
        .or_else(|| kwargs.and_then(|k| k.peek::<Value>(keyword).ok()))
        .filter(|v| !v.is_undefined() && !v.is_none())
}

fn number(value: Option<Value>) -> Option<f64> {
    value
        .filter(|v| v.kind() == ValueKind::Number)
        .and_then(|v| f64::try_from(v).ok())
}

fn fits(bytes: f64) -> Result<(), Error> {
    if bytes > remaining() as f64 {
        Err(too_big())
    } else {
        Ok(())
    }
}

/// The size check before a growing filter builds anything: an upper bound of
/// what it will build must fit in what is left.
fn check_before(state: &State, before: Before, args: &[Value]) -> Result<(), Error> {
    let Some(value) = args.first() else {
        return Ok(());
    };
    let cap = remaining();
    // With auto-escaping on, what a filter outputs is escaped: up to six
    // times longer.
    let factor = if matches!(state.auto_escape(), AutoEscape::None) {
        1.0
    } else {
        ESCAPE_FACTOR as f64
    };
    match before {
        Before::Nothing => {}
        Before::Display => {
            display_len(value, cap)?;
        }
        Before::Replace => {
            let text = text_of(value, cap)?;
            let from = text_of(args.get(1).unwrap_or(&Value::UNDEFINED), cap)?;
            let to = text_of(args.get(2).unwrap_or(&Value::UNDEFINED), cap)?;
            let hits = if from.is_empty() {
                text.chars().count() + 1
            } else {
                text.matches(from.as_ref()).count()
            };
            fits((text.len() as f64 + hits as f64 * to.len() as f64) * factor)?;
        }
        Before::Indent => {
            let text = text_of(value, cap)?;
            let width = number(argument(args, 1, "width")).unwrap_or(4.0);
            let lines = text.matches('\n').count() + 1;
            fits(text.len() as f64 + lines as f64 * width.max(0.0))?;
        }
        Before::Join => {
            let joiner = match args.get(1) {
                Some(j) => text_of(j, cap)?.len(),
                None => 0,
            };
            if let Ok(items) = value.try_iter() {
                let mut total = 0f64;
                for (i, item) in items.enumerate() {
                    let left = cap.saturating_sub(total as usize);
                    total += display_len(&item, left)? as f64;
                    if i > 0 {
                        total += joiner as f64;
                    }
                    fits(total * factor)?;
                }
            }
        }
        Before::Format => {
            let Some(format) = value.as_str() else {
                return Ok(());
            };
            // Each `%` spec outputs at most its argument (any of them, for
            // `%(key)s`), padded to its width and precision, which come from
            // the string's numbers or from the arguments (`%*d`).
            let specs = format.matches('%').count() as f64;
            let mut widest = 0f64;
            let mut largest = 0f64;
            for arg in &args[1..] {
                widest = widest.max(display_len(arg, cap)? as f64);
                if let Some(n) = number(Some(arg.clone())) {
                    largest = largest.max(n.abs());
                }
            }
            let mut numbers = 0f64;
            for run in format.split(|c: char| !c.is_ascii_digit()) {
                if !run.is_empty() {
                    numbers += run.parse::<f64>().unwrap_or(f64::INFINITY);
                }
            }
            // 400: the longest a float renders without padding (`%f` of 1e308).
            let each = widest * factor + 400.0 + largest;
            fits(format.len() as f64 + specs * each + numbers)?;
        }
        Before::Split => {
            let text = text_of(value, cap)?;
            let pieces = match args.get(1).and_then(Value::as_str) {
                Some("") => text.chars().count() + 2,
                Some(sep) => text.matches(sep).count() + 1,
                None => text.split_whitespace().count(),
            };
            fits(pieces as f64 * 2.0 * SLOT as f64 + text.len() as f64)?;
        }
        Before::Lines => {
            let text = text_of(value, cap)?;
            fits(text.lines().count() as f64 * 2.0 * SLOT as f64 + text.len() as f64)?;
        }
        Before::Count => {
            if let Some(n) = number(args.get(1).cloned()) {
                fits(n * SLOT as f64)?;
            }
        }
    }
    Ok(())
}

fn charge_after(after: After, result: &Value) -> Result<(), Error> {
    match after {
        // Keyword arguments handed back (`default(a=x, b=x)`) are a map the
        // engine built without a check.
        After::Pass if is_opaque(result) => charge_deep(result),
        After::Pass => Ok(()),
        After::Shallow => charge_shallow(result),
        After::Deep => charge_deep(result),
    }
}

/// `pprint` with the text built only up to the budget.
fn pprint(value: &Value) -> Result<Value, Error> {
    let text = render_capped(value, true, remaining())?;
    charge(text.len())?;
    Ok(Value::from(text))
}

/// Register the checked built-ins and the rewrite's checks in `env`, and
/// remove `debug()` (it dumps the whole context into the output).
pub(super) fn register(env: &mut Environment<'static>) {
    for &(name, before, after) in FILTERS {
        if name == "pprint" {
            env.add_filter(name, pprint);
            continue;
        }
        let Some(builtin) = builtin_filter(name) else {
            continue;
        };
        env.add_filter(name, move |state: &State, args: Rest<Value>| {
            check_before(state, before, &args)?;
            let result = builtin.call(state, &args)?;
            charge_after(after, &result)?;
            Ok::<_, Error>(result)
        });
    }
    env.add_filter(CONCAT, |value: Value| {
        charge_shallow(&value).map(|()| value)
    });
    env.add_filter(ADD, |value: Value| {
        match value.kind() {
            ValueKind::Seq | ValueKind::Iterable => charge_deep(&value)?,
            _ => charge_shallow(&value)?,
        }
        Ok::<_, Error>(value)
    });
    env.add_filter(MUL, multiply);
    env.add_filter(SLICE, |value: Value| charge_shallow(&value).map(|()| value));
    env.add_filter(BUILT, |value: Value| charge_deep(&value).map(|()| value));
    env.add_filter(ATTRIBUTE, |value: Value| {
        if is_opaque(&value) {
            Err(opaque_inside())
        } else {
            Ok(value)
        }
    });

    env.remove_global("debug");
    env.add_function(
        "range",
        |lower: isize, upper: Option<isize>, step: Option<isize>| {
            // Lazy: it costs nothing until something lists it (`|list`,
            // `[...]`, `*`, output), and that is charged. It may not be
            // longer than the budget could list.
            let range = functions::range(lower, upper, step)?;
            let len = range.try_iter().map_or(0, Iterator::count);
            if len.saturating_mul(SLOT) > remaining() {
                return Err(too_big());
            }
            Ok::<_, Error>(range)
        },
    );
    let dict = Value::from_function(functions::dict);
    env.add_function("dict", move |state: &State, args: Rest<Value>| {
        let result = dict.call(state, &args)?;
        charge_deep(&result)?;
        Ok::<_, Error>(result)
    });
    let namespace = Value::from_function(functions::namespace);
    env.add_function("namespace", move |state: &State, args: Rest<Value>| {
        for arg in args.iter() {
            charge_deep(arg)?;
        }
        namespace.call(state, &args)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_filter_is_checked() {
        // minijinja lists its filters in the environment's Debug output.
        let debug = format!("{:?}", Environment::new());
        let start = debug.find("filters: [").expect("filters in Debug");
        let end = start + debug[start..].find(']').expect("end of filters");
        let builtins: Vec<&str> = debug[start + "filters: [".len()..end]
            .split(',')
            .map(|s| s.trim().trim_matches('"'))
            .filter(|s| !s.is_empty())
            .collect();
        let ours: Vec<&str> = FILTERS.iter().map(|(name, ..)| *name).collect();
        assert_eq!(builtins, ours);
        for name in ours {
            assert!(name == "pprint" || builtin_filter(name).is_some(), "{name}");
        }
    }

    #[test]
    fn the_globals_are_checked_ones() {
        let debug = format!("{:?}", Environment::new());
        for name in ["debug", "dict", "namespace", "range"] {
            assert!(debug.contains(&format!("\"{name}\"")), "{name}");
        }
        let globals: Vec<String> = Environment::new()
            .globals()
            .map(|(name, _)| name.to_owned())
            .collect();
        assert_eq!(globals, ["debug", "dict", "namespace", "range"]);
    }
}
