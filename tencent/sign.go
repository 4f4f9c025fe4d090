package tencent

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// SignMethod is the HMAC algorithm of a key-mode CONNECT password. The zero
// value is HMACSHA256.
//
// Source: IoT Hub: 设备基于 TCP 的 MQTT 接入 (password = token;hmacsha1 or
// token;hmacsha256).
type SignMethod uint8

const (
	// HMACSHA256 signs with HMAC-SHA256; the password ends in ";hmacsha256"
	// and is 75 bytes long. It is the default, as in the Java SDK.
	HMACSHA256 SignMethod = iota

	// HMACSHA1 signs with HMAC-SHA1; the password ends in ";hmacsha1" and is
	// 49 bytes long. The C and Python SDKs use it.
	HMACSHA1
)

// String returns the method's name as written after the ';' of the
// password: "hmacsha256" or "hmacsha1".
func (m SignMethod) String() string {
	switch m {
	case HMACSHA256:
		return "hmacsha256"
	case HMACSHA1:
		return "hmacsha1"
	}
	return "SignMethod(" + strconv.Itoa(int(m)) + ")"
}

// newHash returns the method's hash constructor, or nil if m is unknown.
func (m SignMethod) newHash() func() hash.Hash {
	switch m {
	case HMACSHA256:
		return sha256.New
	case HMACSHA1:
		return sha1.New
	}
	return nil
}

// parseSignMethod parses the suffix of a password.
func parseSignMethod(s string) (SignMethod, bool) {
	switch s {
	case "hmacsha256":
		return HMACSHA256, true
	case "hmacsha1":
		return HMACSHA1, true
	}
	return 0, false
}

// Values of the second field ("sdkappid") of the user name.
//
// Source: IoT Hub: 设备基于 TCP 的 MQTT 接入 ("always 12010126"); the C and
// Python SDKs send 21010406 (QCLOUD_IOT_DEVICE_SDK_APPID). Both are in
// production use.
const (
	// DefaultAppID is the documented sdkappid, used when SignOptions.AppID
	// is empty.
	DefaultAppID = "12010126"

	// EmbeddedSDKAppID is the sdkappid of Tencent's C and Python device
	// SDKs.
	EmbeddedSDKAppID = "21010406"
)

const (
	// DefaultSignatureLifetime is how long a signature stays valid when
	// SignOptions.Expiry is zero: the expiry is Now + 1 hour.
	DefaultSignatureLifetime = time.Hour

	// ConnIDLen is the length of a generated connection ID, in characters
	// from [A-Za-z0-9], as in the C and Java SDKs.
	ConnIDLen = 5
)

// SignOptions are the choices DeviceInfo.Sign leaves to the caller. A nil
// *SignOptions and the zero value both mean all defaults. Sign does not
// modify it.
type SignOptions struct {
	// Method is the HMAC algorithm. Zero value: HMACSHA256.
	Method SignMethod

	// AppID is the user name's second field. Empty: DefaultAppID.
	AppID string

	// ConnID is the user name's third field, a short random string the
	// platform uses for troubleshooting only. Empty: ConnIDLen random
	// characters from [A-Za-z0-9] read from crypto/rand.
	ConnID string

	// Expiry is when the signature stops being valid; it is sent as Unix
	// seconds (fractions truncated). Zero: Now() + DefaultSignatureLifetime.
	// A time in the past is allowed (the server will refuse it).
	Expiry time.Time

	// Now returns the current time. Nil: time.Now.
	Now func() time.Time
}

// Credentials are the CONNECT fields that authenticate a key-mode device.
//
// Source: IoT Hub: 设备基于 TCP 的 MQTT 接入.
type Credentials struct {
	// ClientID is the CONNECT client identifier: product ID + device name.
	ClientID string

	// Username is "<clientid>;<appid>;<connid>;<expiry>", expiry in Unix
	// seconds.
	Username string

	// Password is "<hex>;<method>": the lower-case hex HMAC of the exact
	// Username bytes keyed with the Base64-decoded device secret, then
	// ";hmacsha256" or ";hmacsha1".
	Password []byte
}

// String returns the client ID and user name; the password is redacted.
func (c Credentials) String() string {
	return "client id " + strconv.Quote(c.ClientID) + ", username " + strconv.Quote(c.Username) + ", password [redacted]"
}

// LogValue implements slog.LogValuer; the password is redacted.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("client_id", c.ClientID),
		slog.String("username", c.Username),
		slog.String("password", "[redacted]"),
	)
}

