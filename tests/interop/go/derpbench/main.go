// Command derpbench measures a DERP relay with Tailscale's own DERP client
// (derphttp, from the coder/tailscale fork Coder uses), so appliance's relay
// and Go's (tailscale.com/derp, what coderd embeds) are driven by the same
// clients in the same run. bench/derp.sh runs it inside a loopback-only
// network namespace; see that script for the cases.
//
//	derpbench serve-go --listen 127.0.0.1:4000    Go's relay on /derp (and /derp/latency-check)
//	derpbench relay --url URL --pairs N --size B --seconds S
//	derpbench ping --url URL --count K
//	derpbench idle --url URL --clients N          holds N clients until stdin closes
//	derpbench ssh-rtt [--url URL] [--user-token T] [--apply FILE] --agent NAME --count K
//
// ssh-rtt's flags default to what tests/interop/run.sh exports
// (APPLIANCE_URL, APPLIANCE_USER_TOKEN, APPLIANCE_APPLY_JSON).
// Every mode but serve-go and idle prints one JSON object on stdout.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"cdr.dev/slog/v3"
	"cdr.dev/slog/v3/sloggers/sloghuman"
	"tailscale.com/derp"
	"tailscale.com/derp/derphttp"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"

	"github.com/coder/coder/v2/codersdk/workspacesdk"

	"appliance.invalid/interop/internal/harness"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: derpbench serve-go|relay|ping|idle|ssh-rtt [flags]")
		os.Exit(2)
	}
	mode, args := os.Args[1], os.Args[2:]
	fs := flag.NewFlagSet(mode, flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:4000", "serve-go: address")
	rawURL := fs.String("url", "", "the relay's /derp URL (ssh-rtt: appliance's URL, default $APPLIANCE_URL)")
	pairs := fs.Int("pairs", 1, "relay: sender/receiver pairs")
	size := fs.Int("size", 1024, "relay: packet bytes")
	seconds := fs.Float64("seconds", 5, "relay: how long to measure")
	warmup := fs.Float64("warmup", 0.5, "relay: seconds of sending before measuring")
	count := fs.Int("count", 2000, "ping, ssh-rtt: round trips")
	clients := fs.Int("clients", 1000, "idle: clients to hold")
	apply := fs.String("apply", os.Getenv("APPLIANCE_APPLY_JSON"), "ssh-rtt: `workspace apply --output json` file")
	userToken := fs.String("user-token", os.Getenv("APPLIANCE_USER_TOKEN"), "ssh-rtt: a user API token")
	agentName := fs.String("agent", "bench", "ssh-rtt: the agent's name in the apply output")
	serverPid := fs.Int("server-pid", 0, "relay: the relay's process, whose CPU over the window is reported")
	clkTck := fs.Float64("clk-tck", 100, "relay: clock ticks per second (getconf CLK_TCK)")
	_ = fs.Parse(args)
	if *rawURL == "" && mode == "ssh-rtt" {
		*rawURL = os.Getenv("APPLIANCE_URL")
	}

	var err error
	switch mode {
	case "serve-go":
		err = serveGo(*listen)
	case "relay":
		err = relay(*rawURL, *pairs, *size, secs(*warmup), secs(*seconds), cpuProbe{pid: *serverPid, tck: *clkTck})
	case "ping":
		err = ping(*rawURL, *count)
	case "idle":
		err = idle(*rawURL, *clients)
	case "ssh-rtt":
		err = sshRTT(*rawURL, *apply, *userToken, *agentName, *count)
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "derpbench %s: %v\n", mode, err)
		os.Exit(1)
	}
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// serveGo runs Go's DERP server as coderd embeds it (derp.NewServer behind
// derphttp.Handler), plus the latency check, with Go's defaults.
func serveGo(listen string) error {
	s := derp.NewServer(key.NewNode(), logger.Discard)
	defer s.Close()
	mux := http.NewServeMux()
	mux.Handle("/derp", derphttp.Handler(s))
	mux.HandleFunc("/derp/latency-check", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	fmt.Fprintf(os.Stderr, "derpbench serve-go: listening on %s\n", listen)
	return http.ListenAndServe(listen, mux)
}

// dial connects a client and waits for the relay's ServerInfo: from then on
// the relay knows its key.
func dial(ctx context.Context, u string) (*derphttp.Client, key.NodePrivate, error) {
	priv := key.NewNode()
	c, err := derphttp.NewClient(priv, u, logger.Discard)
	if err != nil {
		return nil, priv, err
	}
	if err := c.Connect(ctx); err != nil {
		return nil, priv, err
	}
	for {
		m, err := c.Recv()
		if err != nil {
			return nil, priv, err
		}
		if _, ok := m.(derp.ServerInfoMessage); ok {
			return c, priv, nil
		}
	}
}

type latency struct {
	Count int     `json:"count"`
	P50us float64 `json:"p50_us"`
	P99us float64 `json:"p99_us"`
	MaxUs float64 `json:"max_us"`
}

func summarize(d []time.Duration) latency {
	if len(d) == 0 {
		return latency{}
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	at := func(q float64) float64 {
		return float64(d[int(q*float64(len(d)-1))].Nanoseconds()) / 1e3
	}
	return latency{Count: len(d), P50us: at(0.50), P99us: at(0.99), MaxUs: at(1)}
}

// pinger is a pair of clients: a sends a sequence-numbered packet to b, b
// echoes every packet back, a waits for it before the next.
type pinger struct {
	a, b   *derphttp.Client
	bKey   key.NodePublic
	back   chan uint64
	buf    []byte
	seq    uint64
	lost   int
	closed chan struct{}
}

func newPinger(ctx context.Context, u string) (*pinger, error) {
	a, aPriv, err := dial(ctx, u)
	if err != nil {
		return nil, err
	}
	b, bPriv, err := dial(ctx, u)
	if err != nil {
		_ = a.Close()
		return nil, err
	}
	p := &pinger{a: a, b: b, bKey: bPriv.Public(), back: make(chan uint64, 16), buf: make([]byte, 64), closed: make(chan struct{})}
	go func() {
		for {
			m, err := b.Recv()
			if err != nil {
				return
			}
			if pk, ok := m.(derp.ReceivedPacket); ok {
				_ = b.Send(aPriv.Public(), pk.Data)
			}
		}
	}()
	go func() {
		defer close(p.closed)
		for {
			m, err := a.Recv()
			if err != nil {
				return
			}
			if pk, ok := m.(derp.ReceivedPacket); ok && len(pk.Data) >= 8 {
				select {
				case p.back <- binary.BigEndian.Uint64(pk.Data):
				default:
				}
			}
		}
	}()
	return p, nil
}

// once is one round trip; a packet not back within 10 s counts as lost (and
// is not timed).
func (p *pinger) once(ctx context.Context) (time.Duration, bool, error) {
	p.seq++
	binary.BigEndian.PutUint64(p.buf, p.seq)
	t0 := time.Now()
	if err := p.a.Send(p.bKey, p.buf); err != nil {
		return 0, false, err
	}
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case seq := <-p.back:
			if seq == p.seq {
				return time.Since(t0), true, nil
			}
		case <-p.closed:
			return 0, false, errors.New("the pinging client's connection ended")
		case <-timeout.C:
			p.lost++
			return 0, false, nil
		case <-ctx.Done():
			return 0, false, ctx.Err()
		}
	}
}

