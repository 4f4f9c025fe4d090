package client

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devicemq/mqtt/internal/mosquitto"
	"github.com/devicemq/mqtt/netx"
	"github.com/devicemq/mqtt/packet"
)

// TestKillRestart: a program publishes QoS 1 and 2 messages through a
// Session with a FileStore and is killed with SIGKILL while they are
// accepted but unacknowledged (some not even sent); restarted with the same
// store and client identifier, it delivers every one of them, the QoS 2
// ones exactly once. The program is this test binary, run again.
func TestKillRestart(t *testing.T) {
	if os.Getenv("DEVICEMQ_KILL_CHILD") != "" {
		t.Skip("run as the child")
	}
	const n = 20
	b := mosquitto.Start(t, mosquitto.Config{})
	fp := newFaultProxy(t, b.TCPAddr)
	// While the first run publishes, the broker's acknowledgements are
	// lost: everything stays pending.
	fp.setRule(func(up bool, p packet.Packet) action {
		if !up && (p.Type() == packet.PUBACK || p.Type() == packet.PUBREC) {
			return drop
		}
		return forward
	})
	ctx := ctxT(t, 60*time.Second)
	k := newCounter()
	sub, err := Dial(ctx, netx.TCP(b.TCPAddr), &Options{ClientID: "kill-sub", InboxSize: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if _, err := sub.Subscribe(ctx, Subscription{Filter: "kill/#", QoS: 2, Handler: k.handler}); err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(t.TempDir(), "session.log")
	child := func(mode string) (*exec.Cmd, *bufio.Scanner) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.v")
		cmd.Env = append(os.Environ(), "DEVICEMQ_KILL_CHILD="+mode, "DEVICEMQ_KILL_ADDR="+fp.addr(), "DEVICEMQ_KILL_STORE="+store, "DEVICEMQ_KILL_N="+strconv.Itoa(n))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, bufio.NewScanner(out)
	}
	waitFor := func(sc *bufio.Scanner, word string) {
		t.Helper()
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), word) {
				return
			}
		}
		t.Fatalf("child ended without %s", word)
	}

	cmd, sc := child("publish")
	waitFor(sc, "READY")
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	fp.setRule(nil)
	cmd, sc = child("resume")
	waitFor(sc, "DONE")
	cmd.Wait()

	deadline := time.Now().Add(10 * time.Second)
	for k.distinct() < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	k.check(t, map[string]byte{"q1": 1, "q2": 2}, n/2)
}

// TestKillChild is the program TestKillRestart runs and kills.
func TestKillChild(t *testing.T) {
	mode := os.Getenv("DEVICEMQ_KILL_CHILD")
	if mode == "" {
		t.Skip("run by TestKillRestart")
	}
	n, _ := strconv.Atoi(os.Getenv("DEVICEMQ_KILL_N"))
	store, err := OpenFileStore(os.Getenv("DEVICEMQ_KILL_STORE"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	s, err := NewSession(netx.TCP(os.Getenv("DEVICEMQ_KILL_ADDR")), &SessionOptions{
		Options:    Options{ClientID: "kill-pub", PersistentSession: true, Store: store, MaxInflight: 5},
		MinBackoff: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if mode == "publish" {
		if err := s.WaitConnected(ctx); err != nil {
			t.Fatal(err)
		}
		for i := range n / 2 {
			for _, q := range []byte{1, 2} {
				g := fmt.Sprintf("q%d", q)
				go s.Publish(ctx, Message{Topic: "kill/" + g, Payload: []byte(fmt.Sprintf("%s/%d", g, i)), QoS: q})
				for s.Stats().Pending < 2*i+int(q) {
					time.Sleep(time.Millisecond)
				}
			}
		}
		fmt.Println("READY")
		select {} // until killed
	}
	for s.Stats().Pending > 0 {
		time.Sleep(5 * time.Millisecond)
	}
	s.Close()
	fmt.Println("DONE")
}
