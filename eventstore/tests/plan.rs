//! Filtered tails cost in proportion to what they return (review finding 3): the plan of the
//! very statement `Store::tail_filtered` runs uses the organization indexes and never scans
//! `events` whole, and its answers are those of the plain filtered tail.

use std::time::Duration;

use eventstore::testing::TestDb;
use eventstore::{Cursor, EventFilter, RecordedEvent, Store, StoreOptions};
use serde_json::Value;

const ORGS: usize = 6;

/// `transactions` transactions of `per` events each, spread over six organizations, three
/// aggregate types and a few events with no organization at all; then `ANALYZE`.
async fn seeded(transactions: usize, per: usize) -> (TestDb, Store, usize) {
    let db = TestDb::new().await;
    let pool = db.pool(4).await;
    for t in 0..transactions {
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                 event_version, payload, metadata)
             SELECT (ARRAY['task','label','organization'])[1 + (g + $1) % 3],
                    gen_random_uuid()::text, 1,
                    (ARRAY['task','label','organization'])[1 + (g + $1) % 3]
                      || (CASE WHEN g % 2 = 0 THEN '.created' ELSE '.renamed' END),
                    '1', jsonb_build_object('n', g),
                    CASE WHEN g % 17 = 0 THEN '{}'::jsonb
                         ELSE jsonb_build_object('org_id', 'org-' || ((g * 7 + $1) % $3)) END
               FROM generate_series(1, $2) AS g",
        )
        .bind(t as i32)
        .bind(per as i32)
        .bind(ORGS as i32)
        .execute(&pool)
        .await
        .expect("seed events");
    }
    sqlx::query("ANALYZE events")
        .execute(&pool)
        .await
        .expect("analyze");
    let store = Store::new(pool, StoreOptions::default());
    (db, store, transactions * per)
}

/// The whole log, once every seeded transaction is visible to the gapless tail (xids are
/// cluster-wide: other tests' transactions can hold it back for a moment).
async fn everything(store: &Store, total: usize) -> Vec<RecordedEvent> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let all = store
            .tail(Cursor::START, total as i64 + 1)
            .await
            .expect("tail");
        if all.len() == total {
            return all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the tail never showed every seeded event ({} of {total})",
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn orgs(ids: &[usize]) -> Option<Vec<String>> {
    Some(ids.iter().map(|i| format!("org-{i}")).collect())
}

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|s| (*s).to_owned()).collect())
}

/// Every plan node, depth first.
fn nodes(plan: &Value, out: &mut Vec<Value>) {
    out.push(plan.clone());
    if let Some(children) = plan["Plans"].as_array() {
        for child in children {
            nodes(child, out);
        }
    }
}

async fn plan_nodes(store: &Store, after: Cursor, limit: i64, filter: &EventFilter) -> Vec<Value> {
    let explained = store
        .explain_tail_filtered(after, limit, filter)
        .await
        .expect("explain");
    let mut out = Vec::new();
    nodes(&explained[0]["Plan"], &mut out);
    out
}

fn index_names(nodes: &[Value]) -> Vec<String> {
    nodes
        .iter()
        .filter_map(|n| n["Index Name"].as_str().map(str::to_owned))
        .collect()
}

fn seq_scans_events(nodes: &[Value]) -> bool {
    nodes
        .iter()
        .any(|n| n["Node Type"] == "Seq Scan" && n["Relation Name"] == "events")
}

