//! The protobuf messages of the two services a Coder agent calls over
//! `/me/rpc` — `coder.agent.v2.Agent` ([`agent`]) and
//! `coder.tailnet.v2.Tailnet` ([`tailnet`]) — and their RPC names with the
//! API version that added each ([`methods`]).
//!
//! The structs are written by hand with `#[derive(prost::Message)]` from the
//! field tables of `../shared/design/CONNECTIVITY.md` §1.4, §1.7 and §1.8:
//! coder's `.proto` files are AGPL code and are neither copied nor compiled
//! here (no `prost-build`). Field numbers and wire types are that table's;
//! where it names a field but not its type, the type follows the name
//! (`*_at` a Timestamp, names and text strings, flags bools) and the field's
//! doc says "type inferred". Messages the design leaves without field numbers
//! are left out (each module's doc lists them): a server that must accept
//! such a request and ignores its body decodes it as `()`, which skips every
//! field.
//!
//! Decoding is forward compatible, as protobuf requires: unknown fields (a
//! newer agent's) are skipped, and an enum field keeps any `i32`, known or
//! not (`Lifecycle::state()` maps an unknown one to the default, the raw
//! value stays in `state`). Maps are `BTreeMap`s, so an encoding is the same
//! bytes every time. Every id is a 16-byte UUID in a `bytes` field; decoding
//! does not check the length, the service that reads an id does.
//!
//! Hostile bytes never panic a decoder, and a length prefix is checked
//! against the bytes present before anything is allocated, so a decoded
//! message is made only of what the input spells out: at most 156 bytes held
//! per input byte, the worst being 2-byte empty elements of
//! BatchUpdateMetadata's repeated field growing a `Vec` of 104-byte structs
//! (`fuzz/fuzz_targets/rpc_requests.rs` asserts the bound for every request
//! type). DRPC caps the input at 4 MiB, so one request's decode peaks below
//! about 330 MB, and about 220 MB once decoded.

pub mod agent;
pub mod methods;
pub mod tailnet;

pub use prost_types::{Duration, Timestamp};

/// `google.protobuf.Empty`: prost implements `Message` for `()`, which
/// encodes to nothing and skips every field on decode.
pub type Empty = ();

#[cfg(test)]
mod tests;
