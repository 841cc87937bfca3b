//! Every request message the server will decode from an agent
//! (`appliance::rpc::proto`), plus `()` for requests whose body it ignores.
//! Decoding must never panic; what it allocates must stay within
//! `AMPLIFICATION` times the input plus `SLACK` (a counting global
//! allocator measures the peak of live bytes during the decode); and a
//! message that decodes must re-encode to `encoded_len()` bytes that decode
//! and re-encode to the same bytes.
//!
//! Input: one selector byte (which request type, modulo the number of
//! types), then the request body as it arrives in a DRPC Message packet.
//!
//! The bound: prost checks every length prefix against the bytes left before
//! allocating, so a decoded message is made of what the input spells out.
//! The most a byte of input can cost is an element of a repeated message
//! field encoded as 2 bytes (key, length 0) that becomes a struct in a
//! `Vec`: at most 104 bytes here (`batch_update_metadata_request::Metadata`,
//! a String and a `WorkspaceAgentMetadata.Result` held inline), 52 per input
//! byte; a `Vec` holds up to twice its length, and while it grows the old
//! and the new buffer are both alive (this allocator counts a realloc as a
//! new allocation first), so 3 x 52 = 156 per input byte.

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use appliance::rpc::proto::{agent, tailnet};
use libfuzzer_sys::fuzz_target;
use prost::Message;

/// Live bytes allocated through Rust's allocator, and their high-water mark.
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

struct Counting;

fn grew(size: usize) {
    let now = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(size: usize) {
    LIVE.fetch_sub(size, Ordering::Relaxed);
}

// The allocator only counts; System does the work.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Counted as allocate-new, then free-old: the worst case of a move.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            grew(new_size);
            shrank(layout.size());
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes a decode may hold per input byte (see the module doc).
const AMPLIFICATION: usize = 156;
/// Room for the first allocations, which round up (a Vec's first growth
/// reserves 4 elements, an empty BTreeMap's first node).
const SLACK: usize = 4096;

fn check<M: Message + Default>(body: &[u8]) {
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let decoded = M::decode(body);
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert!(
        peak <= AMPLIFICATION * body.len() + SLACK,
        "decoding {} bytes as {} held {peak} bytes",
        body.len(),
        std::any::type_name::<M>(),
    );
    let Ok(message) = decoded else {
        return;
    };
    let once = message.encode_to_vec();
    assert_eq!(once.len(), message.encoded_len());
    let again = M::decode(once.as_slice()).expect("a re-encoded message decodes");
    assert_eq!(again.encode_to_vec(), once);
}

/// One entry per request type the server accepts; the selector picks one.
const DECODERS: &[fn(&[u8])] = &[
    check::<agent::GetManifestRequest>,
    check::<agent::GetServiceBannerRequest>,
    check::<agent::UpdateStatsRequest>,
    check::<agent::UpdateLifecycleRequest>,
    check::<agent::BatchUpdateAppHealthRequest>,
    check::<agent::UpdateStartupRequest>,
    check::<agent::BatchUpdateMetadataRequest>,
    check::<agent::BatchCreateLogsRequest>,
    check::<agent::GetAnnouncementBannersRequest>,
    check::<agent::WorkspaceAgentScriptCompletedRequest>,
    check::<agent::GetResourcesMonitoringConfigurationRequest>,
    check::<agent::ReportConnectionRequest>,
    check::<agent::UpdateAppStatusRequest>,
    check::<tailnet::StreamDerpMapsRequest>,
    check::<tailnet::CoordinateRequest>,
    check::<tailnet::RefreshResumeTokenRequest>,
    // PushResourcesMonitoringUsage, ListSubAgents, ...: body ignored.
    check::<()>,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    DECODERS[usize::from(selector) % DECODERS.len()](body);
});
