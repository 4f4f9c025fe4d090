package tencent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/devicemq/mqtt/internal/redact"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// AuthMode is the "auth_mode" field of device_info.json: how the device
// proves its identity.
//
// Source: IoT Hub: 设备基于 TCP 的 MQTT 接入 (key vs certificate devices) and
// the device_info.json files of Tencent's C and Python device SDKs.
type AuthMode string

const (
	// AuthModeKey is a device authenticated by its device secret (PSK): the
	// CONNECT password is an HMAC of the user name (see DeviceInfo.Sign).
	AuthModeKey AuthMode = "KEY"

	// AuthModeCert is a device authenticated by an X.509 client certificate.
	// Its fields are parsed, but this package does not support it yet:
	// Validate reports ErrUnsupportedAuthMode.
	AuthModeCert AuthMode = "CERT"
)

// Limits on device_info.json fields, from the buffer sizes of the C device
// SDK (MAX_SIZE_OF_PRODUCT_ID, MAX_SIZE_OF_DEVICE_NAME, DECODE_PSK_LENGTH in
// qcloud_iot_export_variables.h). Source: IoT Hub device SDK for C.
const (
	// MaxProductIDLen is the maximum length of a product ID, in bytes.
	MaxProductIDLen = 10

	// MaxDeviceNameLen is the maximum length of a device name, in bytes.
	MaxDeviceNameLen = 48

	// MaxDeviceSecretLen is the maximum length of a device secret after
	// Base64 decoding, in bytes (64 Base64 characters).
	MaxDeviceSecretLen = 48
)

// PlaceholderDeviceSecret is the device secret that the Python device SDK's
// sample device_info.json ships with; it means "not configured".
// Source: IoT Hub device SDK for Python (hub/utils/providers.py).
const PlaceholderDeviceSecret = "YOUR_DEVICE_SECRET"

// Errors reported by ParseDeviceInfo, LoadDeviceInfo and Validate.
var (
	// ErrInvalidDeviceInfo is wrapped by every error that reports a bad
	// device_info.json (malformed JSON or a bad field), and by every
	// *FieldError. A file that cannot be read gets the os error instead
	// (errors.Is(err, fs.ErrNotExist) and so on).
	ErrInvalidDeviceInfo = errors.New("tencent: invalid device info")

	// ErrUnsupportedAuthMode is wrapped by the *FieldError for "auth_mode"
	// when the mode is valid for IoT Hub but not implemented here ("CERT").
	ErrUnsupportedAuthMode = errors.New("tencent: auth mode not supported yet")
)

// A FieldError reports one bad field of a device_info.json file or of a
// DeviceInfo. errors.Is(err, ErrInvalidDeviceInfo) holds for every
// FieldError; errors.Is also finds Err when it is set.
//
// Error messages never contain the value of a secret.
type FieldError struct {
	// Field is the field's path in device_info.json: "auth_mode",
	// "region", "productId", "deviceName", "key_deviceinfo.deviceSecret",
	// "subDev", ...
	Field string

	// Reason says what is wrong, in lower case.
	Reason string

	// Err is a more specific cause, or nil: ErrUnsupportedAuthMode, a
	// base64.CorruptInputError, a *json.UnmarshalTypeError.
	Err error
}

// Error returns "tencent: invalid device info: <field>: <reason>".
func (e *FieldError) Error() string {
	return "tencent: invalid device info: " + e.Field + ": " + e.Reason
}

// Unwrap returns ErrInvalidDeviceInfo and, if set, Err.
func (e *FieldError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrInvalidDeviceInfo, e.Err}
	}
	return []error{ErrInvalidDeviceInfo}
}

// SubDevice is one entry of the "subDev" section of device_info.json: a
// sub-device a gateway device manages (IoT Hub: 网关子设备). It is demo data
// of the SDKs and is not used by this package.
type SubDevice struct {
	ProductID  string // "sub_productId"
	DeviceName string // "sub_devName"
}

