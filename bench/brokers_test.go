package bench

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	mochimqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// A broker starts a server for the duration of a test or benchmark and
// returns the "127.0.0.1:port" address of its MQTT-over-TCP listener.
type broker struct {
	name  string
	start func(tb testing.TB) string
	// qos2Quota, when not 0, is the number of QoS 2 messages from one
	// client awaiting PUBREL beyond which the broker acknowledges new ones
	// with PUBREC and discards them (mosquitto's max_inflight_messages).
	qos2Quota int
}

// brokers are the servers the client benchmarks run against: a real
// mosquitto in its own process, and mochi in this process.
var brokers = []broker{
	{"mosquitto", startMosquitto, 20},
	{"inproc", startInproc, 0},
}

// mosquittoBinary returns the path of the mosquitto binary, or "".
func mosquittoBinary() string {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// startMosquitto runs a private mosquitto on a free loopback port, with a
// configuration of its own in a temporary directory, and kills it at the
// end of tb. Its settings are mosquitto's defaults except three, so that
// the benchmarks measure the clients rather than the broker's limits:
// max_queued_messages is raised from 1000 to 100000, so that a subscriber
// that falls behind loses nothing; max_inflight_messages from 20 to 100,
// since mosquitto acknowledges and discards QoS 2 messages a client sends
// beyond that many unreleased ones, and the benchmarks keep 64 outstanding;
// and set_tcp_nodelay is on: with Nagle's algorithm (mosquitto's default)
// its acknowledgements wait for the client's delayed ACKs, and every client
// measured here sees 40 ms stalls at 64 outstanding.
// Without the binary tb is skipped, or fails when the CI environment
// variable is set.
func startMosquitto(tb testing.TB) string {
	tb.Helper()
	bin := mosquittoBinary()
	if bin == "" {
		if os.Getenv("CI") != "" {
			tb.Fatal("mosquitto not found; CI must install it (apt-get install -y mosquitto)")
		}
		tb.Skip("mosquitto not found (apt-get install -y mosquitto); skipping")
	}
	dir := tb.TempDir()
	var err error
	for range 3 { // the free port may be taken before mosquitto binds it
		var addr string
		if addr, err = runMosquitto(tb, bin, dir); err == nil {
			return addr
		}
	}
	tb.Fatalf("mosquitto did not start: %v", err)
	return ""
}

func runMosquitto(tb testing.TB, bin, dir string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\nmax_inflight_messages 100\nset_tcp_nodelay true\n", port)
	if os.Geteuid() == 0 {
		// As root, mosquitto would switch to user "mosquitto", which
		// cannot read the temporary directory.
		conf += "user root\n"
	}
	confPath := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return "", err
	}
	logf, err := os.Create(filepath.Join(dir, "mosquitto.log"))
	if err != nil {
		return "", err
	}
	cmd := exec.Command(bin, "-c", confPath)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Die with the test binary, even when it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return "", err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(logf.Name())
			return "", fmt.Errorf("mosquitto exited: %s", bytes.TrimSpace(log))
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("%s not accepting: %w", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Cleanup(stop)
	return addr, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startInproc runs a plain mochi broker in this process for the duration of
// tb: default capabilities, every client and topic allowed, its log
// discarded, one TCP listener on a loopback port chosen by the kernel.
// (This module cannot import the library's internal/broker, which wraps the
// same mochi.) The net.Listener is opened here and handed to mochi
// (listeners.NewNet) rather than a port picked and released first
// (listeners.NewTCP), so no other process can take the port in between.
func startInproc(tb testing.TB) string {
	tb.Helper()
	srv := mochimqtt.New(&mochimqtt.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewNet("t1", ln)); err != nil {
		ln.Close()
		tb.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		srv.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		// mochi v2.7.9's Close lists the clients under its client map's
		// read lock taken twice, which deadlocks if a client closed just
		// before is being removed meanwhile: let those go first.
		for deadline := time.Now().Add(5 * time.Second); srv.Clients.Len() > 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if err := srv.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			tb.Error(err)
		}
	})
	return ln.Addr().String()
}
