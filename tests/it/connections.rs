//! Connection hardening (src/http/server.rs), seen from a raw TCP client:
//! the header-read and idle timeouts, the connection limit, hyper's own
//! error answers with JSON bodies, and JSON bodies nested too deeply.
//!
//! The service runs in-process ([`TestApp`]): `Application::run` serves
//! through the same accept loop as the binary.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::PgPool;
use support::app::{TOKEN, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Short timeouts so each test takes a few seconds.
const FAST: &[(&str, &str)] = &[
    ("HTTP_HEADER_READ_TIMEOUT_SECONDS", "1"),
    ("HTTP_IDLE_TIMEOUT_SECONDS", "2"),
];

/// How late a close may come after its timeout on a busy 2-core machine.
const SLACK: Duration = Duration::from_millis(1500);

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("connect")
}

/// Wait for the server to close `stream` (EOF or reset), discarding what it
/// sends; the time it took, or `None` if still open after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

/// A response read off a raw connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is JSON ({e}): {}\n{}",
                self.head,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A JSON error as the API promises: the content type and `detail`.
    fn detail(&self) -> String {
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/json"),
            "{}",
            self.head
        );
        let body = self.json();
        body["detail"]
            .as_str()
            .unwrap_or_else(|| panic!("no detail in {body}"))
            .to_owned()
    }
}

/// Read one response (Content-Length framed) within `limit`; `None` when
/// nothing complete arrived in time or the connection closed first.
async fn read_response(stream: &mut TcpStream, limit: Duration) -> Option<Raw> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).into_owned();
            let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
            let length: usize = head
                .lines()
                .skip(1)
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("responses here have a Content-Length");
            if data.len() >= end + 4 + length {
                return Some(Raw {
                    status,
                    head,
                    body: data[end + 4..end + 4 + length].to_vec(),
                });
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => data.extend_from_slice(&buf[..n]),
            _ => return None,
        }
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: test\r\ndapr-api-token: {TOKEN}\r\n\r\n")
}

async fn send(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).await.expect("write");
}

fn assert_closed_after(took: Option<Duration>, timeout: Duration, what: &str) {
    let took = took.unwrap_or_else(|| panic!("{what}: still open {:?} after", timeout + SLACK));
    eprintln!("{what}: closed after {took:?} (timeout {timeout:?})");
    assert!(
        took + Duration::from_millis(100) >= timeout,
        "{what}: closed after {took:?}, before the {timeout:?} timeout"
    );
}

#[sqlx::test]
async fn a_silent_connection_is_closed_after_the_header_timeout(pool: PgPool) {
    let app = TestApp::spawn_with(&pool, FAST).await;
    let mut stream = connect(&app).await;
    let took = closed_within(&mut stream, Duration::from_secs(1) + SLACK).await;
    assert_closed_after(took, Duration::from_secs(1), "silent connection");
}

#[sqlx::test]
async fn half_a_request_line_is_closed_after_the_header_timeout(pool: PgPool) {
    let app = TestApp::spawn_with(&pool, FAST).await;
    let mut stream = connect(&app).await;
    send(&mut stream, b"GET /hea").await;
    let took = closed_within(&mut stream, Duration::from_secs(1) + SLACK).await;
    assert_closed_after(took, Duration::from_secs(1), "half a request line");
}

/// Headers that keep trickling in do not extend the deadline (slowloris).
#[sqlx::test]
async fn partial_headers_are_closed_after_the_header_timeout_even_when_trickling(pool: PgPool) {
    let app = TestApp::spawn_with(&pool, FAST).await;
    let mut stream = connect(&app).await;
    let started = Instant::now();
    send(&mut stream, b"GET /health HTTP/1.1\r\nhost: test\r\n").await;
    let mut closed = false;
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if stream
            .write_all(format!("x-trickle-{i}: 1\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        if started.elapsed() > Duration::from_secs(1) + SLACK {
            break;
        }
    }
    let took = if closed {
        Some(started.elapsed())
    } else {
        closed_within(&mut stream, Duration::from_millis(500))
            .await
            .map(|_| started.elapsed())
    };
    assert_closed_after(took, Duration::from_secs(1), "trickling headers");
}

