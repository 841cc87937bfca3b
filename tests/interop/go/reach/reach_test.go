// Tier 4: appliance's server reaches Coder's agent, as coderd does through its
// ServerTailnet: Coder's real agent (agent.New with its container API on,
// `docker` and `devcontainer` being tests/interop/fakes) connects as agent
// "reach", and Coder's own client code asks about the agent's machine through
// appliance's user API: codersdk's WorkspaceAgentListeningPorts,
// WorkspaceAgentListContainers (with and without label filters),
// WatchWorkspaceAgentContainers, WorkspaceAgentRecreateDevcontainer and
// WorkspaceAgentDeleteDevcontainer, workspacesdk's AgentReconnectingPTY (the
// web terminal's /pty), with a session token and with a signed token from
// POST /api/v2/applications/reconnecting-pty-signed-token.
//
// The same scenario first runs from Coder's client straight to the agent
// over WireGuard (workspacesdk.DialAgent through appliance's coordinator and
// relay, tier 3's path), which works without appliance's server in the
// middle: it proves the fakes and every expectation against Coder's agent
// itself, so a failure on the appliance path is appliance's.
package reach_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/coder/coder/v2/codersdk"
	"github.com/coder/coder/v2/codersdk/workspacesdk"
	"github.com/coder/websocket"

	"appliance.invalid/interop/internal/harness"
)

// What tests/interop/run.sh's manifest declares: the agent "reach", with an
// app on 127.0.0.1:8082 (so appliance filters that port from listening-ports).
const reachAgentName = "reach"

// The fake docker's containers besides the devcontainer, made before the
// agent starts.
const (
	webName    = "reach-web"    // running, two published ports, a bind mount
	batchName  = "reach-batch"  // stopped: exited 0
	killedName = "reach-killed" // killed: exited 137
	psWarning  = "WARNING: fake docker: a warning on stderr"
	// A port on the fixed ignore list (PostgreSQL) that coderd never lists.
	ignoredPort = 5432
)

type scenario struct {
	e       *harness.Env
	fk      *fakes
	agentID uuid.UUID
	project string // the devcontainer's workspace folder
	config  string // its devcontainer.json
	appPort int    // the reach agent's app's port
	comm    string // this process's name, as the agent reports listeners
	web     codersdk.WorkspaceAgentContainer
}

func TestReach(t *testing.T) {
	e := harness.Load(t)
	fk := newFakes(t)
	s := &scenario{e: e, fk: fk}
	s.project = filepath.Join(t.TempDir(), "project")
	s.config = filepath.Join(s.project, ".devcontainer", "devcontainer.json")
	if err := os.MkdirAll(filepath.Dir(s.config), 0o755); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, s.config, "first")
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	s.comm = strings.TrimSpace(string(comm))
	s.seed(t)

	s.agentID, _ = harness.StartAgent(t, e, reachAgentName, harness.AgentOptions{Devcontainers: true})
	logger := harness.TestLogger(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	got, err := e.GetAgent(ctx, s.agentID)
	if err != nil {
		t.Fatal(err)
	}
	for _, app := range got.Apps {
		if u, err := url.Parse(app.URL); err == nil && u.Port() != "" {
			s.appPort, _ = strconv.Atoi(u.Port())
		}
	}
	if s.appPort == 0 {
		t.Fatalf("agent %q has no app with a port (run.sh's manifest gives it one): %+v", reachAgentName, got.Apps)
	}

	client := e.UserClient()
	dialCtx, dialCancel := context.WithTimeout(ctx, 60*time.Second)
	conn, err := workspacesdk.New(client).DialAgent(dialCtx, s.agentID, &workspacesdk.DialAgentOptions{
		Logger:         logger.Named("client"),
		BlockEndpoints: true,
	})
	dialCancel()
	if err != nil {
		t.Fatalf("DialAgent: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	t.Run("coder client over the tailnet", func(t *testing.T) {
		s.run(ctx, t, coderClient{conn: conn, logger: logger.Named("watch")})
	})
	t.Run("appliance", func(t *testing.T) {
		app := applianceServer{client: client, agentID: s.agentID}
		s.run(ctx, t, app)
		t.Run("pty with a signed token", func(t *testing.T) { s.signedTokenPTY(ctx, t) })
		t.Run("pty refusals", func(t *testing.T) { s.ptyRefusals(ctx, t) })
	})
	t.Logf("%s: %d calls", fk, len(fk.calls(t)))
}