// Sign returns the client ID, user name and password with which the
// key-mode device d connects, following IoT Hub: 设备基于 TCP 的 MQTT 接入
// (the same values are used over TLS and WebSocket: IoT Hub: 设备基于
// WebSocket 的 MQTT 接入). Compute new credentials for every connection
// attempt: the expiry and connection ID change.
//
// Sign fails if d does not pass Validate (the error is Validate's), if
// opts.Method is unknown, if AppID or ConnID contain ';', or if the expiry
// is before 1970.
func (d *DeviceInfo) Sign(opts *SignOptions) (Credentials, error) {
	if err := d.Validate(); err != nil {
		return Credentials{}, err
	}
	key, err := decodeSecret(d.DeviceSecret)
	if err != nil {
		return Credentials{}, err
	}

	var o SignOptions
	if opts != nil {
		o = *opts
	}
	newHash := o.Method.newHash()
	if newHash == nil {
		return Credentials{}, fmt.Errorf("tencent: sign: unknown sign method %v", o.Method)
	}
	if o.AppID == "" {
		o.AppID = DefaultAppID
	}
	if o.ConnID == "" {
		o.ConnID = randomConnID()
	}
	if strings.Contains(o.AppID, ";") || strings.Contains(o.ConnID, ";") {
		return Credentials{}, errors.New("tencent: sign: AppID and ConnID must not contain ';'")
	}
	if o.Expiry.IsZero() {
		now := time.Now
		if o.Now != nil {
			now = o.Now
		}
		o.Expiry = now().Add(DefaultSignatureLifetime)
	}
	expiry := o.Expiry.Unix()
	if expiry < 0 {
		return Credentials{}, fmt.Errorf("tencent: sign: expiry %v is before 1970", o.Expiry)
	}

	clientID := d.ClientID()
	username := clientID + ";" + o.AppID + ";" + o.ConnID + ";" + strconv.FormatInt(expiry, 10)
	return Credentials{
		ClientID: clientID,
		Username: username,
		Password: signUsername(newHash, key, username, o.Method),
	}, nil
}

// signUsername returns hex(HMAC(key, username)) + ";" + method.
func signUsername(newHash func() hash.Hash, key []byte, username string, m SignMethod) []byte {
	mac := hmac.New(newHash, key)
	mac.Write([]byte(username))
	sum := mac.Sum(nil)
	name := m.String()
	out := make([]byte, hex.EncodedLen(len(sum)), hex.EncodedLen(len(sum))+1+len(name))
	hex.Encode(out, sum)
	out = append(out, ';')
	return append(out, name...)
}

