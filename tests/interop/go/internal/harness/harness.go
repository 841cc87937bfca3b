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
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("APPLIANCE_URL: %v", err)
	}
	e := &Env{URL: u, UserToken: os.Getenv("APPLIANCE_USER_TOKEN"), HealthPort: os.Getenv("APPLIANCE_HEALTH_PORT")}
	b, err := os.ReadFile(os.Getenv("APPLIANCE_APPLY_JSON"))
	if err != nil {
		t.Fatalf("APPLIANCE_APPLY_JSON: %v", err)
	}
	if err := json.Unmarshal(b, &e.Applied); err != nil {
		t.Fatalf("decode %s: %v", os.Getenv("APPLIANCE_APPLY_JSON"), err)
	}
	return e
}

// Agent returns the id and token of the manifest's agent called name.
func (e *Env) Agent(t *testing.T, name string) (uuid.UUID, string) {
	t.Helper()
	for _, a := range e.Applied.Agents {
		if a.Name == name {
			if a.Token == "" {
				t.Fatalf("agent %q: no token in the apply output", name)
			}
			return a.ID, a.Token
		}
	}
	t.Fatalf("agent %q not in the apply output", name)
	return uuid.Nil, ""
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
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		last = cond()
		if last == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, timeout, last)
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
