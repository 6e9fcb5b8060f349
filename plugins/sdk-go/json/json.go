// Package json reads and writes JSON as the Rust SDK's plugins see it (serde_json with
// `preserve_order`), so a Go plugin produces byte-identical JSON to its Rust twin.
//
// Parse returns nil, bool, string, int64 (negative integers), uint64 (non-negative integers),
// float64 (other numbers), []any and *Object (key order kept; a repeated key keeps its first
// position and its last value). It fails where serde_json fails: invalid UTF-8, lone surrogate
// escapes, numbers out of range, nesting deeper than 127, trailing characters. Marshal writes
// compact JSON with serde_json's escapes and float format.
package json

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

const maxDepth = 127

// Object is a JSON object with its keys in order.
type Object struct {
	Keys   []string
	Values []any
}

// Get returns the value of key.
func (o *Object) Get(key string) (any, bool) {
	for i, k := range o.Keys {
		if k == key {
			return o.Values[i], true
		}
	}
	return nil, false
}

// Set replaces the value of key in place, or appends key.
func (o *Object) Set(key string, v any) {
	for i, k := range o.Keys {
		if k == key {
			o.Values[i] = v
			return
		}
	}
	o.Keys = append(o.Keys, key)
	o.Values = append(o.Values, v)
}

var errSyntax = errors.New("invalid JSON")

type parser struct {
	b     []byte
	i     int
	depth int
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\n', '\r', '\t':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) peek() int {
	if p.i < len(p.b) {
		return int(p.b[p.i])
	}
	return -1
}

// Parse parses UTF-8 JSON.
func Parse(b []byte) (any, error) {
	p := &parser{b: b}
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.ws()
	if p.i != len(p.b) {
		return nil, errSyntax
	}
	return v, nil
}

