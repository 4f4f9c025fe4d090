// Package mosquitto starts a private mosquitto broker for tests: its own
// configuration, free loopback ports, a log file, stopped at the end of the
// test. It needs the mosquitto binary (Debian package "mosquitto"); without
// it the test is skipped, or fails when the CI environment variable is set.
package mosquitto

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Config selects the listeners and settings of a broker.
type Config struct {
	WebSocket   bool   // add a "protocol websockets" listener
	Unix        bool   // add a listener on a Unix domain socket
	Persistence bool   // keep sessions in a database file in the broker's directory
	Extra       string // more configuration lines, appended as they are
	// TLS adds listeners using these PEM files: TLS (server authentication
	// only), and when ClientCA is set one requiring client certificates;
	// with WebSocket also WSS, and WSS requiring client certificates.
	TLS *TLSFiles
}

// TLSFiles names PEM files for TLS listeners.
type TLSFiles struct {
	CA, Cert, Key string // CA that signed Cert; server certificate and key
	ClientCA      string // CA for client certificates (mutual TLS listener)
}

// Broker is a running mosquitto.
type Broker struct {
	TCPAddr  string // "127.0.0.1:port" of the plain MQTT listener
	WSURL    string // "ws://127.0.0.1:port/mqtt", when Config.WebSocket
	TLSAddr  string // "127.0.0.1:port" of the TLS listener, when Config.TLS
	MTLSAddr string // "127.0.0.1:port" of the mutual TLS listener, when Config.TLS.ClientCA
	WSSURL   string // "wss://127.0.0.1:port/mqtt", when Config.TLS and Config.WebSocket
	MWSSURL  string // "wss://127.0.0.1:port/mqtt" requiring client certificates, when also Config.TLS.ClientCA
	UnixPath string // path of the Unix domain socket, when Config.Unix
	Dir      string // working directory: configuration, log, database

	t       testing.TB
	cfg     Config
	conf    string
	logPath string
	ports   []int

	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan struct{}
}

