package tencent

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The two examples of docs/tencent-iothub.md §1, verbatim.
const keyModeExample = `{
  "auth_mode": "KEY",
  "region": "china",
  "productId": "ABCDEFGHIJ",
  "productSecret": "",
  "deviceName": "dev1",
  "key_deviceinfo": {
    "deviceSecret": "c2VjcmV0a2V5MTIzNDU2Nzg5MA=="
  },
  "cert_deviceinfo": {
    "devCaFile": "",
    "devCertFile": "",
    "devPrivateKeyFile": ""
  },
  "subDev": {
    "subdev_num": 1,
    "subdev_list": [ { "sub_productId": "SUBPRODUCT", "sub_devName": "sub1" } ]
  }
}`

const certModeExample = `{
  "auth_mode": "CERT",
  "region": "china",
  "productId": "ABCDEFGHIJ",
  "productSecret": "",
  "deviceName": "dev1",
  "key_deviceinfo": {
    "deviceSecret": ""
  },
  "cert_deviceinfo": {
    "devCaFile": "certs/tencent_iothub_ca.crt",
    "devCertFile": "certs/dev1_cert.crt",
    "devPrivateKeyFile": "certs/dev1_private.key"
  },
  "subDev": {
    "sub_productId": "SUBPRODUCT",
    "sub_devName": "sub1"
  }
}`

func TestParseDeviceInfoKeyExample(t *testing.T) {
	d, err := ParseDeviceInfo([]byte(keyModeExample))
	if err != nil {
		t.Fatalf("ParseDeviceInfo: %v", err)
	}
	want := &DeviceInfo{
		AuthMode:     AuthModeKey,
		Region:       RegionChina,
		ProductID:    "ABCDEFGHIJ",
		DeviceName:   "dev1",
		DeviceSecret: "c2VjcmV0a2V5MTIzNDU2Nzg5MA==",
		SubDevices:   []SubDevice{{ProductID: "SUBPRODUCT", DeviceName: "sub1"}},
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("ParseDeviceInfo =\n%+v\nwant\n%+v", d, want)
	}
	if got := d.ClientID(); got != "ABCDEFGHIJdev1" {
		t.Errorf("ClientID() = %q", got)
	}
}

func TestParseDeviceInfoCertExample(t *testing.T) {
	_, err := ParseDeviceInfo([]byte(certModeExample))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "auth_mode" {
		t.Fatalf("ParseDeviceInfo(CERT) = %v, want a *FieldError for auth_mode", err)
	}
	if !errors.Is(err, ErrUnsupportedAuthMode) || !errors.Is(err, ErrInvalidDeviceInfo) {
		t.Errorf("error %v: want ErrUnsupportedAuthMode and ErrInvalidDeviceInfo", err)
	}
	if !strings.Contains(err.Error(), "not supported yet") {
		t.Errorf("error %q should say CERT is not supported yet", err)
	}
	// The only complaint is auth_mode: the empty deviceSecret is fine for a
	// certificate device.
	if strings.Contains(err.Error(), "deviceSecret") {
		t.Errorf("error %q complains about deviceSecret in CERT mode", err)
	}

	// The certificate fields are decoded for later use.
	d, err := decodeDeviceInfo([]byte(certModeExample))
	if err != nil {
		t.Fatal(err)
	}
	want := &DeviceInfo{
		AuthMode:       AuthModeCert,
		Region:         RegionChina,
		ProductID:      "ABCDEFGHIJ",
		DeviceName:     "dev1",
		CAFile:         "certs/tencent_iothub_ca.crt",
		CertFile:       "certs/dev1_cert.crt",
		PrivateKeyFile: "certs/dev1_private.key",
		SubDevices:     []SubDevice{{ProductID: "SUBPRODUCT", DeviceName: "sub1"}},
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("decodeDeviceInfo =\n%+v\nwant\n%+v", d, want)
	}
}

