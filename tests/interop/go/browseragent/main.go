// Command browseragent runs Coder's real workspace agent (agent.New, the code
// `coder agent` runs) against appliance until it gets SIGTERM or SIGINT: the
// agent the browser tests (tests/browser) start while a page is open, to see
// it flip from connecting to connected and to type into its terminal.
//
//	browseragent --url http://127.0.0.1:3000 --token AGENT_TOKEN [--dir DIR]
//
// It prints "started" on stdout once the agent runs (not yet connected: the
// page shows that), logs errors to stderr, and on a signal closes the agent
// (lifecycle off, disconnected) before it exits 0. Like everything that runs
// Coder's networking code it belongs inside the loopback-only network
// namespace tests/browser/run.sh makes.
package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"cdr.dev/slog/v3"
	"cdr.dev/slog/v3/sloggers/sloghuman"

	"appliance.invalid/interop/internal/harness"
)

func main() {
	fs := flag.NewFlagSet("browseragent", flag.ExitOnError)
	rawURL := fs.String("url", os.Getenv("CODER_AGENT_URL"), "appliance's URL")
	token := fs.String("token", os.Getenv("CODER_AGENT_TOKEN"), "the agent's token (from workspace apply)")
	dir := fs.String("dir", "", "the agent's temp, log and script-data directory (default: a new temporary one)")
	verbose := fs.Bool("v", false, "log at debug level")
	_ = fs.Parse(os.Args[1:])
	if err := run(*rawURL, *token, *dir, *verbose); err != nil {
		fmt.Fprintf(os.Stderr, "browseragent: %v\n", err)
		os.Exit(1)
	}
}

func run(rawURL, token, dir string, verbose bool) error {
	u, err := url.Parse(rawURL)
	if err != nil || rawURL == "" {
		return fmt.Errorf("--url %q: %v", rawURL, err)
	}
	if token == "" {
		return fmt.Errorf("--token (or CODER_AGENT_TOKEN) is required")
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "browseragent")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	level := slog.LevelError
	if verbose {
		level = slog.LevelDebug
	}
	log := slog.Make(sloghuman.Sink(os.Stderr)).Leveled(level)

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	e := &harness.Env{URL: u}
	a := e.NewAgent(token, dir, log, harness.AgentOptions{})
	fmt.Println("started")
	<-signals
	return a.Close()
}
