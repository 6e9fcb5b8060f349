// Every host JSON operation of the Go SDK, for host/tests/languages.rs
// (json_edits_agree_in_python_js_and_go): declared and undeclared paths, Set, SetRaw, Remove, an
// edit that fails, a rejection after edits, and values that are absent or not JSON.
package main

import (
	"errors"
	"strconv"

	"sluice.dev/sdk/sluice"
)

type jsonEdits struct{}

func (jsonEdits) JSONPaths() []string {
	return []string{"/name", sluice.Pointer("tags", "0"), "/drop"}
}

func (jsonEdits) Transform(r *sluice.Record, out *sluice.Emitter) error {
	doc := r.JSON()
	if name, ok := doc.String(0); ok {
		doc.Set(0, "seen:"+name)
	}
	if doc.Kind(1) == sluice.Number {
		doc.SetRaw(1, append(append([]byte(nil), doc.Text(1)...), '0'))
	}
	doc.Remove(2)
	if n := doc.Kind(doc.Path("/n")); n != sluice.Missing { // undeclared: a host call of its own
		doc.SetRaw(doc.Path("/n_kind"), []byte(strconv.Itoa(int(n))))
	}
	if doc.Kind(doc.Path("/fail")) == sluice.True {
		doc.Set(doc.Path("/missing/x"), "y") // no parent: the document cannot be written
	}
	if doc.Kind(doc.Path("/reject")) == sluice.True {
		return errors.New("asked to reject")
	}
	out.Emit(sluice.Output{Key: r.Key, JSON: doc, Headers: r.Headers})
	return nil
}

func init() {
	sluice.Register(func(sluice.Config) (sluice.Transform, error) { return jsonEdits{}, nil })
}

func main() {}