func TestParseDeviceInfoLenient(t *testing.T) {
	tests := []struct {
		name string
		json string
		want *DeviceInfo
	}{
		{
			name: "minimal, region defaults to china",
			json: `{"auth_mode":"KEY","productId":"P1","deviceName":"d","key_deviceinfo":{"deviceSecret":"c2VjcmV0a2V5MTIzNDU2Nzg5MA=="}}`,
			want: &DeviceInfo{AuthMode: AuthModeKey, Region: RegionChina, ProductID: "P1", DeviceName: "d", DeviceSecret: "c2VjcmV0a2V5MTIzNDU2Nzg5MA=="},
		},
		{
			name: "BOM, unknown keys, null subDev, other region",
			json: "\ufeff" + `{"auth_mode":"KEY","region":"ap-bangkok","productId":"P1","deviceName":"d","extra":[1,2],"subDev":null,
				"key_deviceinfo":{"deviceSecret":"c2VjcmV0a2V5MTIzNDU2Nzg5MA=="}}`,
			want: &DeviceInfo{AuthMode: AuthModeKey, Region: RegionBangkok, ProductID: "P1", DeviceName: "d", DeviceSecret: "c2VjcmV0a2V5MTIzNDU2Nzg5MA=="},
		},
		{
			name: "Python subDev list with two entries",
			json: `{"auth_mode":"KEY","productId":"P1","deviceName":"d","key_deviceinfo":{"deviceSecret":"c2VjcmV0a2V5MTIzNDU2Nzg5MA=="},
				"subDev":{"subdev_num":2,"subdev_list":[{"sub_productId":"S1","sub_devName":"a"},{"sub_productId":"S2","sub_devName":"b"}]}}`,
			want: &DeviceInfo{AuthMode: AuthModeKey, Region: RegionChina, ProductID: "P1", DeviceName: "d", DeviceSecret: "c2VjcmV0a2V5MTIzNDU2Nzg5MA==",
				SubDevices: []SubDevice{{"S1", "a"}, {"S2", "b"}}},
		},
		{
			name: "48-byte secret, 10-byte product, 48-byte name",
			json: `{"auth_mode":"KEY","productId":"ABCDEFGHIJ","deviceName":"` + strings.Repeat("n", 48) + `",
				"key_deviceinfo":{"deviceSecret":"eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"}}`,
			want: &DeviceInfo{AuthMode: AuthModeKey, Region: RegionChina, ProductID: "ABCDEFGHIJ", DeviceName: strings.Repeat("n", 48),
				DeviceSecret: "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := ParseDeviceInfo([]byte(tt.json))
			if err != nil {
				t.Fatalf("ParseDeviceInfo: %v", err)
			}
			if !reflect.DeepEqual(d, tt.want) {
				t.Errorf("got\n%+v\nwant\n%+v", d, tt.want)
			}
		})
	}
}

