// Package state is keyed state and timers for Go plugins of the `stateful-transform` world
// (wit/sluice.wit, interfaces `state` and `timers`). State lives in the host, scoped to the
// partition of the records being processed; it survives traps, hot swaps and restarts, and a
// rejected record changes nothing.
//
// A plugin that imports this package implements the stateful world (build.sh sees its timer
// export): its Transform must also implement TimerHandler, called for every timer that fired.
package state

import (
	"runtime"
	"unsafe"

	"sluice.dev/sdk/sluice"
)

//go:wasmimport sluice:plugin/state@0.3.0 get
func getRaw(kp, kl, ret uint32)

//go:wasmimport sluice:plugin/state@0.3.0 put
func putRaw(kp, kl, vp, vl uint32)

//go:wasmimport sluice:plugin/state@0.3.0 delete
func deleteRaw(kp, kl uint32)

//go:wasmimport sluice:plugin/state@0.3.0 scan
func scanRaw(pp, pl, hasAfter, ap, al, limit, ret uint32)

//go:wasmimport sluice:plugin/state@0.3.0 get-many
func getManyRaw(dp, dl, kp, kl, ret uint32)

//go:wasmimport sluice:plugin/state@0.3.0 put-many
func putManyRaw(dp, dl, ep, el uint32)

//go:wasmimport sluice:plugin/timers@0.3.0 register
func registerRaw(domain, kp, kl uint32, at int64)

//go:wasmimport sluice:plugin/timers@0.3.0 cancel
func cancelRaw(domain, kp, kl uint32, at int64)

//go:wasmimport sluice:plugin/timers@0.3.0 watermark
func watermarkRaw() int64

const none = 0xFFFFFFFF

// Domain is the clock a timer follows.
type Domain uint32

const (
	// EventTime fires once the partition's watermark (largest timestamp seen minus the allowed
	// lateness) reaches the timer's time.
	EventTime Domain = iota
	// ProcessingTime fires at the first batch boundary after the host's clock passes the time.
	ProcessingTime
)

// Timer is a timer that fired.
type Timer struct {
	Key    []byte // valid during the call
	Domain Domain
	Time   int64 // ms since the Unix epoch
}

// TimerHandler is implemented by a stateful plugin: OnTimer is called for every timer that
// fired, with the same emitter as Transform; an error dead-letters the timer.
type TimerHandler interface {
	OnTimer(t Timer, out *sluice.Emitter) error
}

var ret [4]uint32

func ptr(b []byte) uint32 {
	if len(b) == 0 {
		return 1
	}
	return uint32(uintptr(unsafe.Pointer(&b[0])))
}

func wptr(w []uint32) uint32 {
	if len(w) == 0 {
		return 4
	}
	return uint32(uintptr(unsafe.Pointer(&w[0])))
}

func at(p, n uint32) []byte {
	if n == 0 {
		return []byte{}
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(uintptr(p))), n)
}

func words(p, n uint32) []uint32 {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(uintptr(p))), n)
}

// Get returns a copy of the value stored under key, and whether there is one.
func Get(key []byte) ([]byte, bool) {
	ret = [4]uint32{}
	getRaw(ptr(key), uint32(len(key)), uint32(uintptr(unsafe.Pointer(&ret[0]))))
	runtime.KeepAlive(key)
	if ret[0]&0xff == 0 {
		return nil, false
	}
	return append([]byte{}, at(ret[1], ret[2])...), true
}

// Put stores value under key.
func Put(key, value []byte) {
	putRaw(ptr(key), uint32(len(key)), ptr(value), uint32(len(value)))
	runtime.KeepAlive(key)
	runtime.KeepAlive(value)
}

// Delete removes key (nothing if it is absent).
func Delete(key []byte) {
	deleteRaw(ptr(key), uint32(len(key)))
	runtime.KeepAlive(key)
}

// Entry is a key and its value.
type Entry struct{ Key, Value []byte }

