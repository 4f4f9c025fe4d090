// Command sample runs the reference flow of Tencent Cloud IoT Hub's "MQTT
// over WebSocket device access" guide (IoT Hub: 设备基于 WebSocket 的 MQTT 接入)
// on this module's codec, client and transports:
//
//	connect with signed credentials → subscribe $sys/operation/result/{pid}/{dn}
//	→ publish {"type":"get","resource":["time"]} to $sys/operation/{pid}/{dn}
//	→ receive the reply → print the server time → unsubscribe → disconnect
//
// With no flags it starts an embedded IoT Hub stand-in (package hubsim) on
// loopback with a throwaway demo device and runs the flow against it, so it
// needs no network and no account. With -device it reads device_info.json
// (key mode) and connects to the real service.
//
// Usage:
//
//	go run ./tencent/sample [-device device_info.json] [-transport ws|wss|tcp|tls] [-timeout 15s] [-v]
//
// The transports are IoT Hub's: ws (WebSocket, port 80, the guide's),
// wss (WebSocket over TLS, port 443, system roots), tcp (port 1883) and tls
// (port 8883, verified against Tencent's IoT Hub root, tencent.RootCAPEM).
// With the stand-in, tls and wss use a throwaway CA made for the run.
//
// -v logs every control packet sent and received at DEBUG level. The exit
// status is 0 when the server time was printed, 1 otherwise, 2 for bad flags.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/devicemq/mqtt/client"
	"github.com/devicemq/mqtt/internal/testcerts"
	"github.com/devicemq/mqtt/netx"
	"github.com/devicemq/mqtt/tencent"
	"github.com/devicemq/mqtt/tencent/hubsim"
)

func main() {
	devicePath := flag.String("device", "", "path to device_info.json (key mode); empty runs against an embedded IoT Hub stand-in")
	transport := flag.String("transport", "ws", "transport: ws or wss (MQTT over WebSocket, plain or TLS), tcp or tls (MQTT over TCP, plain or TLS)")
	timeout := flag.Duration("timeout", 15*time.Second, "time allowed for the whole flow")
	verbose := flag.Bool("v", false, "log every control packet sent and received (DEBUG level)")
	flag.Parse()
	usage := "usage: sample [-device device_info.json] [-transport ws|wss|tcp|tls] [-timeout 15s] [-v]"
	switch {
	case !validTransport(*transport):
		fmt.Fprintf(os.Stderr, "sample: -transport %q: want ws, wss, tcp or tls\n%s\n", *transport, usage)
		os.Exit(2)
	case *timeout <= 0:
		fmt.Fprintf(os.Stderr, "sample: -timeout %v: want a positive duration\n%s\n", *timeout, usage)
		os.Exit(2)
	case flag.NArg() > 0:
		fmt.Fprintf(os.Stderr, "sample: unexpected argument %q\n%s\n", flag.Arg(0), usage)
		os.Exit(2)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx, log, *devicePath, tencent.Transport(*transport)); err != nil {
		fmt.Fprintln(os.Stderr, "sample:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, devicePath string, transport tencent.Transport) error {
	var (
		dev    *tencent.DeviceInfo
		dialer netx.Dialer
		where  string
		err    error
	)
	if devicePath == "" {
		// The stand-in, with a throwaway CA for the TLS transports.
		dev = demoDevice()
		var opts netx.Options
		hubOpts := &hubsim.Options{Logger: log.With("component", "hubsim")}
		if transport == tencent.TLS || transport == tencent.WSS {
			dir, err := os.MkdirTemp("", "devicemq-sample-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			pki, err := testcerts.Generate(dir)
			if err != nil {
				return err
			}
			hubOpts.TLS = &tls.Config{Certificates: []tls.Certificate{pki.ServerKeyPair}}
			opts.CAFile = pki.CAFile
		}
		hub, err := hubsim.Start(*dev, hubOpts)
		if err != nil {
			return err
		}
		defer hub.Close()
		where = map[tencent.Transport]string{
			tencent.TCP: "tcp://" + hub.TCPAddr(),
			tencent.TLS: "mqtts://" + hub.TLSAddr(),
			tencent.WS:  hub.WebSocketURL(),
			tencent.WSS: hub.WSSURL(),
		}[transport]
		if dialer, err = netx.URL(where, &opts); err != nil {
			return err
		}
		log.Info("embedded IoT Hub stand-in started", "product_id", dev.ProductID, "device_name", dev.DeviceName, "url", where)
	} else {
		if dev, err = tencent.LoadDeviceInfo(devicePath); err != nil {
			return err
		}
		if where, err = dev.URL(transport); err != nil {
			return err
		}
		if dialer, err = dev.Dialer(transport, nil); err != nil {
			return err
		}
	}

	// A Session reconnects and signs anew for every attempt; the flow
	// below runs over whatever connection it has.
	so := dev.SessionOptions(nil)
	so.Logger = log
	var lastErr atomic.Value
	so.OnConnectError = func(err error) { lastErr.Store(err) }
	log.Info("connecting", "transport", transport, "to", where, "client_id", so.ClientID)
	s, err := client.NewSession(dialer, &so)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.WaitConnected(ctx); err != nil {
		if last, ok := lastErr.Load().(error); ok {
			return fmt.Errorf("connect to %s: %w", where, last)
		}
		return fmt.Errorf("connect to %s: %w", where, err)
	}

	now, err := tencent.ServerTime(ctx, s, dev.ProductID, dev.DeviceName)
	if err != nil {
		if errors.Is(err, tencent.ErrNoTimeReply) {
			return fmt.Errorf("no time reply from %s within the timeout: %w", where, err)
		}
		return err
	}
	fmt.Printf("server time: %s (local clock %+.3fs)\n", now.Format(time.RFC3339Nano), time.Since(now).Seconds())
	return s.Disconnect(ctx)
}

// demoDevice returns a key-mode device with a fresh random secret for the
// embedded stand-in.
func demoDevice() *tencent.DeviceInfo {
	secret := make([]byte, 16)
	rand.Read(secret)
	return &tencent.DeviceInfo{
		AuthMode:     tencent.AuthModeKey,
		Region:       tencent.RegionChina,
		ProductID:    "DEMOPRODID",
		DeviceName:   "demo-device",
		DeviceSecret: base64.StdEncoding.EncodeToString(secret),
	}
}

// validTransport reports whether name is one of IoT Hub's transports.
func validTransport(name string) bool {
	switch tencent.Transport(name) {
	case tencent.TCP, tencent.TLS, tencent.WS, tencent.WSS:
		return true
	}
	return false
}
