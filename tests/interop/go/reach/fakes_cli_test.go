package reach_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/coder/v2/agent/agentcontainers"
	"github.com/coder/coder/v2/agent/agentexec"
	"github.com/coder/coder/v2/codersdk"
	"github.com/coder/coder/v2/pty"

	"appliance.invalid/interop/internal/harness"
)

// envExecer is agentexec's default with this process's environment set on
// each command, as the agent's own execer does (it sets the user's command
// environment): ReadConfig adds its variables to the command's Env, which
// would otherwise hold only those.
type envExecer struct{}

func (envExecer) CommandContext(ctx context.Context, cmd string, args ...string) *exec.Cmd {
	c := agentexec.DefaultExecer.CommandContext(ctx, cmd, args...)
	c.Env = os.Environ()
	return c
}

func (envExecer) PTYCommandContext(ctx context.Context, cmd string, args ...string) *pty.Cmd {
	c := agentexec.DefaultExecer.PTYCommandContext(ctx, cmd, args...)
	c.Env = os.Environ()
	return c
}

// TestFakesWithCodersCLIWrappers drives tests/interop/fakes with Coder's own
// wrappers of the docker and devcontainer CLIs (agentcontainers.NewDockerCLI,
// NewDevcontainerCLI, EnvInfo: the code Coder's agent runs), so the fakes'
// output is checked against Coder's parsers directly. No server and no
// networking: it also runs in a plain `go test ./reach`.
func TestFakesWithCodersCLIWrappers(t *testing.T) {
	fk := newFakes(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	docker := agentcontainers.NewDockerCLI(envExecer{})

	res, err := docker.List(ctx)
	if err != nil || len(res.Containers) != 0 || len(res.Warnings) != 0 {
		t.Fatalf("List with no containers: %+v, %v", res, err)
	}

	web := fk.run(t, "docker", "run", "-d", "--name", "fake-web", "--label", "app=web",
		"--label", `json={"a": "b\\c"}`, "-p", "127.0.0.1:18080:80/tcp", "-p", "8443:443",
		"-v", "/srv/a:/a:ro", "-v", "cache:/cache", "alpine:3.20", "httpd", "-f")
	stopped := fk.run(t, "docker", "create", "--name", "fake-created", "busybox")
	res, err = docker.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Containers) != 2 || len(res.Warnings) != 0 {
		t.Fatalf("List: %d containers, warnings %q; want 2 and none", len(res.Containers), res.Warnings)
	}
	byID := map[string]codersdk.WorkspaceAgentContainer{}
	for _, c := range res.Containers {
		byID[c.ID] = c
	}
	w := byID[web]
	if w.FriendlyName != "fake-web" || w.Image != "alpine:3.20" || !w.Running || w.Status != "running" ||
		w.Labels["app"] != "web" || w.Labels["json"] != `{"a": "b\\c"}` || time.Since(w.CreatedAt) > time.Minute {
		t.Errorf("web: %+v", w)
	}
	wantPorts := []codersdk.WorkspaceAgentContainerPort{
		{Port: 443, Network: "tcp", HostIP: "0.0.0.0", HostPort: 8443},
		{Port: 80, Network: "tcp", HostIP: "127.0.0.1", HostPort: 18080},
	}
	if !slices.Equal(w.Ports, wantPorts) {
		t.Errorf("web ports %+v, want %+v", w.Ports, wantPorts)
	}
	if len(w.Volumes) != 2 || w.Volumes["/srv/a"] != "/a" || w.Volumes["/var/lib/docker/volumes/cache/_data"] != "/cache" {
		t.Errorf("web volumes %+v", w.Volumes)
	}
	if c := byID[stopped]; c.Running || c.Status != "exited successfully" {
		t.Errorf("created container: running=%v status=%q", c.Running, c.Status)
	}

	// stderr of docker ps: a warning; a failing docker ps: an error.
	fk.control(t, "stderr", "ps", "WARNING: from the fake")
	if res, err := docker.List(ctx); err != nil || !slices.Contains(res.Warnings, "WARNING: from the fake") {
		t.Errorf("List with ps stderr: warnings %q, %v", res.Warnings, err)
	}
	fk.clear(t, "stderr", "ps")
	fk.control(t, "fail", "ps", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.")
	if _, err := docker.List(ctx); err == nil || !strings.Contains(err.Error(), "Cannot connect") {
		t.Errorf("List with a failing ps: %v", err)
	}
	fk.clear(t, "fail", "ps")

	// What sub-agent injection and delete run.
	if arch, err := docker.DetectArchitecture(ctx, web); err != nil || arch == runtime.GOARCH {
		t.Errorf("DetectArchitecture: %q, %v; want a foreign one", arch, err)
	}
	if out, err := docker.ExecAs(ctx, web, "root", "sh", "-c", "echo $FAKE_DOCKER_CONTAINER_NAME"); err != nil || string(out) != "fake-web" {
		t.Errorf("ExecAs: %q, %v", out, err)
	}
	if err := docker.Copy(ctx, web, "/etc/hostname", "/x"); err != nil {
		t.Errorf("Copy: %v", err)
	}
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	dei, err := agentcontainers.EnvInfo(ctx, envExecer{}, web, "")
	if err != nil {
		t.Fatalf("EnvInfo: %v", err)
	}
	if u, _ := dei.User(); u.Username != me.Username || u.HomeDir != me.HomeDir {
		t.Errorf("EnvInfo user %+v, want %s with home %s", u, me.Username, me.HomeDir)
	}
	if err := docker.Stop(ctx, web); err != nil {
		t.Fatal(err)
	}
	res, _ = docker.List(ctx)
	for _, c := range res.Containers {
		if c.ID == web && (c.Running || c.Status != "exited successfully") {
			t.Errorf("after Stop: %+v", c)
		}
	}
	if err := docker.Remove(ctx, web); err != nil {
		t.Fatal(err)
	}
	if err := docker.Remove(ctx, web); err == nil || !strings.Contains(err.Error(), "No such container") {
		t.Errorf("Remove twice: %v", err)
	}

	// The devcontainer CLI.
	dc := agentcontainers.NewDevcontainerCLI(harness.TestLogger(t), envExecer{})
	folder := filepath.Join(t.TempDir(), "my-project")
	config := filepath.Join(folder, ".devcontainer", "devcontainer.json")
	if err := os.MkdirAll(filepath.Dir(config), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(config, []byte(`{"image": "debian:bookworm", "customizations": {"coder": {"name": "custom-name", "apps": [{"slug": "app1"}]}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs, errs bytes.Buffer
	id, err := dc.Up(ctx, folder, config, agentcontainers.WithUpOutput(&logs, &errs))
	if err != nil || id == "" {
		t.Fatalf("Up: %q, %v", id, err)
	}
	if !strings.Contains(logs.String(), "@devcontainers/cli") || !strings.Contains(logs.String(), `"outcome":"success"`) {
		t.Errorf("Up's user-facing log: %q", logs.String())
	}
	res, _ = docker.List(ctx)
	var created *codersdk.WorkspaceAgentContainer
	for i := range res.Containers {
		if res.Containers[i].ID == id {
			created = &res.Containers[i]
		}
	}
	if created == nil || !created.Running || created.Image != "debian:bookworm" ||
		created.Labels[agentcontainers.DevcontainerLocalFolderLabel] != folder ||
		created.Labels[agentcontainers.DevcontainerConfigFileLabel] != config ||
		created.Volumes[folder] != "/workspaces/my-project" {
		t.Errorf("the devcontainer's container: %+v", created)
	}
	if dei, err := agentcontainers.EnvInfo(ctx, envExecer{}, id, ""); err != nil {
		t.Errorf("EnvInfo on the devcontainer (its devcontainer.metadata label): %v", err)
	} else if u, _ := dei.User(); u.Username != me.Username {
		t.Errorf("EnvInfo on the devcontainer: %+v", u)
	}
	if again, err := dc.Up(ctx, folder, config); err != nil || again != id {
		t.Errorf("Up again: %q, %v; want the same container %q", again, err, id)
	}
	fresh, err := dc.Up(ctx, folder, config, agentcontainers.WithRemoveExistingContainer())
	if err != nil || fresh == id || fresh == "" || fk.exists(id) || !fk.exists(fresh) {
		t.Errorf("Up --remove-existing-container: %q, %v; old one still there: %v", fresh, err, fk.exists(id))
	}
	fk.control(t, "fail", "up", "fake failure")
	if got, err := dc.Up(ctx, folder, config); err == nil || got != "" {
		t.Errorf("a failing Up: %q, %v", got, err)
	}
	fk.clear(t, "fail", "up")
	if _, err := dc.Up(ctx, filepath.Join(folder, "nowhere"), ""); err == nil {
		t.Errorf("Up without a config: no error")
	}

	conf, err := dc.ReadConfig(ctx, folder, config, []string{"CODER_WORKSPACE_AGENT_NAME=x"})
	if err != nil {
		t.Fatalf("ReadConfig: %v", err)
	}
	if conf.Workspace.WorkspaceFolder != "/workspaces/my-project" || conf.Configuration.Customizations.Coder.Name != "custom-name" ||
		len(conf.Configuration.Customizations.Coder.Apps) != 1 || conf.Configuration.Customizations.Coder.Ignore {
		t.Errorf("ReadConfig: %+v", conf)
	}
	if _, err := dc.ReadConfig(ctx, filepath.Join(folder, "nowhere"), "", nil); err == nil {
		t.Errorf("ReadConfig without a config: no error")
	}

	var out bytes.Buffer
	if err := dc.Exec(ctx, folder, config, "sh", []string{"-c", "echo $A-$FAKE_DOCKER_CONTAINER_ID"},
		agentcontainers.WithExecContainerID(fresh), agentcontainers.WithRemoteEnv("A=1"), agentcontainers.WithExecOutput(&out, &out)); err != nil {
		t.Fatalf("Exec: %v: %s", err, out.String())
	}
	if got := strings.TrimSpace(out.String()); got != "1-"+fresh {
		t.Errorf("Exec output %q, want %q", got, "1-"+fresh)
	}

	calls := fk.calls(t)
	for _, want := range []string{
		"docker ps --all --quiet --no-trunc",
		"docker inspect --format '{{.Config.Image}}' " + web,
		"docker stop " + web,
		"docker rm " + web,
		"devcontainer up --log-format json --workspace-folder " + folder + " --config " + config + " --remove-existing-container",
		"devcontainer read-configuration --include-merged-configuration --workspace-folder " + folder + " --config " + config,
	} {
		if !slices.Contains(calls, want) {
			t.Errorf("calls.log lacks %q", want)
		}
	}
}