// Scan returns up to limit entries whose keys start with prefix, in ascending byte order of key,
// starting after the key after when it is not nil. The entries are copies.
func Scan(prefix, after []byte, limit uint32) []Entry {
	has := uint32(0)
	if after != nil {
		has = 1
	}
	scanRaw(ptr(prefix), uint32(len(prefix)), has, ptr(after), uint32(len(after)), limit, uint32(uintptr(unsafe.Pointer(&ret[0]))))
	runtime.KeepAlive(prefix)
	runtime.KeepAlive(after)
	w := words(ret[0], ret[1]*4)
	out := make([]Entry, ret[1])
	for i := range out {
		x := w[4*i:]
		out[i] = Entry{append([]byte{}, at(x[0], x[1])...), append([]byte{}, at(x[2], x[3])...)}
	}
	return out
}

// GetMany is several Gets in one host call: a copy of each value, nil where absent.
func GetMany(keys [][]byte) [][]byte {
	var data []byte
	spans := make([]uint32, 0, 2*len(keys))
	for _, k := range keys {
		spans = append(spans, uint32(len(data)), uint32(len(k)))
		data = append(data, k...)
	}
	getManyRaw(ptr(data), uint32(len(data)), wptr(spans), uint32(len(spans))*4, uint32(uintptr(unsafe.Pointer(&ret[0]))))
	runtime.KeepAlive(data)
	runtime.KeepAlive(spans)
	got, w := at(ret[0], ret[1]), words(ret[2], ret[3]/4)
	out := make([][]byte, len(keys))
	for i := range out {
		if i*2+1 < len(w) && w[2*i+1] != none {
			out[i] = append([]byte{}, got[w[2*i]:w[2*i]+w[2*i+1]]...)
		}
	}
	return out
}

// PutMany is several Puts and Deletes (a nil Value) in one host call, applied in order.
func PutMany(entries []Entry) {
	var data []byte
	spans := make([]uint32, 0, 4*len(entries))
	for _, e := range entries {
		spans = append(spans, uint32(len(data)), uint32(len(e.Key)))
		data = append(data, e.Key...)
		if e.Value == nil {
			spans = append(spans, 0, none)
		} else {
			spans = append(spans, uint32(len(data)), uint32(len(e.Value)))
			data = append(data, e.Value...)
		}
	}
	putManyRaw(ptr(data), uint32(len(data)), wptr(spans), uint32(len(spans))*4)
	runtime.KeepAlive(data)
	runtime.KeepAlive(spans)
}

// Register registers a timer for key at at (ms since the Unix epoch); the same (domain, key,
// at) registered twice is one timer.
func Register(domain Domain, key []byte, at int64) {
	registerRaw(uint32(domain), ptr(key), uint32(len(key)), at)
	runtime.KeepAlive(key)
}

// Cancel cancels the timer registered with the same (domain, key, at), if any.
func Cancel(domain Domain, key []byte, at int64) {
	cancelRaw(uint32(domain), ptr(key), uint32(len(key)), at)
	runtime.KeepAlive(key)
}

// Watermark is the partition's current watermark (ms), and false before any record.
func Watermark() (int64, bool) {
	w := watermarkRaw()
	return w, w != -1<<63
}

//go:wasmexport on-timer
func exportOnTimer(dataPtr, dataLen, timersPtr, timersLen uint32) uint32 {
	data := at(dataPtr, dataLen)
	w := words(timersPtr, timersLen/4) // a list<u8> of words: its length is bytes
	h, _ := sluice.Instance().(TimerHandler)
	return sluice.RunCalls(len(w)/5, func(i int, out *sluice.Emitter) error {
		if h == nil {
			return errTimers
		}
		x := w[5*i:]
		return h.OnTimer(Timer{Key: data[x[0] : x[0]+x[1] : x[0]+x[1]], Domain: Domain(x[2]), Time: int64(uint64(x[3]) | uint64(x[4])<<32)}, out)
	})
}

type timerError struct{}

func (timerError) Error() string {
	return "the plugin has no OnTimer method (see sluice.dev/sdk/state)"
}

var errTimers = timerError{}
