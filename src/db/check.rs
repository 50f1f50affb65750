//! Every statement of `db/`, checked against the schema without running
//! it: what sqlx's compile-time macros would catch, for statements that
//! share their column lists (which the macros cannot take).
//!
//! Each module lists its statements with [`statements!`]; [`all`] gathers
//! them, with every shape of the ones built per filter. [`check`] then asks
//! Postgres to prepare each one against the migrated schema (a wrong table,
//! column, type or function is refused there) and, for a statement read
//! into a row type, reads a row of the statement's own columns into that
//! type (a field with no column, or of a type that cannot hold the
//! column's, is refused there). `tests/it/schema.rs` runs it, and `make
//! lint` runs that test, before any other test; a unit test below checks
//! that no statement of `db/` is left off the lists.

use std::borrow::Cow;

use sqlx::postgres::{PgRow, PgTypeInfo};
use sqlx::{Column, Executor, PgConnection, Statement as _, TypeInfo};

/// A statement as [`check`] sees it.
pub struct Statement {
    /// `module::NAME`, or `module::builder(shape)` for a built one.
    pub name: Cow<'static, str>,
    pub sql: Cow<'static, str>,
    /// Reads a row of the statement's result into the type the code reads
    /// it into (`None` when the code reads no row type).
    pub reads: Option<ReadRow>,
}

/// Reads a row into a row type (its `FromRow`), answering only whether it could.
pub type ReadRow = fn(&PgRow) -> Result<(), sqlx::Error>;

/// Declares `statements()`, the module's statements for [`check`]: each a
/// constant, with `=> RowType` when the code reads its rows into one.
macro_rules! statements {
    ($($name:ident $(=> $row:ty)?),* $(,)?) => {
        /// This module's statements (for `crate::db::check`).
        pub(crate) fn statements() -> Vec<crate::db::check::Statement> {
            vec![$(crate::db::check::Statement {
                name: concat!(module_path!(), "::", stringify!($name)).into(),
                sql: $name.into(),
                reads: crate::db::check::statements!(@reads $($row)?),
            }),*]
        }
    };
    (@reads) => { None };
    (@reads $row:ty) => {
        Some(|row| <$row as sqlx::FromRow<'_, sqlx::postgres::PgRow>>::from_row(row).map(drop))
    };
}
pub(crate) use statements;

/// Every statement the service issues.
pub fn all() -> Vec<Statement> {
    use super::*;
    let mut all = Vec::new();
    for module in [
        statements,
        events::statements,
        executions::statements,
        executions::built,
        firings::statements,
        legacy::statements,
        ops::statements,
        outbox::statements,
        pipelines::statements,
        steps::statements,
        steps::built,
        triggers::statements,
        workflows::statements,
        workflows::built,
    ] {
        all.extend(module());
    }
    all
}

/// The statements that read the original Python service's tables (for
/// `import-legacy`): checked against its schema, not this one.
pub fn original() -> Vec<Statement> {
    super::original::statements()
}

/// What is wrong with the statements, one line each (empty when nothing).
pub async fn check(conn: &mut PgConnection, statements: &[Statement]) -> Vec<String> {
    let mut problems = Vec::new();
    for statement in statements {
        if let Err(problem) = check_one(conn, statement).await {
            problems.push(format!("{}: {problem}", statement.name));
        }
    }
    problems
}

async fn check_one(conn: &mut PgConnection, statement: &Statement) -> Result<(), String> {
    let prepared = conn
        .prepare(&statement.sql)
        .await
        .map_err(|e| e.to_string())?;
    let Some(reads) = statement.reads else {
        return Ok(());
    };
    // A row of the statement's own columns, each holding a value of its
    // type, so that decoding it compares types too (sqlx compares a
    // column's type only when the value is not NULL). Decoding stops at the
    // first field whose value the type refuses (an empty status, `{}` for
    // a list): that field's column then takes its next sample, until every
    // field has been read.
    let columns: Vec<(&str, Vec<String>)> = prepared
        .columns()
        .iter()
        .map(|c| (c.name(), samples(c.type_info())))
        .collect();
    let mut chosen = vec![0; columns.len()];
    loop {
        let select: Vec<String> = columns
            .iter()
            .zip(&chosen)
            .map(|((name, samples), &i)| format!("{} AS \"{name}\"", samples[i]))
            .collect();
        let row = sqlx::query(&format!("SELECT {}", select.join(", ")))
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| format!("cannot build a sample row: {e}"))?;
        let error = match reads(&row) {
            Ok(()) => return Ok(()),
            Err(e @ sqlx::Error::ColumnNotFound(_)) => return Err(e.to_string()),
            Err(e) => e,
        };
        let message = error.to_string();
        let sqlx::Error::ColumnDecode { index, .. } = &error else {
            return Err(message);
        };
        if message.contains("mismatched types") {
            return Err(message);
        }
        // The column's name (quoted or not) or position.
        let index = index.trim_matches('"');
        let at = columns
            .iter()
            .position(|(name, _)| *name == index)
            .or_else(|| index.parse().ok())
            .filter(|&at| at < columns.len())
            .ok_or_else(|| message.clone())?;
        chosen[at] += 1;
        if chosen[at] == columns[at].1.len() {
            return Err(format!(
                "no sample value of column {index} reads: {message}"
            ));
        }
    }
}

