//! Live boards over real WebSockets (tokio-tungstenite) and the integrator feeds (JSON, SSE),
//! on the in-process bus and on NATS.

use crate::support;

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use support::nats::{Namespace, PrivateNats};
use support::ws::{
    client_id, closed, connect, connect_with_receive_buffer, create_task, created_ids, join,
    key_for, next, no_heartbeat, no_rate_limit, send, subscribe, until,
};
use support::TestApp;
use tokio_tungstenite::tungstenite::Message;

/// The delivery rules every bus keeps: live messages, the waiting room, a `since` resume with
/// no gap and no duplicate, and the replay limit. Returns the app for bus-specific checks.
async fn live_delivery(vars: &[(&str, String)]) -> TestApp {
    let mut vars = vars.to_vec();
    vars.push(no_rate_limit());
    vars.extend(no_heartbeat());
    let app = support::spawn_app_with(&vars).await;
    let (key, ada) = key_for(&app, "ada@example.com", json!(["tasks:read"])).await;
    let org = app.create_org_as(&ada, "Acme").await;

    let mut ws = connect(&app, Some(&key)).await;
    let status = next(&mut ws).await;
    assert_eq!(status["type"], "CONNECTION_STATUS");
    assert_eq!(status["data"]["authenticated"], true);

    // The waiting room: nothing but SUBSCRIBE, UNSUBSCRIBE and PONG before a subscription.
    send(&mut ws, json!({"type": "HELLO"})).await;
    let refused = next(&mut ws).await;
    assert_eq!(refused["type"], "ERROR");
    assert_eq!(refused["code"], "WAITING_ROOM");

    let subscribed = join(&mut ws, &org, "tasks").await;
    assert_eq!(subscribed["type"], "SUBSCRIBED", "{subscribed}");
    let first = create_task(&app, &ada, &org, "first").await;
    let created = until(&mut ws, "CREATE_TASK").await;
    assert_eq!(created["orgId"], org.as_str());
    assert_eq!(created["channel"], "tasks");
    assert_eq!(created["data"]["id"], first.as_str());
    assert!(created["ts"].is_i64());
    let cursor = created["cursor"].as_str().expect("cursor").to_owned();
    drop(ws);

    // Missed while away: three tasks. A `since` subscription replays them, then goes live.
    let mut missed = Vec::new();
    for n in 0..3 {
        missed.push(create_task(&app, &ada, &org, &format!("missed {n}")).await);
    }
    let mut ws = connect(&app, Some(&key)).await;
    next(&mut ws).await;
    send(
        &mut ws,
        json!({"type": "SUBSCRIBE", "orgId": org, "channel": "tasks", "since": cursor}),
    )
    .await;
    assert_eq!(next(&mut ws).await["type"], "SUBSCRIBED");
    let live = create_task(&app, &ada, &org, "live").await;
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let m = until(&mut ws, "CREATE_TASK").await;
        seen.push(m["data"]["id"].as_str().expect("id").to_owned());
    }
    missed.push(live);
    assert_eq!(
        seen, missed,
        "every missed task once, in order, then the live one"
    );

    // From the very start, within the replay limit (the default 1000; 5 task events exist):
    // the whole history replays, in order, with no RESYNC_REQUIRED.
    let mut ws = connect(&app, Some(&key)).await;
    next(&mut ws).await;
    send(
        &mut ws,
        json!({"type": "SUBSCRIBE", "orgId": org, "channel": "tasks", "since": "00000000000000000000000000000000"}),
    )
    .await;
    assert_eq!(next(&mut ws).await["type"], "SUBSCRIBED");
    let mut history = vec![first];
    history.extend(missed);
    let mut replayed = Vec::new();
    for _ in 0..history.len() {
        let m = next(&mut ws).await;
        assert_eq!(m["type"], "CREATE_TASK", "{m}");
        replayed.push(m["data"]["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(replayed, history, "every task since the start, in order");
    app
}

#[tokio::test]
async fn boards_update_live_and_resume_without_gap_or_duplicate_on_the_local_bus() {
    let app = live_delivery(&[]).await;

    // Presence: the others in a room hear who comes and goes; UNSUBSCRIBE is answered.
    let (key, ada) = key_for(&app, "bob@example.com", json!(["tasks:read"])).await;
    let org = app.create_org_as(&ada, "Presence").await;
    let mut first = connect(&app, Some(&key)).await;
    next(&mut first).await;
    subscribe(&mut first, &org, "tasks").await;
    let mut second = connect(&app, Some(&key)).await;
    let second_id = client_id(&next(&mut second).await);
    assert_eq!(join(&mut second, &org, "nope").await["code"], "BAD_REQUEST");
    subscribe(&mut second, &org, "tasks").await;
    let joined = until(&mut first, "USER_SUBSCRIBED").await;
    assert_eq!(joined["data"]["wsClientId"], second_id.as_str(), "{joined}");
    send(&mut second, json!({"type": "UNSUBSCRIBE"})).await;
    assert_eq!(next(&mut second).await["type"], "UNSUBSCRIBED");
    let left = until(&mut first, "USER_UNSUBSCRIBED").await;
    assert_eq!(left["data"]["wsClientId"], second_id.as_str(), "{left}");
    app.stop().await;
}

#[tokio::test]
async fn boards_update_live_and_resume_without_gap_or_duplicate_on_nats() {
    let nats = Namespace::shared();
    let app = live_delivery(&nats.vars()).await;

    // Integrators reading JetStream directly get every event once, in commit order, on its
    // subject, with its id as Nats-Msg-Id and its cursor in a header.
    let pool = app.db.pool(1).await;
    let stored: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT event_id::text, aggregate_type, aggregate_id, org_id FROM events
          ORDER BY transaction_id, global_position",
    )
    .fetch_all(&pool)
    .await
    .expect("events");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let messages = loop {
        let messages = nats.messages().await;
        if messages.len() >= stored.len() {
            break messages;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {} events reached JetStream",
            messages.len(),
            stored.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(messages.len(), stored.len(), "each event once");
    for (message, (id, aggregate_type, aggregate_id, org)) in messages.iter().zip(&stored) {
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_else(|| panic!("no {name} header on the message for event {id}"))
        };
        assert_eq!(header("Nats-Msg-Id"), *id);
        let org = org.as_deref().unwrap_or("_");
        assert_eq!(
            message.subject.as_str(),
            format!(
                "{}.events.{org}.{aggregate_type}.{aggregate_id}",
                nats.prefix
            )
        );
        let body: Value = serde_json::from_slice(&message.payload).expect("CloudEvent");
        assert_eq!(body["id"], id.as_str());
        assert_eq!(body["specversion"], "1.0");
        let cursor = body["cairncursor"].as_str().expect("cairncursor");
        assert!(!cursor.is_empty(), "an empty cairncursor: {body}");
        assert_eq!(header("Cairn-Cursor"), cursor);
    }
    pool.close().await;
    app.stop().await;
    nats.delete().await;
}

#[tokio::test]
async fn nats_going_down_and_coming_back_loses_no_event() {
    let mut server = PrivateNats::start().await;
    let nats = Namespace::on(&server.url());
    let mut vars = nats.vars();
    vars.push(no_rate_limit());
    vars.extend(no_heartbeat());
    let app = support::spawn_app_with(&vars).await;
    let (key, ada) = key_for(&app, "ada@example.com", json!(["tasks:read"])).await;
    let org = app.create_org_as(&ada, "Acme").await;
    let mut ws = connect(&app, Some(&key)).await;
    next(&mut ws).await;
    subscribe(&mut ws, &org, "tasks").await;

    let mut made = Vec::new();
    for n in 0..3 {
        made.push(create_task(&app, &ada, &org, &format!("before {n}")).await);
    }
    assert_eq!(created_ids(&mut ws, 3).await, made);

    // NATS dies without a goodbye. Commands keep succeeding.
    server.kill().await;
    for n in 0..5 {
        made.push(create_task(&app, &ada, &org, &format!("while down {n}")).await);
    }
    // It comes back on the same port and store: the relay catches up, the live client gets
    // every missed event once and in order, then live ones again.
    server.resume().await;
    made.push(create_task(&app, &ada, &org, "after").await);
    assert_eq!(created_ids(&mut ws, 6).await, made[3..]);

    // JetStream holds every committed event exactly once.
    let pool = app.db.pool(1).await;
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT event_id::text FROM events ORDER BY transaction_id, global_position",
    )
    .fetch_all(&pool)
    .await
    .expect("events");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ids: Vec<String> = nats
            .messages()
            .await
            .iter()
            .filter_map(|m| m.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()))
            .collect();
        if ids == stored {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline && ids.len() < stored.len(),
            "JetStream holds {ids:?}, the store {stored:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pool.close().await;
    app.stop().await;
}

/// Reads `CREATE_TASK` messages until the task titled `last`: their task ids, in order.
async fn board_until(mut ws: support::ws::Ws, last: String) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .unwrap_or_else(|_| panic!("the board stalled after {} tasks", ids.len()))
            .expect("open")
            .expect("frame");
        let Message::Text(text) = message else {
            continue;
        };
        let m: Value = serde_json::from_str(&text).expect("json");
        assert_ne!(m["type"], "RESYNC_REQUIRED", "the board was told to resync");
        if m["type"] != "CREATE_TASK" {
            continue;
        }
        ids.push(m["data"]["id"].as_str().expect("id").to_owned());
        if text.contains(&last) {
            return ids;
        }
    }
}

