//! storj/drpc (v0.0.34, the version coder uses), written for appliance: the
//! wire format ([`wire`], with [`metadata`] for InvokeMetadata bodies) and
//! the server for one transport ([`serve`] with a [`Router`] of methods).
//!
//! The rules it keeps whatever a peer sends: a packet holds at most 4 MiB
//! ([`wire::MAX_PACKET_SIZE`]), checked before any data is waited for; ids
//! never go backwards; an unknown method is answered with Error code 12
//! (Unimplemented) and the transport stays usable; hostile bytes end the
//! transport with a [`ServeError`], never a panic.
//!
//! A method, registered once and shared by every transport:
//!
//! ```
//! use appliance::rpc::drpc::{Router, RpcError};
//!
//! let router = Router::<()>::new().unary(
//!     "/coder.agent.v2.Agent/GetAnnouncementBanners",
//!     |_state, _call, _request| async { Ok::<_, RpcError>(Vec::new()) },
//! );
//! assert!(router.has("/coder.agent.v2.Agent/GetAnnouncementBanners"));
//! ```

pub mod metadata;
mod server;
pub mod wire;

pub use metadata::Metadata;
pub use server::{Call, Receiver, Router, Sender, ServeError, StreamClosed, serve};
pub use wire::{RpcError, UNIMPLEMENTED};

#[cfg(test)]
mod tests;
