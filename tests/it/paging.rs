//! Keyset paging of the lists that grow without bound (README "Paging"):
//! a walk by `cursor` meets every row exactly once, newest first, with
//! every filter, while rows are inserted; `limit`/`offset` and
//! `page`/`page_size` answer as they always did; totals are exact up to
//! the cap.

use crate::support;

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::app::{Api, TestApp};
use uuid::Uuid;

/// Insert `n` finished executions of `workflow` straight into the table
/// (what the engine leaves behind), created `minutes_ago` minutes ago and
/// every 7 of them at the very same instant (ties are broken by id).
async fn insert_history(pool: &PgPool, workflow: Uuid, n: i32, minutes_ago: i32) {
    sqlx::query(
        "INSERT INTO executions (id, workflow_id, workflow_version, status, parameters, initiator,
                                 total_steps, created_at, started_at, completed_at)
         SELECT gen_random_uuid(), $1, 1,
                (ARRAY['COMPLETED', 'FAILED', 'CANCELLED'])[1 + i % 3], '{}',
                'user-' || (i % 4), 1,
                now() - make_interval(mins => $3) - (i / 7) * interval '1 second',
                now() - make_interval(mins => $3), now() - make_interval(mins => $3)
         FROM generate_series(1, $2) i",
    )
    .bind(workflow)
    .bind(n)
    .bind(minutes_ago)
    .execute(pool)
    .await
    .expect("history inserted");
}

/// The ids the filter (SQL over `executions`) matches, in the list's order.
async fn expected(pool: &PgPool, filter: &str) -> Vec<String> {
    sqlx::query_scalar::<_, Uuid>(&format!(
        "SELECT id FROM executions WHERE {filter} ORDER BY created_at DESC, id DESC"
    ))
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|id| id.to_string())
    .collect()
}

fn ids(page: &Value, field: &str, id: &str) -> Vec<String> {
    page[field]
        .as_array()
        .unwrap_or_else(|| panic!("{field} is an array: {page}"))
        .iter()
        .map(|row| row[id].as_str().unwrap().to_owned())
        .collect()
}

