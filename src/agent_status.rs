//! An agent's connection status and health, derived from its timestamps.
//!
//! The rules are Coder's (`WorkspaceAgent.Status` and the health table in
//! db2sdk): pure functions of the stored timestamps, the agent's lifecycle
//! state and the time now, so they are tested here against exact instants.

use std::time::Duration;

use time::OffsetDateTime;

/// `codersdk.WorkspaceAgentStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Connecting,
    Connected,
    Disconnected,
    Timeout,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Connecting => "connecting",
            Status::Connected => "connected",
            Status::Disconnected => "disconnected",
            Status::Timeout => "timeout",
        }
    }
}

/// What the status is computed from.
#[derive(Debug, Clone, Copy)]
pub struct Timestamps {
    pub created_at: OffsetDateTime,
    pub first_connected_at: Option<OffsetDateTime>,
    pub last_connected_at: Option<OffsetDateTime>,
    pub disconnected_at: Option<OffsetDateTime>,
    /// 0 disables the connection timeout.
    pub connection_timeout_seconds: i64,
}

/// The status, and the `disconnected_at` to report (rewritten to
/// `last_connected_at` when the agent went quiet without saying goodbye).
pub fn status(
    t: &Timestamps,
    now: OffsetDateTime,
    inactive_timeout: Duration,
) -> (Status, Option<OffsetDateTime>) {
    let Some(_first) = t.first_connected_at else {
        let waited = now - t.created_at;
        let timed_out = t.connection_timeout_seconds > 0
            && waited > time::Duration::seconds(t.connection_timeout_seconds);
        let s = if timed_out {
            Status::Timeout
        } else {
            Status::Connecting
        };
        return (s, t.disconnected_at);
    };
    // A NULL timestamp compares as Go's zero time: earlier than everything.
    let disconnected = t
        .disconnected_at
        .unwrap_or(time::macros::datetime!(0001-01-01 00:00 UTC));
    let last = t.last_connected_at;
    if let Some(last) = last {
        if disconnected >= last {
            return (Status::Disconnected, t.disconnected_at);
        }
        let inactive = time::Duration::try_from(inactive_timeout).unwrap_or(time::Duration::MAX);
        if now - last > inactive {
            return (Status::Disconnected, Some(last));
        }
        return (Status::Connected, t.disconnected_at);
    }
    (Status::Disconnected, t.disconnected_at)
}

/// The instant after which [`status`] may give another answer for the same
/// timestamps (the connection timeout or the inactivity limit running out), or
/// `None` if only new timestamps can change it.
pub fn changes_after(
    t: &Timestamps,
    now: OffsetDateTime,
    inactive_timeout: Duration,
) -> Option<OffsetDateTime> {
    match (status(t, now, inactive_timeout).0, t.last_connected_at) {
        (Status::Connecting, _) if t.connection_timeout_seconds > 0 => {
            Some(t.created_at + time::Duration::seconds(t.connection_timeout_seconds))
        }
        (Status::Connected, Some(last)) => {
            Some(last + time::Duration::try_from(inactive_timeout).unwrap_or(time::Duration::MAX))
        }
        _ => None,
    }
}

