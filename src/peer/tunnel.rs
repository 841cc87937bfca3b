//! One WireGuard tunnel to one agent: boringtun's sans-IO `noise::Tunn`,
//! fed the relay's packets from the agent's node key and handing back IP
//! packets for the stack, and the other way round.
//!
//! Until the agent says it is ready for our handshake (its coordinator sends
//! READY_FOR_HANDSHAKE once it has our node), or 5 s have passed (Coder's
//! `readyForHandshakeTimeout`), outgoing IP packets are held: a handshake
//! initiation sent earlier would be dropped by an agent that does not yet
//! know our key, and WireGuard would only retry 5 s later.

use std::collections::VecDeque;
use std::net::Ipv6Addr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use boringtun::noise::errors::WireGuardError;
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use uuid::Uuid;

use crate::derp::Key;

/// Coder's `readyForHandshakeTimeout`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// IP packets held before the handshake may start.
const HELD: usize = 256;
/// Room for the largest relayed packet and WireGuard's overhead.
const SCRATCH: usize = (64 << 10) + 256;

/// Why a tunnel stopped working.
#[derive(Debug, PartialEq, Eq)]
pub enum Dead {
    /// No handshake for WireGuard's reject-after time: the agent is gone.
    Expired,
}

struct State {
    tunn: Tunn,
    ready: bool,
    held: VecDeque<Vec<u8>>,
    created: Instant,
    last_active: Instant,
    scratch: Vec<u8>,
}

/// The tunnel to one agent's node key.
pub struct Tunnel {
    pub agent: Uuid,
    pub key: Key,
    /// The agent's addresses (its node's): the only sources accepted.
    pub addrs: Vec<Ipv6Addr>,
    state: Mutex<State>,
}

