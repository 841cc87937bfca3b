package reach_test

import (
	"context"
	"errors"
	"io"
	"net"

	"github.com/google/uuid"

	"cdr.dev/slog/v3"

	"github.com/coder/coder/v2/codersdk"
	"github.com/coder/coder/v2/codersdk/workspacesdk"
)

// path is one way of asking Coder's agent about its machine: through
// appliance's user API (what the dashboard and the CLI use; appliance's
// server reaches the agent over its own tailnet peer), or straight from Coder's
// client over WireGuard (workspacesdk.DialAgent, the agent's HTTP API on its
// tailnet port 4 and its reconnecting-PTY port 2). The second works today
// through appliance's coordinator and relay, so the scenario and the fakes are
// checked against Coder's agent itself; the first is what this tier is for.
type path interface {
	// Server reports whether answers come from appliance's server, which
	// adds its own filtering (listening ports, container labels).
	Server() bool
	ListeningPorts(ctx context.Context) (codersdk.WorkspaceAgentListeningPortsResponse, error)
	// ListContainers with a label filter is server-only; labels must be nil
	// on the other path.
	ListContainers(ctx context.Context, labels map[string]string) (codersdk.WorkspaceAgentListContainersResponse, error)
	WatchContainers(ctx context.Context) (<-chan codersdk.WorkspaceAgentListContainersResponse, io.Closer, error)
	DeleteDevcontainer(ctx context.Context, id string) error
	RecreateDevcontainer(ctx context.Context, id string) (codersdk.Response, error)
	// PTY opens (or reattaches to, same id) a reconnecting PTY: JSON
	// ReconnectingPTYRequest frames in, raw terminal output out.
	PTY(ctx context.Context, id uuid.UUID, height, width uint16, command, container string) (net.Conn, error)
}

// applianceServer: codersdk's own client methods on appliance's endpoints.
type applianceServer struct {
	client  *codersdk.Client
	agentID uuid.UUID
}

func (applianceServer) Server() bool { return true }

func (p applianceServer) ListeningPorts(ctx context.Context) (codersdk.WorkspaceAgentListeningPortsResponse, error) {
	return p.client.WorkspaceAgentListeningPorts(ctx, p.agentID)
}

func (p applianceServer) ListContainers(ctx context.Context, labels map[string]string) (codersdk.WorkspaceAgentListContainersResponse, error) {
	return p.client.WorkspaceAgentListContainers(ctx, p.agentID, labels)
}

func (p applianceServer) WatchContainers(ctx context.Context) (<-chan codersdk.WorkspaceAgentListContainersResponse, io.Closer, error) {
	return p.client.WatchWorkspaceAgentContainers(ctx, p.agentID)
}

func (p applianceServer) DeleteDevcontainer(ctx context.Context, id string) error {
	return p.client.WorkspaceAgentDeleteDevcontainer(ctx, p.agentID, id)
}

func (p applianceServer) RecreateDevcontainer(ctx context.Context, id string) (codersdk.Response, error) {
	return p.client.WorkspaceAgentRecreateDevcontainer(ctx, p.agentID, id)
}

func (p applianceServer) PTY(ctx context.Context, id uuid.UUID, height, width uint16, command, container string) (net.Conn, error) {
	return workspacesdk.New(p.client).AgentReconnectingPTY(ctx, workspacesdk.WorkspaceAgentReconnectingPTYOpts{
		AgentID:   p.agentID,
		Reconnect: id,
		Height:    height,
		Width:     width,
		Command:   command,
		Container: container,
	})
}

// coderClient: Coder's client straight to the agent over the tailnet.
type coderClient struct {
	conn   workspacesdk.AgentConn
	logger slog.Logger
}

func (coderClient) Server() bool { return false }

func (p coderClient) ListeningPorts(ctx context.Context) (codersdk.WorkspaceAgentListeningPortsResponse, error) {
	return p.conn.ListeningPorts(ctx)
}

func (p coderClient) ListContainers(ctx context.Context, labels map[string]string) (codersdk.WorkspaceAgentListContainersResponse, error) {
	if labels != nil {
		return codersdk.WorkspaceAgentListContainersResponse{}, errors.New("label filters are the server's: the agent's API has none")
	}
	return p.conn.ListContainers(ctx)
}

func (p coderClient) WatchContainers(ctx context.Context) (<-chan codersdk.WorkspaceAgentListContainersResponse, io.Closer, error) {
	return p.conn.WatchContainers(ctx, p.logger)
}

func (p coderClient) DeleteDevcontainer(ctx context.Context, id string) error {
	return p.conn.DeleteDevcontainer(ctx, id)
}

func (p coderClient) RecreateDevcontainer(ctx context.Context, id string) (codersdk.Response, error) {
	return p.conn.RecreateDevcontainer(ctx, id)
}

func (p coderClient) PTY(ctx context.Context, id uuid.UUID, height, width uint16, command, container string) (net.Conn, error) {
	var opts []workspacesdk.AgentReconnectingPTYInitOption
	if container != "" {
		opts = append(opts, workspacesdk.AgentReconnectingPTYInitWithContainer(container, ""))
	}
	return p.conn.ReconnectingPTY(ctx, id, height, width, command, opts...)
}
