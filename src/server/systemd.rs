//! systemd's service notification protocol (sd_notify(3)) for `Type=notify`:
//! `READY=1` once the server listens, `STOPPING=1` when shutdown begins, and
//! `WATCHDOG=1` keep-alives at half of `WATCHDOG_USEC` for `WatchdogSec=`.
//!
//! Datagrams go to the socket named by `$NOTIFY_SOCKET` (a path, or an
//! abstract name written `@name`). Without that variable every call is a no-op,
//! so `serve` behaves the same outside systemd. A failed send is logged, never
//! fatal: systemd itself notices a service that does not report.

use std::future::Future;
use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where `$NOTIFY_SOCKET` points.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Path(PathBuf),
    /// Linux abstract namespace (`@name` in the variable), without the `@`.
    Abstract(Vec<u8>),
}

impl Target {
    fn parse(value: &str) -> Option<Target> {
        if let Some(name) = value.strip_prefix('@') {
            (!name.is_empty()).then(|| Target::Abstract(name.as_bytes().to_vec()))
        } else if value.starts_with('/') {
            Some(Target::Path(PathBuf::from(value)))
        } else {
            // sd_notify accepts only absolute paths and abstract names.
            None
        }
    }
}

struct Inner {
    socket: UnixDatagram,
    target: Target,
}

/// The connection to systemd's notification socket, or nothing.
#[derive(Clone, Default)]
pub struct Notifier {
    inner: Option<Arc<Inner>>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the
    /// process environment.
    pub fn from_env() -> Notifier {
        let var = |name: &str| std::env::var(name).ok();
        Notifier::new(
            var("NOTIFY_SOCKET").as_deref(),
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
            std::process::id(),
        )
    }

    fn new(
        notify_socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        pid: u32,
    ) -> Notifier {
        let Some(value) = notify_socket.filter(|v| !v.is_empty()) else {
            return Notifier::default();
        };
        let Some(target) = Target::parse(value) else {
            tracing::warn!(
                "NOTIFY_SOCKET={value:?} is neither an absolute path nor an @abstract name; not notifying systemd"
            );
            return Notifier::default();
        };
        let socket = match UnixDatagram::unbound() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("could not create a socket to notify systemd: {e}");
                return Notifier::default();
            }
        };
        Notifier {
            inner: Some(Arc::new(Inner { socket, target })),
            watchdog: watchdog_interval(watchdog_usec, watchdog_pid, pid),
        }
    }

    /// Whether `NOTIFY_SOCKET` was set (and usable).
    #[cfg(test)]
    pub fn enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// How often to send `WATCHDOG=1`, when systemd asked for keep-alives.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.inner.as_ref().and(self.watchdog)
    }

    /// Sends one notification (newline-separated `KEY=VALUE` lines).
    pub fn notify(&self, message: &str) {
        let Some(inner) = &self.inner else { return };
        if let Err(e) = inner.send(message.as_bytes()) {
            tracing::warn!(message, "could not notify systemd: {e}");
        }
    }

    /// `READY=1`, with a human-readable status for `systemctl status`.
    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=stopping: finishing in-flight requests");
    }

    /// `shutdown`, announcing `STOPPING=1` as soon as it resolves (before the
    /// server drains its requests).
    pub async fn stopping_after(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        shutdown.await;
        self.stopping();
    }

    /// Sends `WATCHDOG=1` at half of `WATCHDOG_USEC`, forever, from the async
    /// runtime: a runtime that stops scheduling tasks stops the keep-alives,
    /// and systemd restarts the service. Returns at once without a watchdog.
    pub async fn watchdog(self) {
        let Some(period) = self.watchdog_interval() else {
            return;
        };
        tracing::debug!(?period, "sending systemd watchdog keep-alives");
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.notify("WATCHDOG=1");
        }
    }
}

impl Inner {
    fn send(&self, message: &[u8]) -> io::Result<()> {
        let sent = match &self.target {
            Target::Path(path) => self.socket.send_to(message, path)?,
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                self.socket.send_to_addr(message, &addr)?
            }
        };
        if sent != message.len() {
            return Err(io::Error::other("short write"));
        }
        Ok(())
    }
}