/// Reads `task.created` events from the SSE stream until the task titled `last`: their task
/// ids, in order.
async fn feed_until(mut sse: Sse, last: String) -> Vec<String> {
    let mut ids = Vec::new();
    loop {
        let (_, event) = sse.next().await;
        let subject = event["subject"].as_str().expect("subject");
        ids.push(subject.trim_start_matches("task/").to_owned());
        if event.to_string().contains(&last) {
            return ids;
        }
    }
}

/// Waits until the writer has written `n` tasks.
async fn written_at_least(written: &mut tokio::sync::watch::Receiver<usize>, n: usize) {
    tokio::time::timeout(
        Duration::from_secs(60),
        written.wait_for(|&so_far| so_far >= n),
    )
    .await
    .unwrap_or_else(|_| panic!("{n} tasks written in time"))
    .expect("the writer runs");
}

/// NATS loses its store (a lost volume) and comes back empty while tasks are being written:
/// the relay publishes into a new stream, whose first messages the nodes' readers would skip,
/// and messages acknowledged just before the loss are gone. Each node refills what it missed
/// from PostgreSQL before it delivers anything newer: every `/ws` and SSE client gets every
/// task once, in commit order, and no `/ws` client is told to resync.
#[tokio::test]
async fn nats_losing_its_store_under_load_loses_no_event() {
    let mut server = PrivateNats::start().await;
    let nats = Namespace::on(&server.url());
    let mut vars = nats.vars();
    vars.push(no_rate_limit());
    vars.extend(no_heartbeat());
    let app = support::spawn_app_with(&vars).await;
    let (key, ada) = key_for(&app, "ada@example.com", json!(["tasks:read"])).await;
    let org = app.create_org_as(&ada, "Acme").await;
    let last = format!("the last {}", uuid::Uuid::new_v4());
    let mut readers = Vec::new();
    for _ in 0..2 {
        let mut ws = connect(&app, Some(&key)).await;
        next(&mut ws).await;
        subscribe(&mut ws, &org, "tasks").await;
        readers.push(tokio::spawn(board_until(ws, last.clone())));
    }
    let sse = Sse::open(
        &ada,
        &app.url("/api/v1/events/stream?types=task.created"),
        None,
    )
    .await;
    let feed = tokio::spawn(feed_until(sse, last.clone()));

    // One writer, without pause, from before the loss until well after it.
    let (written, mut written_so_far) = tokio::sync::watch::channel(0usize);
    let stop = tokio_util::sync::CancellationToken::new();
    let writer = tokio::spawn({
        let (base, ada, org, stop) = (app.url(""), ada.clone(), org.clone(), stop.clone());
        async move {
            let mut n = 0;
            while !stop.is_cancelled() {
                support::ws::create_task_at(&base, &ada, &org, &format!("task {n}")).await;
                n += 1;
                written.send_replace(n);
            }
        }
    });
    written_at_least(&mut written_so_far, 20).await;
    server.kill().await;
    server.lose_store();
    let before = *written_so_far.borrow();
    server.resume().await;
    written_at_least(&mut written_so_far, before + 60).await;
    stop.cancel();
    writer.await.expect("the writer");
    create_task(&app, &ada, &org, &last).await;

    let pool = app.db.pool(1).await;
    let committed: Vec<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE event_type = 'task.created'
          ORDER BY transaction_id, global_position",
    )
    .fetch_all(&pool)
    .await
    .expect("events");
    pool.close().await;
    for (n, reader) in readers.into_iter().enumerate() {
        let seen = reader.await.expect("a board reader");
        assert_eq!(
            seen.len(),
            committed.len(),
            "board {n}: {} of {} tasks",
            seen.len(),
            committed.len()
        );
        assert_eq!(seen, committed, "board {n}: every task once, in order");
    }
    let fed = feed.await.expect("the SSE reader");
    assert_eq!(fed, committed, "SSE: every task once, in order");
    app.stop().await;
}

