// Command ptybench measures the web terminal's path to Coder's agent two ways
// in the same run, with Coder's own client code on both:
//
//   - appliance: appliance's /api/v2/workspaceagents/{id}/pty, through
//     workspacesdk's AgentReconnectingPTY (a WebSocket to appliance, which
//     reaches the agent's reconnecting-PTY port over its own tailnet peer),
//     and GET …/listening-ports through codersdk;
//   - coder: workspacesdk.DialAgent (WireGuard in this process, coordinated by
//     appliance, every packet relayed by appliance's DERP relay:
//     BlockEndpoints) and conn.ReconnectingPTY / conn.ListeningPorts, the
//     path `coder ssh` and coderd's own ServerTailnet take.
//
// Coder's real agent (agent.New) runs in this process as the manifest's agent
// --agent. For each path: the keystroke round trip (a PTY running `cat` in raw
// mode, one key typed, wait for its echo, --keys times after 50 of warm-up),
// the throughput of `cat` of an --mib MiB file through the PTY, and
// listening-ports latency over --ports requests. A path that fails reports
// its error and the other still runs. bench/pty.sh runs it inside a
// loopback-only network namespace and prints the table.
//
//	ptybench [--url URL] [--user-token T] [--apply FILE] [--agent bench]
//	         [--keys 2000] [--mib 100] [--ports 500] [--paths appliance,coder]
//
// The flags default to what tests/interop/run.sh and bench/pty.sh export
// (APPLIANCE_URL, APPLIANCE_USER_TOKEN, APPLIANCE_APPLY_JSON). It prints one
// JSON object on stdout.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"

	"cdr.dev/slog/v3"
	"cdr.dev/slog/v3/sloggers/sloghuman"

	"github.com/coder/coder/v2/codersdk"
	"github.com/coder/coder/v2/codersdk/workspacesdk"

	"appliance.invalid/interop/internal/harness"
)

func main() {
	fs := flag.NewFlagSet("ptybench", flag.ExitOnError)
	rawURL := fs.String("url", os.Getenv("APPLIANCE_URL"), "appliance's URL")
	apply := fs.String("apply", os.Getenv("APPLIANCE_APPLY_JSON"), "`workspace apply --output json` file")
	userToken := fs.String("user-token", os.Getenv("APPLIANCE_USER_TOKEN"), "a user API token")
	agentName := fs.String("agent", "bench", "the agent's name in the apply output")
	keys := fs.Int("keys", 2000, "keystroke round trips per path")
	mib := fs.Int("mib", 100, "MiB to cat through each path's PTY")
	ports := fs.Int("ports", 500, "listening-ports requests per path")
	paths := fs.String("paths", "appliance,coder", "which paths, comma-separated")
	_ = fs.Parse(os.Args[1:])
	if err := run(*rawURL, *apply, *userToken, *agentName, *keys, *mib, *ports, strings.Split(*paths, ",")); err != nil {
		fmt.Fprintf(os.Stderr, "ptybench: %v\n", err)
		os.Exit(1)
	}
}

type latency struct {
	Count int     `json:"count"`
	P50us float64 `json:"p50_us"`
	P99us float64 `json:"p99_us"`
	MaxUs float64 `json:"max_us"`
}

