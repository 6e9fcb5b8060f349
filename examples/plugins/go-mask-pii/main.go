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

	"sluice.dev/sdk/json"
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

func (m *maskPii) Transform(r *sluice.Record, out *sluice.Emitter) error {
	if r.Value == nil {
		return errors.New("record has no value")
	}
	v, err := json.Parse(r.Value)
	user, ok := v.(*json.Object)
	if err != nil || !ok {
		return errors.New("value is not a JSON object")
	}
	if id, ok := user.Get("id"); !ok || id == nil || id == "" {
		return errors.New("missing or empty string field `id`")
	} else if _, isString := id.(string); !isString {
		return errors.New("missing or empty string field `id`")
	}
	for _, field := range m.fields {
		v, ok := user.Get(field)
		if !ok {
			continue
		}
		text, ok := v.(string)
		if !ok {
			return fmt.Errorf("field `%s` is not a string", field)
		}
		if strings.Contains(field, "email") {
			masked, err := maskEmail(text)
			if err != nil {
				return err
			}
			user.Set(field, masked)
		} else {
			user.Set(field, maskTail(text))
		}
	}
	out.Emit(sluice.Output{Key: r.Key, Value: json.Marshal(user), Headers: r.Headers})
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