/// Values of type `ty`, as SQL, to try in turn; NULL among them (which
/// checks a column's name but not its type).
fn samples(ty: &PgTypeInfo) -> Vec<String> {
    let name = ty.name();
    let literals: Vec<String> = match name {
        _ if name.ends_with("[]") => vec!["'{}'".into()],
        "BOOL" => vec!["false".into()],
        "INT2" | "INT4" | "INT8" | "FLOAT4" | "FLOAT8" | "NUMERIC" | "OID" => vec!["0".into()],
        // The statuses the row types parse (`try_from = "String"`).
        "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" => vec!["''".into(), "'RUNNING'".into()],
        "UUID" => vec!["'00000000-0000-0000-0000-000000000000'".into()],
        "TIMESTAMPTZ" | "TIMESTAMP" | "DATE" | "TIME" => vec!["'2000-01-01'".into()],
        "JSON" | "JSONB" => vec!["'{}'".into(), "'[]'".into(), "'null'".into()],
        "INTERVAL" => vec!["'0'".into()],
        "BYTEA" => vec!["''".into()],
        _ => Vec::new(),
    };
    literals
        .into_iter()
        .map(|literal| format!("{literal}::{name}"))
        .chain(["NULL".to_owned()])
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The SQL argument of each `sqlx::query…(` call in `source`: the
    /// constant's or the builder's name (through `let sql = builder(…)`),
    /// or the start of inline SQL.
    fn query_arguments(source: &str) -> Vec<String> {
        let ident = |text: &str| {
            let end = text
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(text.len());
            text[..end].to_owned()
        };
        let mut found = Vec::new();
        let mut at = 0;
        while let Some(next) = source[at..].find("sqlx::query") {
            let call = at + next;
            at = call + "sqlx::query".len();
            // `query`, `query_as_with`, …, then a turbofish or not: a call.
            let rest = source[at..].trim_start_matches(|c: char| c.is_alphanumeric() || c == '_');
            let rest = match rest.strip_prefix("::<") {
                Some(generic) => generic.split_once('>').map_or("", |(_, after)| after),
                None => rest,
            };
            let Some(argument) = rest.strip_prefix('(') else {
                continue;
            };
            let argument = argument.trim_start().trim_start_matches('&');
            let name = ident(argument);
            found.push(match name.as_str() {
                "" => argument.lines().next().unwrap_or_default().to_owned(),
                "sql" => match source[..call].rfind("let sql = ") {
                    Some(bound) => ident(&source[bound + "let sql = ".len()..]),
                    None => name,
                },
                _ => name,
            });
        }
        found
    }

    /// The statements declared in `source`: each `const NAME: &str` whose
    /// value is SQL (or built with `concat!`).
    fn declared(source: &str) -> Vec<String> {
        const SQL: [&str; 7] = [
            "\"SELECT", "\"INSERT", "\"UPDATE", "\"DELETE", "\"WITH", "r#\"", "concat!(",
        ];
        let mut names = Vec::new();
        let mut rest = source;
        while let Some(at) = rest.find("const ") {
            rest = &rest[at + "const ".len()..];
            let Some((name, after)) = rest.split_once(':') else {
                break;
            };
            let Some(value) = after.trim_start().strip_prefix("&str =") else {
                continue;
            };
            if SQL
                .iter()
                .any(|start| value.trim_start().starts_with(start))
            {
                names.push(name.trim().to_owned());
            }
        }
        names
    }

    #[test]
    fn every_statement_of_db_is_on_a_list() {
        let listed: BTreeSet<String> = super::all()
            .iter()
            .chain(&super::original())
            .map(|s| {
                let name = s.name.split('(').next().unwrap_or_default();
                name.rsplit("::").next().unwrap_or_default().to_owned()
            })
            .collect();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/db");
        let mut unlisted = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.ends_with("check.rs") {
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            for name in query_arguments(&source)
                .into_iter()
                .chain(declared(&source))
            {
                if !listed.contains(&name) {
                    unlisted.push(format!("{}: {name}", path.display()));
                }
            }
        }
        assert!(
            unlisted.is_empty(),
            "statements that `check` does not see (list them with `statements!`, or `built`):\n{}",
            unlisted.join("\n")
        );
    }

    #[test]
    fn no_sql_outside_db_but_the_bench() {
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
        let mut outside = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(src)];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    if !path.ends_with("db") && !path.ends_with("bench") {
                        dirs.push(path);
                    }
                } else if std::fs::read_to_string(&path)
                    .unwrap()
                    .contains(concat!("sqlx::", "query"))
                {
                    outside.push(path.display().to_string());
                }
            }
        }
        assert!(outside.is_empty(), "SQL outside src/db: {outside:?}");
    }

    #[test]
    fn the_scan_finds_statements_builders_and_inline_sql() {
        let source = r#"
            use sqlx::query::Query;
            sqlx::query(LOCK).bind(1);
            sqlx::query_scalar_with(&count_sql(&clause), args).fetch_all(db);
            let sql = list_sql(filter, true);
            sqlx::query_as::<_, Row>(&sql).fetch_all(db);
            sqlx::query_scalar("SELECT 1")
            sqlx::query(&format!("SELECT {x}"))
            const LOCK: &str = "SELECT 1";
            const NAMED: &str = concat!("SELECT ", columns!(), " FROM t");
            pub(crate) const CONSTRAINT: &str = "workflows_live_name";
        "#;
        assert_eq!(
            query_arguments(source),
            ["LOCK", "count_sql", "list_sql", "\"SELECT 1\")", "format"]
        );
        assert_eq!(declared(source), ["LOCK", "NAMED"]);
    }
}
