// A per-key counter (the stateful plugin of host/tests/languages.rs): emits each key's running
// count, and when an event-time timer at the end of the record's second fires, that key's count
// then. Keys are required.
package main

import (
	"errors"
	"strconv"

	"sluice.dev/sdk/sluice"
	"sluice.dev/sdk/state"
)

type counter struct{}

func (counter) Transform(r *sluice.Record, out *sluice.Emitter) error {
	if r.Key == nil {
		return errors.New("record has no key")
	}
	n := 0
	if old, ok := state.Get(r.Key); ok {
		n, _ = strconv.Atoi(string(old))
	}
	n++
	state.Put(r.Key, []byte(strconv.Itoa(n)))
	if r.HasTimestamp && r.Timestamp >= 0 {
		state.Register(state.EventTime, r.Key, r.Timestamp-r.Timestamp%1000+1000)
	}
	out.Emit(sluice.Output{Key: r.Key, Value: []byte(strconv.Itoa(n))})
	return nil
}

func (counter) OnTimer(t state.Timer, out *sluice.Emitter) error {
	n, ok := state.Get(t.Key)
	if !ok {
		n = []byte("0")
	}
	value := string(n) + " at " + strconv.FormatInt(t.Time, 10)
	out.Emit(sluice.Output{Key: t.Key, Value: []byte(value), HasTimestamp: true, Timestamp: t.Time})
	return nil
}

func init() {
	sluice.Register(func(sluice.Config) (sluice.Transform, error) { return counter{}, nil })
}

func main() {}
