//! The text of an error with its sources: the one walk down
//! [`std::error::Error::source`] (reqwest's, axum's and sqlx's errors say
//! the useful part in a cause, not at the top).

use std::error::Error;

/// The error and each of its causes, `a: b: c` ("error sending request"
/// alone says nothing about a refused connection).
pub(crate) fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The innermost cause's text (the error's own when it has none): serde's
/// message naming the field without axum's preamble, the OS's "connection
/// refused" without reqwest's URL.
pub(crate) fn innermost(error: &dyn Error) -> String {
    let mut last = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        last = cause.to_string();
        source = cause.source();
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_chain_joins_every_cause_and_innermost_keeps_the_last() {
        let error = Outer(std::io::Error::other("refused"));
        assert_eq!(chain(&error), "outer: refused");
        assert_eq!(innermost(&error), "refused");
        let alone = std::io::Error::other("alone");
        assert_eq!(
            (chain(&alone), innermost(&alone)),
            ("alone".into(), "alone".into())
        );
    }
}