func summarize(d []time.Duration) *latency {
	if len(d) == 0 {
		return nil
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	at := func(q float64) float64 {
		return float64(d[int(q*float64(len(d)-1))].Nanoseconds()) / 1e3
	}
	return &latency{Count: len(d), P50us: at(0.50), P99us: at(0.99), MaxUs: at(1)}
}

type throughput struct {
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
	MiBPerS float64 `json:"mib_per_s"`
}

// result is one path's figures; a part that failed has its error instead.
type result struct {
	KeyRTT      *latency    `json:"key_rtt,omitempty"`
	KeyErr      string      `json:"key_error,omitempty"`
	Cat         *throughput `json:"cat,omitempty"`
	CatErr      string      `json:"cat_error,omitempty"`
	Ports       *latency    `json:"listening_ports,omitempty"`
	PortsErr    string      `json:"listening_ports_error,omitempty"`
	PortsListed int         `json:"ports_listed,omitempty"`
}

// path opens PTYs and lists ports one way.
type path struct {
	name  string
	pty   func(ctx context.Context, command string) (net.Conn, error)
	ports func(ctx context.Context) (codersdk.WorkspaceAgentListeningPortsResponse, error)
}

func run(rawURL, applyFile, userToken, agentName string, keys, mib, nports int, which []string) error {
	e, err := harness.LoadFrom(rawURL, userToken, applyFile)
	if err != nil {
		return fmt.Errorf("--url, --apply (or APPLIANCE_URL, APPLIANCE_APPLY_JSON): %w", err)
	}
	agentID, token, err := e.AgentByName(agentName)
	if err != nil {
		return fmt.Errorf("%s: %w", applyFile, err)
	}
	log := slog.Make(sloghuman.Sink(os.Stderr)).Leveled(slog.LevelError)
	dir, err := os.MkdirTemp("", "ptybench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	a := e.NewAgent(token, dir, log, harness.AgentOptions{})
	defer a.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	if err := e.WaitAgent(ctx, agentID, a); err != nil {
		return err
	}
	file := filepath.Join(dir, "cat.bin")
	size, err := writeCatFile(file, int64(mib)<<20)
	if err != nil {
		return err
	}

	client := e.UserClient()
	dctx, dcancel := context.WithTimeout(ctx, 60*time.Second)
	conn, err := workspacesdk.New(client).DialAgent(dctx, agentID, &workspacesdk.DialAgentOptions{Logger: log.Named("client"), BlockEndpoints: true})
	dcancel()
	if err != nil {
		return fmt.Errorf("DialAgent: %w", err)
	}
	defer conn.Close()
	via := func() (bool, int, error) {
		var lastErr error
		for i := 0; i < 40; i++ {
			_, p2p, pong, err := conn.Ping(ctx)
			if err == nil && pong != nil {
				return p2p, pong.DERPRegionID, nil
			}
			lastErr = err
			time.Sleep(250 * time.Millisecond)
		}
		return false, 0, fmt.Errorf("tailnet ping: %v", lastErr)
	}
	if _, _, err := via(); err != nil {
		return err
	}

	all := map[string]path{
		"appliance": {
			name: "appliance",
			pty: func(ctx context.Context, command string) (net.Conn, error) {
				return workspacesdk.New(client).AgentReconnectingPTY(ctx, workspacesdk.WorkspaceAgentReconnectingPTYOpts{
					AgentID: agentID, Reconnect: uuid.New(), Height: 24, Width: 80, Command: command,
				})
			},
			ports: func(ctx context.Context) (codersdk.WorkspaceAgentListeningPortsResponse, error) {
				return client.WorkspaceAgentListeningPorts(ctx, agentID)
			},
		},
		"coder": {
			name: "coder",
			pty: func(ctx context.Context, command string) (net.Conn, error) {
				return conn.ReconnectingPTY(ctx, uuid.New(), 24, 80, command)
			},
			ports: conn.ListeningPorts,
		},
	}
	var chosen []path
	for _, w := range which {
		p, ok := all[strings.TrimSpace(w)]
		if !ok {
			return fmt.Errorf("--paths: unknown path %q (appliance, coder)", w)
		}
		chosen = append(chosen, p)
	}
	results := map[string]*result{}
	for _, p := range chosen {
		results[p.name] = &result{}
	}
	// Each measurement on every path before the next measurement, so the
	// paths share the machine's state as closely as one run allows.
	for _, p := range chosen {
		fmt.Fprintf(os.Stderr, "ptybench: %s: %d keystrokes\n", p.name, keys)
		r, err := keyRTT(ctx, p, keys)
		results[p.name].KeyRTT, results[p.name].KeyErr = r, errString(err)
	}
	for _, p := range chosen {
		fmt.Fprintf(os.Stderr, "ptybench: %s: cat %d MiB\n", p.name, mib)
		r, err := catThroughput(ctx, p, file, size)
		results[p.name].Cat, results[p.name].CatErr = r, errString(err)
	}
	for _, p := range chosen {
		fmt.Fprintf(os.Stderr, "ptybench: %s: %d listening-ports requests\n", p.name, nports)
		r, n, err := portsLatency(ctx, p, nports)
		results[p.name].Ports, results[p.name].PortsListed, results[p.name].PortsErr = r, n, errString(err)
	}
	p2p, region, err := via()
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(struct {
		Paths      map[string]*result `json:"paths"`
		Keys       int                `json:"keys"`
		CatBytes   int64              `json:"cat_bytes"`
		P2P        bool               `json:"p2p"`
		DERPRegion int                `json:"derp_region"`
	}{results, keys, size, p2p, region})
}

// errString: codersdk's errors as their status and message (their text
// starts with the whole request URL).
func errString(err error) string {
	var ce *codersdk.Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &ce):
		return strings.TrimSpace(fmt.Sprintf("%d %s %s", ce.StatusCode(), ce.Message, ce.Detail))
	default:
		return err.Error()
	}
}