/// Half of `WATCHDOG_USEC` (as sd_watchdog_enabled(3) advises), when the
/// watchdog is meant for this process: `WATCHDOG_PID` unset or ours.
fn watchdog_interval(usec: Option<&str>, watchdog_pid: Option<&str>, pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|&u| u > 0)?;
    if let Some(p) = watchdog_pid
        && p.trim().parse::<u32>().ok() != Some(pid)
    {
        return None;
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// A notification value must not contain newlines (they separate fields).
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn notify_socket_forms() {
        assert_eq!(
            Target::parse("/run/systemd/notify"),
            Some(Target::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            Target::parse("@/org/freedesktop/systemd1/notify/123"),
            Some(Target::Abstract(
                b"/org/freedesktop/systemd1/notify/123".to_vec()
            ))
        );
        assert_eq!(Target::parse("relative/path"), None);
        assert_eq!(Target::parse("@"), None);
        assert!(!Notifier::new(None, Some("1000000"), None, 1).enabled());
        assert!(!Notifier::new(Some(""), None, None, 1).enabled());
        assert!(!Notifier::new(Some("notify.sock"), None, None, 1).enabled());
        let n = Notifier::new(Some("/nonexistent/notify"), Some("1000000"), None, 1);
        assert!(n.enabled());
        assert_eq!(n.watchdog_interval(), Some(Duration::from_millis(500)));
        // No socket, no watchdog, whatever WATCHDOG_USEC says.
        assert_eq!(
            Notifier::new(None, Some("1000000"), None, 1).watchdog_interval(),
            None
        );
    }

    #[test]
    fn watchdog_interval_is_half_of_usec_for_this_process() {
        assert_eq!(
            watchdog_interval(Some("30000000"), None, 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval(Some("200000"), Some("7"), 7),
            Some(Duration::from_millis(100))
        );
        assert_eq!(watchdog_interval(Some("200000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("200000"), Some("x"), 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("-5"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
    }

    #[test]
    fn status_is_one_line() {
        assert_eq!(one_line("a\nb\r\nc"), "a b  c");
    }

    #[test]
    fn notifications_reach_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(path.to_str(), None, None, 1);
        n.ready("listening on http://127.0.0.1:1\nsecond line");
        n.stopping();
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..len]).unwrap(),
            "READY=1\nSTATUS=listening on http://127.0.0.1:1 second line"
        );
        let len = listener.recv(&mut buf).unwrap();
        assert!(
            std::str::from_utf8(&buf[..len])
                .unwrap()
                .starts_with("STOPPING=1\n")
        );
    }

    /// The packaged unit's command line must parse with the real CLI: a
    /// renamed flag fails here, not on a server at boot.
    #[test]
    fn packaged_unit_exec_lines_parse() {
        let unit = include_str!("../../packaging/appliance.service");
        let exec: Vec<&str> = unit
            .lines()
            .filter_map(|l| l.strip_prefix("ExecStart="))
            .collect();
        assert_eq!(exec.len(), 1, "one ExecStart line");
        let words: Vec<&str> = exec[0].split_whitespace().collect();
        assert_eq!(words[0], "/usr/bin/appliance");
        let cli = crate::cli::Cli::try_parse_from(&words).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(cli.command, crate::cli::Command::Serve(_)));
        assert_eq!(
            cli.config.as_deref(),
            Some(std::path::Path::new("/etc/appliance/appliance.toml"))
        );
        assert_eq!(
            cli.db.as_deref(),
            Some(std::path::Path::new("/var/lib/appliance/appliance.db"))
        );
        for line in [
            "Type=notify",
            "StateDirectory=appliance",
            "ConfigurationDirectory=appliance",
            "User=appliance",
            "Restart=on-failure",
        ] {
            assert!(unit.lines().any(|l| l == line), "unit lacks {line}");
        }
        assert!(unit.lines().any(|l| l.starts_with("WatchdogSec=")));
    }
}