/// Kept alive past the header timeout (the idle timeout is the longer one),
/// then closed once idle for the idle timeout.
#[sqlx::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_not_before(pool: PgPool) {
    let app = TestApp::spawn_with(&pool, FAST).await;
    let mut stream = connect(&app).await;
    send(&mut stream, get("/health").as_bytes()).await;
    let first = read_response(&mut stream, Duration::from_secs(5))
        .await
        .expect("first response");
    assert_eq!(first.status, 200);

    // Idle 1.5 s: past the header timeout (1 s), within the idle one (2 s).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    send(&mut stream, get("/health").as_bytes()).await;
    let second = read_response(&mut stream, Duration::from_secs(5))
        .await
        .expect("the connection is reused after 1.5 s idle");
    assert_eq!(second.status, 200);

    let took = closed_within(&mut stream, Duration::from_secs(2) + SLACK).await;
    assert_closed_after(took, Duration::from_secs(2), "idle keep-alive connection");
}

/// A request whose handler runs past both timeouts (it waits on a table
/// lock held here) is answered, and its connection stays usable.
#[sqlx::test]
async fn a_request_longer_than_the_timeouts_is_not_cut(pool: PgPool) {
    let app = TestApp::spawn_with(&pool, FAST).await;
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE workflows IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let mut stream = connect(&app).await;
    send(&mut stream, get("/workflows").as_bytes()).await;
    assert!(
        read_response(&mut stream, Duration::from_millis(3500))
            .await
            .is_none(),
        "the request waits for the lock"
    );
    lock.commit().await.unwrap();
    let answer = read_response(&mut stream, Duration::from_secs(5))
        .await
        .expect("answered after 3.5 s, past both timeouts");
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    send(&mut stream, get("/health").as_bytes()).await;
    let again = read_response(&mut stream, Duration::from_secs(5))
        .await
        .expect("still kept alive");
    assert_eq!(again.status, 200);
}

/// A body that stops arriving while the handler waits for it is answered
/// 408 after the idle timeout.
#[sqlx::test]
async fn a_stalled_request_body_gets_408(pool: PgPool) {
    let app = TestApp::spawn_with(&pool, FAST).await;
    let mut stream = connect(&app).await;
    let started = Instant::now();
    let head = format!(
        "POST /workflows/validate HTTP/1.1\r\nhost: test\r\ndapr-api-token: {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"dag\": "
    );
    send(&mut stream, head.as_bytes()).await;
    let answer = read_response(&mut stream, Duration::from_secs(2) + SLACK)
        .await
        .expect("an answer");
    assert!(started.elapsed() >= Duration::from_millis(1900));
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(answer.detail().contains("stopped arriving"), "{answer:?}");
}

/// Past `HTTP_MAX_CONNECTIONS` a connection is not served (it waits in the
/// listen backlog) until another one closes.
#[sqlx::test]
async fn connections_past_the_limit_wait_until_another_closes(pool: PgPool) {
    const LIMIT: usize = 3;
    let app = TestApp::spawn_with(
        &pool,
        &[
            ("HTTP_MAX_CONNECTIONS", "3"),
            ("HTTP_HEADER_READ_TIMEOUT_SECONDS", "10"),
            ("HTTP_IDLE_TIMEOUT_SECONDS", "30"),
        ],
    )
    .await;
    // The readiness probe's kept-alive connection may hold one slot.
    let mut served = Vec::new();
    let mut waiting = Vec::new();
    for _ in 0..LIMIT + 2 {
        let mut stream = connect(&app).await;
        send(&mut stream, get("/health").as_bytes()).await;
        let answer = read_response(&mut stream, Duration::from_millis(400)).await;
        match answer {
            Some(a) => {
                assert!(waiting.is_empty(), "served after one that waits");
                assert_eq!(a.status, 200);
                served.push(stream);
            }
            None => waiting.push(stream),
        }
    }
    assert!(
        served.len() == LIMIT || served.len() == LIMIT - 1,
        "{} served with a limit of {LIMIT}",
        served.len()
    );
    assert!(waiting.len() >= 2);
    drop(served.remove(0));
    let answer = read_response(&mut waiting[0], Duration::from_secs(3))
        .await
        .expect("the first waiting connection is served once a slot frees");
    assert_eq!(answer.status, 200);
    assert!(
        read_response(&mut waiting[1], Duration::from_millis(300))
            .await
            .is_none(),
        "the second still waits"
    );
}