func (p *pinger) close() {
	_ = p.a.Close()
	_ = p.b.Close()
}

type relayResult struct {
	Pairs        int     `json:"pairs"`
	Size         int     `json:"size"`
	Seconds      float64 `json:"seconds"`
	PacketsSent  uint64  `json:"packets_sent"`
	PacketsRecvd uint64  `json:"packets_received"`
	PacketsPerS  float64 `json:"packets_per_s"`
	MiBPerS      float64 `json:"mib_per_s"`
	// Round trips of a separate ping pair while the pairs send.
	PingUnderLoad latency `json:"ping_under_load"`
	PingLost      int     `json:"ping_lost"`
	SendErrors    uint64  `json:"send_errors"`
	Reconnects    uint64  `json:"reconnects"`
	// CPU (user + system) over the measured window, in seconds: this
	// process's, the relay's (--server-pid), and the whole machine's
	// (all CPUs, /proc/stat) busy time other than softirq, so what other
	// processes used shows, and its softirq time (loopback TCP's receive
	// path, which the kernel charges to no process).
	ClientCPU  float64 `json:"client_cpu_s"`
	ServerCPU  float64 `json:"server_cpu_s"`
	SystemCPU  float64 `json:"system_busy_s"`
	SoftirqCPU float64 `json:"softirq_s"`
}

