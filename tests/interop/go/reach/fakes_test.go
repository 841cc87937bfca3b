package reach_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakes drives tests/interop/fakes: the fake `docker` and `devcontainer`
// CLIs, whose state (containers as docker-inspect JSON, calls.log, control
// files) is a directory of this test's, FAKE_DOCKER_DIR. newFakes puts both
// in this process's environment, ahead of any real docker on PATH: Coder's
// agent runs in this process and finds them there.
type fakes struct {
	bin string // the directory holding the fakes
	dir string // FAKE_DOCKER_DIR
}

func newFakes(t *testing.T) *fakes {
	t.Helper()
	bin := os.Getenv("INTEROP_FAKES_DIR")
	if bin == "" {
		bin = filepath.Join("..", "..", "fakes") // from tests/interop/go/reach
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"docker", "devcontainer"} {
		if st, err := os.Stat(filepath.Join(bin, name)); err != nil || st.Mode()&0o111 == 0 {
			t.Fatalf("fake %s in %s: not an executable (%v)", name, bin, err)
		}
	}
	f := &fakes{bin: bin, dir: t.TempDir()}
	t.Setenv("FAKE_DOCKER_DIR", f.dir)
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	// Never a real docker: the agent resolves the name as this does.
	for _, name := range []string{"docker", "devcontainer"} {
		got, err := exec.LookPath(name)
		if err != nil || got != filepath.Join(bin, name) {
			t.Fatalf("%s resolves to %q (%v), want the fake in %s", name, got, err, bin)
		}
	}
	return f
}

// try runs a fake (docker or devcontainer) the way the agent does.
func (f *fakes) try(name string, args ...string) (string, string, error) {
	cmd := exec.Command(filepath.Join(f.bin, name), args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return strings.TrimSpace(out.String()), strings.TrimSpace(errb.String()), err
}

// run is try that fails the test on a non-zero exit; it returns stdout.
func (f *fakes) run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, errOut, err := f.try(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v: %s%s", name, strings.Join(args, " "), err, errOut, out)
	}
	return out
}

// calls is calls.log: every invocation of either fake, in order.
func (f *fakes) calls(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.dir, "calls.log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\n"), "\n")
}

// called waits for nothing: it reports whether calls.log, from line from on,
// has a line starting with prefix.
func (f *fakes) called(t *testing.T, from int, prefix string) bool {
	t.Helper()
	calls := f.calls(t)
	for _, c := range calls[min(from, len(calls)):] {
		if strings.HasPrefix(c, prefix) {
			return true
		}
	}
	return false
}

// control sets a control file (kind "fail", "hold" or "stderr", for a
// subcommand): see the fakes' headers.
func (f *fakes) control(t *testing.T, kind, sub, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(f.dir, kind), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, kind, sub), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (f *fakes) clear(t *testing.T, kind, sub string) {
	t.Helper()
	if err := os.Remove(filepath.Join(f.dir, kind, sub)); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
}

// exists reports whether the fake docker still has the container.
func (f *fakes) exists(id string) bool {
	_, err := os.Stat(filepath.Join(f.dir, "containers", id+".json"))
	return err == nil
}

func (f *fakes) String() string { return fmt.Sprintf("fakes %s (state %s)", f.bin, f.dir) }
