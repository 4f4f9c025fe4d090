// Package testcerts makes a throwaway PKI for tests with crypto/x509: a CA,
// a server certificate and a client certificate it signs, and a second CA
// that the server does not trust, with a client certificate of its own.
// Keys are ECDSA P-256; certificates are valid from an hour ago for a day.
package testcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// ServerNames are the DNS names in the server certificate, besides the IP
// addresses 127.0.0.1 and ::1.
var ServerNames = []string{"localhost", "broker.example.test"}

// PKI holds the PEM file paths and parsed forms of a throwaway PKI.
type PKI struct {
	Dir string

	CAFile        string // the trusted CA
	ServerCert    string // server certificate signed by the CA (ServerNames, 127.0.0.1, ::1)
	ServerKey     string
	ClientCert    string // client certificate CN=device-01 signed by the CA
	ClientKey     string
	OtherCAFile   string // a CA nobody trusts
	OtherCert     string // client certificate CN=intruder signed by the other CA
	OtherKey      string
	Pool          *x509.CertPool // holds the trusted CA
	ServerKeyPair tls.Certificate
}

type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// New writes a PKI into a temporary directory of t.
func New(t testing.TB) *PKI {
	t.Helper()
	p := &PKI{Dir: t.TempDir()}
	ca := p.ca(t, "devicemq test CA", "ca")
	other := p.ca(t, "devicemq untrusted CA", "other-ca")
	p.CAFile = filepath.Join(p.Dir, "ca.crt")
	p.OtherCAFile = filepath.Join(p.Dir, "other-ca.crt")
	p.ServerCert, p.ServerKey = p.leaf(t, ca, "server", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    ServerNames,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	p.ClientCert, p.ClientKey = p.leaf(t, ca, "client", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "device-01"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	p.OtherCert, p.OtherKey = p.leaf(t, other, "intruder", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "intruder"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	p.Pool = x509.NewCertPool()
	p.Pool.AddCert(ca.cert)
	var err error
	if p.ServerKeyPair, err = tls.LoadX509KeyPair(p.ServerCert, p.ServerKey); err != nil {
		t.Fatal(err)
	}
	return p
}

var serial int64

func (p *PKI) ca(t testing.TB, name, file string) issuer {
	key := newKey(t)
	serial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p.write(t, file+".crt", "CERTIFICATE", der)
	return issuer{cert, key}
}

func (p *PKI) leaf(t testing.TB, by issuer, file string, tmpl *x509.Certificate) (certFile, keyFile string) {
	key := newKey(t)
	serial++
	tmpl.SerialNumber = big.NewInt(serial)
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, by.cert, &key.PublicKey, by.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, file+".crt", "CERTIFICATE", der), p.write(t, file+".key", "PRIVATE KEY", kder)
}

func (p *PKI) write(t testing.TB, name, typ string, der []byte) string {
	path := filepath.Join(p.Dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}