// cpuProbe reads a process's and the machine's CPU time from /proc.
type cpuProbe struct {
	pid int
	tck float64
}

type cpuSample struct{ client, server, system, softirq float64 }

func (p cpuProbe) sample() cpuSample {
	s := cpuSample{client: cpuSeconds()}
	if p.pid > 0 {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid)); err == nil {
			// Fields after the command's closing parenthesis; utime and
			// stime are the 14th and 15th of the whole line.
			if i := bytes.LastIndexByte(b, ')'); i >= 0 {
				f := strings.Fields(string(b[i+1:]))
				if len(f) > 12 {
					u, _ := strconv.ParseFloat(f[11], 64)
					st, _ := strconv.ParseFloat(f[12], 64)
					s.server = (u + st) / p.tck
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
		for i, v := range f {
			x, _ := strconv.ParseFloat(v, 64)
			switch i {
			case 1, 2, 3, 6, 8:
				s.system += x / p.tck
			case 7:
				s.softirq += x / p.tck
			}
		}
	}
	return s
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

// relay: each pair's sender sends size-byte packets to its receiver as fast
// as the relay takes them (one frame per write, as derphttp does); after a
// warm-up, for d, the receivers count what arrives (packets dropped by the
// relay do not count). Meanwhile a separate pair pings.
func relay(u string, pairs, size int, warmup, d time.Duration, probe cpuProbe) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second+warmup+d)
	defer cancel()
	type pair struct {
		s, r *derphttp.Client
		rKey key.NodePublic
	}
	ps := make([]pair, pairs)
	for i := range ps {
		s, _, err := dial(ctx, u)
		if err != nil {
			return err
		}
		r, rPriv, err := dial(ctx, u)
		if err != nil {
			return err
		}
		ps[i] = pair{s: s, r: r, rKey: rPriv.Public()}
	}
	pg, err := newPinger(ctx, u)
	if err != nil {
		return err
	}
	defer pg.close()

	var sent, recvd, sendErrs, reconnects atomic.Uint64
	var counting atomic.Bool
	for _, p := range ps {
		go func() {
			gen := -1
			for {
				m, g, err := p.r.RecvDetail()
				if err != nil {
					if errors.Is(err, derphttp.ErrClientClosed) {
						return
					}
					continue
				}
				if gen >= 0 && g != gen {
					reconnects.Add(1)
				}
				gen = g
				if _, ok := m.(derp.ReceivedPacket); ok && counting.Load() {
					recvd.Add(1)
				}
			}
		}()
	}
	payload := make([]byte, size)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := p.s.Send(p.rKey, payload); err != nil {
					sendErrs.Add(1)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				if counting.Load() {
					sent.Add(1)
				}
			}
		}()
	}
	time.Sleep(warmup)

	rtts := make([]time.Duration, 0, 4096)
	pingStop := make(chan struct{})
	pingDone := make(chan error, 1)
	counting.Store(true)
	cpu0 := probe.sample()
	start := time.Now()
	go func() {
		for {
			select {
			case <-pingStop:
				pingDone <- nil
				return
			default:
			}
			rtt, ok, err := pg.once(ctx)
			if err != nil {
				pingDone <- err
				return
			}
			if ok {
				rtts = append(rtts, rtt)
			}
		}
	}()
	time.Sleep(d)
	counting.Store(false)
	elapsed := time.Since(start).Seconds()
	cpu1 := probe.sample()
	got := recvd.Load()
	close(pingStop)
	pingErr := <-pingDone
	close(stop)
	wg.Wait()
	for _, p := range ps {
		_ = p.s.Close()
		_ = p.r.Close()
	}
	if pingErr != nil {
		return fmt.Errorf("ping under load: %w", pingErr)
	}
	return json.NewEncoder(os.Stdout).Encode(relayResult{
		Pairs: pairs, Size: size, Seconds: elapsed,
		PacketsSent: sent.Load(), PacketsRecvd: got,
		PacketsPerS:   float64(got) / elapsed,
		MiBPerS:       float64(got) * float64(size) / elapsed / (1 << 20),
		PingUnderLoad: summarize(rtts), PingLost: pg.lost,
		SendErrors: sendErrs.Load(), Reconnects: reconnects.Load(),
		ClientCPU:  cpu1.client - cpu0.client,
		ServerCPU:  cpu1.server - cpu0.server,
		SystemCPU:  cpu1.system - cpu0.system,
		SoftirqCPU: cpu1.softirq - cpu0.softirq,
	})
}

