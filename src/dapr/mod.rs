//! Talking to the rest of Bud Runtime through the Dapr sidecar's HTTP API.
//!
//! - [`invoke`]: [`DaprClient`], the one client for the sidecar: service
//!   invocation (retries with backoff, a circuit breaker per app id),
//!   publish, and the start-up wait for the sidecar.
//! - [`breaker`]: the circuit breaker state machine.
//! - [`budcluster`]: typed calls to budcluster, used by the seed actions.
//!
//! Everything goes over plain HTTP to the local sidecar; the sidecar owns
//! mTLS and service discovery (dapr-contract.md D.7).

pub(crate) mod breaker;
pub mod budcluster;
pub(crate) mod invoke;

pub use breaker::{BreakerState, CircuitBreaker};
pub use budcluster::Budcluster;
pub use invoke::{CallHints, DaprClient, InvokeError, PublishError};

/// Percent-encode one URL path segment: everything but RFC 3986 unreserved
/// characters, so an id can never add a segment or a query to the path.
pub(crate) fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::encode_segment;

    #[test]
    fn encode_segment_keeps_unreserved_and_escapes_the_rest() {
        assert_eq!(encode_segment("cluster-1.a_b~"), "cluster-1.a_b~");
        assert_eq!(encode_segment("a/b?c#d e"), "a%2Fb%3Fc%23d%20e");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }
}
