// mask-pii in Go: the behaviour of examples/plugins/rust-mask-pii, byte for byte.
//
// Masks the fields named in the `fields` config (default `email,phone`) of a JSON object value:
// an `email` field becomes `a****@example.com`, any other field keeps only its last two letters
// or digits. Rejects a record without a value, a value that is not a JSON object, a missing or
// empty string `id`, an invalid email and a masked field that is not a string.
package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"sluice.dev/sdk/sluice"
)

type maskPii struct {
	fields []string
	email  []bool // whether fields[i] is masked as an email
	buf    []byte
}

func newMaskPii(config sluice.Config) (sluice.Transform, error) {
	spec, ok := config.Get("fields")
	if !ok {
		spec = "email,phone"
	}
	m := &maskPii{}
	for _, f := range strings.Split(spec, ",") {
		if f = sluice.Trim(f); f != "" {
			m.fields = append(m.fields, f)
		}
	}
	if len(m.fields) == 0 {
		return nil, errors.New("config `fields` must name at least one field to mask")
	}
	for _, p := range config.Pairs {
		if p[0] != "fields" {
			return nil, fmt.Errorf("unknown config key `%s` (expected `fields`)", p[0])
		}
	}
	for _, f := range m.fields {
		m.email = append(m.email, strings.Contains(f, "email"))
	}
	return m, nil
}

// JSONPaths are read by the host for the whole batch: `id` (path 0) and each masked field (1..).
func (m *maskPii) JSONPaths() []string {
	paths := []string{"/id"}
	for _, f := range m.fields {
		paths = append(paths, sluice.Pointer(f))
	}
	return paths
}

func (m *maskPii) Transform(r *sluice.Record, out *sluice.Emitter) error {
	doc := r.JSON()
	if doc.Kind(0) != sluice.String || len(doc.Text(0)) == 0 {
		if r.Value == nil {
			return errors.New("record has no value")
		}
		if doc.Root() != sluice.Object {
			return errors.New("value is not a JSON object")
		}
		return errors.New("missing or empty string field `id`")
	}
	for i, field := range m.fields {
		path := i + 1
		switch doc.Kind(path) {
		case sluice.Missing:
			continue
		case sluice.String:
		default:
			return fmt.Errorf("field `%s` is not a string", field)
		}
		text := doc.Text(path) // a view of the host's answer: masked into m.buf, copied by SetBytes
		if m.email[i] {
			masked, err := maskEmail(m.buf[:0], text)
			if err != nil {
				return err
			}
			m.buf = masked
		} else {
			m.buf = maskTail(m.buf[:0], text)
		}
		doc.SetBytes(path, m.buf)
	}
	out.Emit(sluice.Output{Key: r.Key, JSON: doc, Headers: r.Headers})
	return nil
}

// maskEmail appends `a****@example.com` for email to buf.
func maskEmail(buf, email []byte) ([]byte, error) {
	local, domain, found := bytes.Cut(email, []byte{'@'})
	if !found || len(local) == 0 || len(domain) == 0 || bytes.IndexByte(domain, '@') >= 0 {
		return nil, fmt.Errorf("invalid email `%s`", email)
	}
	_, n := utf8.DecodeRune(local)
	buf = append(buf, local[:n]...)
	buf = append(buf, "****@"...)
	return append(buf, domain...), nil
}

// maskTail appends text with every letter or digit but the last two replaced by `*` to buf.
func maskTail(buf, text []byte) []byte {
	total := 0
	for _, c := range string(text) {
		if sluice.IsAlphanumeric(c) {
			total++
		}
	}
	seen := 0
	for _, c := range string(text) {
		if sluice.IsAlphanumeric(c) {
			seen++
			if seen+2 <= total {
				c = '*'
			}
		}
		buf = utf8.AppendRune(buf, c)
	}
	return buf
}

func init() { sluice.Register(newMaskPii) }

func main() {}
