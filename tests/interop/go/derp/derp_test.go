// Tailscale's own DERP client (derphttp, from the coder/tailscale fork that
// Coder's agent and clients use) against appliance's relay on /derp: the
// handshake over both transports (plain `Upgrade: DERP` and the WebSocket
// `derp` subprotocol), packets both ways with the sender's key as source,
// Ping/Pong, and PeerGone when a peer leaves.
package derp_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/types/key"

	"appliance.invalid/interop/internal/harness"
)

func connect(t *testing.T, url string, websocket bool) (*derphttp.Client, key.NodePrivate) {
	t.Helper()
	priv := key.NewNode()
	c, err := derphttp.NewClient(priv, url, t.Logf)
	if err != nil {
		t.Fatalf("derphttp.NewClient: %v", err)
	}
	c.ForceWebsockets = websocket
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatalf("Connect (websocket=%v): %v", websocket, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	// Connect returns once the client sent its ClientInfo; the relay knows
	// the key once it answered ServerInfo. Until then packets for this
	// client are for an unknown destination (as with Go's relay).
	m := recv(t, c, "ServerInfo", false)
	if _, ok := m.(derp.ServerInfoMessage); !ok {
		t.Fatalf("first message %T %+v, want ServerInfo", m, m)
	}
	return c, priv
}

// recv returns the next message that is not a keep-alive (nor server info,
// when skipInfo).
func recv(t *testing.T, c *derphttp.Client, what string, skipInfo bool) derp.ReceivedMessage {
	t.Helper()
	type result struct {
		m   derp.ReceivedMessage
		err error
	}
	ch := make(chan result, 1)
	go func() {
		for {
			m, err := c.Recv()
			if err == nil {
				switch m.(type) {
				case derp.KeepAliveMessage:
					continue
				case derp.ServerInfoMessage:
					if skipInfo {
						continue
					}
				}
			}
			ch <- result{m, err}
			return
		}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Recv (%s): %v", what, r.err)
		}
		return r.m
	case <-time.After(10 * time.Second):
		t.Fatalf("Recv (%s): nothing within 10s", what)
		return nil
	}
}

func TestTailscaleDERPClient(t *testing.T) {
	e := harness.Load(t)
	url := e.URL.JoinPath("/derp").String()
	for _, ws := range []bool{false, true} {
		t.Run(fmt.Sprintf("websocket=%v", ws), func(t *testing.T) {
			a, aKey := connect(t, url, ws)
			b, bKey := connect(t, url, ws)
			if a.ServerPublicKey().IsZero() || a.ServerPublicKey() != b.ServerPublicKey() {
				t.Fatalf("server keys: %v and %v, want one non-zero key", a.ServerPublicKey(), b.ServerPublicKey())
			}

			for i, dir := range []struct {
				from, to *derphttp.Client
				fromK    key.NodePrivate
				toK      key.NodePrivate
				size     int
			}{
				{a, b, aKey, bKey, 1200},
				{b, a, bKey, aKey, 64 << 10}, // derp.MaxPacketSize
			} {
				payload := bytes.Repeat([]byte{byte('a' + i)}, dir.size)
				if err := dir.from.Send(dir.toK.Public(), payload); err != nil {
					t.Fatalf("Send: %v", err)
				}
				m := recv(t, dir.to, fmt.Sprintf("a %d-byte packet", dir.size), true)
				p, ok := m.(derp.ReceivedPacket)
				if !ok {
					t.Fatalf("got %T %+v, want a packet", m, m)
				}
				if p.Source != dir.fromK.Public() {
					t.Fatalf("packet source %v, want the sender %v", p.Source, dir.fromK.Public())
				}
				if !bytes.Equal(p.Data, payload) {
					t.Fatalf("packet: %d bytes, want the %d sent", len(p.Data), len(payload))
				}
			}

			// Ping → Pong with the same data.
			data := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
			if err := a.SendPing(data); err != nil {
				t.Fatalf("SendPing: %v", err)
			}
			if m, ok := recv(t, a, "pong", true).(derp.PongMessage); !ok || m != derp.PongMessage(data) {
				t.Fatalf("want pong %v, got %+v", data, m)
			}

			// b leaves: a, which sent to it, hears PeerGone for b's key.
			_ = b.Close()
			m := recv(t, a, "PeerGone", true)
			gone, ok := m.(derp.PeerGoneMessage)
			if !ok {
				t.Fatalf("got %T %+v, want PeerGone", m, m)
			}
			if gone.Peer != bKey.Public() {
				t.Fatalf("PeerGone for %v, want %v", gone.Peer, bKey.Public())
			}
		})
	}
}
