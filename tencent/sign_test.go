package tencent

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

// Worked example of docs/tencent-iothub.md §6.
const (
	vecProductID  = "ABCDEFGHIJ"
	vecDeviceName = "dev1"
	vecSecret     = "c2VjcmV0a2V5MTIzNDU2Nzg5MA==" // "secretkey1234567890"
	vecConnID     = "abcde"
	vecExpiry     = 1700000000

	// HMAC-SHA256 keyed with the Base64 *text*, appid 12010126: the wrong
	// key, which must not be what Sign produces.
	vecNegative = "54455e13d73aad9aa1adba1d4eaacd99fc7f00cea83d71ee422df42627b7147d"
)

func vecDevice() *DeviceInfo {
	return &DeviceInfo{
		AuthMode:     AuthModeKey,
		Region:       RegionChina,
		ProductID:    vecProductID,
		DeviceName:   vecDeviceName,
		DeviceSecret: vecSecret,
	}
}

func TestSignVectors(t *testing.T) {
	tests := []struct {
		name     string
		appID    string
		method   SignMethod
		username string
		password string
	}{
		{
			name:     "12010126/sha1",
			appID:    DefaultAppID,
			method:   HMACSHA1,
			username: "ABCDEFGHIJdev1;12010126;abcde;1700000000",
			password: "e77a37fabf79ba599b3d77a1640306dde9e34c79;hmacsha1",
		},
		{
			name:     "12010126/sha256",
			appID:    DefaultAppID,
			method:   HMACSHA256,
			username: "ABCDEFGHIJdev1;12010126;abcde;1700000000",
			password: "31c8fe00f2e0daa941ceeaa66cd2f728e43fa5486f86812b433b0d53ee493b0e;hmacsha256",
		},
		{
			name:     "default appid/default method",
			username: "ABCDEFGHIJdev1;12010126;abcde;1700000000",
			password: "31c8fe00f2e0daa941ceeaa66cd2f728e43fa5486f86812b433b0d53ee493b0e;hmacsha256",
		},
		{
			name:     "21010406/sha1",
			appID:    EmbeddedSDKAppID,
			method:   HMACSHA1,
			username: "ABCDEFGHIJdev1;21010406;abcde;1700000000",
			password: "b3c43a37d6d2634599c000338dcf91ff4f48c81d;hmacsha1",
		},
		{
			name:     "21010406/sha256",
			appID:    EmbeddedSDKAppID,
			method:   HMACSHA256,
			username: "ABCDEFGHIJdev1;21010406;abcde;1700000000",
			password: "eabe9ad5c884d3e6935fc86e009e12b3c866fcba0f30f2e0e220479716d69b7e;hmacsha256",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := vecDevice().Sign(&SignOptions{
				Method: tt.method,
				AppID:  tt.appID,
				ConnID: vecConnID,
				Expiry: time.Unix(vecExpiry, 0),
			})
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if c.ClientID != "ABCDEFGHIJdev1" {
				t.Errorf("ClientID = %q, want %q", c.ClientID, "ABCDEFGHIJdev1")
			}
			if c.Username != tt.username {
				t.Errorf("Username = %q, want %q", c.Username, tt.username)
			}
			if string(c.Password) != tt.password {
				t.Errorf("Password = %q, want %q", c.Password, tt.password)
			}
			if err := VerifyPassword(vecSecret, c.Username, c.Password, time.Unix(vecExpiry, 0)); err != nil {
				t.Errorf("VerifyPassword(own signature) = %v", err)
			}
		})
	}
}