#[tokio::test]
async fn presence_is_announced_only_in_rooms_within_the_presence_limit() {
    let [ping, timeout] = no_heartbeat();
    let app = support::spawn_app_with(&[
        ("CAIRN_WS_PRESENCE_LIMIT", "2".to_owned()),
        no_rate_limit(),
        ping,
        timeout,
    ])
    .await;
    let (key, ada) = key_for(&app, "ada@example.com", json!(["tasks:read"])).await;
    let org = app.create_org_as(&ada, "Crowd").await;
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let mut ws = connect(&app, Some(&key)).await;
        ids.push(client_id(&next(&mut ws).await));
        clients.push(ws);
    }
    let [watcher, second, third] = &mut clients[..] else {
        unreachable!()
    };
    subscribe(watcher, &org, "tasks").await;
    // The second member makes two: announced.
    subscribe(second, &org, "tasks").await;
    let joined = until(watcher, "USER_SUBSCRIBED").await;
    assert_eq!(joined["data"]["wsClientId"], ids[1].as_str(), "{joined}");
    // The third makes three, over the limit: neither its arrival nor its departure is.
    subscribe(third, &org, "tasks").await;
    send(third, json!({"type": "UNSUBSCRIBE"})).await;
    assert_eq!(next(third).await["type"], "UNSUBSCRIBED");
    // Back to two: the second's departure is announced, and it is the watcher's next message.
    send(second, json!({"type": "UNSUBSCRIBE"})).await;
    assert_eq!(next(second).await["type"], "UNSUBSCRIBED");
    let left = next(watcher).await;
    assert_eq!(left["type"], "USER_UNSUBSCRIBED", "{left}");
    assert_eq!(left["data"]["wsClientId"], ids[1].as_str(), "{left}");
    app.stop().await;
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_while_a_fast_one_keeps_receiving() {
    let [ping, timeout] = no_heartbeat();
    let app = support::spawn_app_with(&[
        ("CAIRN_WS_QUEUE", "64".to_owned()),
        no_rate_limit(),
        ping,
        timeout,
    ])
    .await;
    let (key, ada) = key_for(&app, "ada@example.com", json!(["tasks:read"])).await;
    let org = app.create_org_as(&ada, "Acme").await;

    let mut fast = connect(&app, Some(&key)).await;
    next(&mut fast).await;
    subscribe(&mut fast, &org, "tasks").await;
    // The slow client has a tiny receive buffer and stops reading once subscribed.
    let mut slow = connect_with_receive_buffer(&app, &key, 4096).await;
    next(&mut slow).await;
    subscribe(&mut slow, &org, "tasks").await;

    // About 7 MB of messages: more than the kernel buffers (4 MB at most here) and the
    // connection's queue (64 messages, 640 KB) can hold for a client that reads nothing. The
    // fast client reads as they come, and the tasks are made in rounds of 8, each only once the
    // fast client has every earlier one: its queue never holds more than a round (plus a
    // presence message), far from 64, however slow the machine.
    const TASKS: usize = 700;
    const ROUND: usize = 8;
    let (progress, mut received_so_far) = tokio::sync::watch::channel(0usize);
    let reader = tokio::spawn(async move {
        let mut ids = Vec::with_capacity(TASKS);
        while ids.len() < TASKS {
            let m = until(&mut fast, "CREATE_TASK").await;
            ids.push(m["data"]["id"].as_str().expect("id").to_owned());
            progress.send_replace(ids.len());
        }
        (ids, fast)
    });
    let description = "x".repeat(10_000);
    let mut made = Vec::with_capacity(TASKS);
    for round in (0..TASKS).collect::<Vec<_>>().chunks(ROUND) {
        let ids: Vec<String> = futures::stream::iter(round.iter().copied())
            .map(|n| {
                let (app, ada, org, description) = (&app, &ada, &org, &description);
                async move {
                    let r = ada
                        .post(app.url(&format!("/api/v1/orgs/{org}/tasks")))
                        .json(&json!({"title": format!("t{n}"), "description": description}))
                        .send()
                        .await
                        .expect("create");
                    assert_eq!(r.status(), 201);
                    let body: Value = r.json().await.expect("json");
                    body["id"].as_str().expect("id").to_owned()
                }
            })
            .buffer_unordered(ROUND)
            .collect()
            .await;
        made.extend(ids);
        let wanted = made.len();
        tokio::time::timeout(
            Duration::from_secs(20),
            received_so_far.wait_for(|n| *n >= wanted),
        )
        .await
        .unwrap_or_else(|_| panic!("the fast client got {wanted} tasks in time"))
        .expect("the fast reader runs");
    }
    let (received, mut fast) = reader.await.expect("fast reader");
    let unique: HashSet<&String> = received.iter().collect();
    assert_eq!(unique.len(), TASKS, "the fast client got each task once");
    assert_eq!(unique, made.iter().collect::<HashSet<_>>());

    // The slow one was cut off, and only it: counted once, and its socket ends once it reads
    // what was buffered.
    let metrics = app.metrics().await;
    let closed_total = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cairn_ws_slow_consumers_closed_total "))
        .unwrap_or_else(|| panic!("no slow-consumer count in {metrics}"));
    assert_eq!(closed_total, "1", "{metrics}");
    let ended = closed(&mut slow, Duration::from_secs(20)).await;
    // It may or may not have had room for the close frame; if it did, the code says why.
    assert!(matches!(ended, None | Some((1008, _))), "{ended:?}");

    // A server that stops says goodbye (1001) to the clients still connected.
    app.stop().await;
    let goodbye = closed(&mut fast, Duration::from_secs(10)).await;
    assert_eq!(goodbye.map(|(code, _)| code), Some(1001));
}