// ping: n round trips of a 64-byte packet on an otherwise idle relay (after
// 100 not timed).
func ping(u string, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	p, err := newPinger(ctx, u)
	if err != nil {
		return err
	}
	defer p.close()
	rtts := make([]time.Duration, 0, n)
	for i := 0; i < n+100; i++ {
		rtt, ok, err := p.once(ctx)
		if err != nil {
			return err
		}
		if ok && i >= 100 {
			rtts = append(rtts, rtt)
		}
	}
	return json.NewEncoder(os.Stdout).Encode(struct {
		latency
		Lost int `json:"lost"`
	}{summarize(rtts), p.lost})
}

// idle holds n connected clients until stdin closes; "ready" on stdout once
// all are connected.
func idle(u string, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cs := make([]*derphttp.Client, 0, n)
	for i := 0; i < n; i++ {
		c, _, err := dial(ctx, u)
		if err != nil {
			return fmt.Errorf("client %d: %w", i, err)
		}
		cs = append(cs, c)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range cs {
		_ = c.Close()
	}
	return nil
}

// sshRTT: Coder's agent in this process, Coder's dialer to it through the
// relay only (BlockEndpoints), an SSH session with a PTY running cat in raw
// mode (as a shell's line editor runs): one byte typed, wait for it back.
func sshRTT(raw, applyFile, userToken, agentName string, n int) error {
	e, err := harness.LoadFrom(raw, userToken, applyFile)
	if err != nil {
		return fmt.Errorf("--url, --apply (or APPLIANCE_URL, APPLIANCE_APPLY_JSON): %w", err)
	}
	agentID, token, err := e.AgentByName(agentName)
	if err != nil {
		return fmt.Errorf("%s: %w", applyFile, err)
	}
	log := slog.Make(sloghuman.Sink(os.Stderr)).Leveled(slog.LevelError)
	dir, err := os.MkdirTemp("", "derpbench-agent")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	a := e.NewAgent(token, dir, log, harness.AgentOptions{})
	defer a.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := e.WaitAgent(ctx, agentID, a); err != nil {
		return err
	}

	client := workspacesdk.New(e.UserClient())
	dctx, dcancel := context.WithTimeout(ctx, 60*time.Second)
	conn, err := client.DialAgent(dctx, agentID, &workspacesdk.DialAgentOptions{Logger: log.Named("client"), BlockEndpoints: true})
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

	sshc, err := conn.SSHClient(ctx)
	if err != nil {
		return err
	}
	defer sshc.Close()
	sess, err := sshc.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	if err := sess.RequestPty("xterm", 40, 80, nil); err != nil {
		return err
	}
	in, err := sess.StdinPipe()
	if err != nil {
		return err
	}
	outPipe, err := sess.StdoutPipe()
	if err != nil {
		return err
	}
	out := bufio.NewReader(outPipe)
	const ready = "<derpbench-ready>"
	if err := sess.Start("stty raw -echo && printf '" + ready + "' && exec cat"); err != nil {
		return err
	}
	var seen []byte
	for !bytes.HasSuffix(seen, []byte(ready)) {
		c, err := out.ReadByte()
		if err != nil {
			return fmt.Errorf("waiting for the session (got %q): %w", seen, err)
		}
		seen = append(seen, c)
	}
	keys := []byte("abcdefghijklmnopqrstuvwxyz")
	rtts := make([]time.Duration, 0, n)
	for i := 0; i < n+50; i++ { // the first 50 warm up
		k := keys[i%len(keys)]
		t0 := time.Now()
		if _, err := in.Write([]byte{k}); err != nil {
			return err
		}
		c, err := out.ReadByte()
		if err != nil {
			return fmt.Errorf("read the echo: %w", err)
		}
		if c != k {
			return fmt.Errorf("keystroke %d: typed %q, got %q back", i, k, c)
		}
		if i >= 50 {
			rtts = append(rtts, time.Since(t0))
		}
	}
	p2p, region, err := via()
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(struct {
		latency
		P2P        bool `json:"p2p"`
		DERPRegion int  `json:"derp_region"`
	}{summarize(rtts), p2p, region})
}
