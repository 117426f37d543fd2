//! Integration tests: the real server on 127.0.0.1:0 with a temporary data
//! directory, real MLLP bytes, exact ACK assertions, and what the journal
//! holds after a restart.

mod common;

mod acks;
mod adt_events;
mod audit;
mod auth;
mod charset;
mod cli;
mod connections;
mod durability;
mod faults;
mod governance;
mod http_guard;
mod isolation;
mod logging;
mod metrics;
mod mllp_edges;
mod objections;
mod ops;
mod outcomes;
mod packaging;
mod records;
mod replay;
mod tls;
mod versions;
mod web;