#[tokio::test]
async fn a_refused_subscription_says_why() {
    let [ping, timeout] = no_heartbeat();
    let app = support::spawn_app_with(&[no_rate_limit(), ping, timeout]).await;
    let (board_key, ada) = key_for(&app, "ada@example.com", json!(["tasks:read"])).await;
    let org = app.create_org_as(&ada, "Acme").await;
    let (stranger, _) = key_for(&app, "eve@example.com", json!(["tasks:read"])).await;

    // Which channels each may join is the access matrix's (access.rs); here, the codes.
    for (label, key, channel, code) in [
        ("anonymous, tasks", None, "tasks", "UNAUTHORIZED"),
        ("anonymous, admin", None, "admin", "UNAUTHORIZED"),
        ("non-member, tasks", Some(&stranger), "tasks", "FORBIDDEN"),
        (
            "the founder's key without the admin scope, admin",
            Some(&board_key),
            "admin",
            "FORBIDDEN",
        ),
    ] {
        let mut ws = connect(&app, key.map(String::as_str)).await;
        let status = next(&mut ws).await;
        assert_eq!(
            status["data"]["authenticated"],
            key.is_some(),
            "{label}: {status}"
        );
        let reply = join(&mut ws, &org, channel).await;
        assert_eq!(
            (reply["type"].as_str(), reply["code"].as_str()),
            (Some("ERROR"), Some(code)),
            "{label}: {reply}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn messages_closer_than_the_minimum_interval_are_rate_limited() {
    // An interval far longer than the server takes between two frames already in its socket.
    const INTERVAL_MS: u64 = 1_500;
    let [ping, timeout] = no_heartbeat();
    let app = support::spawn_app_with(&[
        ("CAIRN_WS_MIN_INTERVAL_MS", INTERVAL_MS.to_string()),
        ping,
        timeout,
    ])
    .await;
    let (key, ada) = key_for(&app, "ada@example.com", json!(["tasks:read"])).await;
    let org = app.create_org_as(&ada, "Acme").await;
    let mut ws = connect(&app, Some(&key)).await;
    next(&mut ws).await;

    // Back to back: the first is taken (a PONG has no answer), the second refused.
    send(&mut ws, json!({"type": "PONG"})).await;
    send(&mut ws, json!({"type": "PONG"})).await;
    let limited = next(&mut ws).await;
    assert_eq!(
        (limited["type"].as_str(), limited["code"].as_str()),
        (Some("ERROR"), Some("RATE_LIMITED")),
        "{limited}"
    );

    // The server noted the refused one before answering; a message sent once the interval has
    // passed since that answer is taken. (The pause is the point here: time passing.)
    tokio::time::sleep(Duration::from_millis(INTERVAL_MS + 100)).await;
    let reply = join(&mut ws, &org, "tasks").await;
    assert_eq!(reply["type"], "SUBSCRIBED", "{reply}");
    app.stop().await;
}

#[tokio::test]
async fn a_since_beyond_the_replay_limit_gets_resync_required() {
    let [ping, timeout] = no_heartbeat();
    let app = support::spawn_app_with(&[
        ("CAIRN_WS_REPLAY_LIMIT", "2".to_owned()),
        no_rate_limit(),
        ping,
        timeout,
    ])
    .await;
    let (key, ada) = key_for(&app, "ada@example.com", json!(["tasks:read"])).await;
    let org = app.create_org_as(&ada, "Acme").await;
    // Two task events: at the limit, replayed.
    let made = vec![
        create_task(&app, &ada, &org, "t0").await,
        create_task(&app, &ada, &org, "t1").await,
    ];
    let mut ws = connect(&app, Some(&key)).await;
    next(&mut ws).await;
    subscribe_from_the_start(&mut ws, &org).await;
    let mut replayed = Vec::new();
    for _ in 0..2 {
        let m = next(&mut ws).await;
        assert_eq!(m["type"], "CREATE_TASK", "{m}");
        replayed.push(m["data"]["id"].as_str().expect("id").to_owned());
    }
    assert_eq!(replayed, made);

    // Three: beyond it, RESYNC_REQUIRED for the room instead of any event.
    create_task(&app, &ada, &org, "t2").await;
    let mut behind = connect(&app, Some(&key)).await;
    next(&mut behind).await;
    subscribe_from_the_start(&mut behind, &org).await;
    let resync = next(&mut behind).await;
    assert_eq!(resync["type"], "RESYNC_REQUIRED", "{resync}");
    assert_eq!(resync["orgId"], org.as_str(), "{resync}");
    assert_eq!(resync["channel"], "tasks", "{resync}");
    app.stop().await;
}

/// Subscribes `ws` to `org`'s tasks with a `since` at the very start, and waits for
/// `SUBSCRIBED`.
async fn subscribe_from_the_start(ws: &mut support::ws::Ws, org: &str) {
    send(
        ws,
        json!({"type": "SUBSCRIBE", "orgId": org, "channel": "tasks", "since": "00000000000000000000000000000000"}),
    )
    .await;
    let reply = next(ws).await;
    assert_eq!(reply["type"], "SUBSCRIBED", "{reply}");
}

#[tokio::test]
async fn the_heartbeat_closes_a_silent_client_and_keeps_one_that_answers() {
    // PINGs every 0.25 s; closed after 3 s without a PONG. An answering client has ~2.7 s to
    // get each PONG through, however loaded the machine.
    let app = support::spawn_app_with(&[
        ("CAIRN_WS_PING_SECONDS", "0.25".to_owned()),
        ("CAIRN_WS_TIMEOUT_SECONDS", "3".to_owned()),
        no_rate_limit(),
    ])
    .await;
    let mut lively = connect(&app, None).await;
    next(&mut lively).await;
    // Connected after the lively one: when it is closed, the lively one has been open longer
    // than the timeout.
    let mut silent = connect(&app, None).await;

    let answering = async {
        loop {
            match lively.next().await {
                Some(Ok(Message::Text(t))) if t.contains("\"PING\"") => {
                    send(&mut lively, json!({"type": "PONG"})).await;
                }
                Some(Ok(Message::Close(frame))) => return format!("closed: {frame:?}"),
                None | Some(Err(_)) => return "ended".to_owned(),
                Some(Ok(_)) => {}
            }
        }
    };
    let ended = tokio::select! {
        ended = closed(&mut silent, Duration::from_secs(30)) => ended,
        lost = answering => panic!("the client that answers PING was dropped: {lost}"),
    };
    assert_eq!(
        ended.map(|(_, reason)| reason).as_deref(),
        Some("no PONG in time")
    );

    // The one that answers is still there: it gets the next PING.
    let ping = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match lively.next().await.expect("open").expect("frame") {
                Message::Text(t) if t.contains("\"PING\"") => return,
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => {}
            }
        }
    })
    .await;
    assert!(ping.is_ok(), "no PING for the client that answers");
    app.stop().await;
}