func (p *parser) value() (any, error) {
	p.ws()
	c := p.peek()
	switch {
	case c == '{' || c == '[':
		p.depth++
		if p.depth > maxDepth {
			return nil, errSyntax
		}
		var v any
		var err error
		if c == '{' {
			v, err = p.object()
		} else {
			v, err = p.array()
		}
		p.depth--
		return v, err
	case c == '"':
		return p.str()
	case c == 't':
		return true, p.lit("true")
	case c == 'f':
		return false, p.lit("false")
	case c == 'n':
		return nil, p.lit("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	}
	return nil, errSyntax
}

func (p *parser) lit(w string) error {
	if !strings.HasPrefix(string(p.b[p.i:min(p.i+len(w), len(p.b))]), w) {
		return errSyntax
	}
	p.i += len(w)
	return nil
}

func (p *parser) object() (any, error) {
	o := &Object{}
	p.i++
	p.ws()
	if p.peek() == '}' {
		p.i++
		return o, nil
	}
	for {
		p.ws()
		if p.peek() != '"' {
			return nil, errSyntax
		}
		k, err := p.str()
		if err != nil {
			return nil, err
		}
		p.ws()
		if p.peek() != ':' {
			return nil, errSyntax
		}
		p.i++
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		o.Set(k, v)
		p.ws()
		c := p.peek()
		p.i++
		if c == ',' {
			continue
		}
		if c == '}' {
			return o, nil
		}
		return nil, errSyntax
	}
}

func (p *parser) array() (any, error) {
	a := []any{}
	p.i++
	p.ws()
	if p.peek() == ']' {
		p.i++
		return a, nil
	}
	for {
		v, err := p.value()
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		p.ws()
		c := p.peek()
		p.i++
		if c == ',' {
			continue
		}
		if c == ']' {
			return a, nil
		}
		return nil, errSyntax
	}
}

func (p *parser) hex4() (rune, bool) {
	if len(p.b)-p.i < 4 {
		return 0, false
	}
	v, err := strconv.ParseUint(string(p.b[p.i:p.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	p.i += 4
	return rune(v), true
}

func (p *parser) str() (string, error) {
	p.i++
	var sb []byte
	for {
		if p.i >= len(p.b) {
			return "", errSyntax
		}
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return string(sb), nil
		case c < 0x20:
			return "", errSyntax
		case c == '\\':
			p.i++
			if p.i >= len(p.b) {
				return "", errSyntax
			}
			e := p.b[p.i]
			p.i++
			switch e {
			case '"', '\\', '/':
				sb = append(sb, e)
			case 'b':
				sb = append(sb, '\b')
			case 'f':
				sb = append(sb, '\f')
			case 'n':
				sb = append(sb, '\n')
			case 'r':
				sb = append(sb, '\r')
			case 't':
				sb = append(sb, '\t')
			case 'u':
				u, ok := p.hex4()
				if !ok || (u >= 0xdc00 && u <= 0xdfff) {
					return "", errSyntax
				}
				if u >= 0xd800 && u <= 0xdbff {
					if len(p.b)-p.i < 2 || p.b[p.i] != '\\' || p.b[p.i+1] != 'u' {
						return "", errSyntax
					}
					p.i += 2
					l, ok := p.hex4()
					if !ok || l < 0xdc00 || l > 0xdfff {
						return "", errSyntax
					}
					u = 0x10000 + (u-0xd800)<<10 + (l - 0xdc00)
				}
				sb = utf8.AppendRune(sb, u)
			default:
				return "", errSyntax
			}
		case c < 0x80:
			sb = append(sb, c)
			p.i++
		default:
			r, n := utf8.DecodeRune(p.b[p.i:])
			if r == utf8.RuneError && n <= 1 {
				return "", errSyntax
			}
			sb = append(sb, p.b[p.i:p.i+n]...)
			p.i += n
		}
	}
}

func (p *parser) number() (any, error) {
	start := p.i
	digit := func() bool { return p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' }
	neg := p.peek() == '-'
	if neg {
		p.i++
	}
	if p.peek() == '0' {
		p.i++
	} else if digit() {
		for digit() {
			p.i++
		}
	} else {
		return nil, errSyntax
	}
	isFloat := false
	if p.peek() == '.' {
		isFloat = true
		p.i++
		if !digit() {
			return nil, errSyntax
		}
		for digit() {
			p.i++
		}
	}
	if p.peek() == 'e' || p.peek() == 'E' {
		isFloat = true
		p.i++
		if p.peek() == '+' || p.peek() == '-' {
			p.i++
		}
		if !digit() {
			return nil, errSyntax
		}
		for digit() {
			p.i++
		}
	}
	text := string(p.b[start:p.i])
	if !isFloat {
		if neg {
			if text == "-0" {
				return math.Copysign(0, -1), nil
			}
			if n, err := strconv.ParseInt(text, 10, 64); err == nil {
				return n, nil
			}
		} else if n, err := strconv.ParseUint(text, 10, 64); err == nil {
			return n, nil
		}
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsInf(f, 0) {
		return nil, errSyntax // serde_json: number out of range
	}
	return f, nil
}

func expText(e int) string {
	if e > 0 {
		return "e+" + strconv.Itoa(e)
	}
	return "e" + strconv.Itoa(e)
}

// FormatFloat writes a finite float as serde_json (ryu) does: `1.0`, `0.001`, `1e-7`, `1.5e+300`.
func FormatFloat(f float64) string {
	if f == 0 {
		if math.Signbit(f) {
			return "-0.0"
		}
		return "0.0"
	}
	sign := ""
	if f < 0 {
		sign = "-"
	}
	e := strconv.FormatFloat(math.Abs(f), 'e', -1, 64) // d.ddde±xx, shortest
	mant, exp, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	x, _ := strconv.Atoi(exp)
	k := x - (len(digits) - 1)
	trimmed := strings.TrimRight(digits, "0")
	k += len(digits) - len(trimmed)
	digits = trimmed
	n := len(digits)
	kk := n + k
	var body string
	switch {
	case k >= 0 && kk <= 16:
		body = digits + strings.Repeat("0", k) + ".0"
	case kk > 0 && kk <= 16:
		body = digits[:kk] + "." + digits[kk:]
	case kk > -5 && kk <= 0:
		body = "0." + strings.Repeat("0", -kk) + digits
	case n == 1:
		body = digits + expText(kk-1)
	default:
		body = digits[:1] + "." + digits[1:] + expText(kk-1)
	}
	return sign + body
}

const hex = "0123456789abcdef"

func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	run := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[run:i]...)
		switch c {
		case '"':
			b = append(b, '\\', '"')
		case '\\':
			b = append(b, '\\', '\\')
		case '\b':
			b = append(b, '\\', 'b')
		case '\t':
			b = append(b, '\\', 't')
		case '\n':
			b = append(b, '\\', 'n')
		case '\f':
			b = append(b, '\\', 'f')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&15])
		}
		run = i + 1
	}
	b = append(b, s[run:]...)
	return append(b, '"')
}

// Append appends the compact JSON text of v to b.
func Append(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case bool:
		if x {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case string:
		return appendString(b, x)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case uint64:
		return strconv.AppendUint(b, x, 10)
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return append(b, "null"...)
		}
		return append(b, FormatFloat(x)...)
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = Append(b, e)
		}
		return append(b, ']')
	case *Object:
		b = append(b, '{')
		for i, k := range x.Keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = Append(b, x.Values[i])
		}
		return append(b, '}')
	}
	panic("json: cannot write this value")
}

// Marshal returns the compact JSON text of v (serde_json::to_vec's bytes).
func Marshal(v any) []byte { return Append(nil, v) }
