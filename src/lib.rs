//! recordhub: an HL7 v2 interface engine and record indexer.
//!
//! A message flows through one module per stage:
//!
//! ```text
//! sender ─MLLP─▶ mllp::codec ─frame─▶ intake (hl7 parse, envelope checks)
//!        ─▶ pipeline: dedup ─▶ map ─▶ govern ─▶ journal (append, one fdatasync per batch)
//!        ─▶ store (sled index, derived from the journal) ─▶ ack ─MLLP─▶ sender
//! ```
//!
//! - [`mllp`]: framing codec, listener, client, file splitting.
//! - [`hl7`]: zero-copy HL7 v2 parser, escapes, charsets, NHS numbers.
//! - [`intake`]: which messages the engine takes (type, version, processing id).
//! - [`journal`]: the append-only, CRC-checked source of truth.
//! - [`store`]: the sled index (dedup table), rebuildable from the journal.
//! - [`govern`]: exclusion rules: what sensitive information the record never shows.
//! - [`indexer`]: the thread that files committed messages into the index.
//! - [`ack`]: the one place that renders an outcome as MSH/MSA/ERR.
//! - [`pipeline`]: `Pipeline::process(batch)`, synchronous, called by the
//!   server's [`worker`], the CLI, the tests and the benchmarks.
//! - [`fault`]: named fault points for tests (fsync failure, ENOSPC, panics, aborts).
//! - [`health`], [`supervise`]: what `/health` and `/ready` report; panics.
//! - [`events`], [`metrics`]: each event's log line and counters; `/metrics`.
//! - [`read`], [`audit`]: the one read path, and its hash-chained audit log.
//! - [`config`], [`telemetry`], [`serve`], [`cli`]: running it.
//! - [`read`], [`web`]: the one audited read path, and the professional's web pages on it.

pub mod access;
pub mod ack;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod events;
pub mod fault;
pub mod govern;
pub mod health;
pub mod hl7;
pub mod http;
pub mod indexer;
pub mod intake;
pub mod journal;
pub mod load;
pub mod mapping;
pub mod metrics;
pub mod mllp;
pub mod pipeline;
pub mod read;
pub mod record;
pub mod serve;
pub mod store;
pub mod supervise;
pub mod telemetry;
pub mod web;
pub mod worker;
