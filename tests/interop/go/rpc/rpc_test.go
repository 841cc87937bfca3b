// Tier 1: Coder's generated DRPC clients (agent/proto, tailnet/proto) against
// appliance's /me/rpc, dialled exactly as codersdk/agentsdk's connectRPCVersion
// does. Every answer is checked field by field.
package rpc_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"github.com/hashicorp/yamux"
	"golang.org/x/mod/semver"
	protobuf "google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"storj.io/drpc"
	"storj.io/drpc/drpcerr"

	agentproto "github.com/coder/coder/v2/agent/proto"
	"github.com/coder/coder/v2/codersdk"
	"github.com/coder/coder/v2/codersdk/drpcsdk"
	tailnetproto "github.com/coder/coder/v2/tailnet/proto"

	"appliance.invalid/interop/internal/harness"
)

// What tests/interop/run.sh's manifest declares for the agent "rpc".
const (
	rpcAgentName  = "rpc"
	rpcDirectory  = "/srv/interop"
	rpcEnvKey     = "INTEROP_ENV"
	rpcEnvValue   = "from-the-manifest"
	rpcAppSlug    = "web"
	rpcAppURL     = "http://127.0.0.1:8080/"
	rpcScriptText = "echo rpc-script"
)

// dial is agentsdk's connectRPCVersion: WebSocket with the agent token header,
// a binary NetConn, a yamux client with DefaultConfig, drpcsdk.MultiplexedConn.
func dial(ctx context.Context, e *harness.Env, token, version, role string) (drpc.Conn, *http.Response, error) {
	u := e.URL.JoinPath("/api/v2/workspaceagents/me/rpc")
	q := u.Query()
	q.Add("version", version)
	if role != "" {
		q.Add("role", role)
	}
	u.RawQuery = q.Encode()
	conn, res, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{
		HTTPHeader: http.Header{codersdk.SessionTokenHeader: []string{token}},
	})
	if err != nil {
		return nil, res, err
	}
	conn.SetReadLimit(1 << 22)
	netConn := websocket.NetConn(context.Background(), conn, websocket.MessageBinary)
	cfg := yamux.DefaultConfig()
	// yamux logs to stderr, not t.Log: its reader goroutine may log after the test returned.
	cfg.LogOutput = os.Stderr
	session, err := yamux.Client(netConn, cfg)
	if err != nil {
		return nil, res, fmt.Errorf("yamux client: %w", err)
	}
	return drpcsdk.MultiplexedConn(session), res, nil
}

// protoEncoding is the protobuf drpc.Encoding the generated clients use.
type protoEncoding struct{}

func (protoEncoding) Marshal(m drpc.Message) ([]byte, error) {
	return protobuf.Marshal(m.(protobuf.Message))
}

func (protoEncoding) Unmarshal(b []byte, m drpc.Message) error {
	return protobuf.Unmarshal(b, m.(protobuf.Message))
}

// tailnetAddr is tailnet.TailscaleServicePrefix.AddrFromUUID: fd7a:115c:a1e0 and
// the last 10 bytes of the agent id, as a /128.
func tailnetAddr(id uuid.UUID) string {
	var b [16]byte
	copy(b[:], id[:])
	b[0], b[1], b[2], b[3], b[4], b[5] = 0xfd, 0x7a, 0x11, 0x5c, 0xa1, 0xe0
	parts := make([]string, 8)
	for i := range 8 {
		parts[i] = fmt.Sprintf("%x", uint16(b[2*i])<<8|uint16(b[2*i+1]))
	}
	return strings.Join(parts, ":") + "/128"
}

func mustUUID(t *testing.T, what string, b []byte) uuid.UUID {
	t.Helper()
	if len(b) != 16 {
		t.Fatalf("%s: %d bytes, want 16", what, len(b))
	}
	u, _ := uuid.FromBytes(b)
	return u
}

