// Tier 2: Coder's real workspace agent (agent.New, the code `coder agent` runs)
// against appliance. It must connect, run the manifest's startup script and
// send its output, health-check the manifest's app, reach ready, and go off
// and disconnected when closed.
package realagent_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/coder/coder/v2/codersdk"

	"appliance.invalid/interop/internal/harness"
)

// What tests/interop/run.sh's manifest declares for the agent "real".
const (
	realAgentName = "real"
	scriptOutput  = "hello-from-script"
	appSlug       = "health"
)

func TestRealAgent(t *testing.T) {
	e := harness.Load(t)
	if e.HealthPort == "" {
		t.Fatal("APPLIANCE_HEALTH_PORT unset")
	}

	// The app's health check target.
	var healthHits int
	ln, err := net.Listen("tcp", "127.0.0.1:"+e.HealthPort)
	if err != nil {
		t.Fatalf("listen for the app health check: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		healthHits++
		_, _ = fmt.Fprintln(w, "ok")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	// Waiting for it is what the subtests below check.
	agentID, a := harness.LaunchAgent(t, e, realAgentName, harness.AgentOptions{})

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var got codersdk.WorkspaceAgent
	t.Run("connected and ready", func(t *testing.T) {
		harness.Eventually(t, 60*time.Second, "lifecycle ready, status connected, version set", func() string {
			got, err = e.GetAgent(ctx, agentID)
			if err != nil {
				return err.Error()
			}
			if got.LifecycleState != codersdk.WorkspaceAgentLifecycleReady || got.Status != codersdk.WorkspaceAgentConnected || got.Version == "" {
				return fmt.Sprintf("lifecycle_state=%q status=%q version=%q", got.LifecycleState, got.Status, got.Version)
			}
			return ""
		})
		t.Logf("agent: version=%s api_version=%s expanded_directory=%q subsystems=%v first_connected_at=%v",
			got.Version, got.APIVersion, got.ExpandedDirectory, got.Subsystems, got.FirstConnectedAt)
		if want := os.Getenv("INTEROP_CODER_VERSION"); want != "" && got.Version != want {
			t.Errorf("version = %q, want %q (the agent's buildinfo tag)", got.Version, want)
		}
		if got.APIVersion != "2.10" {
			t.Errorf("api_version = %q, want 2.10 (a v2.35 agent dials version=2.10)", got.APIVersion)
		}
		if got.FirstConnectedAt == nil || got.LastConnectedAt == nil || got.StartedAt == nil || got.ReadyAt == nil {
			t.Errorf("first_connected_at=%v last_connected_at=%v started_at=%v ready_at=%v: want all set", got.FirstConnectedAt, got.LastConnectedAt, got.StartedAt, got.ReadyAt)
		}
	})

	t.Run("tailnet: home DERP is the embedded relay", func(t *testing.T) {
		// The agent's netcheck probes /derp/latency-check and its magicsock
		// connects to /derp; PreferredDERP is set once the home relay is
		// chosen. (run.sh gives `lo` a non-loopback address: without one,
		// Tailscale sees the network down and never picks a home relay.)
		harness.Eventually(t, 30*time.Second, "the agent's node prefers region 999", func() string {
			tc := a.TailnetConn()
			if tc == nil || tc.Node() == nil {
				return "no tailnet node yet"
			}
			n := tc.Node()
			if n.PreferredDERP != 999 {
				return fmt.Sprintf("preferred_derp=%d", n.PreferredDERP)
			}
			t.Logf("agent node: preferred_derp=%d derp_latency=%v forced_websocket=%v", n.PreferredDERP, n.DERPLatency, n.DERPForcedWebsocket)
			return ""
		})
	})

	t.Run("startup script output in logs", func(t *testing.T) {
		if len(got.Scripts) != 1 {
			a, err := e.GetAgent(ctx, agentID)
			if err != nil {
				t.Fatal(err)
			}
			got = a
		}
		if len(got.Scripts) != 1 {
			t.Fatalf("GET agent: %d scripts, want 1", len(got.Scripts))
		}
		src := got.Scripts[0].LogSourceID
		harness.Eventually(t, 30*time.Second, "the script's line in GET logs", func() string {
			logs, err := e.GetLogs(ctx, agentID)
			if err != nil {
				return err.Error()
			}
			var outs []string
			for _, l := range logs {
				if strings.TrimSpace(l.Output) == scriptOutput && l.SourceID == src {
					return ""
				}
				outs = append(outs, fmt.Sprintf("%s:%q", l.SourceID, l.Output))
			}
			return fmt.Sprintf("no %q under source %s; logs: %v", scriptOutput, src, outs)
		})
		harness.Eventually(t, 20*time.Second, "the script's exit status in GET agent", func() string {
			a, err := e.GetAgent(ctx, agentID)
			if err != nil {
				return err.Error()
			}
			s := a.Scripts[0]
			if s.ExitCode == nil || *s.ExitCode != 0 || s.Status == nil || *s.Status != codersdk.WorkspaceAgentScriptStatusOK {
				return fmt.Sprintf("scripts[0] exit_code=%v status=%v (ScriptCompleted not reflected)", ptr(s.ExitCode), ptr(s.Status))
			}
			return ""
		})
	})

	t.Run("app healthy", func(t *testing.T) {
		harness.Eventually(t, 30*time.Second, "app "+appSlug+" healthy", func() string {
			a, err := e.GetAgent(ctx, agentID)
			if err != nil {
				return err.Error()
			}
			for _, app := range a.Apps {
				if app.Slug == appSlug {
					if app.Health == codersdk.WorkspaceAppHealthHealthy {
						return ""
					}
					return fmt.Sprintf("health=%q (health check hits so far: %d)", app.Health, healthHits)
				}
			}
			return fmt.Sprintf("no app %q in %+v", appSlug, a.Apps)
		})
	})

	t.Run("closed: off and disconnected", func(t *testing.T) {
		if err := a.Close(); err != nil {
			t.Logf("agent Close: %v", err)
		}
		harness.Eventually(t, 30*time.Second, "lifecycle off, status disconnected", func() string {
			got, err = e.GetAgent(ctx, agentID)
			if err != nil {
				return err.Error()
			}
			if got.LifecycleState != codersdk.WorkspaceAgentLifecycleOff || got.Status != codersdk.WorkspaceAgentDisconnected {
				return fmt.Sprintf("lifecycle_state=%q status=%q", got.LifecycleState, got.Status)
			}
			return ""
		})
		if got.DisconnectedAt == nil {
			t.Errorf("disconnected_at unset after the agent closed")
		}
	})
}

func ptr[T any](p *T) any {
	if p == nil {
		return "<nil>"
	}
	return *p
}