#[tokio::test]
async fn finding_3_a_filtered_tail_reads_by_organization_index_never_the_whole_history() {
    let (_db, store, total) = seeded(40, 100).await;
    let all = everything(&store, total).await;
    let middle = all[total / 2].cursor();
    for (what, filter, index) in [
        (
            "one org (a feed page)",
            EventFilter {
                orgs: orgs(&[1]),
                ..EventFilter::default()
            },
            "events_org_tail_idx",
        ),
        (
            "several orgs (a member's feed)",
            EventFilter {
                orgs: orgs(&[0, 2, 3, 5]),
                event_types: strings(&["task.created"]),
                ..EventFilter::default()
            },
            "events_org_tail_idx",
        ),
        (
            "one org, one type (a public channel replay)",
            EventFilter {
                orgs: orgs(&[4]),
                aggregate_types: strings(&["organization"]),
                ..EventFilter::default()
            },
            "events_org_type_tail_idx",
        ),
        (
            "one org, three types (a tasks channel replay)",
            EventFilter {
                orgs: orgs(&[4]),
                aggregate_types: strings(&["task", "label", "category"]),
                ..EventFilter::default()
            },
            "events_org_type_tail_idx",
        ),
        (
            "several orgs and a type",
            EventFilter {
                orgs: orgs(&[1, 2]),
                aggregate_types: strings(&["label"]),
                ..EventFilter::default()
            },
            "events_org_type_tail_idx",
        ),
    ] {
        for after in [Cursor::START, middle] {
            let plan = plan_nodes(&store, after, 1001, &filter).await;
            assert!(
                !seq_scans_events(&plan),
                "{what}: a sequential scan of events: {plan:#?}"
            );
            let indexes = index_names(&plan);
            assert!(
                indexes.iter().any(|i| i == index),
                "{what}: expected {index}, the plan uses {indexes:?}: {plan:#?}"
            );
            assert!(
                !indexes.iter().any(|i| i == "events_tail_idx"),
                "{what}: walks the whole tail index: {plan:#?}"
            );
        }
    }
}

#[tokio::test]
async fn finding_3_a_filtered_tail_answers_as_the_plain_filter_would() {
    let (_db, store, total) = seeded(12, 50).await;
    let all = everything(&store, total).await;
    let old = |after: Cursor, limit: usize, filter: &EventFilter| -> Vec<uuid::Uuid> {
        all.iter()
            .filter(|e| e.cursor() > after)
            .filter(|e| {
                filter.matches(
                    e.org_id.as_deref(),
                    &e.aggregate_type,
                    &e.aggregate_id,
                    &e.event_type,
                )
            })
            .take(limit)
            .map(|e| e.event_id)
            .collect()
    };
    let some_task = all
        .iter()
        .find(|e| e.aggregate_type == "task" && e.org_id.is_some())
        .expect("a task event");
    let filters = [
        EventFilter::default(),
        EventFilter {
            orgs: orgs(&[3]),
            ..EventFilter::default()
        },
        EventFilter {
            orgs: orgs(&[0, 1, 4]),
            ..EventFilter::default()
        },
        EventFilter {
            // Repeats and unknown organizations change nothing.
            orgs: Some(vec![
                "org-2".into(),
                "org-5".into(),
                "org-2".into(),
                "nobody".into(),
            ]),
            ..EventFilter::default()
        },
        EventFilter {
            orgs: Some(Vec::new()),
            ..EventFilter::default()
        },
        EventFilter {
            orgs: orgs(&[1]),
            aggregate_types: strings(&["organization"]),
            ..EventFilter::default()
        },
        EventFilter {
            orgs: orgs(&[0, 5, 2]),
            aggregate_types: strings(&["task", "label", "task"]),
            event_types: strings(&["task.renamed", "label.created"]),
            ..EventFilter::default()
        },
        EventFilter {
            orgs: Some(vec![some_task.org_id.clone().expect("org")]),
            aggregate_types: strings(&["task"]),
            aggregate_id: Some(some_task.aggregate_id.clone()),
            ..EventFilter::default()
        },
        EventFilter {
            aggregate_types: strings(&["label"]),
            event_types: strings(&["label.renamed"]),
            ..EventFilter::default()
        },
    ];
    let afters = [
        Cursor::START,
        all[total / 3].cursor(),
        all[total - 1].cursor(),
    ];
    for filter in &filters {
        for after in afters {
            for limit in [1usize, 7, 100, total + 5] {
                let got: Vec<uuid::Uuid> = store
                    .tail_filtered(after, limit as i64, filter)
                    .await
                    .expect("tail_filtered")
                    .iter()
                    .map(|e| e.event_id)
                    .collect();
                assert_eq!(
                    got,
                    old(after, limit, filter),
                    "{filter:?} after {after} limit {limit}"
                );
            }
        }
    }
}