func TestBuildInfo(t *testing.T) {
	e := harness.Load(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bi, err := e.UserClient().BuildInfo(ctx)
	if err != nil {
		t.Fatalf("BuildInfo: %v", err)
	}
	v := bi.Version
	if !strings.HasPrefix(v, "v") {
		v = "v" + v
	}
	if !semver.IsValid(v) {
		t.Fatalf("BuildInfo.Version %q is not semver", bi.Version)
	}
	if semver.Compare(v, "v2.9.0") < 0 {
		t.Fatalf("BuildInfo.Version %q < 2.9 (Coder's clients gate features on it)", bi.Version)
	}
	t.Logf("buildinfo: version=%s external_url=%s", bi.Version, bi.ExternalURL)
}

func TestDialRefusals(t *testing.T) {
	e := harness.Load(t)
	_, token := e.Agent(t, rpcAgentName)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t.Run("bad token 401", func(t *testing.T) {
		_, res, err := dial(ctx, e, "not-a-token", "2.10", "agent")
		if err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("want 401, got res=%v err=%v", status(res), err)
		}
	})
	t.Run("version 3.0 400", func(t *testing.T) {
		_, res, err := dial(ctx, e, token, "3.0", "agent")
		if err == nil || res == nil || res.StatusCode != http.StatusBadRequest {
			t.Fatalf("want 400, got res=%v err=%v", status(res), err)
		}
	})
}

func status(res *http.Response) string {
	if res == nil {
		return "<no response>"
	}
	return res.Status
}