impl Tunnel {
    pub fn new(
        agent: Uuid,
        key: Key,
        addrs: Vec<Ipv6Addr>,
        ours: &StaticSecret,
        index: u32,
    ) -> Tunnel {
        let tunn = Tunn::new(ours.clone(), PublicKey::from(key), None, None, index, None);
        let now = Instant::now();
        Tunnel {
            agent,
            key,
            addrs,
            state: Mutex::new(State {
                tunn,
                ready: false,
                held: VecDeque::new(),
                created: now,
                last_active: now,
                scratch: vec![0; SCRATCH],
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Encrypts an IP packet for the agent (or holds it until the agent is
    /// ready); `out` gets each WireGuard datagram to relay.
    pub fn send_ip(&self, packet: Vec<u8>, out: &mut dyn FnMut(&[u8])) {
        let mut st = self.lock();
        st.last_active = Instant::now();
        if !st.ready {
            if st.held.len() >= HELD {
                st.held.pop_front();
            }
            st.held.push_back(packet);
            return;
        }
        encapsulate(&mut st, &packet, out);
    }

    /// The agent is ready for our handshake: send what was held.
    pub fn set_ready(&self, out: &mut dyn FnMut(&[u8])) {
        let mut st = self.lock();
        if st.ready {
            return;
        }
        st.ready = true;
        let held = std::mem::take(&mut st.held);
        for p in held {
            encapsulate(&mut st, &p, out);
        }
    }

    /// A datagram from the agent's key: replies (handshake responses,
    /// queued packets) go to `out`, decrypted IP packets from one of the
    /// agent's addresses to `deliver`.
    pub fn recv(
        &self,
        datagram: &[u8],
        out: &mut dyn FnMut(&[u8]),
        deliver: &mut dyn FnMut(Vec<u8>),
    ) {
        let mut st = self.lock();
        st.last_active = Instant::now();
        // A datagram from the agent means it knows us: no need to wait.
        st.ready = true;
        let State { tunn, scratch, .. } = &mut *st;
        let mut input: &[u8] = datagram;
        loop {
            match tunn.decapsulate(None, input, scratch) {
                TunnResult::WriteToNetwork(p) => {
                    out(p);
                    // Repeat with nothing until Done: flushes queued packets.
                    input = &[];
                    continue;
                }
                TunnResult::WriteToTunnelV6(p, src) => {
                    if self.addrs.contains(&src) {
                        deliver(p.to_vec());
                    }
                }
                TunnResult::WriteToTunnelV4(..) | TunnResult::Done | TunnResult::Err(_) => {}
            }
            break;
        }
        let held = std::mem::take(&mut st.held);
        for p in held {
            encapsulate(&mut st, &p, out);
        }
    }

    /// WireGuard's timers (handshake retries, keepalives, rekeys); also
    /// ends the wait for READY_FOR_HANDSHAKE after [`READY_TIMEOUT`].
    pub fn tick(&self, out: &mut dyn FnMut(&[u8])) -> Result<(), Dead> {
        let mut st = self.lock();
        if !st.ready && st.created.elapsed() >= READY_TIMEOUT {
            st.ready = true;
            let held = std::mem::take(&mut st.held);
            for p in held {
                encapsulate(&mut st, &p, out);
            }
        }
        let State { tunn, scratch, .. } = &mut *st;
        match tunn.update_timers(scratch) {
            TunnResult::WriteToNetwork(p) => out(p),
            TunnResult::Err(WireGuardError::ConnectionExpired) => return Err(Dead::Expired),
            _ => {}
        }
        Ok(())
    }

    /// How long since a packet went either way.
    pub fn idle_for(&self) -> Duration {
        self.lock().last_active.elapsed()
    }

    /// Whether a WireGuard session exists (a handshake completed).
    pub fn has_session(&self) -> bool {
        self.lock().tunn.time_since_last_handshake().is_some()
    }
}

fn encapsulate(st: &mut State, packet: &[u8], out: &mut dyn FnMut(&[u8])) {
    let State { tunn, scratch, .. } = st;
    if let TunnResult::WriteToNetwork(p) = tunn.encapsulate(packet, scratch) {
        out(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> StaticSecret {
        StaticSecret::from(rand::random::<[u8; 32]>())
    }

    fn ip6(src: Ipv6Addr, dst: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&u16::try_from(payload.len()).unwrap_or(0).to_be_bytes());
        p[6] = 59; // no next header
        p[7] = 64;
        p[8..24].copy_from_slice(&src.octets());
        p[24..40].copy_from_slice(&dst.octets());
        p.extend_from_slice(payload);
        p
    }

    /// Two tunnels facing each other: packets are held until ready, the
    /// handshake completes, data flows both ways, and a packet whose inner
    /// source is not the sender's address is dropped.
    #[test]
    fn two_tunnels_handshake_and_carry_packets() {
        let (a_secret, b_secret) = (secret(), secret());
        let a_key = PublicKey::from(&a_secret).to_bytes();
        let b_key = PublicKey::from(&b_secret).to_bytes();
        let a_addr: Ipv6Addr = "fd7a:115c:a1e0::a".parse().unwrap_or(Ipv6Addr::LOCALHOST);
        let b_addr: Ipv6Addr = "fd7a:115c:a1e0::b".parse().unwrap_or(Ipv6Addr::LOCALHOST);
        // a's view of b, and b's view of a.
        let to_b = Tunnel::new(Uuid::new_v4(), b_key, vec![b_addr], &a_secret, 1);
        let to_a = Tunnel::new(Uuid::new_v4(), a_key, vec![a_addr], &b_secret, 2);

        let mut wire_ab: Vec<Vec<u8>> = Vec::new();
        to_b.send_ip(ip6(a_addr, b_addr, b"hello"), &mut |p| {
            wire_ab.push(p.to_vec())
        });
        assert!(wire_ab.is_empty(), "held until the peer is ready");
        to_b.set_ready(&mut |p| wire_ab.push(p.to_vec()));
        assert_eq!(wire_ab.len(), 1, "a handshake initiation");

        // Shuttle datagrams until both sides are quiet.
        let mut delivered_a = Vec::new();
        let mut delivered_b = Vec::new();
        let mut wire_ba: Vec<Vec<u8>> = Vec::new();
        for _ in 0..10 {
            for d in std::mem::take(&mut wire_ab) {
                to_a.recv(&d, &mut |p| wire_ba.push(p.to_vec()), &mut |ip| {
                    delivered_b.push(ip)
                });
            }
            for d in std::mem::take(&mut wire_ba) {
                to_b.recv(&d, &mut |p| wire_ab.push(p.to_vec()), &mut |ip| {
                    delivered_a.push(ip)
                });
            }
        }
        assert!(to_b.has_session() && to_a.has_session());
        assert_eq!(delivered_b.len(), 1);
        assert_eq!(&delivered_b[0][40..], b"hello");

        to_a.send_ip(ip6(b_addr, a_addr, b"back"), &mut |p| {
            wire_ba.push(p.to_vec())
        });
        // A spoofed inner source: sealed by b, but not from b's address.
        to_a.send_ip(ip6(a_addr, a_addr, b"spoof"), &mut |p| {
            wire_ba.push(p.to_vec())
        });
        for d in std::mem::take(&mut wire_ba) {
            to_b.recv(&d, &mut |p| wire_ab.push(p.to_vec()), &mut |ip| {
                delivered_a.push(ip)
            });
        }
        assert_eq!(delivered_a.len(), 1);
        assert_eq!(&delivered_a[0][40..], b"back");

        // Garbage and a datagram for someone else change nothing.
        to_b.recv(&[1, 2, 3], &mut |_| {}, &mut |_| {
            panic!("delivered garbage")
        });
        let stranger = Tunnel::new(Uuid::new_v4(), a_key, vec![a_addr], &secret(), 3);
        let mut foreign = Vec::new();
        stranger.set_ready(&mut |_| {});
        stranger.send_ip(ip6(b_addr, a_addr, b"x"), &mut |p| foreign.push(p.to_vec()));
        for d in foreign {
            to_b.recv(&d, &mut |_| {}, &mut |_| {
                panic!("delivered a stranger's packet")
            });
        }
    }

    /// Untrusted bytes from the relay: random datagrams, and real ones cut,
    /// flipped and extended, never panic and never reach the stack unless
    /// they are authentic.
    #[test]
    fn mutated_datagrams_are_dropped_without_panicking() {
        let (a_secret, b_secret) = (secret(), secret());
        let a_key = PublicKey::from(&a_secret).to_bytes();
        let b_key = PublicKey::from(&b_secret).to_bytes();
        let a_addr: Ipv6Addr = "fd7a:115c:a1e0::a".parse().unwrap_or(Ipv6Addr::LOCALHOST);
        let b_addr: Ipv6Addr = "fd7a:115c:a1e0::b".parse().unwrap_or(Ipv6Addr::LOCALHOST);
        let to_b = Tunnel::new(Uuid::new_v4(), b_key, vec![b_addr], &a_secret, 1);
        let to_a = Tunnel::new(Uuid::new_v4(), a_key, vec![a_addr], &b_secret, 2);
        to_b.set_ready(&mut |_| {});
        to_a.set_ready(&mut |_| {});
        // Real traffic to mutate: a handshake and some data from b.
        let mut samples: Vec<Vec<u8>> = Vec::new();
        let mut wire_ab: Vec<Vec<u8>> = Vec::new();
        to_b.send_ip(ip6(a_addr, b_addr, b"x"), &mut |p| wire_ab.push(p.to_vec()));
        for _ in 0..4 {
            let mut wire_ba = Vec::new();
            for d in std::mem::take(&mut wire_ab) {
                samples.push(d.clone());
                to_a.recv(&d, &mut |p| wire_ba.push(p.to_vec()), &mut |_| {});
            }
            for d in wire_ba {
                samples.push(d.clone());
                to_b.recv(&d, &mut |p| wire_ab.push(p.to_vec()), &mut |_| {});
            }
        }
        for i in 0..20 {
            to_a.send_ip(ip6(b_addr, a_addr, &[i; 100]), &mut |p| {
                samples.push(p.to_vec())
            });
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut delivered = 0;
        for case in 0..5_000u64 {
            let mut d = if case % 5 == 0 {
                let len = (next() % 300) as usize;
                let mut v: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if let Some(first) = v.first_mut() {
                    *first = (next() % 5) as u8; // a WireGuard message type
                }
                v
            } else {
                samples[(next() as usize) % samples.len()].clone()
            };
            match next() % 4 {
                0 if !d.is_empty() => {
                    let at = (next() as usize) % d.len();
                    d[at] ^= 1 << (next() % 8);
                }
                1 => d.truncate((next() as usize) % (d.len() + 1)),
                2 => d.extend((0..(next() % 64)).map(|_| next() as u8)),
                _ => {}
            }
            to_b.recv(&d, &mut |_| {}, &mut |ip| {
                delivered += 1;
                assert_eq!(&ip[8..24], &b_addr.octets(), "only b's own packets");
            });
        }
        // Unmodified replays are refused by WireGuard's replay window, and
        // every changed byte breaks the AEAD tag: nothing got through but
        // (at most) the first copy of each real data packet.
        assert!(delivered <= 21, "{delivered} packets delivered");
    }
}