func TestSignNegativeVector(t *testing.T) {
	// Confirm the negative vector really is "HMAC keyed with the Base64
	// text", then check Sign does not produce it and Verify refuses it.
	username := "ABCDEFGHIJdev1;12010126;abcde;1700000000"
	mac := hmac.New(sha256.New, []byte(vecSecret))
	mac.Write([]byte(username))
	if got := hex.EncodeToString(mac.Sum(nil)); got != vecNegative {
		t.Fatalf("HMAC with text key = %s, want the documented %s", got, vecNegative)
	}

	c, err := vecDevice().Sign(&SignOptions{ConnID: vecConnID, Expiry: time.Unix(vecExpiry, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if strings.HasPrefix(string(c.Password), vecNegative) {
		t.Fatalf("Sign used the Base64 text as the HMAC key: %s", c.Password)
	}
	err = VerifyPassword(vecSecret, username, []byte(vecNegative+";hmacsha256"), time.Unix(vecExpiry, 0))
	if !errors.Is(err, ErrBadSignature) {
		t.Fatalf("VerifyPassword(text-key signature) = %v, want ErrBadSignature", err)
	}
}

func TestSignDefaults(t *testing.T) {
	now := time.Date(2024, 5, 6, 7, 8, 9, 500_000_000, time.UTC)
	seen := map[string]bool{}
	for i := 0; i < 20; i++ {
		c, err := vecDevice().Sign(&SignOptions{Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		u, err := ParseUsername(c.Username)
		if err != nil {
			t.Fatal(err)
		}
		if u.ClientID != "ABCDEFGHIJdev1" || u.AppID != DefaultAppID {
			t.Errorf("username %q: want client id ABCDEFGHIJdev1 and appid %s", c.Username, DefaultAppID)
		}
		if want := now.Add(time.Hour).Unix(); u.ExpiryUnix != want {
			t.Errorf("expiry = %d, want now+1h = %d", u.ExpiryUnix, want)
		}
		if len(u.ConnID) != ConnIDLen {
			t.Errorf("connid %q: length %d, want %d", u.ConnID, len(u.ConnID), ConnIDLen)
		}
		for _, r := range u.ConnID {
			if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9') {
				t.Errorf("connid %q: character %q not in [A-Za-z0-9]", u.ConnID, r)
			}
		}
		if !strings.HasSuffix(string(c.Password), ";hmacsha256") || len(c.Password) != 75 {
			t.Errorf("password %q: want 64 hex + ;hmacsha256", c.Password)
		}
		seen[u.ConnID] = true
	}
	if len(seen) < 15 {
		t.Errorf("only %d distinct connids in 20 signatures", len(seen))
	}

	// nil options also work and use the real clock.
	c, err := vecDevice().Sign(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyPassword(vecSecret, c.Username, c.Password, time.Now()); err != nil {
		t.Errorf("VerifyPassword(Sign(nil)) = %v", err)
	}
}

func TestSignErrors(t *testing.T) {
	bad := vecDevice()
	bad.ProductID = ""
	if _, err := bad.Sign(nil); !errors.Is(err, ErrInvalidDeviceInfo) {
		t.Errorf("Sign(invalid device) = %v, want ErrInvalidDeviceInfo", err)
	}
	cert := vecDevice()
	cert.AuthMode = AuthModeCert
	if _, err := cert.Sign(nil); !errors.Is(err, ErrUnsupportedAuthMode) {
		t.Errorf("Sign(CERT device) = %v, want ErrUnsupportedAuthMode", err)
	}
	for _, o := range []*SignOptions{
		{Method: 7},
		{ConnID: "ab;cd"},
		{AppID: "1;2"},
		{Expiry: time.Unix(-10, 0)},
	} {
		if _, err := vecDevice().Sign(o); err == nil {
			t.Errorf("Sign(%+v) succeeded, want error", *o)
		}
	}
}

func TestCredentialsRedacted(t *testing.T) {
	c, err := vecDevice().Sign(&SignOptions{ConnID: vecConnID, Expiry: time.Unix(vecExpiry, 0)})
	if err != nil {
		t.Fatal(err)
	}
	tok := string(c.Password[:20])
	if s := c.String(); strings.Contains(s, tok) || !strings.Contains(s, c.Username) {
		t.Errorf("String() = %q: must show the user name and hide the password", s)
	}
	if s := c.LogValue().String(); strings.Contains(s, tok) {
		t.Errorf("LogValue() = %q leaks the password", s)
	}
}

func TestSignMethodString(t *testing.T) {
	for m, want := range map[SignMethod]string{HMACSHA256: "hmacsha256", HMACSHA1: "hmacsha1", 9: "SignMethod(9)"} {
		if got := m.String(); got != want {
			t.Errorf("SignMethod(%d).String() = %q, want %q", m, got, want)
		}
	}
}

func TestVerifyPassword(t *testing.T) {
	const username = "ABCDEFGHIJdev1;12010126;abcde;1700000000"
	const sha1pw = "e77a37fabf79ba599b3d77a1640306dde9e34c79;hmacsha1"
	const sha256pw = "31c8fe00f2e0daa941ceeaa66cd2f728e43fa5486f86812b433b0d53ee493b0e;hmacsha256"
	now := time.Unix(vecExpiry-60, 0)

	// sign returns a correct password for any user name (to reach the
	// checks that come after the signature check).
	sign := func(u string) string {
		d := vecDevice()
		key, _ := decodeSecret(d.DeviceSecret)
		return string(signUsername(sha256.New, key, u, HMACSHA256))
	}

	tests := []struct {
		name     string
		secret   string
		username string
		password string
		now      time.Time
		want     error // nil = success
	}{
		{"sha1", vecSecret, username, sha1pw, now, nil},
		{"sha256", vecSecret, username, sha256pw, now, nil},
		{"upper-case hex", vecSecret, username, strings.ToUpper(sha256pw[:64]) + ";hmacsha256", now, nil},
		{"at expiry second", vecSecret, username, sha256pw, time.Unix(vecExpiry, 999_999_999), nil},
		{"expired", vecSecret, username, sha256pw, time.Unix(vecExpiry+1, 0), ErrExpired},
		{"wrong secret", "b3RoZXJzZWNyZXQxMjM0NTY=", username, sha256pw, now, ErrBadSignature},
		{"tampered user name", vecSecret, "ABCDEFGHIJdev1;12010126;abcde;1800000000", sha256pw, now, ErrBadSignature},
		{"method swapped", vecSecret, username, sha256pw[:64] + ";hmacsha1", now, ErrBadSignature},
		{"unknown method", vecSecret, username, sha256pw[:64] + ";hmacmd5", now, ErrBadSignature},
		{"upper-case method", vecSecret, username, sha256pw[:64] + ";HMACSHA256", now, ErrBadSignature},
		{"no method", vecSecret, username, sha256pw[:64], now, ErrBadSignature},
		{"not hex", vecSecret, username, "zz" + sha256pw[2:], now, ErrBadSignature},
		{"truncated", vecSecret, username, sha256pw[:62] + ";hmacsha256", now, ErrBadSignature},
		{"empty password", vecSecret, username, "", now, ErrBadSignature},
		{"three fields", vecSecret, "ABCDEFGHIJdev1;12010126;1700000000", sign("ABCDEFGHIJdev1;12010126;1700000000"), now, ErrBadUsername},
		{"empty connid", vecSecret, "ABCDEFGHIJdev1;12010126;;1700000000", sign("ABCDEFGHIJdev1;12010126;;1700000000"), now, ErrBadUsername},
		{"signed expiry", vecSecret, "ABCDEFGHIJdev1;12010126;abcde;+1700000000", sign("ABCDEFGHIJdev1;12010126;abcde;+1700000000"), now, ErrBadUsername},
		{"hex expiry", vecSecret, "ABCDEFGHIJdev1;12010126;abcde;0x6553f100", sign("ABCDEFGHIJdev1;12010126;abcde;0x6553f100"), now, ErrBadUsername},
		{"expiry overflow", vecSecret, "ABCDEFGHIJdev1;12010126;abcde;9223372036854775808", sign("ABCDEFGHIJdev1;12010126;abcde;9223372036854775808"), now, ErrBadUsername},
		{"C SDK LONG_MAX expiry", vecSecret, "ABCDEFGHIJdev1;21010406;abcde;9223372036854775807", sign("ABCDEFGHIJdev1;21010406;abcde;9223372036854775807"), now, nil},
		{"Python SDK millisecond expiry", vecSecret, "ABCDEFGHIJdev1;21010406;abcde;1699999940000", sign("ABCDEFGHIJdev1;21010406;abcde;1699999940000"), now, nil},
		{"bad secret", "not base64", username, sha256pw, now, ErrInvalidDeviceInfo},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyPassword(tt.secret, tt.username, []byte(tt.password), tt.now)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("VerifyPassword = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("VerifyPassword = %v, want %v", err, tt.want)
			}
			for _, other := range []error{ErrExpired, ErrBadSignature, ErrBadUsername, ErrInvalidDeviceInfo} {
				if other != tt.want && errors.Is(err, other) {
					t.Errorf("error %v also matches %v", err, other)
				}
			}
			if strings.Contains(err.Error(), vecSecret) {
				t.Errorf("error %q contains the secret", err)
			}
		})
	}
}

func TestVerifyCredentials(t *testing.T) {
	d := vecDevice()
	now := time.Unix(vecExpiry-60, 0)
	c, err := d.Sign(&SignOptions{Expiry: time.Unix(vecExpiry, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.VerifyCredentials(c, now); err != nil {
		t.Fatalf("VerifyCredentials(own) = %v", err)
	}

	wrongID := c
	wrongID.ClientID = "ABCDEFGHIJdev2"
	if err := d.VerifyCredentials(wrongID, now); !errors.Is(err, ErrBadClientID) {
		t.Errorf("wrong client id: %v, want ErrBadClientID", err)
	}

	// Same secret, other device's name in the user name: the signature is
	// fine but the user name belongs to someone else.
	other := vecDevice()
	other.DeviceName = "dev2"
	oc, err := other.Sign(&SignOptions{Expiry: time.Unix(vecExpiry, 0)})
	if err != nil {
		t.Fatal(err)
	}
	oc.ClientID = d.ClientID()
	if err := d.VerifyCredentials(oc, now); !errors.Is(err, ErrBadUsername) {
		t.Errorf("foreign user name: %v, want ErrBadUsername", err)
	}

	if err := d.VerifyCredentials(c, time.Unix(vecExpiry+1, 0)); !errors.Is(err, ErrExpired) {
		t.Errorf("expired: %v, want ErrExpired", err)
	}
}

func TestParseUsername(t *testing.T) {
	u, err := ParseUsername("ABCDEFGHIJdev1;12010126;abcde;1700000000")
	if err != nil {
		t.Fatal(err)
	}
	want := Username{ClientID: "ABCDEFGHIJdev1", AppID: "12010126", ConnID: "abcde", ExpiryUnix: 1700000000}
	if u != want {
		t.Errorf("ParseUsername = %+v, want %+v", u, want)
	}
	if s := u.String(); s != "ABCDEFGHIJdev1;12010126;abcde;1700000000" {
		t.Errorf("String() = %q", s)
	}
	for _, s := range []string{"", "a;b;c", "a;b;c;d;e", ";b;c;1", "a;b;c;", "a;b;c;-1", "a;b;c;1.5", "a;b;c; 1"} {
		if _, err := ParseUsername(s); !errors.Is(err, ErrBadUsername) {
			t.Errorf("ParseUsername(%q) = %v, want ErrBadUsername", s, err)
		}
	}
}