// seed makes the fake docker's containers before the agent's first scan: a
// running web server with published ports and a bind mount, a stopped and a
// killed one, a devcontainer made by the fake devcontainer CLI; and a
// warning on `docker ps`'s stderr.
func (s *scenario) seed(t *testing.T) {
	fk := s.fk
	webID := fk.run(t, "docker", "run", "-d", "--name", webName,
		"--label", "app=web", "--label", `com.example.quote=a "quoted" \ value`,
		"-p", "127.0.0.1:18080:80", "-p", "18443:443", "-v", "/srv/web:/usr/share/web",
		"alpine:3.20", "httpd", "-f")
	fk.run(t, "docker", "run", "-d", "--name", batchName, "--label", "app=batch", "busybox:1.36", "true")
	fk.run(t, "docker", "stop", batchName)
	fk.run(t, "docker", "run", "-d", "--name", killedName, "--label", "app=batch", "busybox:1.36")
	fk.run(t, "docker", "kill", killedName)
	fk.control(t, "stderr", "ps", psWarning+"\n")

	var inspected []struct {
		Created time.Time `json:"Created"`
	}
	if err := json.Unmarshal([]byte(fk.run(t, "docker", "inspect", webID)), &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("the fake's inspect output: %v", err)
	}
	s.web = codersdk.WorkspaceAgentContainer{
		CreatedAt:    inspected[0].Created,
		ID:           webID,
		FriendlyName: webName,
		Image:        "alpine:3.20",
		Labels:       map[string]string{"app": "web", "com.example.quote": `a "quoted" \ value`},
		Running:      true,
		// Sorted by docker's port key, "443/tcp" < "80/tcp".
		Ports: []codersdk.WorkspaceAgentContainerPort{
			{Port: 443, Network: "tcp", HostIP: "0.0.0.0", HostPort: 18443},
			{Port: 80, Network: "tcp", HostIP: "127.0.0.1", HostPort: 18080},
		},
		Status:  "running",
		Volumes: map[string]string{"/srv/web": "/usr/share/web"},
	}
	s.devcontainerUp(t)
}