async fn get_ok(api: &Api, path: &str) -> Value {
    let (status, body) = api.get(path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

#[sqlx::test]
async fn a_cursor_walk_meets_every_execution_once_while_rows_are_added(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let api = &app.api;
    let dag = |name: &str| json!({"name": name, "steps": [{"id": "a", "action": "log"}]});
    let a = api.create_workflow(dag("a")).await;
    let b = api.create_workflow(dag("b")).await;
    insert_history(&pool, a, 80, 60).await;
    insert_history(&pool, b, 40, 30).await;

    let filters = [
        (String::new(), "TRUE".to_owned()),
        (format!("workflow_id={a}"), format!("workflow_id = '{a}'")),
        ("status=FAILED".into(), "status = 'FAILED'".into()),
        ("initiator=user-1".into(), "initiator = 'user-1'".into()),
        (
            format!("workflow_id={b}&status=completed"),
            format!("workflow_id = '{b}' AND status = 'COMPLETED'"),
        ),
        (
            "initiator=user-2&status=CANCELLED".into(),
            "initiator = 'user-2' AND status = 'CANCELLED'".into(),
        ),
    ];
    for (query, sql) in &filters {
        for size in ["limit=7", "page_size=10"] {
            let before = expected(&pool, sql).await;
            assert!(!before.is_empty(), "{query}");
            let mut walked: Vec<String> = Vec::new();
            let mut cursor: Option<String> = None;
            let mut pages = 0;
            loop {
                let path = match &cursor {
                    None => format!("/executions?{size}&{query}"),
                    Some(c) => format!("/executions?{size}&{query}&cursor={c}"),
                };
                let page = get_ok(api, &path).await;
                let rows = ids(&page, "executions", "execution_id");
                assert!(rows.len() <= 10, "{path}: {page}");
                if cursor.is_some() {
                    // A cursor page counts nothing and has no offset.
                    assert!(page.get("total").is_none(), "{path}: {page}");
                    assert!(page.get("pagination").is_none(), "{path}: {page}");
                } else {
                    assert_eq!(page["total"], before.len(), "{path}: {page}");
                }
                walked.extend(rows);
                pages += 1;
                // Meanwhile: new executions (newer than any page, so not
                // part of this walk) and old ones the walk has not reached
                // yet, in both workflows and every state.
                insert_history(&pool, if pages % 2 == 0 { a } else { b }, 3, 0).await;
                match page["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => {
                        assert!(page["next_cursor"].is_null(), "{page}");
                        break;
                    }
                }
                assert!(pages < 1000, "the walk ends");
            }
            let distinct: HashSet<&String> = walked.iter().collect();
            assert_eq!(distinct.len(), walked.len(), "{query} {size}: a row twice");
            assert_eq!(
                walked, before,
                "{query} {size}: every row once, newest first"
            );
        }
    }

    // Rows older than where the walk stands, inserted meanwhile, are met
    // (once); the date filters apply to a cursor walk too.
    let window = "start_date=2000-01-01&end_date=2999-12-31";
    let first = get_ok(
        api,
        &format!("/executions?limit=10&workflow_id={b}&{window}"),
    )
    .await;
    let next = first["next_cursor"].as_str().unwrap().to_owned();
    insert_history(&pool, b, 5, 24 * 60).await;
    let mut walked = ids(&first, "executions", "execution_id");
    let mut cursor = Some(next);
    while let Some(c) = cursor {
        let page = get_ok(
            api,
            &format!("/executions?limit=10&workflow_id={b}&{window}&cursor={c}"),
        )
        .await;
        walked.extend(ids(&page, "executions", "execution_id"));
        cursor = page["next_cursor"].as_str().map(str::to_owned);
    }
    let all = expected(&pool, &format!("workflow_id = '{b}'")).await;
    let newest = all.iter().position(|id| *id == walked[0]).unwrap();
    assert_eq!(
        walked,
        all[newest..],
        "the rest of the list, yesterday's rows included"
    );
    app.stop().await;
}

#[sqlx::test]
async fn offset_and_page_paging_answer_as_before(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let api = &app.api;
    let wf = api
        .create_workflow(json!({"name": "w", "steps": [{"id": "a", "action": "log"}]}))
        .await;
    insert_history(&pool, wf, 45, 10).await;
    let all = expected(&pool, "TRUE").await;

    let page = get_ok(api, "/executions?page=2&page_size=20").await;
    assert_eq!(
        page["pagination"],
        json!({"page": 2, "page_size": 20, "total_count": 45, "total_pages": 3})
    );
    assert_eq!(
        (
            page["total"].as_i64(),
            page["limit"].as_i64(),
            page["offset"].as_i64()
        ),
        (Some(45), Some(20), Some(20))
    );
    assert_eq!(ids(&page, "executions", "execution_id"), all[20..40]);
    // An offset page also says where a cursor walk would go on.
    let next = page["next_cursor"].as_str().expect("a next page");
    let rest = get_ok(api, &format!("/executions?limit=20&cursor={next}")).await;
    assert_eq!(ids(&rest, "executions", "execution_id"), all[40..]);
    assert!(rest["next_cursor"].is_null());

    let last = get_ok(api, "/executions?page=3&page_size=20").await;
    assert_eq!(last["pagination"]["total_count"], 45);
    assert_eq!(ids(&last, "executions", "execution_id"), all[40..]);
    assert!(last["next_cursor"].is_null());
    let past = get_ok(api, "/executions?limit=10&offset=100").await;
    assert_eq!(past["executions"], json!([]));
    assert_eq!(
        (past["total"].as_i64(), past["offset"].as_i64()),
        (Some(45), Some(100))
    );
    let failed = get_ok(api, "/executions?limit=4&offset=4&status=FAILED").await;
    assert_eq!(failed["total"], 15);
    assert_eq!(
        ids(&failed, "executions", "execution_id"),
        expected(&pool, "status = 'FAILED'").await[4..8]
    );

    // Past the exact-count cap the total is an estimate, at least cap + 1;
    // a filter under the cap is still counted exactly.
    insert_history(&pool, wf, 10_500, 120).await;
    sqlx::query("ANALYZE executions")
        .execute(&pool)
        .await
        .unwrap();
    let big = get_ok(api, "/executions?page=1&page_size=20").await;
    let total = big["pagination"]["total_count"].as_i64().unwrap();
    assert!((10_001..=13_000).contains(&total), "{total}");
    assert_eq!(big["total"], total);
    assert_eq!(big["pagination"]["total_pages"], (total + 19) / 20, "{big}");
    let small = get_ok(
        api,
        "/executions?page=1&page_size=20&start_date=2000-01-01&end_date=2000-01-02",
    )
    .await;
    assert_eq!(small["pagination"]["total_count"], 0);
    let recent = get_ok(
        api,
        &format!(
            "/executions?page=2&page_size=20&start_date={}",
            (chrono::Utc::now() - chrono::Duration::minutes(60))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    )
    .await;
    assert_eq!(recent["pagination"]["total_count"], 45, "{recent}");
    app.stop().await;
}

#[sqlx::test]
async fn workflows_and_pipelines_page_by_cursor(pool: PgPool) {
    let app = TestApp::spawn(&pool).await;
    let api = &app.api;
    let mut created = Vec::new();
    for i in 0..11 {
        let dag = json!({"name": format!("p{i}"), "steps": [{"id": "a", "action": "log"}]});
        let (status, body) = api
            .post(
                "/pipelines",
                json!({"dag": dag, "user_id": if i % 2 == 0 { "ann" } else { "bob" }}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        created.push(body["id"].as_str().unwrap().to_owned());
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    // /workflows: cursor walk, with and without a filter.
    for (query, want) in [
        ("", newest_first.clone()),
        (
            "&created_by=ann",
            newest_first
                .iter()
                .filter(|id| created.iter().position(|c| c == *id).unwrap() % 2 == 0)
                .cloned()
                .collect(),
        ),
    ] {
        let first = get_ok(api, &format!("/workflows?limit=4{query}")).await;
        assert_eq!(first["total"], want.len(), "{first}");
        let mut walked = ids(&first, "workflows", "id");
        let mut cursor = first["next_cursor"].as_str().map(str::to_owned);
        while let Some(c) = cursor {
            let page = get_ok(api, &format!("/workflows?limit=4{query}&cursor={c}")).await;
            assert!(page.get("total").is_none(), "{page}");
            walked.extend(ids(&page, "workflows", "id"));
            cursor = page["next_cursor"].as_str().map(str::to_owned);
        }
        assert_eq!(walked, want, "{query}");
    }
    let classic = get_ok(api, "/workflows?limit=5&offset=10").await;
    assert_eq!(
        (classic["total"].as_i64(), classic["offset"].as_i64()),
        (Some(11), Some(10))
    );
    assert!(classic["next_cursor"].is_null());

    // /pipelines: still a bare array; the cursor comes in a header.
    let (_, everything) = api.get("/pipelines").await;
    assert_eq!(everything.as_array().unwrap().len(), 11);
    let mut walked: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{}/pipelines?limit=3", api.base);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let resp = api
            .http
            .get(&url)
            .header("dapr-api-token", support::app::TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let next = resp
            .headers()
            .get("x-next-cursor")
            .map(|v| v.to_str().unwrap().to_owned());
        let page: Value = resp.json().await.unwrap();
        let rows = page.as_array().expect("a JSON array");
        assert!(rows.len() <= 3);
        walked.extend(rows.iter().map(|p| p["id"].as_str().unwrap().to_owned()));
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(walked, newest_first);
    app.stop().await;
}
