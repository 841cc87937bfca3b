package harness

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"cdr.dev/slog/v3"
	"cdr.dev/slog/v3/sloggers/slogtest"

	"github.com/coder/coder/v2/agent"
	"github.com/coder/coder/v2/codersdk"
	"github.com/coder/coder/v2/codersdk/agentsdk"
)

// EmbeddedRegion is the DERP region of appliance's embedded relay
// (derp.region_id's default).
const EmbeddedRegion = 999

// AgentOptions are the parts of Coder's agent.Options the tests vary.
type AgentOptions struct {
	// Devcontainers turns on the agent's container API (what
	// CODER_AGENT_DEVCONTAINERS_ENABLE does in `coder agent`). The agent
	// runs `docker` and `devcontainer` by name: some from this process's
	// PATH (exec.LookPath), some through the user's shell with this
	// process's environment; a test sets PATH with t.Setenv.
	Devcontainers bool
}

// NewAgent starts Coder's workspace agent (agent.New, the code `coder agent`
// runs) against appliance with the agent token token; its temp, log and
// script-data directories are dir. It returns at once: see WaitAgent.
func (e *Env) NewAgent(token, dir string, logger slog.Logger, o AgentOptions) agent.Agent {
	return agent.New(agent.Options{
		Client:              agentsdk.New(e.URL, agentsdk.WithFixedToken(token)),
		Logger:              logger.Named("agent"),
		TempDir:             dir,
		LogDir:              dir,
		ScriptDataDir:       dir,
		Devcontainers:       o.Devcontainers,
		SocketServerEnabled: false,
	})
}

// AgentReady is a Poll/Eventually condition: GET /api/v2/workspaceagents/{id}
// shows the agent connected and its lifecycle ready.
func (e *Env) AgentReady(ctx context.Context, id uuid.UUID) func() string {
	return func() string {
		got, err := e.GetAgent(ctx, id)
		if err != nil {
			return err.Error()
		}
		if got.Status != codersdk.WorkspaceAgentConnected || got.LifecycleState != codersdk.WorkspaceAgentLifecycleReady {
			return fmt.Sprintf("status=%q lifecycle_state=%q", got.Status, got.LifecycleState)
		}
		return ""
	}
}

// HomeDERP is a Poll/Eventually condition: the agent's magicsock picked
// appliance's relay as its home (netcheck against /derp/latency-check), so its
// node, as the coordinator sees it, prefers EmbeddedRegion.
func HomeDERP(a agent.Agent) func() string {
	return func() string {
		tc := a.TailnetConn()
		if tc == nil || tc.Node() == nil {
			return "no tailnet node yet"
		}
		if n := tc.Node(); n.PreferredDERP != EmbeddedRegion {
			return fmt.Sprintf("preferred_derp=%d", n.PreferredDERP)
		}
		return ""
	}
}

// WaitAgent waits until the agent is connected and ready (60 s), then until
// its home DERP is the embedded relay (30 s).
func (e *Env) WaitAgent(ctx context.Context, id uuid.UUID, a agent.Agent) error {
	if err := Poll(60*time.Second, "agent connected and ready", e.AgentReady(ctx, id)); err != nil {
		return err
	}
	return Poll(30*time.Second, "the agent's home DERP is the embedded relay", HomeDERP(a))
}

// TestLogger is the tests' logger: debug level, into the test's log, errors
// not fatal.
func TestLogger(t *testing.T) slog.Logger {
	return slogtest.Make(t, &slogtest.Options{IgnoreErrors: true}).Leveled(slog.LevelDebug)
}

// LaunchAgent starts Coder's agent for the manifest's agent called name, in a
// fresh t.TempDir, logging to the test; it is closed when the test ends (a
// test may close it earlier: Close is idempotent). It does not wait.
func LaunchAgent(t *testing.T, e *Env, name string, o AgentOptions) (uuid.UUID, agent.Agent) {
	t.Helper()
	id, token := e.Agent(t, name)
	a := e.NewAgent(token, t.TempDir(), TestLogger(t), o)
	t.Cleanup(func() { _ = a.Close() })
	return id, a
}

// StartAgent is LaunchAgent, then waits as WaitAgent does: connected and
// ready, home DERP the embedded relay.
func StartAgent(t *testing.T, e *Env, name string, o AgentOptions) (uuid.UUID, agent.Agent) {
	t.Helper()
	id, a := LaunchAgent(t, e, name, o)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	Eventually(t, 60*time.Second, "agent connected and ready", e.AgentReady(ctx, id))
	Eventually(t, 30*time.Second, "the agent's home DERP is the embedded relay", HomeDERP(a))
	return id, a
}