#[sqlx::test]
async fn json_nested_too_deeply_is_reported_as_such(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let post = |body: String| {
        app.api
            .http
            .post(format!("{}/workflows/validate", app.api.base))
            .header("dapr-api-token", TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let deep = format!("{{\"dag\": {}{}}}", "[".repeat(200), "]".repeat(200));
    let resp = post(deep).await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("nested too deeply"), "{detail}");
    assert!(!detail.contains("not valid JSON"), "{detail}");

    // Within the limit it is JSON, just not a workflow.
    let shallow = format!("{{\"dag\": {}{}}}", "[".repeat(100), "]".repeat(100));
    let resp = post(shallow).await.unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["valid"], false, "{body}");

    // Broken JSON is still called that.
    let resp = post("{\"dag\": [".to_owned()).await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );
}

/// hyper answers requests it cannot parse by itself; those answers carry
/// the service's JSON error body too, and the connection is closed.
#[sqlx::test]
async fn answers_to_unparsable_requests_have_json_bodies(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let long_uri = format!("GET /{} HTTP/1.1\r\nhost: test\r\n\r\n", "a".repeat(70_000));
    let many_headers = format!(
        "GET /health HTTP/1.1\r\nhost: test\r\n{}\r\n",
        (0..120)
            .map(|i| format!("x-h{i}: {i}\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("long URI", long_uri.into_bytes(), 414, "URI is too long"),
        (
            "too many headers",
            many_headers.into_bytes(),
            431,
            "headers",
        ),
        (
            "bad request line",
            b"GARBAGE\r\n\r\n".to_vec(),
            400,
            "malformed",
        ),
        (
            "bad Content-Length",
            b"POST /workflows HTTP/1.1\r\nhost: test\r\ncontent-length: abc\r\n\r\n".to_vec(),
            400,
            "Content-Length",
        ),
    ];
    for (what, request, status, words) in cases {
        let mut stream = connect(&app).await;
        send(&mut stream, &request).await;
        let answer = read_response(&mut stream, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{what}: an answer"));
        assert_eq!(answer.status, status, "{what}: {answer:?}");
        let detail = answer.detail();
        assert!(detail.contains(words), "{what}: {detail}");
        assert_eq!(
            answer.header("connection").as_deref(),
            Some("close"),
            "{what}"
        );
        assert!(
            closed_within(&mut stream, Duration::from_secs(2))
                .await
                .is_some(),
            "{what}: closed after the answer"
        );
    }

    // The same on a kept-alive connection, after a good request.
    let mut stream = connect(&app).await;
    send(&mut stream, get("/health").as_bytes()).await;
    let answer = read_response(&mut stream, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    send(&mut stream, b"GET /health HTTP/1.1\r\nhost test\r\n\r\n").await;
    let answer = read_response(&mut stream, Duration::from_secs(5))
        .await
        .expect("an answer to a bad header line");
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.detail().contains("malformed"));

    // The router's own errors are untouched.
    let mut stream = connect(&app).await;
    send(&mut stream, get("/no-such-route").as_bytes()).await;
    let answer = read_response(&mut stream, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(answer.status, 404);
    assert_eq!(answer.detail(), "Not Found");
}

/// Stopping (SIGTERM) lets a request in flight finish and closes an idle
/// connection at once.
#[sqlx::test]
async fn stopping_finishes_the_request_in_flight_and_closes_idle_connections(pool: PgPool) {
    // The idle timeout is long: an idle connection closes because of the stop.
    let app = TestApp::spawn_with(
        &pool,
        &[
            ("HTTP_HEADER_READ_TIMEOUT_SECONDS", "1"),
            ("HTTP_IDLE_TIMEOUT_SECONDS", "30"),
        ],
    )
    .await;
    let mut idle = connect(&app).await;
    send(&mut idle, get("/health").as_bytes()).await;
    assert!(
        read_response(&mut idle, Duration::from_secs(5))
            .await
            .is_some()
    );

    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE workflows IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let mut busy = connect(&app).await;
    send(&mut busy, get("/workflows").as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stopped = tokio::spawn(app.stop());
    let took = closed_within(&mut idle, Duration::from_secs(5)).await;
    assert!(took.is_some(), "the idle connection is closed on stop");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !stopped.is_finished(),
        "stop waits for the request in flight"
    );

    lock.commit().await.unwrap();
    let answer = read_response(&mut busy, Duration::from_secs(5))
        .await
        .expect("the request in flight is answered");
    assert_eq!(answer.status, 200);
    assert!(
        closed_within(&mut busy, Duration::from_secs(2))
            .await
            .is_some(),
        "then its connection is closed"
    );
    tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .expect("stop returns once the connection is closed")
        .unwrap();
}