func TestAgentRPC(t *testing.T) {
	e := harness.Load(t)
	agentID, token := e.Agent(t, rpcAgentName)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	conn, res, err := dial(ctx, e, token, "2.10", "agent")
	if err != nil {
		t.Fatalf("dial /me/rpc?version=2.10&role=agent: %v (HTTP %s)", err, status(res))
	}
	defer conn.Close()
	ac := agentproto.NewDRPCAgentClient(conn)
	tc := tailnetproto.NewDRPCTailnetClient(conn)

	want, err := e.GetAgent(ctx, agentID)
	if err != nil {
		t.Fatalf("GET agent: %v", err)
	}
	if len(want.Apps) != 1 || len(want.Scripts) != 1 {
		t.Fatalf("GET agent: want 1 app and 1 script from the manifest, got %d apps %d scripts", len(want.Apps), len(want.Scripts))
	}

	var manifest *agentproto.Manifest
	t.Run("GetManifest", func(t *testing.T) {
		m, err := ac.GetManifest(ctx, &agentproto.GetManifestRequest{})
		if err != nil {
			t.Fatalf("GetManifest: %v", err)
		}
		manifest = m
		if got := mustUUID(t, "agent_id", m.AgentId); got != agentID {
			t.Errorf("agent_id = %s, want %s", got, agentID)
		}
		if got := mustUUID(t, "workspace_id", m.WorkspaceId); got != e.Applied.Workspace.ID {
			t.Errorf("workspace_id = %s, want %s", got, e.Applied.Workspace.ID)
		}
		if m.AgentName != rpcAgentName {
			t.Errorf("agent_name = %q, want %q", m.AgentName, rpcAgentName)
		}
		if m.WorkspaceName != e.Applied.Workspace.Name {
			t.Errorf("workspace_name = %q, want %q", m.WorkspaceName, e.Applied.Workspace.Name)
		}
		if m.OwnerUsername != e.Applied.Workspace.Owner {
			t.Errorf("owner_username = %q, want %q", m.OwnerUsername, e.Applied.Workspace.Owner)
		}
		if m.Directory != rpcDirectory {
			t.Errorf("directory = %q, want %q", m.Directory, rpcDirectory)
		}
		if m.EnvironmentVariables[rpcEnvKey] != rpcEnvValue {
			t.Errorf("environment_variables[%s] = %q, want %q (all: %v)", rpcEnvKey, m.EnvironmentVariables[rpcEnvKey], rpcEnvValue, m.EnvironmentVariables)
		}
		if m.ParentId != nil {
			t.Errorf("parent_id set (%x) on a top-level agent", m.ParentId)
		}
		if len(m.Apps) != 1 {
			t.Fatalf("apps: %d, want 1", len(m.Apps))
		}
		app := m.Apps[0]
		if got := mustUUID(t, "apps[0].id", app.Id); got != want.Apps[0].ID {
			t.Errorf("apps[0].id = %s, GET agent says %s", got, want.Apps[0].ID)
		}
		if app.Slug != rpcAppSlug || app.Url != rpcAppURL {
			t.Errorf("apps[0] slug/url = %q %q, want %q %q", app.Slug, app.Url, rpcAppSlug, rpcAppURL)
		}
		if app.Healthcheck == nil || app.Healthcheck.Url == "" || app.Healthcheck.Interval.AsDuration() <= 0 || app.Healthcheck.Threshold <= 0 {
			t.Errorf("apps[0].healthcheck = %v, want url, interval > 0, threshold > 0", app.Healthcheck)
		}
		if len(m.Scripts) != 1 {
			t.Fatalf("scripts: %d, want 1", len(m.Scripts))
		}
		s := m.Scripts[0]
		if got := mustUUID(t, "scripts[0].id", s.Id); got != want.Scripts[0].ID {
			t.Errorf("scripts[0].id = %s, GET agent says %s", got, want.Scripts[0].ID)
		}
		if got := mustUUID(t, "scripts[0].log_source_id", s.LogSourceId); got != want.Scripts[0].LogSourceID {
			t.Errorf("scripts[0].log_source_id = %s, GET agent says %s", got, want.Scripts[0].LogSourceID)
		}
		if s.Script != rpcScriptText || !s.RunOnStart {
			t.Errorf("scripts[0] script=%q run_on_start=%v, want %q true", s.Script, s.RunOnStart, rpcScriptText)
		}
		if m.DerpMap == nil || len(m.DerpMap.Regions) == 0 {
			t.Errorf("derp_map: no regions (%v)", m.DerpMap)
		} else if _, ok := m.DerpMap.Regions[999]; !ok {
			t.Errorf("derp_map: no embedded region 999 (regions %v)", keys(m.DerpMap.Regions))
		}
		// tailnet.DERPMapFromProto (which the agent runs on every manifest)
		// dereferences home_params: coderd always sends it, empty or not.
		if m.DerpMap != nil && m.DerpMap.HomeParams == nil {
			t.Errorf("derp_map.home_params (field 1) absent: Coder's agent panics in tailnet.DERPMapFromProto")
		}
	})
	if manifest == nil {
		t.Fatal("no manifest: the rest needs its ids")
	}
	appID := manifest.Apps[0].Id
	scriptID := manifest.Scripts[0].Id
	logSourceID := manifest.Scripts[0].LogSourceId

	t.Run("UpdateStartup", func(t *testing.T) {
		req := &agentproto.UpdateStartupRequest{Startup: &agentproto.Startup{
			Version:           "v2.35.1",
			ExpandedDirectory: "/srv/interop",
			Subsystems:        []agentproto.Startup_Subsystem{agentproto.Startup_ENVBOX},
		}}
		got, err := ac.UpdateStartup(ctx, req)
		if err != nil {
			t.Fatalf("UpdateStartup(v2.35.1): %v", err)
		}
		if got.Version != "v2.35.1" || got.ExpandedDirectory != "/srv/interop" || !slices.Equal(got.Subsystems, req.Startup.Subsystems) {
			t.Errorf("UpdateStartup echo = %v, want %v", got, req.Startup)
		}
		a, err := e.GetAgent(ctx, agentID)
		if err != nil {
			t.Fatal(err)
		}
		if a.Version != "v2.35.1" || a.APIVersion != "2.10" || a.ExpandedDirectory != "/srv/interop" {
			t.Errorf("GET agent: version=%q api_version=%q expanded_directory=%q, want v2.35.1 2.10 /srv/interop", a.Version, a.APIVersion, a.ExpandedDirectory)
		}
		if !slices.Equal(a.Subsystems, []codersdk.AgentSubsystem{codersdk.AgentSubsystemEnvbox}) {
			t.Errorf("GET agent: subsystems=%v, want [envbox]", a.Subsystems)
		}
		_, err = ac.UpdateStartup(ctx, &agentproto.UpdateStartupRequest{Startup: &agentproto.Startup{Version: "notsemver"}})
		if err == nil {
			t.Errorf("UpdateStartup(notsemver): accepted, want an error")
		} else {
			t.Logf("UpdateStartup(notsemver) refused: %v (code %d)", err, drpcerr.Code(err))
		}
	})

	t.Run("UpdateLifecycle", func(t *testing.T) {
		for _, st := range []agentproto.Lifecycle_State{agentproto.Lifecycle_STARTING, agentproto.Lifecycle_READY} {
			at := timestamppb.New(time.Now().Truncate(time.Microsecond))
			got, err := ac.UpdateLifecycle(ctx, &agentproto.UpdateLifecycleRequest{Lifecycle: &agentproto.Lifecycle{State: st, ChangedAt: at}})
			if err != nil {
				t.Fatalf("UpdateLifecycle(%s): %v", st, err)
			}
			if got.State != st || got.ChangedAt == nil || !got.ChangedAt.AsTime().Equal(at.AsTime()) {
				t.Errorf("UpdateLifecycle(%s) echo = %v, want state %s changed_at %s", st, got, st, at.AsTime())
			}
		}
		a, err := e.GetAgent(ctx, agentID)
		if err != nil {
			t.Fatal(err)
		}
		if a.LifecycleState != codersdk.WorkspaceAgentLifecycleReady || a.StartedAt == nil || a.ReadyAt == nil {
			t.Errorf("GET agent: lifecycle_state=%q started_at=%v ready_at=%v, want ready with both times", a.LifecycleState, a.StartedAt, a.ReadyAt)
		}
		if a.Status != codersdk.WorkspaceAgentConnected {
			t.Errorf("GET agent: status=%q while /me/rpc is open, want connected", a.Status)
		}
	})

	t.Run("BatchCreateLogs", func(t *testing.T) {
		line := "hello-from-rpc-" + uuid.NewString()
		got, err := ac.BatchCreateLogs(ctx, &agentproto.BatchCreateLogsRequest{
			LogSourceId: logSourceID,
			Logs: []*agentproto.Log{
				{CreatedAt: timestamppb.Now(), Output: line, Level: agentproto.Log_INFO},
				{CreatedAt: timestamppb.Now(), Output: line + "-warn", Level: agentproto.Log_WARN},
			},
		})
		if err != nil {
			t.Fatalf("BatchCreateLogs: %v", err)
		}
		if got.LogLimitExceeded {
			t.Errorf("log_limit_exceeded = true after two lines")
		}
		logs, err := e.GetLogs(ctx, agentID)
		if err != nil {
			t.Fatal(err)
		}
		src := mustUUID(t, "log source", logSourceID)
		var found, foundWarn bool
		for _, l := range logs {
			if l.Output == line && l.SourceID == src && l.Level == codersdk.LogLevelInfo {
				found = true
			}
			if l.Output == line+"-warn" && l.SourceID == src && l.Level == codersdk.LogLevelWarn {
				foundWarn = true
			}
		}
		if !found || !foundWarn {
			t.Errorf("GET logs: line %q (info, source %s) found=%v, warn line found=%v; logs: %+v", line, src, found, foundWarn, logs)
		}
	})

	t.Run("BatchUpdateAppHealths", func(t *testing.T) {
		_, err := ac.BatchUpdateAppHealths(ctx, &agentproto.BatchUpdateAppHealthRequest{Updates: []*agentproto.BatchUpdateAppHealthRequest_HealthUpdate{
			{Id: appID, Health: agentproto.AppHealth_HEALTHY},
		}})
		if err != nil {
			t.Fatalf("BatchUpdateAppHealths: %v", err)
		}
		a, err := e.GetAgent(ctx, agentID)
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Apps) != 1 || a.Apps[0].Health != codersdk.WorkspaceAppHealthHealthy {
			t.Errorf("GET agent: apps = %+v, want the app healthy", a.Apps)
		}
	})

	t.Run("UpdateStats", func(t *testing.T) {
		got, err := ac.UpdateStats(ctx, &agentproto.UpdateStatsRequest{})
		if err != nil {
			t.Fatalf("UpdateStats(first, no stats): %v", err)
		}
		if got.ReportInterval == nil || got.ReportInterval.AsDuration() <= 0 {
			t.Errorf("report_interval = %v, want > 0", got.ReportInterval)
		}
		_, err = ac.UpdateStats(ctx, &agentproto.UpdateStatsRequest{Stats: &agentproto.Stats{
			ConnectionsByProto: map[string]int64{"ssh": 1}, ConnectionCount: 1, RxBytes: 10, TxBytes: 20,
			SessionCountSsh: 1,
		}})
		if err != nil {
			t.Fatalf("UpdateStats(with stats): %v", err)
		}
	})

	t.Run("GetAnnouncementBanners", func(t *testing.T) {
		got, err := ac.GetAnnouncementBanners(ctx, &agentproto.GetAnnouncementBannersRequest{})
		if err != nil {
			t.Fatalf("GetAnnouncementBanners: %v", err)
		}
		t.Logf("%d banners", len(got.AnnouncementBanners))
	})

	t.Run("GetServiceBanner", func(t *testing.T) {
		if _, err := ac.GetServiceBanner(ctx, &agentproto.GetServiceBannerRequest{}); err != nil {
			t.Fatalf("GetServiceBanner: %v", err)
		}
	})

	t.Run("GetResourcesMonitoringConfiguration", func(t *testing.T) {
		got, err := ac.GetResourcesMonitoringConfiguration(ctx, &agentproto.GetResourcesMonitoringConfigurationRequest{})
		if err != nil {
			t.Fatalf("GetResourcesMonitoringConfiguration: %v", err)
		}
		if got.Config == nil || got.Config.CollectionIntervalSeconds <= 0 || got.Config.NumDatapoints <= 0 {
			t.Errorf("config = %v, want collection_interval_seconds > 0 and num_datapoints > 0", got.Config)
		}
		_, err = ac.PushResourcesMonitoringUsage(ctx, &agentproto.PushResourcesMonitoringUsageRequest{Datapoints: []*agentproto.PushResourcesMonitoringUsageRequest_Datapoint{
			{CollectedAt: timestamppb.Now(), Memory: &agentproto.PushResourcesMonitoringUsageRequest_Datapoint_MemoryUsage{Used: 1, Total: 2}},
		}})
		if err != nil {
			t.Errorf("PushResourcesMonitoringUsage: %v", err)
		}
	})

	t.Run("ScriptCompleted", func(t *testing.T) {
		now := time.Now()
		_, err := ac.ScriptCompleted(ctx, &agentproto.WorkspaceAgentScriptCompletedRequest{Timing: &agentproto.Timing{
			ScriptId: scriptID, Start: timestamppb.New(now.Add(-time.Second)), End: timestamppb.New(now),
			ExitCode: 0, Stage: agentproto.Timing_START, Status: agentproto.Timing_OK,
		}})
		if err != nil {
			t.Fatalf("ScriptCompleted: %v", err)
		}
	})

	t.Run("UpdateAppStatus", func(t *testing.T) {
		_, err := ac.UpdateAppStatus(ctx, &agentproto.UpdateAppStatusRequest{
			Slug: rpcAppSlug, State: agentproto.UpdateAppStatusRequest_WORKING, Message: "interop working", Uri: "https://example.invalid/x",
		})
		if err != nil {
			t.Fatalf("UpdateAppStatus: %v", err)
		}
		_, err = ac.UpdateAppStatus(ctx, &agentproto.UpdateAppStatusRequest{Slug: "no-such-app", State: agentproto.UpdateAppStatusRequest_WORKING, Message: "x"})
		if err == nil {
			t.Errorf("UpdateAppStatus(unknown slug): accepted, want an error")
		}
	})

	t.Run("ReportConnection", func(t *testing.T) {
		id := uuid.New()
		for _, act := range []agentproto.Connection_Action{agentproto.Connection_CONNECT, agentproto.Connection_DISCONNECT} {
			_, err := ac.ReportConnection(ctx, &agentproto.ReportConnectionRequest{Connection: &agentproto.Connection{
				Id: id[:], Action: act, Type: agentproto.Connection_SSH, Timestamp: timestamppb.Now(), Ip: "127.0.0.1", StatusCode: 0,
			}})
			if err != nil {
				t.Fatalf("ReportConnection(%s): %v", act, err)
			}
		}
	})

	t.Run("SubAgents", func(t *testing.T) {
		list, err := ac.ListSubAgents(ctx, &agentproto.ListSubAgentsRequest{})
		if err != nil {
			t.Fatalf("ListSubAgents: %v", err)
		}
		if len(list.Agents) != 0 {
			t.Errorf("ListSubAgents before any create: %d agents", len(list.Agents))
		}
		pre := uuid.New()
		created, err := ac.CreateSubAgent(ctx, &agentproto.CreateSubAgentRequest{
			Name: "devcontainer", Directory: "/workspaces/x", Architecture: "amd64", OperatingSystem: "linux", Id: pre[:],
		})
		if err != nil {
			t.Fatalf("CreateSubAgent: %v", err)
		}
		if created.Agent == nil || created.Agent.Name != "devcontainer" {
			t.Fatalf("CreateSubAgent answer = %v, want name devcontainer", created.Agent)
		}
		// coderd sends the token as the uuid's 16 bytes; Coder's agent reads it
		// with uuid.FromBytes (agent/agentcontainers/subagent.go).
		if len(created.Agent.AuthToken) != 16 {
			t.Errorf("CreateSubAgent auth_token = %q (%d bytes), want the token uuid's 16 bytes (agentcontainers: uuid.FromBytes)", created.Agent.AuthToken, len(created.Agent.AuthToken))
		}
		if got := mustUUID(t, "sub-agent id", created.Agent.Id); got != pre {
			t.Errorf("CreateSubAgent id = %s, want the pre-chosen %s", got, pre)
		}
		list, err = ac.ListSubAgents(ctx, &agentproto.ListSubAgentsRequest{})
		if err != nil {
			t.Fatalf("ListSubAgents: %v", err)
		}
		if len(list.Agents) != 1 || mustUUID(t, "listed id", list.Agents[0].Id) != pre {
			t.Errorf("ListSubAgents after create = %v, want the one sub-agent", list.Agents)
		}
		sub, err := e.GetAgent(ctx, pre)
		if err != nil {
			t.Errorf("GET sub-agent: %v", err)
		} else if !sub.ParentID.Valid || sub.ParentID.UUID != agentID {
			t.Errorf("GET sub-agent: parent_id = %v, want %s", sub.ParentID, agentID)
		}
		if _, err := ac.DeleteSubAgent(ctx, &agentproto.DeleteSubAgentRequest{Id: pre[:]}); err != nil {
			t.Fatalf("DeleteSubAgent: %v", err)
		}
		list, err = ac.ListSubAgents(ctx, &agentproto.ListSubAgentsRequest{})
		if err != nil {
			t.Fatalf("ListSubAgents: %v", err)
		}
		if len(list.Agents) != 0 {
			t.Errorf("ListSubAgents after delete = %v, want none", list.Agents)
		}
	})

	t.Run("PushContextState is Unimplemented (12)", func(t *testing.T) {
		_, err := ac.PushContextState(ctx, &agentproto.PushContextStateRequest{Version: 1, Initial: true})
		if err == nil {
			t.Fatalf("PushContextState: accepted, want drpc error code 12")
		}
		if drpcerr.Code(err) != 12 {
			t.Errorf("PushContextState: error %q has code %d, want 12", err, drpcerr.Code(err))
		}
	})

	t.Run("unknown method", func(t *testing.T) {
		err := conn.Invoke(ctx, "/coder.agent.v2.Agent/NoSuchMethod", protoEncoding{}, &agentproto.GetManifestRequest{}, &agentproto.Manifest{})
		if err == nil {
			t.Fatalf("unknown method: answered, want an error")
		}
		if drpcerr.Code(err) != 12 {
			t.Errorf("unknown method: error %q has code %d, want 12", err, drpcerr.Code(err))
		}
		if _, err := ac.GetManifest(ctx, &agentproto.GetManifestRequest{}); err != nil {
			t.Errorf("GetManifest after the unknown method: %v (the connection should stay usable)", err)
		}
	})

	t.Run("StreamDERPMaps", func(t *testing.T) {
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		defer scancel()
		s, err := tc.StreamDERPMaps(sctx, &tailnetproto.StreamDERPMapsRequest{})
		if err != nil {
			t.Fatalf("StreamDERPMaps: %v", err)
		}
		m, err := s.Recv()
		if err != nil {
			t.Fatalf("StreamDERPMaps first message: %v", err)
		}
		if m.HomeParams == nil {
			t.Errorf("StreamDERPMaps: home_params (field 1) absent: Coder's agent panics in tailnet.DERPMapFromProto")
		}
		r, ok := m.Regions[999]
		if !ok {
			t.Fatalf("StreamDERPMaps: no region 999 in %v", keys(m.Regions))
		}
		if !r.EmbeddedRelay || r.RegionCode != "coder" || len(r.Nodes) == 0 {
			t.Errorf("region 999 = %v, want embedded_relay, code coder, nodes", r)
		}
		_ = s.Close()
	})

	t.Run("Coordinate", func(t *testing.T) {
		sctx, scancel := context.WithCancel(ctx)
		defer scancel()
		s, err := tc.Coordinate(sctx)
		if err != nil {
			t.Fatalf("Coordinate: %v", err)
		}
		addr := tailnetAddr(agentID)
		key := make([]byte, 32)
		key[0] = 1
		node := &tailnetproto.Node{
			Id: 42, AsOf: timestamppb.Now(), Key: key,
			Disco:         "discokey:" + strings.Repeat("ab", 32),
			PreferredDerp: 999, DerpLatency: map[string]float64{"999-v4": 0.001},
			Addresses: []string{addr}, AllowedIps: []string{addr},
		}
		if err := s.Send(&tailnetproto.CoordinateRequest{UpdateSelf: &tailnetproto.CoordinateRequest_UpdateSelf{Node: node}}); err != nil {
			t.Fatalf("Coordinate send UpdateSelf(%s): %v", addr, err)
		}
		recvd := make(chan error, 1)
		go func() {
			for {
				resp, err := s.Recv()
				if err != nil {
					recvd <- err
					return
				}
				if resp.Error != "" {
					recvd <- fmt.Errorf("coordinator error: %s", resp.Error)
					return
				}
				t.Logf("Coordinate response: %v", resp)
			}
		}()
		select {
		case err := <-recvd:
			t.Fatalf("Coordinate stream ended after a valid UpdateSelf: %v", err)
		case <-time.After(2 * time.Second):
		}
		// The stream is still open: a graceful disconnect ends it.
		if err := s.Send(&tailnetproto.CoordinateRequest{Disconnect: &tailnetproto.CoordinateRequest_Disconnect{}}); err != nil {
			t.Errorf("Coordinate send Disconnect: %v", err)
		}
		_ = s.CloseSend()
	})

	t.Run("RefreshResumeToken", func(t *testing.T) {
		got, err := tc.RefreshResumeToken(ctx, &tailnetproto.RefreshResumeTokenRequest{})
		if err != nil {
			t.Fatalf("RefreshResumeToken: %v", err)
		}
		if got.Token == "" || got.RefreshIn == nil || got.RefreshIn.AsDuration() <= 0 || got.ExpiresAt == nil || !got.ExpiresAt.AsTime().After(time.Now()) {
			t.Errorf("RefreshResumeToken = token %d chars, refresh_in %v, expires_at %v; want all set and in the future", len(got.Token), got.RefreshIn, got.ExpiresAt)
		}
	})

	t.Run("PostTelemetry", func(t *testing.T) {
		id := uuid.New()
		_, err := tc.PostTelemetry(ctx, &tailnetproto.TelemetryRequest{Events: []*tailnetproto.TelemetryEvent{{
			Id: id[:], Time: timestamppb.Now(), Application: "interop", Status: tailnetproto.TelemetryEvent_CONNECTED,
			ConnectionAge: durationpb.New(time.Second),
		}}})
		if err != nil {
			t.Fatalf("PostTelemetry: %v", err)
		}
	})

	t.Run("still usable", func(t *testing.T) {
		if _, err := ac.GetManifest(ctx, &agentproto.GetManifestRequest{}); err != nil {
			t.Fatalf("GetManifest at the end: %v", err)
		}
	})
}

func keys[K comparable, V any](m map[K]V) []K {
	out := make([]K, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