// DeviceInfo is the identity of one device: the content of the
// device_info.json file used by Tencent's device SDKs. The file format is an
// SDK convention, not part of the wire protocol; ParseDeviceInfo documents
// the accepted JSON.
//
// Source: IoT Hub device SDKs for C (platform/os/linux/HAL_Device_linux.c)
// and Python (hub/utils/providers.py); the meaning of the fields is from
// IoT Hub: 设备基于 TCP 的 MQTT 接入.
type DeviceInfo struct {
	// AuthMode is "auth_mode": AuthModeKey or AuthModeCert.
	AuthMode AuthMode

	// Region is "region", the access region that selects the host names
	// (see MQTTHost). An empty value means RegionChina.
	Region Region

	// ProductID is "productId", at most MaxProductIDLen bytes, e.g.
	// "ABCDEFGHIJ". It is part of the client identifier, topics and hosts.
	ProductID string

	// ProductSecret is "productSecret", used only for dynamic registration
	// (not implemented here). It may be empty.
	ProductSecret string

	// DeviceName is "deviceName", at most MaxDeviceNameLen bytes.
	DeviceName string

	// DeviceSecret is "key_deviceinfo.deviceSecret": the device PSK as
	// standard Base64 text (typically 24 characters, 16 bytes decoded).
	// Key mode only.
	DeviceSecret string

	// CAFile is "cert_deviceinfo.devCaFile": the PEM file of the CA that
	// signs IoT Hub's TLS certificate. Certificate mode only (parsed, not
	// yet used).
	CAFile string

	// CertFile is "cert_deviceinfo.devCertFile": the device's PEM
	// certificate. Certificate mode only (parsed, not yet used).
	CertFile string

	// PrivateKeyFile is "cert_deviceinfo.devPrivateKeyFile": the device's
	// PEM private key. Certificate mode only (parsed, not yet used).
	PrivateKeyFile string

	// SubDevices is "subDev", in either of the SDKs' shapes.
	SubDevices []SubDevice
}

// deviceInfoFile mirrors device_info.json.
type deviceInfoFile struct {
	AuthMode      string `json:"auth_mode"`
	Region        string `json:"region"`
	ProductID     string `json:"productId"`
	ProductSecret string `json:"productSecret"`
	DeviceName    string `json:"deviceName"`
	Key           *struct {
		DeviceSecret string `json:"deviceSecret"`
	} `json:"key_deviceinfo"`
	Cert *struct {
		CAFile         string `json:"devCaFile"`
		CertFile       string `json:"devCertFile"`
		PrivateKeyFile string `json:"devPrivateKeyFile"`
	} `json:"cert_deviceinfo"`
	SubDev json.RawMessage `json:"subDev"`
}

// subDevJSON accepts both shapes of "subDev": the C SDK's single object
// {"sub_productId","sub_devName"} and the Python SDK's
// {"subdev_num": N, "subdev_list": [{...}, ...]}.
type subDevJSON struct {
	subDevEntry
	List []subDevEntry `json:"subdev_list"`
}

type subDevEntry struct {
	ProductID  string `json:"sub_productId"`
	DeviceName string `json:"sub_devName"`
}

// LoadDeviceInfo reads and parses the device_info.json file at path, as
// ParseDeviceInfo does. Every error names path, and wraps the *os.PathError
// or the parse error, on one line with one "tencent:" prefix: "tencent:
// load device info: open x.json: no such file or directory", "tencent:
// invalid device info: productId: empty (in x.json)".
func LoadDeviceInfo(path string) (*DeviceInfo, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tencent: load device info: %w", err)
	}
	d, err := ParseDeviceInfo(data)
	if err != nil {
		return nil, fmt.Errorf("%w (in %s)", err, path)
	}
	return d, nil
}

