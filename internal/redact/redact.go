// Package redact formats structs that hold secrets (passwords, device and
// product secrets, proxy credentials) with the secrets replaced by a mark,
// for their String, GoString and LogValue methods, so that no fmt verb
// (%v %+v %#v %s %q) and no slog handler (text or JSON) ever shows one.
package redact

import (
	"fmt"
	"net/url"
	"reflect"
	"strings"
)

// Mark replaces a secret that is not empty.
const Mark = "[redacted]"

// Struct formats v, a struct, as Type{Field:value ...}. hide (nil for
// none), given a field's name, returns its text and true when the field is
// secret;
// other fields show as fmt's %+v would, but for pointers, functions,
// channels and interfaces holding pointers, which show as addresses (a
// pointer may lead to a secret: a tls.Config's private keys).
func Struct(v any, hide func(field string, value reflect.Value) (string, bool)) string {
	rv := reflect.ValueOf(v)
	t := rv.Type()
	var b strings.Builder
	b.WriteString(t.String())
	b.WriteByte('{')
	for i := range t.NumField() {
		if i > 0 {
			b.WriteByte(' ')
		}
		sf := t.Field(i)
		b.WriteString(sf.Name)
		b.WriteByte(':')
		fv := rv.Field(i)
		if hide != nil {
			if s, ok := hide(sf.Name, fv); ok {
				b.WriteString(s)
				continue
			}
		}
		writeValue(&b, fv)
	}
	b.WriteByte('}')
	return b.String()
}

func writeValue(b *strings.Builder, fv reflect.Value) {
	k := fv.Kind()
	if k == reflect.Interface && !fv.IsNil() && fv.Elem().Kind() == reflect.Pointer {
		k = reflect.Pointer
		fv = fv.Elem()
	}
	switch k {
	case reflect.Pointer, reflect.Func, reflect.Chan, reflect.UnsafePointer, reflect.Map:
		if fv.IsNil() {
			b.WriteString("<nil>")
			return
		}
		if k == reflect.Map {
			fmt.Fprintf(b, "map[%d entries]", fv.Len())
			return
		}
		fmt.Fprintf(b, "%#x", fv.Pointer())
		return
	}
	if fv.CanInterface() {
		fmt.Fprintf(b, "%+v", fv.Interface())
		return
	}
	fmt.Fprintf(b, "%+v", fv)
}

// Secret returns Mark for a secret that is not empty, and "" for one that
// is, so that a missing secret still shows.
func Secret(v reflect.Value) string {
	if v.IsZero() || (v.Kind() == reflect.Slice && v.Len() == 0) {
		return `""`
	}
	return Mark
}

// URL returns raw with the password of its user information replaced by
// "xxxxx" (url.URL.Redacted), or Mark when raw does not parse but may hold
// user information.
func URL(raw string) string {
	if raw == "" {
		return `""`
	}
	u, err := url.Parse(raw)
	if err != nil {
		if strings.Contains(raw, "@") {
			return Mark
		}
		return raw
	}
	return u.Redacted()
}
