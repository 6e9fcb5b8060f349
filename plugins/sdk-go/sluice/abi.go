package sluice

// The component ABI of the `transform` world (wit/sluice.wit), written out by hand with
// go:wasmexport: the canonical ABI lowers `init(list<tuple<string,string>>) -> result<_, string>`
// to `init(ptr, len) -> retptr` and `process(input-batch) -> output-batch` to eight i32
// parameters (four lists) and a pointer to five (ptr, len) pairs.
//
// Go's garbage collector reads the clock, and a guest may not call the host while the host is
// inside cabi_realloc copying a batch in (wasmtime traps: "cannot leave component instance").
// So automatic GC is off, cabi_realloc only hands out memory, and the SDK collects garbage itself
// at the end of a call, when the heap has grown by gcEvery bytes since the last collection.

import (
	"errors"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"unsafe"
)

var (
	factory  func(Config) (Transform, error)
	instance Transform

	// Memory the host has been given by cabi_realloc, kept reachable until the call that reads
	// it is over.
	pinned [][]uint64

	emitter   Emitter
	initRet   [3]uint32
	initError []byte
	ret       [10]uint32
	outPairs  []uint32
	errWords  []uint32
	errBytes  [][]byte

	allocSample = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	lastGC      uint64
)

const gcEvery = 16 << 20

// adapterArena is memory for the WASI preview1 adapter's own state, which it allocates during
// the Go runtime's start-up, before any Go code may run. build.sh finds it by its marker and
// exports a cabi_realloc_adapter that allocates inside it (see adapter_arena.py); Go never
// touches it after start-up. Keep the size in step with adapter_arena.py.
var arenaStart *byte // keeps adapterArena from being dropped by the linker

var adapterArena = [1 << 20]byte{'s', 'l', 'u', 'i', 'c', 'e', ':', 'a', 'd', 'a', 'p', 't', 'e', 'r', '-', 'a', 'r', 'e', 'n', 'a', ':', 'v', '1'}

func init() {
	debug.SetGCPercent(-1)
	arenaStart = &adapterArena[0]
}

// Register sets the constructor of the plugin. Call it from an init function of package main.
func Register(f func(Config) (Transform, error)) { factory = f }

//go:wasmimport sluice:plugin/host@0.3.0 log
func hostLogRaw(level uint32, ptr unsafe.Pointer, n uint32)

func hostLog(level Level, message string) {
	b := []byte(message)
	if len(b) == 0 {
		b = []byte{0}
		hostLogRaw(uint32(level), unsafe.Pointer(&b[0]), 0)
		return
	}
	hostLogRaw(uint32(level), unsafe.Pointer(&b[0]), uint32(len(b)))
	runtime.KeepAlive(b)
}

func addr[T any](p *T) uint32 { return uint32(uintptr(unsafe.Pointer(p))) }

//go:wasmexport cabi_realloc
func cabiRealloc(old, oldSize, align, newSize uint32) uint32 {
	if newSize == 0 {
		return align
	}
	buf := make([]uint64, (newSize+7)/8)
	if old != 0 && oldSize != 0 {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), newSize),
			unsafe.Slice((*byte)(unsafe.Pointer(uintptr(old))), min(oldSize, newSize)))
	}
	pinned = append(pinned, buf)
	return addr(&buf[0])
}

func bytesAt(ptr, n uint32) []byte {
	if n == 0 {
		return []byte{}
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(uintptr(ptr))), n)
}

func wordsAt(ptr, n uint32) []uint32 {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*uint32)(unsafe.Pointer(uintptr(ptr))), n)
}

func stringAt(ptr, n uint32) string { return string(bytesAt(ptr, n)) }

// collect runs the garbage collector, inside an exported call, when enough has been allocated.
func collect() {
	clear(pinned)
	pinned = pinned[:0]
	metrics.Read(allocSample)
	if a := allocSample[0].Value.Uint64(); a-lastGC > gcEvery {
		runtime.GC()
		lastGC = a
	}
}

//go:wasmexport init
func exportInit(ptr, n uint32) uint32 {
	words := wordsAt(ptr, n*4)
	var cfg Config
	for i := uint32(0); i < n; i++ {
		w := words[i*4:]
		cfg.Pairs = append(cfg.Pairs, [2]string{stringAt(w[0], w[1]), stringAt(w[2], w[3])})
	}
	var err error
	if factory == nil {
		err = errors.New("the plugin did not call sluice.Register")
	} else {
		instance, err = factory(cfg)
	}
	pluginPath = nil
	if p, ok := instance.(JSONPaths); ok && err == nil {
		pluginPath = append([]string(nil), p.JSONPaths()...)
	}
	initRet = [3]uint32{}
	if err != nil {
		initError = append([]byte(err.Error()), 0)
		initRet = [3]uint32{1, addr(&initError[0]), uint32(len(initError) - 1)}
	}
	collect()
	return addr(&initRet[0])
}