// writeCatFile writes size bytes of 63-letter lines (no marker can occur in
// them), returning the size written.
func writeCatFile(name string, size int64) (int64, error) {
	f, err := os.Create(name)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	line := []byte(strings.Repeat("abcdefghijklmnopqrstuvwxyz", 3)[:63] + "\n")
	var n int64
	for n+int64(len(line)) <= size {
		_, _ = w.Write(line)
		n += int64(len(line))
	}
	_, _ = w.Write(line[:size-n])
	n = size
	if err := w.Flush(); err != nil {
		_ = f.Close()
		return 0, err
	}
	return n, f.Close()
}

func input(c net.Conn, data string) error {
	b, err := json.Marshal(workspacesdk.ReconnectingPTYRequest{Data: data})
	if err != nil {
		return err
	}
	_, err = c.Write(b)
	return err
}

// readUntil reads from r until marker.
func readUntil(r *bufio.Reader, marker string) error {
	var seen []byte
	for !bytes.HasSuffix(seen, []byte(marker)) {
		c, err := r.ReadByte()
		if err != nil {
			return fmt.Errorf("waiting for %q (got %q): %w", marker, tail(seen), err)
		}
		seen = append(seen, c)
	}
	return nil
}

func tail(b []byte) []byte {
	if len(b) > 200 {
		return b[len(b)-200:]
	}
	return b
}

const ready = "<ptybench-ready>"

// keyRTT: a PTY running cat in raw mode without echo (as a shell's line
// editor runs): one byte typed, wait for cat to write it back.
func keyRTT(ctx context.Context, p path, n int) (*latency, error) {
	c, err := p.pty(ctx, "stty raw -echo && printf '"+ready+"' && exec cat")
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Minute))
	out := bufio.NewReader(c)
	if err := readUntil(out, ready); err != nil {
		return nil, err
	}
	letters := []byte("abcdefghijklmnopqrstuvwxyz")
	rtts := make([]time.Duration, 0, n)
	for i := 0; i < n+50; i++ { // the first 50 warm up
		k := letters[i%len(letters)]
		t0 := time.Now()
		if err := input(c, string(k)); err != nil {
			return nil, err
		}
		got, err := out.ReadByte()
		if err != nil {
			return nil, fmt.Errorf("read the echo: %w", err)
		}
		if got != k {
			return nil, fmt.Errorf("keystroke %d: typed %q, got %q back", i, k, got)
		}
		if i >= 50 {
			rtts = append(rtts, time.Since(t0))
		}
	}
	return summarize(rtts), nil
}

// catThroughput: `cat` of the file through the PTY, raw (no \n -> \r\n), from
// the newline that lets it start to the marker after its last byte.
func catThroughput(ctx context.Context, p path, file string, size int64) (*throughput, error) {
	const done = "<ptybench-done>"
	c, err := p.pty(ctx, "stty raw -echo && printf '"+ready+"' && read -r _ && cat '"+file+"' && printf '"+done+"'")
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Minute))
	out := bufio.NewReaderSize(c, 1<<20)
	if err := readUntil(out, ready); err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := input(c, "\n"); err != nil {
		return nil, err
	}
	want := size + int64(len(done))
	buf := make([]byte, 1<<20)
	var got int64
	var last []byte
	for got < want {
		n, err := out.Read(buf)
		got += int64(n)
		if n > 0 {
			last = append(last, buf[:n]...)
			if len(last) > 64 {
				last = last[len(last)-64:]
			}
		}
		if err != nil {
			return nil, fmt.Errorf("after %d of %d bytes: %w", got, want, err)
		}
	}
	secs := time.Since(t0).Seconds()
	if got != want || !bytes.HasSuffix(last, []byte(done)) {
		return nil, fmt.Errorf("got %d bytes ending %q, want %d ending %q", got, last, want, done)
	}
	return &throughput{Bytes: size, Seconds: secs, MiBPerS: float64(size) / (1 << 20) / secs}, nil
}

// portsLatency: n listening-ports requests one after another (the agent
// caches its scan for 1 s, so this is mostly the request path).
func portsLatency(ctx context.Context, p path, n int) (*latency, int, error) {
	d := make([]time.Duration, 0, n)
	listed := 0
	for i := 0; i < n+10; i++ { // the first 10 warm up
		t0 := time.Now()
		res, err := p.ports(ctx)
		if err != nil {
			return nil, 0, err
		}
		if i >= 10 {
			d = append(d, time.Since(t0))
		}
		listed = len(res.Ports)
	}
	if len(d) == 0 {
		return nil, 0, errors.New("no requests")
	}
	return summarize(d), listed, nil
}
