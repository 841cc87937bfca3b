// Tier 3: Coder's own client reaches Coder's real agent through appliance.
// The agent (agent.New, what `coder agent` runs) connects to /me/rpc and
// coordinates over its Tailnet service; the client dials it exactly as
// `coder ssh` does (workspacesdk.DialAgent: GET …/connection, then the
// coordinator on …/coordinate, the DERP map stream, and WireGuard through
// appliance's DERP relay on /derp). Direct paths are blocked, so every packet
// between them crosses appliance's relay. Over that tunnel: a tailnet ping,
// an SSH session running a command on the agent, the agent's listening ports
// and a TCP port forward, and a reconnecting PTY (the web terminal's path).
package dial_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/coder/coder/v2/codersdk/workspacesdk"

	"appliance.invalid/interop/internal/harness"
)

// What tests/interop/run.sh's manifest declares.
const dialAgentName = "dial"

func TestDialAgent(t *testing.T) {
	e := harness.Load(t)
	// Coder's agent connects; its magicsock picks appliance's relay as its
	// home (netcheck against /derp/latency-check) and its node reaches the
	// coordinator.
	agentID, _ := harness.StartAgent(t, e, dialAgentName, harness.AgentOptions{})
	logger := harness.TestLogger(t)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	relayedBefore, err := e.Metric(ctx, "appliance_derp_packets_relayed_total")
	if err != nil {
		t.Fatal(err)
	}

	client := workspacesdk.New(e.UserClient())
	dialCtx, dialCancel := context.WithTimeout(ctx, 60*time.Second)
	defer dialCancel()
	start := time.Now()
	conn, err := client.DialAgent(dialCtx, agentID, &workspacesdk.DialAgentOptions{
		Logger:         logger.Named("client"),
		BlockEndpoints: true, // no direct path: DERP only
	})
	if err != nil {
		t.Fatalf("DialAgent: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	t.Logf("DialAgent: reachable after %s", time.Since(start).Round(time.Millisecond))

	t.Run("ping through the relay", func(t *testing.T) {
		var lastErr error
		for i := 0; i < 20; i++ {
			d, p2p, pong, err := conn.Ping(ctx)
			if err != nil {
				lastErr = err
				time.Sleep(250 * time.Millisecond)
				continue
			}
			if p2p {
				t.Fatalf("ping went peer to peer with endpoints blocked: %+v", pong)
			}
			if pong == nil || pong.DERPRegionID != harness.EmbeddedRegion {
				t.Fatalf("pong = %+v, want it relayed by region %d", pong, harness.EmbeddedRegion)
			}
			t.Logf("ping: %s via DERP region %d (%s)", d, pong.DERPRegionID, pong.DERPRegionCode)
			return
		}
		t.Fatalf("ping: %v", lastErr)
	})

	t.Run("ssh runs a command on the agent", func(t *testing.T) {
		sshClient, err := conn.SSHClient(ctx)
		if err != nil {
			t.Fatalf("SSHClient: %v", err)
		}
		defer sshClient.Close()
		session, err := sshClient.NewSession()
		if err != nil {
			t.Fatalf("NewSession: %v", err)
		}
		defer session.Close()
		out, err := session.CombinedOutput("echo hello-over-ssh; echo \"dir=$PWD\"")
		if err != nil {
			t.Fatalf("ssh command: %v: %s", err, out)
		}
		if !strings.Contains(string(out), "hello-over-ssh") {
			t.Fatalf("ssh output %q lacks the command's line", out)
		}
		t.Logf("ssh output: %q", strings.TrimSpace(string(out)))
	})

	t.Run("port forward to a service on the agent's machine", func(t *testing.T) {
		// A TCP echo service on the agent's loopback (this process is the
		// agent's machine): the client reaches it through the tunnel.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
			}
		}()
		port := ln.Addr().(*net.TCPAddr).Port

		// The agent lists it among its listening ports (what the dashboard's
		// port-forward menu shows).
		harness.Eventually(t, 15*time.Second, "the listener in ListeningPorts", func() string {
			res, err := conn.ListeningPorts(ctx)
			if err != nil {
				return err.Error()
			}
			for _, p := range res.Ports {
				if int(p.Port) == port && p.Network == "tcp" {
					return ""
				}
			}
			return fmt.Sprintf("port %d not in %+v", port, res.Ports)
		})

		c, err := conn.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("DialContext through the agent: %v", err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		payload := strings.Repeat("appliance-relay ", 64*1024) + "\n" // 1 MiB
		go func() { _, _ = io.WriteString(c, payload) }()
		line, err := bufio.NewReaderSize(c, 1<<20).ReadString('\n')
		if err != nil {
			t.Fatalf("read the echo: %v (after %d bytes)", err, len(line))
		}
		if line != payload {
			t.Fatalf("echo: %d bytes back, want %d identical", len(line), len(payload))
		}
	})

	t.Run("reconnecting PTY echoes", func(t *testing.T) {
		// The web terminal's path: a PTY on the agent, JSON input frames in,
		// raw terminal output back.
		pty, err := conn.ReconnectingPTY(ctx, uuid.New(), 80, 80, "sh")
		if err != nil {
			t.Fatalf("ReconnectingPTY: %v", err)
		}
		defer pty.Close()
		_ = pty.SetDeadline(time.Now().Add(30 * time.Second))
		input, err := json.Marshal(workspacesdk.ReconnectingPTYRequest{Data: "echo pty-$((6*7))\r"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pty.Write(input); err != nil {
			t.Fatalf("write to the PTY: %v", err)
		}
		// The terminal echoes the typed line ("pty-$((6*7))"); only the
		// shell's output has "pty-42".
		var out bytes.Buffer
		buf := make([]byte, 4096)
		for !strings.Contains(out.String(), "pty-42") {
			n, err := pty.Read(buf)
			if err != nil {
				t.Fatalf("read from the PTY: %v (so far %q)", err, out.String())
			}
			out.Write(buf[:n])
		}
	})

	t.Run("the relay carried it", func(t *testing.T) {
		// 1 MiB each way in WireGuard packets of at most 1280 bytes is well
		// over 1,000 packets through appliance's relay.
		after, err := e.Metric(ctx, "appliance_derp_packets_relayed_total")
		if err != nil {
			t.Fatal(err)
		}
		if got := after - relayedBefore; got < 1000 {
			t.Fatalf("appliance_derp_packets_relayed_total grew by %v, want ≥ 1000", got)
		}
		t.Logf("packets relayed by appliance: %v", after-relayedBefore)
	})
}