// Binary returns the path of the mosquitto binary, or "" if there is none.
func Binary() string {
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

// Start starts a broker for the duration of t. Without a mosquitto binary it
// skips t, or fails it when the CI environment variable is set.
func Start(t testing.TB, cfg Config) *Broker {
	t.Helper()
	bin := Binary()
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("mosquitto not found; CI must install it (apt-get install -y mosquitto)")
		}
		t.Skip("mosquitto not found (apt-get install -y mosquitto); skipping")
	}
	b := &Broker{t: t, cfg: cfg, Dir: t.TempDir()}
	b.logPath = filepath.Join(b.Dir, "mosquitto.log")
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = b.configure(); err != nil {
			t.Fatal(err)
		}
		if err = b.start(bin); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("mosquitto did not start: %v\n%s", err, b.Log())
	}
	t.Cleanup(func() {
		b.Stop()
		if t.Failed() {
			t.Logf("mosquitto log (last 40 lines):\n%s", b.tail(40))
		}
	})
	return b
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (b *Broker) configure() error {
	n := 1
	if b.cfg.WebSocket {
		n++
	}
	if b.cfg.TLS != nil {
		n++
		if b.cfg.TLS.ClientCA != "" {
			n++
		}
		if b.cfg.WebSocket {
			n++
			if b.cfg.TLS.ClientCA != "" {
				n++
			}
		}
	}
	b.ports = b.ports[:0]
	for range n {
		p, err := freePort()
		if err != nil {
			return err
		}
		b.ports = append(b.ports, p)
	}
	var c strings.Builder
	if u, err := user.Current(); err == nil {
		// As root, mosquitto would switch to user "mosquitto", which
		// cannot read the test's directory.
		fmt.Fprintf(&c, "user %s\n", u.Username)
	}
	fmt.Fprintf(&c, "per_listener_settings false\nallow_anonymous true\n")
	if b.cfg.Persistence {
		fmt.Fprintf(&c, "persistence true\npersistence_location %s/\nautosave_interval 1\n", b.Dir)
	} else {
		fmt.Fprintf(&c, "persistence false\n")
	}
	fmt.Fprintf(&c, "log_dest file %s\nlog_type all\nconnection_messages true\n", b.logPath)
	if b.cfg.Extra != "" {
		fmt.Fprintf(&c, "%s\n", b.cfg.Extra)
	}
	i := 0
	next := func() int { p := b.ports[i]; i++; return p }
	p := next()
	b.TCPAddr = fmt.Sprintf("127.0.0.1:%d", p)
	fmt.Fprintf(&c, "\nlistener %d 127.0.0.1\nprotocol mqtt\n", p)
	if b.cfg.WebSocket {
		// mosquitto 2.0's WebSocket listeners ignore an IP bind address;
		// binding to the loopback interface keeps them off the network.
		p := next()
		b.WSURL = fmt.Sprintf("ws://127.0.0.1:%d/mqtt", p)
		fmt.Fprintf(&c, "\nlistener %d lo\nprotocol websockets\n", p)
	}
	if tf := b.cfg.TLS; tf != nil {
		p := next()
		b.TLSAddr = fmt.Sprintf("127.0.0.1:%d", p)
		fmt.Fprintf(&c, "\nlistener %d 127.0.0.1\nprotocol mqtt\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate false\n", p, tf.CA, tf.Cert, tf.Key)
		if tf.ClientCA != "" {
			p := next()
			b.MTLSAddr = fmt.Sprintf("127.0.0.1:%d", p)
			fmt.Fprintf(&c, "\nlistener %d 127.0.0.1\nprotocol mqtt\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\nuse_identity_as_username false\n", p, tf.ClientCA, tf.Cert, tf.Key)
		}
		if b.cfg.WebSocket {
			p := next()
			b.WSSURL = fmt.Sprintf("wss://127.0.0.1:%d/mqtt", p)
			fmt.Fprintf(&c, "\nlistener %d lo\nprotocol websockets\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate false\n", p, tf.CA, tf.Cert, tf.Key)
			if tf.ClientCA != "" {
				p := next()
				b.MWSSURL = fmt.Sprintf("wss://127.0.0.1:%d/mqtt", p)
				fmt.Fprintf(&c, "\nlistener %d lo\nprotocol websockets\ncafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\nuse_identity_as_username false\n", p, tf.ClientCA, tf.Cert, tf.Key)
			}
		}
	}
	if b.cfg.Unix {
		b.UnixPath = filepath.Join(b.Dir, "mosquitto.sock")
		fmt.Fprintf(&c, "\nlistener 0 %s\nprotocol mqtt\n", b.UnixPath)
	}
	b.conf = filepath.Join(b.Dir, "mosquitto.conf")
	return os.WriteFile(b.conf, []byte(c.String()), 0o644)
}

func (b *Broker) start(bin string) error {
	cmd := exec.Command(bin, "-c", b.conf)
	cmd.Dir = b.Dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exit := make(chan struct{})
	go func() { cmd.Wait(); close(exit) }()
	b.mu.Lock()
	b.cmd, b.exit = cmd, exit
	b.mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for _, p := range b.ports {
		for {
			select {
			case <-exit:
				return fmt.Errorf("mosquitto exited: %s", out.String())
			default:
			}
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(p), time.Second)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				b.Stop()
				return fmt.Errorf("port %d not accepting: %v", p, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for b.UnixPath != "" {
		c, err := net.DialTimeout("unix", b.UnixPath, time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Stop()
			return fmt.Errorf("unix socket %s not accepting: %v", b.UnixPath, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Stop kills the broker and waits for it to exit. It is idempotent.
func (b *Broker) Stop() {
	b.mu.Lock()
	cmd, exit := b.cmd, b.exit
	b.cmd = nil
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exit:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-exit
	}
}

// Restart stops the broker and starts it again on the same ports, keeping
// its database when Config.Persistence is set.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	if err := b.start(Binary()); err != nil {
		b.t.Fatalf("mosquitto restart: %v", err)
	}
}

// Log returns the broker's log so far.
func (b *Broker) Log() string {
	data, _ := os.ReadFile(b.logPath)
	return string(data)
}

func (b *Broker) tail(n int) string {
	var lines []string
	s := bufio.NewScanner(strings.NewReader(b.Log()))
	for s.Scan() {
		lines = append(lines, s.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
