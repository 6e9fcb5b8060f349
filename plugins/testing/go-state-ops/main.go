// Every state call of the Go SDK, with a summary of what each returned as the output value (the
// same in every language: see python-state-ops, js-state-ops).
package main

import (
	"strconv"
	"strings"

	"sluice.dev/sdk/sluice"
	"sluice.dev/sdk/state"
)

type stateOps struct{}

func key(k []byte, suffix string) []byte { return append(append([]byte{}, k...), suffix...) }

func (stateOps) Transform(r *sluice.Record, out *sluice.Emitter) error {
	k := r.Key
	state.PutMany([]state.Entry{{Key: key(k, "/a"), Value: []byte("1")}, {Key: key(k, "/b"), Value: []byte("2")}, {Key: key(k, "/c")}})
	got := state.GetMany([][]byte{key(k, "/a"), key(k, "/b"), key(k, "/c")})
	state.Delete(key(k, "/a"))
	listed := state.Scan(key(k, "/"), nil, 10)
	paged := state.Scan(key(k, "/"), key(k, "/a"), 10)
	wm, ok := state.Watermark()
	var parts []string
	for _, v := range got {
		if v == nil {
			parts = append(parts, "-")
		} else {
			parts = append(parts, string(v))
		}
	}
	var b strings.Builder
	b.WriteString("get_many=" + strings.Join(parts, ",") + " scan=")
	for i, e := range listed {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(string(e.Key) + "=" + string(e.Value))
	}
	b.WriteString(" after=")
	for i, e := range paged {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(string(e.Key))
	}
	if ok {
		b.WriteString(" wm=" + strconv.FormatInt(wm, 10))
	} else {
		b.WriteString(" wm=none")
	}
	out.Emit(sluice.Output{Key: k, Value: []byte(b.String())})
	return nil
}

func (stateOps) OnTimer(state.Timer, *sluice.Emitter) error { return nil }

func init() {
	sluice.Register(func(sluice.Config) (sluice.Transform, error) { return stateOps{}, nil })
}

func main() {}
