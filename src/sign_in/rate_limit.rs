//! A per-client limit for unauthenticated work (instance-identity sign-ins:
//! each costs a signature check and needs no credential).
//!
//! Fixed one-minute windows per client: simple, O(1) per request, bounded
//! memory. A client is an IPv4 address or an IPv6 /64 (a host is usually
//! given a whole /64, so counting per IPv6 address would give it 2^64
//! budgets); an IPv4-mapped IPv6 address (a dual-stack listener's IPv4
//! client) counts as the IPv4 address. Expired windows are swept when the
//! table grows; when more clients than [`HARD_CAP`] are live at once, the
//! oldest windows are dropped first, so a flood of fresh addresses cannot
//! reset the windows of the clients it is competing with. The clock is an
//! argument so the behaviour is tested without waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(60);
/// Sweep expired windows once the table holds this many clients.
const SWEEP_AT: usize = 4096;
/// The most clients tracked at once.
const HARD_CAP: usize = 65_536;
/// How many of the oldest live windows go when the table is full of live
/// ones: a fraction, so that the O(n) eviction stays amortised O(1).
const EVICT: usize = HARD_CAP / 8;

/// Whose budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    V4([u8; 4]),
    /// The upper 64 bits of the address.
    V6Net(u64),
}

impl From<IpAddr> for Client {
    fn from(addr: IpAddr) -> Client {
        match addr {
            IpAddr::V4(a) => Client::V4(a.octets()),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Client::V4(v4.octets()),
                None => Client::V6Net((u128::from(a) >> 64) as u64),
            },
        }
    }
}

pub struct RateLimiter {
    limit: AtomicU32,
    windows: Mutex<Windows>,
}

#[derive(Default)]
struct Windows {
    /// Start of the client's window and requests counted in it.
    by_client: HashMap<Client, (Instant, u32)>,
    /// Sweep when the table reaches this size; after a sweep it becomes twice
    /// what survived (at least [`SWEEP_AT`], at most [`HARD_CAP`]), so sweeps
    /// stay amortised O(1) per request even while many clients are live.
    next_sweep: usize,
}

impl Windows {
    /// Drops expired windows and, if the table is still full, the oldest
    /// live ones.
    fn sweep(&mut self, now: Instant) {
        self.by_client
            .retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        if self.by_client.len() >= HARD_CAP {
            let mut starts: Vec<(Instant, Client)> = self
                .by_client
                .iter()
                .map(|(client, (start, _))| (*start, *client))
                .collect();
            // The table is full, so there are more than EVICT of them.
            starts.select_nth_unstable_by_key(EVICT, |(start, _)| *start);
            for (_, client) in &starts[..EVICT] {
                self.by_client.remove(client);
            }
        }
        self.next_sweep = (self.by_client.len() * 2).clamp(SWEEP_AT, HARD_CAP);
    }
}

