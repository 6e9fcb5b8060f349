// mask-pii in Go: the behaviour of examples/plugins/rust-mask-pii, byte for byte.
//
// Masks the fields named in the `fields` config (default `email,phone`) of a JSON object value:
// an `email` field becomes `a****@example.com`, any other field keeps only its last two letters
// or digits. Rejects a record without a value, a value that is not a JSON object, a missing or
// empty string `id`, an invalid email and a masked field that is not a string.
package main

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"sluice.dev/sdk/sluice"
)

type maskPii struct {
	fields []string
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
	if id, ok := doc.String(0); !ok || id == "" {
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
		text, _ := doc.String(path)
		if strings.Contains(field, "email") {
			masked, err := maskEmail(text)
			if err != nil {
				return err
			}
			doc.Set(path, masked)
		} else {
			doc.Set(path, maskTail(text))
		}
	}
	out.Emit(sluice.Output{Key: r.Key, JSON: doc, Headers: r.Headers})
	return nil
}

func maskEmail(email string) (string, error) {
	local, domain, found := strings.Cut(email, "@")
	if !found || local == "" || domain == "" || strings.Contains(domain, "@") {
		return "", fmt.Errorf("invalid email `%s`", email)
	}
	first, _ := utf8.DecodeRuneInString(local)
	return string(first) + "****@" + domain, nil
}

func maskTail(text string) string {
	total := 0
	for _, c := range text {
		if sluice.IsAlphanumeric(c) {
			total++
		}
	}
	var b strings.Builder
	seen := 0
	for _, c := range text {
		if sluice.IsAlphanumeric(c) {
			seen++
			if seen+2 <= total {
				c = '*'
			}
		}
		b.WriteRune(c)
	}
	return b.String()
}

func init() { sluice.Register(newMaskPii) }

func main() {}