func span(data []byte, off, n uint32) []byte {
	if n == none {
		return nil
	}
	return data[off : off+n : off+n]
}

//go:wasmexport process
func exportProcess(dataPtr, dataLen, recPtr, recLen, hdrPtr, hdrLen, topicPtr, topicLen uint32) uint32 {
	data := bytesAt(dataPtr, dataLen)
	words := wordsAt(recPtr, recLen/4) // word lists are list<u8>: their lengths are bytes
	hwords := wordsAt(hdrPtr, hdrLen/4)
	tw := wordsAt(topicPtr, topicLen*2)
	topics := make([]string, topicLen)
	for i := range topics {
		topics[i] = stringAt(tw[i*2], tw[i*2+1])
	}
	e := &emitter
	e.data = e.data[:0]
	e.records = e.records[:0]
	e.headers = e.headers[:0]
	e.outputs = e.outputs[:0]
	errWords = errWords[:0]
	errBytes = errBytes[:0]
	headers := make([]Header, len(hwords)/4)
	for h := range headers {
		w := hwords[h*4:]
		headers[h] = Header{Name: string(data[w[0] : w[0]+w[1]]), Value: span(data, w[2], w[3])}
	}
	jb.start(data, words, pluginPath)
	var r Record
	for i := 0; i < len(words)/12; i++ {
		w := words[i*12:]
		r = Record{
			Key:          span(data, w[0], w[1]),
			Value:        span(data, w[2], w[3]),
			Headers:      headers[w[4] : w[4]+w[5] : w[4]+w[5]],
			HasTimestamp: !(w[6] == 0 && w[7] == 0x80000000),
			Timestamp:    int64(uint64(w[6]) | uint64(w[7])<<32),
			Topic:        topics[w[8]],
			Partition:    int32(w[9]),
			Offset:       int64(uint64(w[10]) | uint64(w[11])<<32),
			index:        i,
		}
		e.input = uint32(i)
		marks := [6]int{len(e.data), len(e.records), len(e.headers), len(jb.edits), len(jb.etext), len(jb.pending)}
		if err := instance.Transform(&r, e); err != nil {
			e.data = e.data[:marks[0]]
			e.records = e.records[:marks[1]]
			e.headers = e.headers[:marks[2]]
			jb.edits = jb.edits[:marks[3]]
			jb.etext = jb.etext[:marks[4]]
			jb.pending = jb.pending[:marks[5]]
			reject(i, err.Error())
		}
	}
	jb.finish(e)
	return finishCall(e)
}

// RunCalls is the batch machinery of exports other than process (sluice.dev/sdk/state's
// on-timer): it runs call(i, out) for i in 0..n with one emitter, discarding a call's outputs and
// rejecting its input when it returns an error, and returns the output batch's address.
func RunCalls(n int, call func(i int, out *Emitter) error) uint32 {
	e := &emitter
	e.data = e.data[:0]
	e.records = e.records[:0]
	e.headers = e.headers[:0]
	e.outputs = e.outputs[:0]
	errWords = errWords[:0]
	errBytes = errBytes[:0]
	for i := 0; i < n; i++ {
		e.input = uint32(i)
		marks := [3]int{len(e.data), len(e.records), len(e.headers)}
		if err := call(i, e); err != nil {
			e.data = e.data[:marks[0]]
			e.records = e.records[:marks[1]]
			e.headers = e.headers[:marks[2]]
			reject(i, err.Error())
		}
	}
	return finishCall(e)
}

// Instance is the plugin instance the registered constructor made (nil before init).
func Instance() Transform { return instance }

// finishCall lays out the output batch of an exported call and collects garbage.
func finishCall(e *Emitter) uint32 {
	outPairs = outPairs[:0]
	for _, o := range e.outputs {
		b := []byte(o)
		errBytes = append(errBytes, b)
		outPairs = append(outPairs, addr(&b[0]), uint32(len(b)))
	}
	ret = [10]uint32{
		ptrOf(e.data), uint32(len(e.data)),
		ptrOfWords(e.records), uint32(len(e.records)) * 4,
		ptrOfWords(e.headers), uint32(len(e.headers)) * 4,
		ptrOfWords(outPairs), uint32(len(e.outputs)),
		ptrOfWords(errWords), uint32(len(errWords) / 3),
	}
	collect()
	return addr(&ret[0])
}

// reject records input i's error message.
func reject(i int, message string) {
	msg := []byte(message)
	errBytes = append(errBytes, msg)
	p := uint32(1)
	if len(msg) > 0 {
		p = addr(&msg[0])
	}
	errWords = append(errWords, uint32(i), p, uint32(len(msg)))
}

func ptrOf(b []byte) uint32 {
	if cap(b) == 0 {
		return 1
	}
	return addr(&b[:1][0])
}

func ptrOfWords(w []uint32) uint32 {
	if cap(w) == 0 {
		return 4
	}
	return addr(&w[:1][0])
}