// ParseDeviceInfo parses the content of a device_info.json file and checks
// it with Validate. It returns a nil *DeviceInfo with the error when either
// fails.
//
// Accepted JSON (keys as written by Tencent's SDKs; unknown keys are
// ignored; a UTF-8 byte order mark is skipped):
//
//	{
//	  "auth_mode": "KEY",                   // or "CERT"
//	  "region": "china",                    // optional, default "china"
//	  "productId": "ABCDEFGHIJ",
//	  "productSecret": "",                  // optional
//	  "deviceName": "dev1",
//	  "key_deviceinfo": {"deviceSecret": "c2VjcmV0a2V5MTIzNDU2Nzg5MA=="},
//	  "cert_deviceinfo": {"devCaFile": "", "devCertFile": "", "devPrivateKeyFile": ""},
//	  "subDev": {"sub_productId": "SUBPRODUCT", "sub_devName": "sub1"}
//	}
//
// The section of the unused auth mode may be absent. "subDev" may also have
// the shape {"subdev_num": 1, "subdev_list": [{"sub_productId": ...,
// "sub_devName": ...}]}; "subdev_num" is ignored.
//
// Errors wrap ErrInvalidDeviceInfo. A JSON syntax error gives the line and
// column and wraps the *json.SyntaxError; a value of the wrong JSON type is
// a *FieldError naming the field; Validate's errors are returned as is.
func ParseDeviceInfo(data []byte) (*DeviceInfo, error) {
	d, err := decodeDeviceInfo(data)
	if err != nil {
		return nil, err
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return d, nil
}

// decodeDeviceInfo is ParseDeviceInfo without Validate.
func decodeDeviceInfo(data []byte) (*DeviceInfo, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))

	var f deviceInfoFile
	if err := json.Unmarshal(data, &f); err != nil {
		var serr *json.SyntaxError
		var terr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &serr):
			line, col := lineCol(data, serr.Offset)
			return nil, fmt.Errorf("%w: line %d, column %d: %w", ErrInvalidDeviceInfo, line, col, serr)
		case errors.As(err, &terr):
			field := terr.Field
			if field == "" {
				field = "(document)"
			}
			return nil, &FieldError{Field: field, Reason: "is a JSON " + terr.Value + ", want " + jsonKind(terr.Type.Kind().String()), Err: terr}
		default:
			return nil, fmt.Errorf("%w: %w", ErrInvalidDeviceInfo, err)
		}
	}

	d := &DeviceInfo{
		AuthMode:      AuthMode(f.AuthMode),
		Region:        Region(f.Region),
		ProductID:     f.ProductID,
		ProductSecret: f.ProductSecret,
		DeviceName:    f.DeviceName,
	}
	if d.Region == "" {
		d.Region = RegionChina
	}
	if f.Key != nil {
		d.DeviceSecret = f.Key.DeviceSecret
	}
	if f.Cert != nil {
		d.CAFile = f.Cert.CAFile
		d.CertFile = f.Cert.CertFile
		d.PrivateKeyFile = f.Cert.PrivateKeyFile
	}
	if len(f.SubDev) > 0 && !bytes.Equal(bytes.TrimSpace(f.SubDev), []byte("null")) {
		var sd subDevJSON
		if err := json.Unmarshal(f.SubDev, &sd); err != nil {
			return nil, &FieldError{Field: "subDev", Reason: `want an object {"sub_productId", "sub_devName"} or {"subdev_list": [...]}`, Err: err}
		}
		if sd.ProductID != "" || sd.DeviceName != "" {
			d.SubDevices = append(d.SubDevices, SubDevice(sd.subDevEntry))
		}
		for _, e := range sd.List {
			d.SubDevices = append(d.SubDevices, SubDevice(e))
		}
	}

	return d, nil
}

// jsonKind names the JSON type that decodes into a Go kind.
func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "struct", "map":
		return "object"
	case "slice", "array":
		return "array"
	case "bool":
		return "boolean"
	default:
		return "number"
	}
}

// lineCol converts the byte offset reported by a *json.SyntaxError (the
// number of bytes read when the error was found) into a 1-based line and
// column.
func lineCol(data []byte, offset int64) (line, col int) {
	off := int(min(max(offset, 0), int64(len(data))))
	prefix := data[:off]
	line = 1 + bytes.Count(prefix, []byte{'\n'})
	col = off - (bytes.LastIndexByte(prefix, '\n') + 1)
	return line, max(col, 1)
}

// Validate checks d for use in key mode. It returns nil, one *FieldError,
// or a *FieldErrors holding several (errors.As finds the first *FieldError;
// the text is one line, "tencent: invalid device info: f1: r1; f2: r2").
// Every error wraps ErrInvalidDeviceInfo. Rules:
//
//   - auth_mode: must be "KEY". "CERT" is reported with
//     ErrUnsupportedAuthMode (not supported yet).
//   - region: empty (= china), "china", "us-east", "europe" or "ap-bangkok"
//     (IoT Hub: 设备接入地域说明).
//   - productId: 1 to MaxProductIDLen bytes.
//   - deviceName: 1 to MaxDeviceNameLen bytes.
//   - productId and deviceName: valid UTF-8 without spaces, control
//     characters or any of / + # ; (they would break topics and the user
//     name). The exact character set IoT Hub allows is not documented.
//   - key_deviceinfo.deviceSecret (key mode): not empty, not
//     PlaceholderDeviceSecret, standard padded Base64 (RFC 4648 section 4)
//     of 1 to MaxDeviceSecretLen bytes.
func (d *DeviceInfo) Validate() error {
	var errs FieldErrors
	add := func(field, reason string, err error) {
		errs = append(errs, &FieldError{Field: field, Reason: reason, Err: err})
	}

	switch d.AuthMode {
	case AuthModeKey:
	case AuthModeCert:
		add("auth_mode", `"CERT" (X.509 certificate authentication) is not supported yet; only "KEY" is`, ErrUnsupportedAuthMode)
	case "":
		add("auth_mode", `missing; want "KEY"`, nil)
	default:
		add("auth_mode", strconv.Quote(string(d.AuthMode))+` is not an IoT Hub auth mode; want "KEY"`, nil)
	}

	if !d.Region.Valid() {
		add("region", strconv.Quote(string(d.Region))+` is not a known region; want "china", "us-east", "europe" or "ap-bangkok"`, nil)
	}

	if reason := checkName(d.ProductID, MaxProductIDLen); reason != "" {
		add("productId", reason, nil)
	}
	if reason := checkName(d.DeviceName, MaxDeviceNameLen); reason != "" {
		add("deviceName", reason, nil)
	}

	if d.AuthMode != AuthModeCert {
		if _, err := decodeSecret(d.DeviceSecret); err != nil {
			errs = append(errs, err.(*FieldError)) // decodeSecret's only kind
		}
	}

	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return errs
}

