//! The engine's one error type, sorted by what a caller can do about it:
//! retry ([`Error::is_transient`]), give up on one value
//! ([`Error::is_unstorable`]), or fail one execution whose stored rows no
//! longer read back ([`Error::is_corrupt`]).

/// Why an engine operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database failed or could not be reached. Usually transient; see
    /// [`Error::is_unstorable`] and [`Error::is_corrupt`] for the two kinds
    /// that are not.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    /// Other writers kept changing what this operation reads (e.g. the step
    /// an event is for); the whole operation may be tried again.
    #[error("{0}")]
    Contended(String),
    /// A stored row does not read back into the engine's types (a DAG, a
    /// status no version of this engine knows). Retrying reads the same
    /// row again, so only its own execution may pay for it.
    #[error("stored state cannot be read: {0}")]
    Corrupt(String),
    /// A trigger (a schedule, an event trigger) could not start its run:
    /// the workflow is gone, not runnable, or its parameters are refused.
    #[error("{0}")]
    Launch(String),
}

/// The engine's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The database refuses the value itself (SQLSTATE class 22, data
    /// exception, or 54, program limit exceeded): no retry can store it.
    pub fn is_unstorable(&self) -> bool {
        matches!(self, Self::Db(e) if crate::db::unstorable(e))
    }

    /// A row that was stored but cannot be read back.
    pub fn is_corrupt(&self) -> bool {
        match self {
            Self::Corrupt(_) => true,
            Self::Db(e) => crate::db::undecodable(e),
            _ => false,
        }
    }

    /// Worth trying again as it is: the database was away, a lock was
    /// contended, a transaction was cancelled.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Db(_) => !self.is_unstorable() && !self.is_corrupt(),
            Self::Contended(_) => true,
            Self::Corrupt(_) | Self::Launch(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_answers_one_predicate() {
        let contended = Error::Contended("busy".into());
        assert!(contended.is_transient() && !contended.is_corrupt() && !contended.is_unstorable());
        let corrupt = Error::Corrupt("bad dag".into());
        assert!(corrupt.is_corrupt() && !corrupt.is_transient());
        let decode = Error::Db(sqlx::Error::Decode("bad".into()));
        assert!(decode.is_corrupt() && !decode.is_transient());
        let gone = Error::Db(sqlx::Error::PoolTimedOut);
        assert!(gone.is_transient() && !gone.is_corrupt() && !gone.is_unstorable());
        let launch = Error::Launch("workflow not found".into());
        assert!(!launch.is_transient());
    }
}
