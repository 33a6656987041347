//! A tiny counting aggregate: its state makes double-applied events obvious.
#![allow(dead_code)]

use std::collections::HashMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use eventstore::{AggregateStore, Receipt, StoreError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    pub total: i64,
    pub applied: u64,
}

#[derive(Debug, Clone)]
pub enum CounterCommand {
    Add(Vec<i64>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum CounterEvent {
    #[serde(rename = "counter.added")]
    Added { by: i64 },
}

impl DomainEvent for CounterEvent {
    fn event_type(&self) -> String {
        "counter.added".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

impl Aggregate for Counter {
    const TYPE: &'static str = "counter";
    type Command = CounterCommand;
    type Event = CounterEvent;
    type Error = Never;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), Never> {
        let CounterCommand::Add(values) = command;
        for by in values {
            sink.write(CounterEvent::Added { by }, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        let CounterEvent::Added { by } = event;
        self.total += by;
        self.applied += 1;
    }
}

/// Loads, handles and appends, the way `commands` does (without its retries).
pub async fn add(
    store: &AggregateStore<Counter>,
    id: &str,
    values: Vec<i64>,
    command_id: Uuid,
) -> Result<Receipt, StoreError> {
    let mut ctx = store.load(id).await?;
    let sink = EventSink::default();
    cqrs_es::AggregateContext::aggregate(&mut ctx)
        .handle(CounterCommand::Add(values), &(), &sink)
        .await
        .expect("counter commands never fail");
    let events = sink.collect().await;
    let metadata = HashMap::from([("org_id".to_owned(), "org-1".to_owned())]);
    store.append(events, ctx, command_id, None, &metadata).await
}
