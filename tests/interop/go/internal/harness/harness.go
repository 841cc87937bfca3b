// Package harness reads what tests/interop/run.sh set up (a running appliance,
// a user token, the `workspace apply --output json` of the harness's manifest)
// and reads agents back through appliance's user-facing HTTP API with codersdk's
// own types.
package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/coder/coder/v2/codersdk"
)

// Applied is appliance's `workspace apply --output json`.
type Applied struct {
	Workspace struct {
		ID    uuid.UUID `json:"id"`
		Name  string    `json:"name"`
		Owner string    `json:"owner"`
	} `json:"workspace"`
	Agents []struct {
		ID    uuid.UUID `json:"id"`
		Name  string    `json:"name"`
		Token string    `json:"token"`
	} `json:"agents"`
}

// Env is the running server and the harness workspace.
type Env struct {
	URL        *url.URL
	UserToken  string
	Applied    Applied
	HealthPort string // the port the "real" agent's app health check dials
}

// Load reads the environment run.sh exports; it skips the test when the harness
// is run outside run.sh (no APPLIANCE_URL).
func Load(t *testing.T) *Env {
	t.Helper()
	raw := os.Getenv("APPLIANCE_URL")
	if raw == "" {
		t.Skip("APPLIANCE_URL unset: run tests/interop/run.sh")
	}
	e, err := LoadFrom(raw, os.Getenv("APPLIANCE_USER_TOKEN"), os.Getenv("APPLIANCE_APPLY_JSON"))
	if err != nil {
		t.Fatal(err)
	}
	e.HealthPort = os.Getenv("APPLIANCE_HEALTH_PORT")
	return e
}

// LoadFrom is Load for commands (the benchmarks): appliance's URL, a user
// token and the `workspace apply --output json` file.
func LoadFrom(rawURL, userToken, applyFile string) (*Env, error) {
	u, err := url.Parse(rawURL)
	if err != nil || rawURL == "" {
		return nil, fmt.Errorf("APPLIANCE_URL %q: %v", rawURL, err)
	}
	e := &Env{URL: u, UserToken: userToken}
	b, err := os.ReadFile(applyFile)
	if err != nil {
		return nil, fmt.Errorf("APPLIANCE_APPLY_JSON: %v", err)
	}
	if err := json.Unmarshal(b, &e.Applied); err != nil {
		return nil, fmt.Errorf("decode %s: %v", applyFile, err)
	}
	return e, nil
}

// Agent returns the id and token of the manifest's agent called name.
func (e *Env) Agent(t *testing.T, name string) (uuid.UUID, string) {
	t.Helper()
	id, token, err := e.AgentByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return id, token
}

// AgentByName is Agent for commands.
func (e *Env) AgentByName(name string) (uuid.UUID, string, error) {
	for _, a := range e.Applied.Agents {
		if a.Name == name {
			if a.Token == "" {
				return uuid.Nil, "", fmt.Errorf("agent %q: no token in the apply output", name)
			}
			return a.ID, a.Token, nil
		}
	}
	return uuid.Nil, "", fmt.Errorf("agent %q not in the apply output", name)
}

// UserClient is codersdk's client with the user token.
func (e *Env) UserClient() *codersdk.Client {
	return codersdk.New(e.URL, codersdk.WithSessionToken(e.UserToken))
}

func (e *Env) getJSON(ctx context.Context, path string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.URL.JoinPath(path).String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set(codersdk.SessionTokenHeader, e.UserToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, res.StatusCode, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("GET %s: decode: %v: %s", path, err, body)
	}
	return nil
}

// GetAgent is GET /api/v2/workspaceagents/{id} with the user token, decoded into codersdk's type.
func (e *Env) GetAgent(ctx context.Context, id uuid.UUID) (codersdk.WorkspaceAgent, error) {
	var a codersdk.WorkspaceAgent
	err := e.getJSON(ctx, "/api/v2/workspaceagents/"+id.String(), &a)
	return a, err
}

// GetLogs is GET /api/v2/workspaceagents/{id}/logs with the user token.
func (e *Env) GetLogs(ctx context.Context, id uuid.UUID) ([]codersdk.WorkspaceAgentLog, error) {
	var logs []codersdk.WorkspaceAgentLog
	err := e.getJSON(ctx, "/api/v2/workspaceagents/"+id.String()+"/logs", &logs)
	return logs, err
}

// Eventually polls cond every 200 ms until it returns "" (done) or the timeout
// passes; then it fails with the last reason cond gave.
func Eventually(t *testing.T, timeout time.Duration, what string, cond func() string) {
	t.Helper()
	if err := Poll(timeout, what, cond); err != nil {
		t.Fatal(err)
	}
}

// Poll is Eventually for commands: the error names what did not happen and
// the last reason cond gave.
func Poll(timeout time.Duration, what string, cond func() string) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		last = cond()
		if last == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %s: %s", what, timeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Metric reads one unlabelled series from appliance's GET /metrics.
func (e *Env) Metric(ctx context.Context, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.URL.JoinPath("/metrics").String(), nil)
	if err != nil {
		return 0, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET /metrics: %d %s", res.StatusCode, strings.TrimSpace(string(body)))
	}
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err != nil {
				return 0, fmt.Errorf("GET /metrics: %s: %v", line, err)
			}
			return v, nil
		}
	}
	return 0, fmt.Errorf("GET /metrics: no series %s", name)
}