// FieldErrors is several bad fields of one device info, in file order.
type FieldErrors []*FieldError

// Error returns one line: "tencent: invalid device info: <field>:
// <reason>; <field>: <reason>".
func (e FieldErrors) Error() string {
	var b strings.Builder
	b.WriteString("tencent: invalid device info: ")
	for i, fe := range e {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(fe.Field + ": " + fe.Reason)
	}
	return b.String()
}

// Unwrap returns the errors, for errors.Is and errors.As.
func (e FieldErrors) Unwrap() []error {
	errs := make([]error, len(e))
	for i, fe := range e {
		errs[i] = fe
	}
	return errs
}

// checkName checks a product ID or device name; it returns "" if s is fine.
func checkName(s string, maxLen int) string {
	switch {
	case s == "":
		return "missing or empty"
	case len(s) > maxLen:
		return fmt.Sprintf("%q is %d bytes long, want at most %d", s, len(s), maxLen)
	case !utf8.ValidString(s):
		return fmt.Sprintf("%q is not valid UTF-8", s)
	}
	for _, r := range s {
		switch {
		case r <= ' ' || r == 0x7f:
			return fmt.Sprintf("%q contains a space or control character", s)
		case r == '/' || r == '+' || r == '#' || r == ';':
			return fmt.Sprintf("%q contains %q, which breaks MQTT topics or the user name", s, r)
		}
	}
	return ""
}

// decodeSecret decodes a device secret, or returns a *FieldError for
// "key_deviceinfo.deviceSecret" that does not contain the secret.
func decodeSecret(secret string) ([]byte, error) {
	const field = "key_deviceinfo.deviceSecret"
	switch secret {
	case "":
		return nil, &FieldError{Field: field, Reason: "missing or empty"}
	case PlaceholderDeviceSecret:
		return nil, &FieldError{Field: field, Reason: "is the placeholder " + strconv.Quote(PlaceholderDeviceSecret) + "; set the device's secret from the IoT Hub console"}
	}
	key, err := base64.StdEncoding.Strict().DecodeString(secret)
	if err != nil {
		return nil, &FieldError{Field: field, Reason: "is not valid standard Base64: " + err.Error(), Err: err}
	}
	if len(key) == 0 || len(key) > MaxDeviceSecretLen {
		return nil, &FieldError{Field: field, Reason: fmt.Sprintf("decodes to %d bytes, want 1 to %d", len(key), MaxDeviceSecretLen)}
	}
	return key, nil
}

// ClientID returns the MQTT client identifier of the device: ProductID
// immediately followed by DeviceName, without separator, e.g.
// "ABCDEFGHIJdev1". Source: IoT Hub: 设备基于 TCP 的 MQTT 接入.
func (d *DeviceInfo) ClientID() string {
	return d.ProductID + d.DeviceName
}

// String formats d with ProductSecret and DeviceSecret redacted, as every
// fmt verb (%v, %+v, %s, %q; %#v through GoString) and slog (LogValue)
// show it: secrets never print.
func (d DeviceInfo) String() string {
	return redact.Struct(d, func(field string, v reflect.Value) (string, bool) {
		if field == "ProductSecret" || field == "DeviceSecret" {
			return redact.Secret(v), true
		}
		return "", false
	})
}

// GoString is String, for %#v.
func (d DeviceInfo) GoString() string { return d.String() }

// LogValue implements slog.LogValuer with String's text.
func (d DeviceInfo) LogValue() slog.Value { return slog.StringValue(d.String()) }
