package netx_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/devicemq/mqtt/client"
	"github.com/devicemq/mqtt/netx"
)

// URL turns a broker URL into a Dialer; configuration errors (an unknown
// scheme, an unreadable CA file, a bad port) come at once, before anything
// is dialled.
func ExampleURL() {
	// MQTT over TCP; the port defaults to 1883.
	tcp, err := netx.URL("tcp://broker.example", nil)
	if err != nil {
		log.Fatal(err)
	}

	// MQTT over TLS 1.2+ (port 8883), trusting the CAs in ca.pem instead of
	// the system's roots. The file is read here, by URL.
	mqtts, err := netx.URL("mqtts://broker.example:8883", &netx.Options{CAFile: "ca.pem"})
	if err != nil {
		log.Fatal(err) // also for a missing or empty ca.pem
	}

	// MQTT over WebSocket over TLS (port 443), with the path the broker
	// serves MQTT on; the system's roots verify the server.
	wss, err := netx.URL("wss://broker.example/mqtt", nil)
	if err != nil {
		log.Fatal(err)
	}

	// Each is a Dialer: try them in turn, as a device behind a firewall that
	// lets only HTTPS out might, 10 s each.
	for _, d := range []netx.Dialer{mqtts, wss, tcp} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := client.Dial(ctx, d, nil)
		cancel()
		if err != nil {
			log.Print(err)
			continue
		}
		fmt.Println("connected as", c.ClientID())
		if err := c.Close(); err != nil {
			log.Print(err)
		}
		return
	}
}

// Every TCP-based transport can go through an HTTP CONNECT proxy; the
// proxy's credentials go in its URL, the MQTT ones in client.Options.
func ExampleURL_proxy() {
	proxy := url.URL{
		Scheme: "http",
		User:   url.UserPassword("gateway", os.Getenv("PROXY_PASSWORD")), // escaped for the URL
		Host:   "proxy.example:3128",
	}
	d, err := netx.URL("mqtts://broker.example", &netx.Options{Proxy: proxy.String()})
	if err != nil {
		log.Fatal(err) // bad broker or proxy URL
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, d, nil)
	var status *netx.HTTPStatusError
	switch {
	case errors.Is(err, netx.ErrProxy) && errors.As(err, &status):
		// 407: the proxy wants other credentials; 403: it refuses the
		// broker's address.
		log.Fatalf("proxy refused the tunnel: HTTP %d", status.StatusCode)
	case err != nil:
		log.Fatal(err)
	}
	if err := c.Close(); err != nil {
		log.Print(err)
	}
}

// With the environment's proxy settings instead: HTTPS_PROXY for TLS and
// WSS, HTTP_PROXY for TCP and WS, and NO_PROXY.
func ExampleURL_proxyFromEnvironment() {
	d, err := netx.URL("wss://broker.example/mqtt", &netx.Options{ProxyFromEnvironment: true})
	if err != nil {
		log.Fatal(err) // also for a bad proxy URL in the environment
	}
	_ = d // pass d to client.Dial or client.NewSession
}

// URL refuses what it cannot use before anything is dialled: an unknown
// scheme, and user information, which would otherwise be dropped
// silently (MQTT credentials go in client.Options).
func ExampleURL_refused() {
	_, err := netx.URL("http://broker.example", nil)
	fmt.Println(errors.Is(err, netx.ErrScheme))

	_, err = netx.URL("mqtt://sensor-7:secret@broker.example", nil)
	fmt.Println(err) // the password is redacted
	// Output:
	// true
	// netx: broker URL mqtt://sensor-7:xxxxx@broker.example: user information is not used; set the MQTT user name and password in client.Options, a proxy's in Options.Proxy
}

// WebSocket dials a ws:// or wss:// URL with options of its own, such as
// headers of the upgrade request. It reports bad URLs and options when
// dialling; netx.URL with Options.WebSocket reports them at once.
func ExampleWebSocket() {
	d := netx.WebSocket("wss://broker.example/mqtt", &netx.WebSocketOptions{
		Header:       http.Header{"Authorization": {"Bearer " + os.Getenv("BROKER_TOKEN")}},
		Origin:       "https://gateway.example",
		MaxFrameSize: 1 << 20, // bytes: refuse frames over 1 MiB
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, d, nil)
	var status *netx.HTTPStatusError
	switch {
	case errors.As(err, &status):
		log.Fatalf("upgrade refused: HTTP %d %s", status.StatusCode, status.Status)
	case errors.Is(err, netx.ErrSubprotocol):
		log.Fatal("not an MQTT endpoint: ", err)
	case err != nil:
		log.Fatal(err)
	}
	if err := c.Close(); err != nil {
		log.Print(err)
	}
}

// TLS dials MQTT over TLS with a tls.Config of the caller's: here mutual
// TLS, with a private CA. TLS 1.2 is the minimum whatever the config says.
func ExampleTLS() {
	pem, err := os.ReadFile("ca.pem")
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		log.Fatal("ca.pem: no certificate")
	}
	cert, err := tls.LoadX509KeyPair("client.pem", "client-key.pem")
	if err != nil {
		log.Fatal(err)
	}
	d := netx.TLS("broker.example:8883", &tls.Config{
		RootCAs:      roots,
		Certificates: []tls.Certificate{cert},
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, d, nil)
	switch {
	case errors.Is(err, netx.ErrUnknownAuthority):
		log.Fatal("the server's certificate is not signed by ca.pem: ", err)
	case errors.Is(err, netx.ErrNameMismatch):
		log.Fatal("the certificate is not for broker.example: ", err)
	case errors.Is(err, netx.ErrClientCertRefused):
		log.Fatal("the server does not accept client.pem: ", err)
	case err != nil:
		log.Fatal(err)
	}
	if err := c.Close(); err != nil {
		log.Print(err)
	}
}