#[tokio::test]
async fn the_json_feed_and_sse_resume_and_stay_within_the_callers_orgs() {
    let app = support::spawn_app().await;
    let (key, ada) = key_for(&app, "ada@example.com", json!(["events:read"])).await;
    let org = app.create_org_as(&ada, "Acme").await;
    let eve = app.sign_in("eve@example.com").await;
    let other = app.create_org_as(&eve, "Other").await;
    let task = create_task(&app, &ada, &org, "one").await;
    create_task(&app, &eve, &other, "not for ada").await;

    let integrator = support::with_key(&key);
    let page: Value = integrator
        .get(app.url("/api/v1/events?limit=1000"))
        .send()
        .await
        .expect("feed")
        .json()
        .await
        .expect("json");
    let events = page["events"].as_array().expect("events");
    assert!(!events.is_empty());
    for e in events {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["cairnorg"], org.as_str(), "only ada's organization: {e}");
        assert!(e["source"]
            .as_str()
            .expect("source")
            .starts_with(&format!("/orgs/{org}/")));
    }
    let filtered: Value = integrator
        .get(app.url("/api/v1/events?types=task.created"))
        .send()
        .await
        .expect("feed")
        .json()
        .await
        .expect("json");
    let filtered = filtered["events"].as_array().expect("events");
    assert_eq!(filtered.len(), 1);
    assert_eq!(filtered[0]["type"], "cairn.task.created.v1");
    assert_eq!(filtered[0]["subject"], format!("task/{task}"));
    let bad = integrator
        .get(app.url("/api/v1/events?limit=0"))
        .send()
        .await
        .expect("feed");
    assert_eq!(support::error_code(bad, 400).await, "invalid_query");

    // SSE: read two events, disconnect, resume from the last id: every event exactly once.
    let url = app.url("/api/v1/events/stream?aggregate_type=task");
    create_task(&app, &ada, &org, "two").await;
    let mut sse = Sse::open(&integrator, &url, None).await;
    let first = [sse.next().await, sse.next().await];
    drop(sse);
    create_task(&app, &ada, &org, "three").await;
    let mut sse = Sse::open(&integrator, &url, Some(&first[1].0)).await;
    let third = sse.next().await;
    let titles: Vec<&str> = first
        .iter()
        .chain([&third])
        .filter_map(|(_, e)| e["data"]["title"].as_str())
        .collect();
    assert_eq!(titles, ["one", "two", "three"]);

    // The open stream follows membership: once eve adds ada to her organization, its events
    // flow; once she removes her, the stream ends (access was lost), and a stream resumed
    // from the last id carries on without eve's organization.
    let me: Value = ada
        .get(app.url("/api/v1/me"))
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    let members = app.url(&format!("/api/v1/orgs/{other}/members"));
    let added = eve
        .post(&members)
        .json(&json!({"user_id": me["user_id"]}))
        .send()
        .await
        .expect("add");
    assert_eq!(added.status(), 200);
    create_task(&app, &eve, &other, "shared").await;
    assert_eq!(sse.next().await.1["data"]["title"], "shared");
    let removed = eve
        .delete(format!("{members}/{}", me["user_id"].as_str().expect("id")))
        .send()
        .await
        .expect("remove");
    assert_eq!(removed.status(), 200);
    create_task(&app, &eve, &other, "hidden").await;
    create_task(&app, &ada, &org, "four").await;
    let last = sse.last_id.clone();
    assert!(sse.ended().await, "the stream ends once access is lost");
    let mut sse = Sse::open(&integrator, &url, Some(&last)).await;
    assert_eq!(sse.next().await.1["data"]["title"], "four");
    app.stop().await;
}