// devcontainerUp: the fake devcontainer CLI starts a container for the
// project (as a startup script or the user would), unless one is running.
func (s *scenario) devcontainerUp(t *testing.T) string {
	t.Helper()
	s.fk.clear(t, "hold", "up")
	s.fk.clear(t, "fail", "up")
	for _, id := range strings.Fields(s.fk.run(t, "docker", "ps", "-q", "-a", "--no-trunc", "--filter", "label=devcontainer.local_folder="+s.project)) {
		st := s.fk.run(t, "docker", "inspect", "--format", "{{.State.Status}}", id)
		if st == "running" {
			return id
		}
		s.fk.run(t, "docker", "rm", "-f", id)
	}
	out := s.fk.run(t, "devcontainer", "up", "--log-format", "json", "--workspace-folder", s.project)
	lines := strings.Split(out, "\n")
	var res struct {
		Outcome     string `json:"outcome"`
		ContainerID string `json:"containerId"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil || res.Outcome != "success" || res.ContainerID == "" {
		t.Fatalf("devcontainer up: %v: %s", err, out)
	}
	return res.ContainerID
}

func writeConfig(t *testing.T, path, note string) {
	t.Helper()
	conf := fmt.Sprintf("{\n  \"name\": \"project\",\n  \"image\": \"mcr.microsoft.com/devcontainers/base:ubuntu\",\n  \"remoteEnv\": {\"NOTE\": %q}\n}\n", note)
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// run is the scenario on one path.
func (s *scenario) run(ctx context.Context, t *testing.T, p path) {
	t.Run("listening ports", func(t *testing.T) { s.listeningPorts(ctx, t, p) })
	t.Run("pty", func(t *testing.T) { s.pty(ctx, t, p) })

	var dc codersdk.WorkspaceAgentDevcontainer
	ok := t.Run("devcontainer found", func(t *testing.T) {
		id := s.devcontainerUp(t)
		// A new container is found by the agent's next scan (every 10 s).
		dc = s.waitDevcontainer(ctx, t, p, 30*time.Second, "the devcontainer running on its container", func(dc *codersdk.WorkspaceAgentDevcontainer) string {
			if dc == nil {
				return "no devcontainer"
			}
			if dc.Status != codersdk.WorkspaceAgentDevcontainerStatusRunning || dc.Container == nil || dc.Container.ID != id {
				return fmt.Sprintf("status=%q container=%v, want running on %.12s", dc.Status, containerID(dc), id)
			}
			return ""
		})
	})
	if !ok {
		t.Errorf("no devcontainer: container subtests skipped")
		return
	}
	t.Run("containers", func(t *testing.T) { s.containers(ctx, t, p, dc) })
	if p.Server() {
		t.Run("containers: label filter", func(t *testing.T) { s.labelFilter(ctx, t, p) })
	}
	t.Run("pty in a container", func(t *testing.T) { s.containerPTY(ctx, t, p) })
	t.Run("watch", func(t *testing.T) { s.watch(ctx, t, p, dc) })
	t.Run("devcontainer recreate and delete", func(t *testing.T) { s.recreateDelete(ctx, t, p, dc) })
}

func containerID(dc *codersdk.WorkspaceAgentDevcontainer) string {
	if dc == nil || dc.Container == nil {
		return "<nil>"
	}
	return dc.Container.ID[:12]
}

// findDevcontainer: the project's devcontainer in a listing (nil: none).
func (s *scenario) findDevcontainer(res codersdk.WorkspaceAgentListContainersResponse) *codersdk.WorkspaceAgentDevcontainer {
	for i := range res.Devcontainers {
		if res.Devcontainers[i].WorkspaceFolder == s.project {
			return &res.Devcontainers[i]
		}
	}
	return nil
}

func (s *scenario) waitDevcontainer(ctx context.Context, t *testing.T, p path, timeout time.Duration, what string, cond func(*codersdk.WorkspaceAgentDevcontainer) string) codersdk.WorkspaceAgentDevcontainer {
	t.Helper()
	var got codersdk.WorkspaceAgentDevcontainer
	harness.Eventually(t, timeout, what, func() string {
		res, err := p.ListContainers(ctx, nil)
		if err != nil {
			return err.Error()
		}
		dc := s.findDevcontainer(res)
		if r := cond(dc); r != "" {
			return r
		}
		got = *dc
		return ""
	})
	return got
}

func (s *scenario) listeningPorts(ctx context.Context, t *testing.T, p path) {
	// Ports coderd filters out: one on its fixed ignore list, the agent's
	// app port. Opened before the port that must show, so the listing that
	// shows it was taken while they listened too.
	filtered := map[int]string{ignoredPort: "on the ignore list", s.appPort: "an app's port"}
	for port, why := range filtered {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Logf("cannot listen on %d (%s), not checked: %v", port, why, err)
			delete(filtered, port)
			continue
		}
		defer ln.Close()
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	var res codersdk.WorkspaceAgentListeningPortsResponse
	harness.Eventually(t, 15*time.Second, "the test's listener listed", func() string {
		res, err = p.ListeningPorts(ctx)
		if err != nil {
			return err.Error()
		}
		if findPort(res, port) == nil {
			return fmt.Sprintf("port %d not in %+v", port, res.Ports)
		}
		return ""
	})
	lp := findPort(res, port)
	if lp.ProcessName != s.comm || lp.Network != "tcp" {
		t.Errorf("port %d: process_name=%q network=%q, want %q and tcp", port, lp.ProcessName, lp.Network, s.comm)
	}
	for _, lp := range res.Ports {
		if lp.Port < 9 {
			t.Errorf("port %d listed: below 9", lp.Port)
		}
	}
	for fp, why := range filtered {
		listed := findPort(res, fp) != nil
		switch {
		case p.Server() && listed:
			t.Errorf("port %d (%s) listed: coderd filters it (BEHAVIOUR.md §1.17)", fp, why)
		case !p.Server() && !listed:
			// The agent itself does not filter it: without it listed here,
			// its absence through appliance would prove nothing.
			t.Errorf("port %d (%s) not listed by the agent itself: %+v", fp, why, res.Ports)
		}
	}
	_ = ln.Close()
	harness.Eventually(t, 15*time.Second, "the closed listener gone", func() string {
		res, err := p.ListeningPorts(ctx)
		if err != nil {
			return err.Error()
		}
		if findPort(res, port) != nil {
			return fmt.Sprintf("port %d still listed", port)
		}
		return ""
	})
}

func findPort(res codersdk.WorkspaceAgentListeningPortsResponse, port int) *codersdk.WorkspaceAgentListeningPort {
	for i := range res.Ports {
		if int(res.Ports[i].Port) == port {
			return &res.Ports[i]
		}
	}
	return nil
}

func (s *scenario) containers(ctx context.Context, t *testing.T, p path, dc codersdk.WorkspaceAgentDevcontainer) {
	res, err := p.ListContainers(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]codersdk.WorkspaceAgentContainer{}
	for _, c := range res.Containers {
		byName[c.FriendlyName] = c
	}
	web, ok := byName[webName]
	if !ok {
		t.Fatalf("no container %q in %+v", webName, names(res.Containers))
	}
	if !web.CreatedAt.Equal(s.web.CreatedAt) {
		t.Errorf("%s: created_at %v, want %v", webName, web.CreatedAt, s.web.CreatedAt)
	}
	web.CreatedAt = s.web.CreatedAt
	if !reflect.DeepEqual(web, s.web) {
		t.Errorf("%s:\n got %+v\nwant %+v", webName, web, s.web)
	}
	for name, want := range map[string]string{batchName: "exited successfully", killedName: "exited with code 137"} {
		if c := byName[name]; c.Running || c.Status != want {
			t.Errorf("%s: running=%v status=%q, want false and %q", name, c.Running, c.Status, want)
		}
	}
	if !slices.Contains(res.Warnings, psWarning) {
		t.Errorf("warnings %q lack docker ps's stderr %q", res.Warnings, psWarning)
	}
	if len(res.Devcontainers) != 1 {
		t.Fatalf("%d devcontainers, want 1: %+v", len(res.Devcontainers), res.Devcontainers)
	}
	got := res.Devcontainers[0]
	if got.ID != dc.ID || got.Name != "project" || got.WorkspaceFolder != s.project || got.ConfigPath != s.config ||
		got.Status != codersdk.WorkspaceAgentDevcontainerStatusRunning || got.Dirty || got.Error != "" || got.Agent != nil {
		t.Errorf("devcontainer: %+v\nwant id %s, name project, folder %s, config %s, running, not dirty, no error, no sub-agent",
			got, dc.ID, s.project, s.config)
	}
	if got.Container == nil || byName[got.Container.FriendlyName].ID != got.Container.ID ||
		got.Container.Labels["devcontainer.local_folder"] != s.project || got.Container.Labels["devcontainer.config_file"] != s.config {
		t.Errorf("devcontainer's container %+v: not the listed one with the devcontainer labels", got.Container)
	}
}

func names(cs []codersdk.WorkspaceAgentContainer) []string {
	var n []string
	for _, c := range cs {
		n = append(n, c.FriendlyName)
	}
	sort.Strings(n)
	return n
}

// labelFilter: appliance keeps a container iff it has every requested label
// key and, where the requested value is not empty, that value; devcontainers
// and warnings are not filtered (BEHAVIOUR.md §1.12).
func (s *scenario) labelFilter(ctx context.Context, t *testing.T, p path) {
	dcName := ""
	if res, err := p.ListContainers(ctx, nil); err == nil {
		if dc := s.findDevcontainer(res); dc != nil && dc.Container != nil {
			dcName = dc.Container.FriendlyName
		}
	}
	for _, tc := range []struct {
		labels map[string]string
		want   []string
	}{
		{map[string]string{"app": "web"}, []string{webName}},
		{map[string]string{"app": ""}, []string{batchName, killedName, webName}},
		{map[string]string{"app": "batch", "com.example.quote": ""}, nil},
		{map[string]string{"com.example.quote": `a "quoted" \ value`}, []string{webName}},
		{map[string]string{"devcontainer.local_folder": s.project}, []string{dcName}},
		{map[string]string{"app": "nope"}, nil},
	} {
		res, err := p.ListContainers(ctx, tc.labels)
		if err != nil {
			t.Errorf("label %v: %v", tc.labels, err)
			continue
		}
		if got := names(res.Containers); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("label %v: containers %q, want %q", tc.labels, got, tc.want)
		}
		if len(res.Devcontainers) != 1 || !slices.Contains(res.Warnings, psWarning) {
			t.Errorf("label %v: devcontainers %d, warnings %q: want both unfiltered", tc.labels, len(res.Devcontainers), res.Warnings)
		}
	}
	_, err := p.ListContainers(ctx, map[string]string{"a": "b=c"})
	wantError(t, err, http.StatusBadRequest, "Invalid label format")
}

// watch: the first frame is the current state; a change to the config file
// is pushed at once (the agent watches it: dirty), a container stopped
// behind the agent's back on its next scan (10 s).
func (s *scenario) watch(ctx context.Context, t *testing.T, p path, dc codersdk.WorkspaceAgentDevcontainer) {
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	ch, closer, err := p.WatchContainers(wctx)
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	frame := func(timeout time.Duration, what string, cond func(*codersdk.WorkspaceAgentDevcontainer) string) {
		t.Helper()
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		last := "no frame"
		for {
			select {
			case res, ok := <-ch:
				if !ok {
					t.Fatalf("%s: the watch ended (last: %s)", what, last)
				}
				if last = cond(s.findDevcontainer(res)); last == "" {
					return
				}
			case <-timer.C:
				t.Fatalf("%s: no such frame within %s (last: %s)", what, timeout, last)
			}
		}
	}
	first := true
	frame(10*time.Second, "the current state first", func(got *codersdk.WorkspaceAgentDevcontainer) string {
		if !first {
			return "not the first frame"
		}
		first = false
		if got == nil || got.ID != dc.ID || got.Status != codersdk.WorkspaceAgentDevcontainerStatusRunning || got.Dirty {
			return fmt.Sprintf("first frame's devcontainer %+v, want %s running, not dirty", got, dc.ID)
		}
		return ""
	})
	writeConfig(t, s.config, "changed")
	frame(15*time.Second, "dirty after the config changed", func(got *codersdk.WorkspaceAgentDevcontainer) string {
		if got == nil || !got.Dirty {
			return fmt.Sprintf("%+v", got)
		}
		return ""
	})
	s.fk.run(t, "docker", "stop", dc.Container.ID)
	frame(30*time.Second, "stopped after docker stop", func(got *codersdk.WorkspaceAgentDevcontainer) string {
		if got == nil || got.Status != codersdk.WorkspaceAgentDevcontainerStatusStopped {
			return fmt.Sprintf("%+v", got)
		}
		return ""
	})
}

// recreateDelete: recreate answers 202 and runs `devcontainer up
// --remove-existing-container` in the background; 409 while it runs; a
// failed `up` leaves the devcontainer in error until the next one; delete
// stops and removes the container and answers 204; unknown ids are 404.
func (s *scenario) recreateDelete(ctx context.Context, t *testing.T, p path, dc codersdk.WorkspaceAgentDevcontainer) {
	fk := s.fk
	_, err := p.RecreateDevcontainer(ctx, uuid.NewString())
	wantError(t, err, http.StatusNotFound, "Devcontainer not found.")
	err = p.DeleteDevcontainer(ctx, uuid.NewString())
	wantError(t, err, http.StatusNotFound, "Devcontainer not found.")

	old := dc.Container.ID
	recreate := func(what string) {
		t.Helper()
		res, err := p.RecreateDevcontainer(ctx, dc.ID.String())
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if res.Message != "Devcontainer recreation initiated" || !strings.Contains(res.Detail, strconv.Quote(dc.Name)) {
			t.Errorf("%s: 202 %+v", what, res)
		}
	}
	running := func(what, notOn string) codersdk.WorkspaceAgentDevcontainer {
		t.Helper()
		return s.waitDevcontainer(ctx, t, p, 30*time.Second, what, func(got *codersdk.WorkspaceAgentDevcontainer) string {
			if got == nil || got.Status != codersdk.WorkspaceAgentDevcontainerStatusRunning || got.Container == nil ||
				got.Container.ID == notOn || got.Dirty || got.Error != "" {
				return fmt.Sprintf("%+v", got)
			}
			return ""
		})
	}

	// Held: "starting" until the fake's `up` may go on.
	fk.control(t, "hold", "up", "")
	mark := len(fk.calls(t))
	recreate("recreate")
	s.waitDevcontainer(ctx, t, p, 5*time.Second, "starting", func(got *codersdk.WorkspaceAgentDevcontainer) string {
		if got == nil || got.Status != codersdk.WorkspaceAgentDevcontainerStatusStarting {
			return fmt.Sprintf("%+v", got)
		}
		return ""
	})
	_, err = p.RecreateDevcontainer(ctx, dc.ID.String())
	wantError(t, err, http.StatusConflict, "Unable to recreate transitioning devcontainer")
	err = p.DeleteDevcontainer(ctx, dc.ID.String())
	wantError(t, err, http.StatusConflict, "Unable to delete transitioning devcontainer")
	fk.clear(t, "hold", "up")
	now := running("running on a new container, not dirty", old)
	up := "devcontainer up --log-format json --workspace-folder " + s.project + " --config " + s.config + " --remove-existing-container"
	if !fk.called(t, mark, up) {
		t.Errorf("no %q in calls.log since the recreate: %q", up, fk.calls(t)[mark:])
	}
	if fk.exists(old) {
		t.Errorf("the old container %.12s still exists", old)
	}

	// A failing `up`: error, until a recreate that works.
	fk.control(t, "fail", "up", "fake devcontainer: told to fail")
	recreate("failing recreate")
	s.waitDevcontainer(ctx, t, p, 30*time.Second, "error after a failed up", func(got *codersdk.WorkspaceAgentDevcontainer) string {
		if got == nil || got.Status != codersdk.WorkspaceAgentDevcontainerStatusError || got.Error == "" {
			return fmt.Sprintf("%+v", got)
		}
		return ""
	})
	fk.clear(t, "fail", "up")
	recreate("recreate after the failure")
	now = running("running again", now.Container.ID)

	// Delete: docker stop, docker rm, 204, gone.
	mark = len(fk.calls(t))
	if err := p.DeleteDevcontainer(ctx, dc.ID.String()); err != nil {
		t.Fatalf("delete: %v", err)
	}
	for _, c := range []string{"docker stop " + now.Container.ID, "docker rm " + now.Container.ID} {
		if !fk.called(t, mark, c) {
			t.Errorf("no %q in calls.log since the delete: %q", c, fk.calls(t)[mark:])
		}
	}
	if fk.exists(now.Container.ID) {
		t.Errorf("the container %.12s still exists after delete", now.Container.ID)
	}
	res, err := p.ListContainers(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if dc := s.findDevcontainer(res); dc != nil {
		t.Errorf("devcontainer still listed after delete: %+v", dc)
	}
	// The container list is the agent's last scan: the removed container
	// goes with the next one (10 s).
	harness.Eventually(t, 20*time.Second, "the removed container unlisted", func() string {
		res, err := p.ListContainers(ctx, nil)
		if err != nil {
			return err.Error()
		}
		for _, c := range res.Containers {
			if c.ID == now.Container.ID {
				return fmt.Sprintf("container %.12s still listed", c.ID)
			}
		}
		return ""
	})
}

// wantError: err is codersdk's error for an answer with this status and
// message (the agent's own, passed through by the server).
func wantError(t *testing.T, err error, status int, message string) {
	t.Helper()
	var ce *codersdk.Error
	if !errors.As(err, &ce) {
		t.Errorf("got %v, want a %d %q", err, status, message)
		return
	}
	if ce.StatusCode() != status || ce.Message != message {
		t.Errorf("got %d %q (%s), want %d %q", ce.StatusCode(), ce.Message, ce.Detail, status, message)
	}
}

// term reads a PTY's raw output and writes its JSON input frames.
type term struct {
	c    net.Conn
	out  []byte
	seen int
}

func (tm *term) send(t *testing.T, req workspacesdk.ReconnectingPTYRequest) {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tm.c.Write(b); err != nil {
		t.Fatalf("write to the PTY: %v", err)
	}
}

func (tm *term) typ(t *testing.T, line string) {
	t.Helper()
	tm.send(t, workspacesdk.ReconnectingPTYRequest{Data: line + "\r"})
}

// expect reads until want shows after what earlier expects consumed.
func (tm *term) expect(t *testing.T, want string) {
	t.Helper()
	_ = tm.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	defer func() { _ = tm.c.SetReadDeadline(time.Time{}) }()
	buf := make([]byte, 4096)
	for {
		if i := bytes.Index(tm.out[tm.seen:], []byte(want)); i >= 0 {
			tm.seen += i + len(want)
			return
		}
		n, err := tm.c.Read(buf)
		tm.out = append(tm.out, buf[:n]...)
		if err != nil {
			t.Fatalf("waiting for %q: %v; output since the last match: %q", want, err, tm.out[tm.seen:])
		}
	}
}

// expectEOF: the server ends the stream (the PTY's process exited).
func (tm *term) expectEOF(t *testing.T) {
	t.Helper()
	_ = tm.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 4096)
	for {
		n, err := tm.c.Read(buf)
		tm.out = append(tm.out, buf[:n]...)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("want EOF, got %v; output: %q", err, tm.out[tm.seen:])
		}
	}
}

// pty: a command's output, a resize seen by `stty size`, the scrollback
// replayed to a second connection with the same id, the end on exit.
func (s *scenario) pty(ctx context.Context, t *testing.T, p path) {
	id := uuid.New()
	c, err := p.PTY(ctx, id, 40, 80, "sh", "")
	if err != nil {
		t.Fatalf("PTY: %v", err)
	}
	tm := &term{c: c}
	// The terminal echoes the typed line; only the shell prints "hi-42".
	tm.typ(t, "echo hi-$((6*7))")
	tm.expect(t, "hi-42")
	tm.typ(t, "stty size")
	tm.expect(t, "40 80")
	tm.send(t, workspacesdk.ReconnectingPTYRequest{Height: 50, Width: 100})
	tm.typ(t, "stty size")
	tm.expect(t, "50 100")
	_ = c.Close()

	c, err = p.PTY(ctx, id, 50, 100, "sh", "")
	if err != nil {
		t.Fatalf("PTY, reconnecting: %v", err)
	}
	defer c.Close()
	tm = &term{c: c}
	tm.expect(t, "hi-42") // the scrollback
	tm.expect(t, "50 100")
	tm.typ(t, "echo again-$((1+1))")
	tm.expect(t, "again-2")
	tm.typ(t, "exit")
	tm.expectEOF(t)
}

// containerPTY: a PTY in a container (the agent runs `docker exec`; the
// fake runs the command here with the container's name in its environment).
func (s *scenario) containerPTY(ctx context.Context, t *testing.T, p path) {
	mark := len(s.fk.calls(t))
	c, err := p.PTY(ctx, uuid.New(), 24, 80, "sh", s.web.ID)
	if err != nil {
		t.Fatalf("PTY: %v", err)
	}
	defer c.Close()
	tm := &term{c: c}
	tm.typ(t, "echo in-$FAKE_DOCKER_CONTAINER_NAME")
	tm.expect(t, "in-"+webName)
	tm.typ(t, "exit")
	tm.expectEOF(t)
	if !s.fk.called(t, mark, "docker exec --interactive --tty --user root") {
		t.Errorf("no `docker exec --interactive --tty` in calls.log: %q", s.fk.calls(t)[mark:])
	}
}

// signedTokenPTY: POST /api/v2/applications/reconnecting-pty-signed-token as
// codersdk does, then /pty with only that token (no session token).
func (s *scenario) signedTokenPTY(ctx context.Context, t *testing.T) {
	u := *s.e.URL
	u.Scheme = "ws"
	u.Path = fmt.Sprintf("/api/v2/workspaceagents/%s/pty", s.agentID)
	tok, err := s.e.UserClient().IssueReconnectingPTYSignedToken(ctx, codersdk.IssueReconnectingPTYSignedTokenRequest{
		URL:     u.String(),
		AgentID: s.agentID,
	})
	if err != nil {
		t.Fatalf("issue the signed token: %v", err)
	}
	if tok.SignedToken == "" {
		t.Fatal("empty signed token")
	}
	// The URL must be a ws(s) URL of this agent's /pty (as upstream checks).
	for _, bad := range []struct{ url, message string }{
		{strings.Replace(u.String(), "ws:", "http:", 1), "Invalid URL."},
		{strings.Replace(u.String(), s.agentID.String(), uuid.NewString(), 1), "Invalid URL path."},
	} {
		_, err := s.e.UserClient().IssueReconnectingPTYSignedToken(ctx, codersdk.IssueReconnectingPTYSignedTokenRequest{URL: bad.url, AgentID: s.agentID})
		wantError(t, err, http.StatusBadRequest, bad.message)
	}
	anon := workspacesdk.New(codersdk.New(s.e.URL))
	c, err := anon.AgentReconnectingPTY(ctx, workspacesdk.WorkspaceAgentReconnectingPTYOpts{
		AgentID: s.agentID, Reconnect: uuid.New(), Height: 24, Width: 80, Command: "sh", SignedToken: tok.SignedToken,
	})
	if err != nil {
		t.Fatalf("/pty with the signed token: %v", err)
	}
	defer c.Close()
	tm := &term{c: c}
	tm.typ(t, "echo signed-$((2*21))")
	tm.expect(t, "signed-42")
	tm.typ(t, "exit")
	tm.expectEOF(t)

	// A token altered in its last character is refused.
	last := "A"
	if strings.HasSuffix(tok.SignedToken, "A") {
		last = "B"
	}
	bad := tok.SignedToken[:len(tok.SignedToken)-1] + last
	if c, err := anon.AgentReconnectingPTY(ctx, workspacesdk.WorkspaceAgentReconnectingPTYOpts{
		AgentID: s.agentID, Reconnect: uuid.New(), Height: 24, Width: 80, Command: "sh", SignedToken: bad,
	}); err == nil {
		_ = c.Close()
		t.Errorf("/pty with an altered signed token: connected")
	} else {
		t.Logf("altered signed token: %v", err)
	}
}

// ptyRefusals: no credential is a 404 (terminals never redirect to a login,
// BEHAVIOUR.md §1.19); a reconnect id that is not a UUID is a 400.
func (s *scenario) ptyRefusals(ctx context.Context, t *testing.T) {
	anon := workspacesdk.New(codersdk.New(s.e.URL))
	_, err := anon.AgentReconnectingPTY(ctx, workspacesdk.WorkspaceAgentReconnectingPTYOpts{
		AgentID: s.agentID, Reconnect: uuid.New(), Height: 24, Width: 80, Command: "sh",
	})
	var ce *codersdk.Error
	if !errors.As(err, &ce) || ce.StatusCode() != http.StatusNotFound {
		t.Errorf("/pty without a credential: %v, want a 404", err)
	}

	u := *s.e.URL
	u.Path = fmt.Sprintf("/api/v2/workspaceagents/%s/pty", s.agentID)
	u.RawQuery = url.Values{"reconnect": {"not-a-uuid"}, "width": {"80"}, "height": {"24"}}.Encode()
	c, res, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{
		HTTPHeader: http.Header{codersdk.SessionTokenHeader: {s.e.UserToken}},
	})
	if err == nil {
		_ = c.CloseNow()
		t.Fatal("/pty?reconnect=not-a-uuid: connected")
	}
	if res == nil {
		t.Fatalf("/pty?reconnect=not-a-uuid: %v", err)
	}
	wantError(t, codersdk.ReadBodyAsError(res), http.StatusBadRequest, "Invalid query parameters.")
}