// TestParseDeviceInfoInvalidField changes one field of the KEY example at a
// time and checks the error names that field.
func TestParseDeviceInfoInvalidField(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(m map[string]any)
		field  string
		reason string // substring of the message
	}{
		{"auth_mode missing", func(m map[string]any) { delete(m, "auth_mode") }, "auth_mode", "missing"},
		{"auth_mode lower case", func(m map[string]any) { m["auth_mode"] = "key" }, "auth_mode", `"key"`},
		{"auth_mode PSK", func(m map[string]any) { m["auth_mode"] = "PSK" }, "auth_mode", `"PSK"`},
		{"auth_mode CERT", func(m map[string]any) { m["auth_mode"] = "CERT" }, "auth_mode", "not supported yet"},
		{"auth_mode number", func(m map[string]any) { m["auth_mode"] = 1 }, "auth_mode", "want string"},
		{"region unknown", func(m map[string]any) { m["region"] = "ap-guangzhou" }, "region", `"ap-guangzhou"`},
		{"region upper case", func(m map[string]any) { m["region"] = "CHINA" }, "region", "not a known region"},
		{"productId missing", func(m map[string]any) { delete(m, "productId") }, "productId", "missing"},
		{"productId empty", func(m map[string]any) { m["productId"] = "" }, "productId", "empty"},
		{"productId 11 bytes", func(m map[string]any) { m["productId"] = "ABCDEFGHIJK" }, "productId", "at most 10"},
		{"productId slash", func(m map[string]any) { m["productId"] = "AB/CD" }, "productId", `'/'`},
		{"productId number", func(m map[string]any) { m["productId"] = 12345 }, "productId", "want string"},
		{"deviceName empty", func(m map[string]any) { m["deviceName"] = "" }, "deviceName", "empty"},
		{"deviceName 49 bytes", func(m map[string]any) { m["deviceName"] = strings.Repeat("d", 49) }, "deviceName", "at most 48"},
		{"deviceName space", func(m map[string]any) { m["deviceName"] = "dev 1" }, "deviceName", "space"},
		{"deviceName semicolon", func(m map[string]any) { m["deviceName"] = "dev;1" }, "deviceName", `';'`},
		{"deviceName wildcard", func(m map[string]any) { m["deviceName"] = "dev#" }, "deviceName", `'#'`},
		{"key_deviceinfo missing", func(m map[string]any) { delete(m, "key_deviceinfo") }, "key_deviceinfo.deviceSecret", "missing"},
		{"key_deviceinfo not an object", func(m map[string]any) { m["key_deviceinfo"] = "secret" }, "key_deviceinfo", "want object"},
		{"deviceSecret empty", func(m map[string]any) { m["key_deviceinfo"] = map[string]any{"deviceSecret": ""} }, "key_deviceinfo.deviceSecret", "empty"},
		{"deviceSecret placeholder", func(m map[string]any) { m["key_deviceinfo"] = map[string]any{"deviceSecret": "YOUR_DEVICE_SECRET"} }, "key_deviceinfo.deviceSecret", "placeholder"},
		{"deviceSecret not base64", func(m map[string]any) { m["key_deviceinfo"] = map[string]any{"deviceSecret": "not*base64!"} }, "key_deviceinfo.deviceSecret", "Base64"},
		{"deviceSecret unpadded", func(m map[string]any) {
			m["key_deviceinfo"] = map[string]any{"deviceSecret": "c2VjcmV0a2V5MTIzNDU2Nzg5MA"}
		}, "key_deviceinfo.deviceSecret", "Base64"},
		{"deviceSecret URL alphabet", func(m map[string]any) { m["key_deviceinfo"] = map[string]any{"deviceSecret": "ab-_"} }, "key_deviceinfo.deviceSecret", "Base64"},
		{"deviceSecret 49 bytes", func(m map[string]any) {
			m["key_deviceinfo"] = map[string]any{"deviceSecret": "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eA=="}
		}, "key_deviceinfo.deviceSecret", "49 bytes"},
		{"deviceSecret number", func(m map[string]any) { m["key_deviceinfo"] = map[string]any{"deviceSecret": 5} }, "key_deviceinfo.deviceSecret", "want string"},
		{"subDev string", func(m map[string]any) { m["subDev"] = "sub1" }, "subDev", "want an object"},
		{"subDev list not an array", func(m map[string]any) { m["subDev"] = map[string]any{"subdev_list": 3} }, "subDev", "want an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal([]byte(keyModeExample), &m); err != nil {
				t.Fatal(err)
			}
			tt.edit(m)
			data, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			d, err := ParseDeviceInfo(data)
			if err == nil {
				t.Fatalf("ParseDeviceInfo succeeded: %+v", d)
			}
			if d != nil {
				t.Errorf("ParseDeviceInfo returned %+v with the error", d)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is not a *FieldError", err, err)
			}
			if fe.Field != tt.field {
				t.Errorf("Field = %q, want %q (error: %v)", fe.Field, tt.field, err)
			}
			if !errors.Is(err, ErrInvalidDeviceInfo) {
				t.Errorf("error %v does not wrap ErrInvalidDeviceInfo", err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.field) || !strings.Contains(msg, tt.reason) {
				t.Errorf("error %q: want it to name %q and say %q", msg, tt.field, tt.reason)
			}
			if strings.Contains(msg, "eHh4eHh4") || strings.Contains(msg, "c2VjcmV0") {
				t.Errorf("error %q contains the secret", msg)
			}
		})
	}
}

