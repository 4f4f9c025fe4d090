package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain runs the sample's main when the test binary is started as the
// sample (see runSample), so that its command line can be tested.
func TestMain(m *testing.M) {
	if os.Getenv("SAMPLE_AS_MAIN") == "1" {
		os.Args = append([]string{"sample"}, strings.Fields(os.Getenv("SAMPLE_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runSample(t *testing.T, args string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "SAMPLE_AS_MAIN=1", "SAMPLE_ARGS="+args)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// TestBadFlagsNamed: a bad flag value is named, on one line before the
// usage, with exit code 2.
func TestBadFlagsNamed(t *testing.T) {
	for _, c := range []struct{ args, want string }{
		{"-transport bogus", `sample: -transport "bogus": want ws, wss, tcp or tls`},
		{"-timeout -1s", "sample: -timeout -1s: want a positive duration"},
		{"extra", `sample: unexpected argument "extra"`},
	} {
		out, code := runSample(t, c.args)
		if code != 2 || !strings.HasPrefix(out, c.want+"\n") || !strings.Contains(out, "usage: sample") {
			t.Errorf("sample %s: exit %d, output %q; want exit 2 and %q first", c.args, code, out, c.want)
		}
	}
}
