//! MLLP (HL7 v2 Minimal Lower Layer Protocol, release 1): `VT message FS CR`.
//!
//! - `codec`: the tokio-util framing codec (bounded memory, resync, oversize);
//! - `server`: accept loop; `admission`: who gets a slot (per-peer and
//!   global bounds, idle connections make way, counters);
//! - `connection`: per-connection reader and ACK writer, ACKs in order;
//! - `client`: the client behind `recordhub send` and `recordhub load`;
//!   `expect`: whether a message asks for an ACK at all (MSH-15);
//! - `split`: turning an analyst's file into messages;
//! - `tls`: rustls for listeners and clients; `allow`: which connection may
//!   send as which MSH-3/MSH-4.

pub mod admission;
pub mod allow;
pub mod client;
pub mod codec;
pub mod connection;
pub mod expect;
pub mod https;
pub mod server;
pub mod split;
pub mod tls;
