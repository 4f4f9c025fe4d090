package tencent_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devicemq/mqtt/tencent"
)

// TestDeviceInfoErrorText: a bad device_info.json gives one line, with one
// "tencent:" prefix, every bad field and the file's path, and still
// matches ErrInvalidDeviceInfo and the first *FieldError. Before, it read
// "tencent: load device info x: tencent: invalid device info: ...", and
// two bad fields took two lines.
func TestDeviceInfoErrorText(t *testing.T) {
	path := filepath.Join(t.TempDir(), "device_info.json")
	if err := os.WriteFile(path, []byte(`{"auth_mode":"KEY","productId":"","deviceName":"a/b","key_deviceinfo":{"deviceSecret":"c2VjcmV0MTIzNDU2Nzg5MA=="}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := tencent.LoadDeviceInfo(path)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	var fe *tencent.FieldError
	switch {
	case strings.Contains(msg, "\n"):
		t.Errorf("two lines: %q", msg)
	case strings.Count(msg, "tencent:") != 1:
		t.Errorf("prefix repeated: %q", msg)
	case !strings.Contains(msg, "productId") || !strings.Contains(msg, "deviceName") || !strings.Contains(msg, path):
		t.Errorf("does not name both fields and the path: %q", msg)
	case !errors.Is(err, tencent.ErrInvalidDeviceInfo) || !errors.As(err, &fe) || fe.Field != "productId":
		t.Errorf("%q: errors.Is ErrInvalidDeviceInfo / errors.As *FieldError (productId first) fail", msg)
	}
	if strings.Contains(msg, "c2VjcmV0") {
		t.Errorf("shows the secret: %q", msg)
	}
}