/// `codersdk.WorkspaceAgentHealth`: healthy, or the first reason that applies.
pub fn health(status: Status, lifecycle_state: &str) -> Result<(), &'static str> {
    let shutting_down = matches!(
        lifecycle_state,
        "shutting_down" | "shutdown_timeout" | "shutdown_error" | "off"
    );
    if status != Status::Connected && lifecycle_state == "off" {
        return Err("agent is not running");
    }
    match status {
        Status::Connecting => return Err("agent has not yet connected"),
        Status::Timeout => return Err("agent is taking too long to connect"),
        Status::Disconnected => return Err("agent has lost connection"),
        Status::Connected => {}
    }
    if lifecycle_state == "start_error" {
        return Err("agent startup script exited with an error");
    }
    if shutting_down {
        return Err("agent is shutting down");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const INACTIVE: Duration = Duration::from_secs(30);
    const T0: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);

    fn ts() -> Timestamps {
        Timestamps {
            created_at: T0,
            first_connected_at: None,
            last_connected_at: None,
            disconnected_at: None,
            connection_timeout_seconds: 120,
        }
    }

    fn secs(n: i64) -> time::Duration {
        time::Duration::seconds(n)
    }

    #[test]
    fn never_connected_is_connecting_until_the_timeout_passes() {
        let t = ts();
        assert_eq!(status(&t, T0 + secs(120), INACTIVE).0, Status::Connecting);
        assert_eq!(status(&t, T0 + secs(121), INACTIVE).0, Status::Timeout);
        let no_timeout = Timestamps {
            connection_timeout_seconds: 0,
            ..t
        };
        assert_eq!(
            status(&no_timeout, T0 + secs(86_400), INACTIVE).0,
            Status::Connecting
        );
    }

    #[test]
    fn connected_while_recent_then_disconnected_when_quiet() {
        let t = Timestamps {
            first_connected_at: Some(T0 + secs(5)),
            last_connected_at: Some(T0 + secs(60)),
            ..ts()
        };
        assert_eq!(
            status(&t, T0 + secs(90), INACTIVE),
            (Status::Connected, None)
        );
        let (s, reported) = status(&t, T0 + secs(91), INACTIVE);
        assert_eq!(s, Status::Disconnected);
        assert_eq!(
            reported,
            Some(T0 + secs(60)),
            "disconnected_at rewritten to last_connected_at"
        );
    }

    #[test]
    fn an_explicit_disconnect_at_or_after_the_last_connection_wins() {
        let t = Timestamps {
            first_connected_at: Some(T0),
            last_connected_at: Some(T0 + secs(10)),
            disconnected_at: Some(T0 + secs(10)),
            ..ts()
        };
        assert_eq!(
            status(&t, T0 + secs(11), INACTIVE),
            (Status::Disconnected, Some(T0 + secs(10)))
        );
        let reconnected = Timestamps {
            disconnected_at: Some(T0 + secs(9)),
            ..t
        };
        assert_eq!(
            status(&reconnected, T0 + secs(11), INACTIVE).0,
            Status::Connected
        );
    }

    #[test]
    fn first_connected_without_last_is_disconnected() {
        let t = Timestamps {
            first_connected_at: Some(T0),
            ..ts()
        };
        assert_eq!(status(&t, T0 + secs(1), INACTIVE).0, Status::Disconnected);
    }

    #[test]
    fn status_changes_only_at_the_reported_instant() {
        let t = ts();
        let until = changes_after(&t, T0, INACTIVE).expect("connecting with a timeout");
        assert_eq!(status(&t, until, INACTIVE).0, Status::Connecting);
        assert_eq!(
            status(&t, until + time::Duration::microseconds(1), INACTIVE).0,
            Status::Timeout
        );
        assert_eq!(
            changes_after(&t, until + secs(1), INACTIVE),
            None,
            "timeout is final"
        );
        let connected = Timestamps {
            first_connected_at: Some(T0),
            last_connected_at: Some(T0 + secs(10)),
            ..t
        };
        let until = changes_after(&connected, T0 + secs(11), INACTIVE).expect("connected");
        assert_eq!(status(&connected, until, INACTIVE).0, Status::Connected);
        assert_eq!(
            status(
                &connected,
                until + time::Duration::microseconds(1),
                INACTIVE
            )
            .0,
            Status::Disconnected
        );
        let no_timeout = Timestamps {
            connection_timeout_seconds: 0,
            ..t
        };
        assert_eq!(changes_after(&no_timeout, T0, INACTIVE), None);
    }

    #[test]
    fn health_reasons_in_upstream_order() {
        assert_eq!(
            health(Status::Connecting, "off"),
            Err("agent is not running")
        );
        assert_eq!(
            health(Status::Connecting, "created"),
            Err("agent has not yet connected")
        );
        assert_eq!(
            health(Status::Timeout, "created"),
            Err("agent is taking too long to connect")
        );
        assert_eq!(
            health(Status::Disconnected, "ready"),
            Err("agent has lost connection")
        );
        assert_eq!(
            health(Status::Connected, "start_error"),
            Err("agent startup script exited with an error")
        );
        for s in ["shutting_down", "shutdown_timeout", "shutdown_error", "off"] {
            assert_eq!(
                health(Status::Connected, s),
                Err("agent is shutting down"),
                "{s}"
            );
        }
        assert_eq!(health(Status::Connected, "ready"), Ok(()));
        assert_eq!(
            health(Status::Connected, "start_timeout"),
            Ok(()),
            "start_timeout is deliberately healthy"
        );
    }
}
