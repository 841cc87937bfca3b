//! DRPC's frame and packet parser (`rpc::drpc::wire::Decoder`) and every
//! packet body decoder (`Packet::body`: RPC names, error bodies, invoke
//! metadata), on input fed in chunks; it must never panic, and what it holds
//! after asking for more input must stay within the 4 MiB packet cap plus
//! one frame header.
//!
//! Input: one selector byte (the chunk size: 1 + the byte, so 1 to 256), then
//! the bytes a peer sends.

#![no_main]

use appliance::rpc::drpc::wire::{Decoder, MAX_FRAME_HEADER, MAX_PACKET_SIZE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let mut decoder = Decoder::new();
    for chunk in input.chunks(usize::from(selector) + 1) {
        decoder.extend(chunk);
        loop {
            match decoder.decode() {
                Ok(Some(packet)) => {
                    assert!(packet.data.len() <= MAX_PACKET_SIZE);
                    let _ = packet.body();
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = e.to_string();
                    return;
                }
            }
        }
        assert!(decoder.buffered() <= MAX_PACKET_SIZE + MAX_FRAME_HEADER);
    }
    let _ = decoder.at_boundary();
});