// randomConnID returns ConnIDLen characters drawn uniformly from
// [A-Za-z0-9] with crypto/rand.
func randomConnID() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	const limit = 256 - 256%len(alphabet) // reject bytes >= 248 to avoid bias
	out := make([]byte, 0, ConnIDLen)
	var buf [16]byte
	for len(out) < ConnIDLen {
		rand.Read(buf[:]) // never fails (crypto/rand, Go 1.24+)
		for _, b := range buf {
			if int(b) < limit && len(out) < ConnIDLen {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out)
}

// Errors reported by VerifyPassword, ParseUsername and
// DeviceInfo.VerifyCredentials. Each returned error wraps exactly one of
// them and adds detail; test with errors.Is.
var (
	// ErrBadUsername: the user name is not
	// "<clientid>;<appid>;<connid>;<expiry>" with four non-empty fields and
	// a decimal expiry, or its client ID is not the device's.
	ErrBadUsername = errors.New("tencent: bad user name")

	// ErrBadSignature: the password is not "<hex>;hmacsha256" or
	// "<hex>;hmacsha1", or the HMAC does not match.
	ErrBadSignature = errors.New("tencent: bad signature")

	// ErrExpired: the signature is valid but its expiry has passed.
	ErrExpired = errors.New("tencent: signature expired")

	// ErrBadClientID: the CONNECT client identifier is not the device's
	// product ID + device name.
	ErrBadClientID = errors.New("tencent: bad client identifier")
)

// Username is a parsed key-mode user name,
// "<clientid>;<appid>;<connid>;<expiry>".
//
// Source: IoT Hub: 设备基于 TCP 的 MQTT 接入.
type Username struct {
	ClientID string // product ID + device name
	AppID    string // sdkappid, e.g. DefaultAppID
	ConnID   string // random connection ID

	// ExpiryUnix is the expiry in Unix seconds. It is an int64 rather than
	// a time.Time because SDKs send values far outside time.Time's
	// comparable range: the C SDK sends LONG_MAX, the Python SDK the
	// current time in milliseconds.
	ExpiryUnix int64
}

// String formats u as a user name.
func (u Username) String() string {
	return u.ClientID + ";" + u.AppID + ";" + u.ConnID + ";" + strconv.FormatInt(u.ExpiryUnix, 10)
}

// ParseUsername splits a key-mode user name into its four fields. The
// expiry must be 1 to 19 decimal digits that fit an int64. Errors wrap
// ErrBadUsername.
func ParseUsername(s string) (Username, error) {
	f := strings.Split(s, ";")
	if len(f) != 4 {
		return Username{}, fmt.Errorf("%w: %q has %d ';'-separated fields, want 4", ErrBadUsername, s, len(f))
	}
	for i, name := range [...]string{"client id", "appid", "connid", "expiry"} {
		if f[i] == "" {
			return Username{}, fmt.Errorf("%w: %q has an empty %s field", ErrBadUsername, s, name)
		}
	}
	for _, c := range []byte(f[3]) {
		if c < '0' || c > '9' {
			return Username{}, fmt.Errorf("%w: expiry %q is not a decimal number of Unix seconds", ErrBadUsername, f[3])
		}
	}
	exp, err := strconv.ParseInt(f[3], 10, 64)
	if err != nil {
		return Username{}, fmt.Errorf("%w: expiry %q is out of range", ErrBadUsername, f[3])
	}
	return Username{ClientID: f[0], AppID: f[1], ConnID: f[2], ExpiryUnix: exp}, nil
}

// VerifyPassword is the server side of DeviceInfo.Sign: it checks that
// password is the signature of username under deviceSecret (standard Base64
// text, as in device_info.json) and that the signature has not expired at
// now. It is what the IoT Hub simulator (package hubsim) uses; the real
// server's checks are not documented beyond IoT Hub: 设备基于 TCP 的 MQTT 接入.
//
// Order of checks and errors:
//
//   - deviceSecret not valid (see Validate): an error wrapping
//     ErrInvalidDeviceInfo;
//   - password not "<hex>;hmacsha256" or "<hex>;hmacsha1", or HMAC
//     mismatch: ErrBadSignature. The HMAC is compared in constant time;
//     hex digits may be upper or lower case;
//   - user name malformed (see ParseUsername): ErrBadUsername;
//   - now later than the expiry (compared in whole Unix seconds; the
//     expiry second itself is still valid): ErrExpired.
//
// VerifyPassword does not know which device is expected: it only requires a
// non-empty client ID field. DeviceInfo.VerifyCredentials also checks that
// the client ID and the user name belong to the device.
func VerifyPassword(deviceSecret, username string, password []byte, now time.Time) error {
	_, err := verify(deviceSecret, username, password, now)
	return err
}

func verify(deviceSecret, username string, password []byte, now time.Time) (Username, error) {
	key, err := decodeSecret(deviceSecret)
	if err != nil {
		return Username{}, err
	}

	i := strings.LastIndexByte(string(password), ';')
	if i < 0 {
		return Username{}, fmt.Errorf("%w: password has no ';<method>' suffix", ErrBadSignature)
	}
	method, ok := parseSignMethod(string(password[i+1:]))
	if !ok {
		return Username{}, fmt.Errorf("%w: unknown sign method %q, want hmacsha256 or hmacsha1", ErrBadSignature, password[i+1:])
	}
	got := make([]byte, hex.DecodedLen(i))
	if _, err := hex.Decode(got, password[:i]); err != nil {
		return Username{}, fmt.Errorf("%w: token is not hex", ErrBadSignature)
	}
	mac := hmac.New(method.newHash(), key)
	mac.Write([]byte(username))
	if !hmac.Equal(got, mac.Sum(nil)) {
		return Username{}, fmt.Errorf("%w: %s of the user name does not match", ErrBadSignature, method)
	}

	u, err := ParseUsername(username)
	if err != nil {
		return Username{}, err
	}
	if now.Unix() > u.ExpiryUnix {
		return u, fmt.Errorf("%w: expiry %d (Unix s) is before now %d", ErrExpired, u.ExpiryUnix, now.Unix())
	}
	return u, nil
}

// VerifyCredentials checks CONNECT credentials the way the IoT Hub
// simulator does: c.ClientID and the user name's client ID field must both
// be d.ClientID() (else ErrBadClientID or ErrBadUsername), and
// VerifyPassword(d.DeviceSecret, c.Username, c.Password, now) must pass.
// Whether the real server compares the client identifier is not documented.
func (d *DeviceInfo) VerifyCredentials(c Credentials, now time.Time) error {
	want := d.ClientID()
	if c.ClientID != want {
		return fmt.Errorf("%w: %q, want %q", ErrBadClientID, c.ClientID, want)
	}
	u, err := verify(d.DeviceSecret, c.Username, c.Password, now)
	if err != nil {
		return err
	}
	if u.ClientID != want {
		return fmt.Errorf("%w: client id field %q, want %q", ErrBadUsername, u.ClientID, want)
	}
	return nil
}

// GoString is String, for %#v: the password is redacted.
func (c Credentials) GoString() string { return c.String() }