/// An SSE client: `(id, data)` per event.
struct Sse {
    body: reqwest::Response,
    text: String,
    /// The id of the last event read.
    last_id: String,
}

impl Sse {
    async fn open(client: &reqwest::Client, url: &str, last_event_id: Option<&str>) -> Self {
        let mut request = client.get(url);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let body = request.send().await.expect("sse");
        assert_eq!(body.status(), 200);
        Self {
            body,
            text: String::new(),
            last_id: String::new(),
        }
    }

    /// Whether the server ends the stream (within 10 s) before sending another event.
    async fn ended(&mut self) -> bool {
        loop {
            if self.text.contains("data: ") {
                return false;
            }
            match tokio::time::timeout(Duration::from_secs(10), self.body.chunk()).await {
                Ok(Ok(Some(chunk))) => self.text.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(Ok(None)) | Ok(Err(_)) => return true,
                Err(_) => return false,
            }
        }
    }

    /// The next event, within 10 s.
    async fn next(&mut self) -> (String, Value) {
        loop {
            while let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let id = block.lines().find_map(|l| l.strip_prefix("id: "));
                let data = block.lines().find_map(|l| l.strip_prefix("data: "));
                if let (Some(id), Some(data)) = (id, data) {
                    self.last_id = id.to_owned();
                    return (id.to_owned(), serde_json::from_str(data).expect("json"));
                }
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.body.chunk())
                .await
                .expect("an event in time")
                .expect("chunk")
                .expect("open");
            self.text.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