impl RateLimiter {
    /// `limit` requests per client per minute; 0 turns the limit off.
    pub fn new(limit: u32) -> RateLimiter {
        RateLimiter {
            limit: AtomicU32::new(limit),
            windows: Mutex::new(Windows {
                by_client: HashMap::new(),
                next_sweep: SWEEP_AT,
            }),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Changes the limit for every later request (SIGHUP reload).
    pub fn set_limit(&self, limit: u32) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Counts one request from `addr`; `Err(retry_after)` when over the limit.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let limit = self.limit();
        if limit == 0 {
            return Ok(());
        }
        let client = Client::from(addr);
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if windows.by_client.len() >= windows.next_sweep && !windows.by_client.contains_key(&client)
        {
            windows.sweep(now);
        }
        let entry = windows.by_client.entry(client).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        if entry.1 >= limit {
            return Err(WINDOW.saturating_sub(now.duration_since(entry.0)));
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn counts_per_address_per_window() {
        let rl = RateLimiter::new(3);
        let t0 = Instant::now();
        let a = ip("10.0.0.1");
        let b = ip("::1");
        for _ in 0..3 {
            assert!(rl.check(a, t0).is_ok());
        }
        let retry = rl
            .check(a, t0 + Duration::from_secs(10))
            .expect_err("fourth is refused");
        assert_eq!(retry, Duration::from_secs(50));
        assert!(
            rl.check(b, t0).is_ok(),
            "other addresses have their own budget"
        );
        assert!(
            rl.check(a, t0 + WINDOW).is_ok(),
            "a new window starts after a minute"
        );
    }

    #[test]
    fn an_ipv6_64_is_one_client_and_mapped_ipv4_is_ipv4() {
        let rl = RateLimiter::new(2);
        let t0 = Instant::now();
        assert!(rl.check(ip("2001:db8:1:2::1"), t0).is_ok());
        assert!(rl.check(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), t0).is_ok());
        assert!(
            rl.check(ip("2001:db8:1:2:dead:beef:0:7"), t0).is_err(),
            "the rest of the /64 shares the budget"
        );
        assert!(
            rl.check(ip("2001:db8:1:3::1"), t0).is_ok(),
            "the next /64 is another client"
        );
        assert!(rl.check(ip("192.0.2.7"), t0).is_ok());
        assert!(rl.check(ip("::ffff:192.0.2.7"), t0).is_ok());
        assert!(
            rl.check(ip("192.0.2.7"), t0).is_err(),
            "IPv4-mapped IPv6 is the IPv4 address"
        );
        assert!(rl.check(ip("192.0.2.8"), t0).is_ok());
        assert_eq!(
            Client::from(ip("::ffff:10.1.2.3")),
            Client::from(ip("10.1.2.3"))
        );
    }

    #[test]
    fn zero_turns_it_off() {
        let rl = RateLimiter::new(0);
        let a = ip("10.0.0.1");
        for _ in 0..10_000 {
            assert!(rl.check(a, Instant::now()).is_ok());
        }
    }

    fn len(rl: &RateLimiter) -> usize {
        rl.windows.lock().expect("lock").by_client.len()
    }

    #[test]
    fn expired_windows_are_swept() {
        let rl = RateLimiter::new(1);
        let t0 = Instant::now();
        for i in 0..(SWEEP_AT as u32 * 2) {
            let ip = IpAddr::from(i.to_be_bytes());
            let _ = rl.check(ip, t0 + WINDOW * (i / SWEEP_AT as u32 * 2));
        }
        assert!(
            len(&rl) <= SWEEP_AT,
            "expired windows were swept: {}",
            len(&rl)
        );
    }

    #[test]
    fn a_flood_of_fresh_clients_evicts_the_oldest_and_resets_no_one_else() {
        let rl = RateLimiter::new(1);
        let t0 = Instant::now();
        let ms = Duration::from_millis(1);
        // A client that spent its budget first, a table full of others, and a
        // client that spent its budget after them.
        let early = ip("198.51.100.1");
        let late = ip("2001:db8::1");
        assert!(rl.check(early, t0).is_ok());
        for i in 0..(HARD_CAP as u32) {
            let _ = rl.check(IpAddr::from((i + 1_000_000).to_be_bytes()), t0 + ms);
        }
        let t1 = t0 + Duration::from_secs(1);
        assert!(rl.check(late, t1).is_ok());
        // A flood of fresh IPv6 networks, all within the window.
        for i in 0..(2 * EVICT as u128) {
            let addr = std::net::Ipv6Addr::from((i + (7 << 60)) << 64);
            let _ = rl.check(IpAddr::V6(addr), t1 + ms);
            assert!(len(&rl) <= HARD_CAP, "bounded: {}", len(&rl));
        }
        assert!(
            rl.check(late, t1 + ms).is_err(),
            "a newer window outlives the flood"
        );
        assert!(
            rl.check(early, t1 + ms).is_ok(),
            "the oldest windows went first"
        );
    }
}
