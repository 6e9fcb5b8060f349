// Package sluice is the Go guest SDK for Sluice transforms.
//
// Register a constructor from an init function of package main; it builds the plugin from its
// config (an error refuses the config), and the plugin's Transform is called for every record,
// in order. It writes 0..N outputs to the Emitter, or returns an error that sends that record to
// the dead-letter topic with the message as its reason (outputs already written for it are
// discarded):
//
//	type upper struct{}
//
//	func (upper) Transform(r *sluice.Record, out *sluice.Emitter) error {
//		if r.Value == nil {
//			return errors.New("record has no value")
//		}
//		out.Emit(sluice.Output{Key: r.Key, Value: bytes.ToUpper(r.Value), Headers: r.Headers})
//		return nil
//	}
//
//	func init() {
//		sluice.Register(func(sluice.Config) (sluice.Transform, error) { return upper{}, nil })
//	}
//
//	func main() {}
//
// The SDK implements the component's exports over the host's batch encoding (wit/sluice.wit)
// and manages Go's garbage collector so that it never runs while the host is copying a batch in
// (see abi.go). Build with build.sh.
package sluice

import "strings"

// A Transform is a plugin instance.
type Transform interface {
	Transform(r *Record, out *Emitter) error
}

// Header is a record header; a nil Value is a header without a value.
type Header struct {
	Name  string
	Value []byte
}

// Record is one input record. Key and Value are nil when absent (a Kafka null); a present empty
// field is a non-nil empty slice. They point into the batch and are valid during the call.
type Record struct {
	Key, Value   []byte
	Headers      []Header
	HasTimestamp bool
	Timestamp    int64 // milliseconds since the Unix epoch
	Topic        string
	Partition    int32
	Offset       int64
	index        int
}

// Header returns the value of the first header called name.
func (r *Record) Header(name string) ([]byte, bool) {
	for _, h := range r.Headers {
		if h.Name == name {
			return h.Value, true
		}
	}
	return nil, false
}

// Output is one output record. Nil Key/Value are absent; a JSON set (r.JSON()) makes the value
// the record's edited JSON document instead of Value; HasTimestamp false keeps the input's
// timestamp; an empty To sends it to the pipeline's default output.
type Output struct {
	Key, Value   []byte
	JSON         JSON
	Headers      []Header
	HasTimestamp bool
	Timestamp    int64
	To           string // a named output declared in the pipeline config
}

// Config is the plugin's config: string pairs from the pipeline config, in file order.
type Config struct {
	Pairs [][2]string
}

// Get returns the value of key.
func (c Config) Get(key string) (string, bool) {
	for _, p := range c.Pairs {
		if p[0] == key {
			return p[1], true
		}
	}
	return "", false
}

// Emitter is where Transform writes the outputs of the record it is given.
type Emitter struct {
	data    []byte
	records []uint32
	headers []uint32
	outputs []string
	input   uint32
}

const none = 0xFFFFFFFF

func (e *Emitter) span(w []uint32, b []byte) []uint32 {
	if b == nil {
		return append(w, 0, none)
	}
	w = append(w, uint32(len(e.data)), uint32(len(b)))
	e.data = append(e.data, b...)
	return w
}

func (e *Emitter) spanString(w []uint32, s string) []uint32 {
	w = append(w, uint32(len(e.data)), uint32(len(s)))
	e.data = append(e.data, s...)
	return w
}

// Emit sends one output record.
func (e *Emitter) Emit(o Output) {
	first := uint32(len(e.headers) / 4)
	for _, h := range o.Headers {
		e.headers = e.spanString(e.headers, h.Name)
		e.headers = e.span(e.headers, h.Value)
	}
	e.records = append(e.records, e.input)
	e.records = e.span(e.records, o.Key)
	if o.JSON.b != nil { // the edited document: filled in after the batch's `write` call
		b := o.JSON.b
		b.pending = append(b.pending, uint32(len(e.records)), b.doc(o.JSON.i), e.input)
		e.records = append(e.records, 0, none)
	} else {
		e.records = e.span(e.records, o.Value)
	}
	e.records = append(e.records, first, uint32(len(e.headers)/4)-first)
	if o.HasTimestamp {
		e.records = append(e.records, uint32(uint64(o.Timestamp)), uint32(uint64(o.Timestamp)>>32))
	} else {
		e.records = append(e.records, 0, 0x80000000)
	}
	out := uint32(none)
	if o.To != "" {
		out = e.outputIndex(o.To)
	}
	e.records = append(e.records, out)
}

// Forward sends r on unchanged (key, value, headers, timestamp) to the default output.
func (e *Emitter) Forward(r *Record) {
	e.Emit(Output{Key: r.Key, Value: r.Value, Headers: r.Headers, HasTimestamp: r.HasTimestamp, Timestamp: r.Timestamp})
}

func (e *Emitter) outputIndex(name string) uint32 {
	for i, o := range e.outputs {
		if o == name {
			return uint32(i)
		}
	}
	e.outputs = append(e.outputs, name)
	return uint32(len(e.outputs) - 1)
}

// Level is a log severity.
type Level uint32

const (
	LevelTrace Level = iota
	LevelDebug
	LevelInfo
	LevelWarn
	LevelError
)

// Log writes a line into the host's log, tagged with the plugin's name.
func Log(level Level, message string) { hostLog(level, message) }

// Debug logs at debug level.
func Debug(message string) { Log(LevelDebug, message) }

// Info logs at info level.
func Info(message string) { Log(LevelInfo, message) }

// Warn logs at warn level.
func Warn(message string) { Log(LevelWarn, message) }

// Error logs at error level.
func Error(message string) { Log(LevelError, message) }

// IsAlphanumeric is Rust's char::is_alphanumeric: Unicode Alphabetic or Numeric (Go's
// unicode.IsLetter/IsDigit use other properties).
func IsAlphanumeric(r rune) bool {
	if r < 0x80 {
		return (r >= '0' && r <= '9') || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z')
	}
	lo, hi := 0, len(alnum)
	for lo < hi {
		mid := (lo + hi) / 2
		if alnum[mid] <= uint32(r) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo&1 == 1
}

// IsWhitespace is Rust's char::is_whitespace (the White_Space property).
func IsWhitespace(c rune) bool {
	return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
		(c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
		c == 0x205f || c == 0x3000
}

// Trim is Rust's str::trim.
func Trim(s string) string { return strings.TrimFunc(s, IsWhitespace) }