func TestValidateReportsEveryField(t *testing.T) {
	d := &DeviceInfo{AuthMode: "X", Region: "mars"}
	err := d.Validate()
	if err == nil {
		t.Fatal("Validate succeeded")
	}
	for _, f := range []string{"auth_mode", "region", "productId", "deviceName", "key_deviceinfo.deviceSecret"} {
		if !strings.Contains(err.Error(), f+":") {
			t.Errorf("error %q does not name %s", err, f)
		}
	}
	if !errors.Is(err, ErrInvalidDeviceInfo) {
		t.Errorf("joined error does not wrap ErrInvalidDeviceInfo")
	}

	if err := vecDevice().Validate(); err != nil {
		t.Errorf("Validate(valid) = %v", err)
	}
	empty := vecDevice()
	empty.Region = ""
	if err := empty.Validate(); err != nil {
		t.Errorf("Validate(empty region) = %v", err)
	}
}

func TestParseDeviceInfoSyntaxError(t *testing.T) {
	data := "{\n  \"auth_mode\": \"KEY\",\n  \"productId\": \"P1\"\n  \"deviceName\": \"d\"\n}"
	_, err := ParseDeviceInfo([]byte(data))
	var serr *json.SyntaxError
	if !errors.As(err, &serr) || !errors.Is(err, ErrInvalidDeviceInfo) {
		t.Fatalf("error %v: want a *json.SyntaxError wrapping ErrInvalidDeviceInfo", err)
	}
	if !strings.Contains(err.Error(), "line 4, column 3") {
		t.Errorf("error %q: want line 4, column 3", err)
	}

	_, err = ParseDeviceInfo([]byte(`{"auth_mode": "KEY"`))
	if !errors.As(err, &serr) {
		t.Errorf("truncated file: %v, want a *json.SyntaxError", err)
	}
	_, err = ParseDeviceInfo([]byte(`[]`))
	if !errors.Is(err, ErrInvalidDeviceInfo) {
		t.Errorf("array document: %v, want ErrInvalidDeviceInfo", err)
	}
}

func TestLoadDeviceInfo(t *testing.T) {
	dir := t.TempDir()

	good := filepath.Join(dir, "device_info.json")
	if err := os.WriteFile(good, []byte(keyModeExample), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := LoadDeviceInfo(good)
	if err != nil {
		t.Fatalf("LoadDeviceInfo: %v", err)
	}
	if d.ClientID() != "ABCDEFGHIJdev1" {
		t.Errorf("ClientID = %q", d.ClientID())
	}

	broken := filepath.Join(dir, "broken.json")
	if err := os.WriteFile(broken, []byte("{\n\"auth_mode\": KEY\n}"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadDeviceInfo(broken)
	var serr *json.SyntaxError
	if !errors.As(err, &serr) {
		t.Fatalf("LoadDeviceInfo(broken) = %v, want a *json.SyntaxError", err)
	}
	if !strings.Contains(err.Error(), broken) || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("error %q: want the path %s and line 2", err, broken)
	}

	invalid := filepath.Join(dir, "invalid.json")
	if err := os.WriteFile(invalid, []byte(`{"auth_mode":"KEY","productId":"P","deviceName":"d"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadDeviceInfo(invalid)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "key_deviceinfo.deviceSecret" || !strings.Contains(err.Error(), invalid) {
		t.Errorf("LoadDeviceInfo(invalid) = %v: want a *FieldError for the secret naming the path", err)
	}

	_, err = LoadDeviceInfo(filepath.Join(dir, "missing.json"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("LoadDeviceInfo(missing) = %v, want fs.ErrNotExist naming the file", err)
	}
}
