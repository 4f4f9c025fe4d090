// Package testcerts makes a throwaway PKI with crypto/x509, for tests and
// for the sample's stand-in: a CA, a server certificate and a client
// certificate it signs, and a second CA that nobody trusts, with a client
// certificate of its own. Keys are ECDSA P-256; certificates are valid from
// an hour ago for a day.
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
	"sync/atomic"
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
	p, err := Generate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Generate writes a PKI into dir, which must exist.
func Generate(dir string) (*PKI, error) {
	p := &PKI{Dir: dir}
	ca, err := p.ca("devicemq test CA", "ca")
	if err != nil {
		return nil, err
	}
	other, err := p.ca("devicemq untrusted CA", "other-ca")
	if err != nil {
		return nil, err
	}
	p.CAFile = filepath.Join(dir, "ca.crt")
	p.OtherCAFile = filepath.Join(dir, "other-ca.crt")
	leaves := []struct {
		by        issuer
		name      string
		tmpl      *x509.Certificate
		cert, key *string
	}{
		{ca, "server", &x509.Certificate{
			Subject:     pkix.Name{CommonName: "localhost"},
			DNSNames:    ServerNames,
			IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}, &p.ServerCert, &p.ServerKey},
		{ca, "client", &x509.Certificate{
			Subject:     pkix.Name{CommonName: "device-01"},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}, &p.ClientCert, &p.ClientKey},
		{other, "intruder", &x509.Certificate{
			Subject:     pkix.Name{CommonName: "intruder"},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}, &p.OtherCert, &p.OtherKey},
	}
	for _, l := range leaves {
		if *l.cert, *l.key, err = p.leaf(l.by, l.name, l.tmpl); err != nil {
			return nil, err
		}
	}
	p.Pool = x509.NewCertPool()
	p.Pool.AddCert(ca.cert)
	if p.ServerKeyPair, err = tls.LoadX509KeyPair(p.ServerCert, p.ServerKey); err != nil {
		return nil, err
	}
	return p, nil
}

var serial atomic.Int64

func (p *PKI) ca(name, file string) (issuer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return issuer{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return issuer{}, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return issuer{}, err
	}
	if _, err := p.write(file+".crt", "CERTIFICATE", der); err != nil {
		return issuer{}, err
	}
	return issuer{cert, key}, nil
}

func (p *PKI) leaf(by issuer, file string, tmpl *x509.Certificate) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, by.cert, &key.PublicKey, by.key)
	if err != nil {
		return "", "", err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	if certFile, err = p.write(file+".crt", "CERTIFICATE", der); err != nil {
		return "", "", err
	}
	keyFile, err = p.write(file+".key", "PRIVATE KEY", kder)
	return certFile, keyFile, err
}

func (p *PKI) write(name, typ string, der []byte) (string, error) {
	path := filepath.Join(p.Dir, name)
	return path, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
