//! A per-client-address limit for unauthenticated work (instance-identity
//! sign-ins: each costs a signature check and needs no credential).
//!
//! Fixed one-minute windows per address: simple, O(1) per request, bounded
//! memory (expired windows are swept when the table grows). The clock is an
//! argument so the behaviour is tested without waiting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(60);
/// Sweep expired windows once the table holds this many addresses.
const SWEEP_AT: usize = 4096;
/// If a sweep leaves this many live windows (a flood from many addresses),
/// start over: memory stays bounded, at worst a few extra requests get through.
const HARD_CAP: usize = 65_536;

pub struct RateLimiter {
    limit: AtomicU32,
    windows: Mutex<Windows>,
}

#[derive(Default)]
struct Windows {
    by_addr: HashMap<IpAddr, (Instant, u32)>,
    /// Sweep when the table reaches this size; after a sweep it becomes twice
    /// what survived (at least [`SWEEP_AT`]), so sweeps stay amortised O(1)
    /// per request even while many addresses are live.
    next_sweep: usize,
}

impl RateLimiter {
    /// `limit` requests per address per minute; 0 turns the limit off.
    pub fn new(limit: u32) -> RateLimiter {
        RateLimiter {
            limit: AtomicU32::new(limit),
            windows: Mutex::new(Windows {
                by_addr: HashMap::new(),
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
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if windows.by_addr.len() >= windows.next_sweep {
            windows
                .by_addr
                .retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if windows.by_addr.len() >= HARD_CAP {
                windows.by_addr.clear();
            }
            windows.next_sweep = (windows.by_addr.len() * 2).max(SWEEP_AT);
        }
        let entry = windows.by_addr.entry(addr).or_insert((now, 0));
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

    #[test]
    fn counts_per_address_per_window() {
        let rl = RateLimiter::new(3);
        let t0 = Instant::now();
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "::1".parse().expect("ip");
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
    fn zero_turns_it_off() {
        let rl = RateLimiter::new(0);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        for _ in 0..10_000 {
            assert!(rl.check(a, Instant::now()).is_ok());
        }
    }

    #[test]
    fn memory_stays_bounded() {
        let rl = RateLimiter::new(1);
        let t0 = Instant::now();
        for i in 0..(SWEEP_AT as u32 * 2) {
            let ip = IpAddr::from(i.to_be_bytes());
            let _ = rl.check(ip, t0 + WINDOW * (i / SWEEP_AT as u32 * 2));
        }
        let len = rl.windows.lock().expect("lock").by_addr.len();
        assert!(len <= SWEEP_AT, "expired windows were swept: {len}");
        for i in 0..(HARD_CAP as u32 + 10) {
            let _ = rl.check(IpAddr::from((i + 1_000_000).to_be_bytes()), t0);
        }
        let len = rl.windows.lock().expect("lock").by_addr.len();
        assert!(
            len <= HARD_CAP,
            "a flood of fresh addresses stays bounded: {len}"
        );
    }
}
