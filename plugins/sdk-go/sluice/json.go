package sluice

// Host JSON access (the `json` interface of wit/sluice.wit): one `read` call per batch for the
// paths the plugin declares, one `write` call per batch for the records' edits.

import (
	"runtime"
	"strings"
	"unsafe"
)

//go:wasmimport sluice:plugin/json@0.3.0 read
func jsonReadRaw(dataPtr, dataLen, docsPtr, docsLen, pathsPtr, pathsLen, ret uint32)

//go:wasmimport sluice:plugin/json@0.3.0 write
func jsonWriteRaw(dataPtr, dataLen, docsPtr, docsLen, pathsPtr, pathsLen, editsPtr, editsLen, textPtr, textLen, ret uint32)

// Kind is what a JSON path found: the `kind` enum of the `json` interface.
type Kind uint32

// The kinds of JSON value; Missing also when the document is not valid JSON.
const (
	Missing Kind = iota
	Null
	False
	True
	Number
	String
	Array
	Object
)

// JSONPaths is implemented by a plugin that reads JSON fields of its records' values: the JSON
// Pointers it returns (asked once, after its constructor) are read by the host for every record
// of a batch in one call, and JSON.Kind, String and the edits take an index into them.
type JSONPaths interface {
	JSONPaths() []string
}

// Pointer is the JSON Pointer (RFC 6901) of the field reached through keys: Pointer("a/b", "0")
// is "/a~1b/0"; Pointer() is "", the whole document.
func Pointer(keys ...string) string {
	var b strings.Builder
	for _, k := range keys {
		b.WriteByte('/')
		b.WriteString(strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

const editFailed = "the edited JSON value could not be written: an edit's parent is missing or not an object or array, an array index is out of range, or raw JSON does not parse"

// jsonBatch is one batch's JSON work: the fields read and the edits recorded.
type jsonBatch struct {
	data    []byte
	words   []uint32
	nread   int
	stride  int
	paths   []string
	fields  []uint32
	text    []byte
	edits   []uint32
	etext   []byte
	wdocs   []uint32
	docmap  map[int]uint32
	pending []uint32 // (position of an output's value span, document, input) triples
}

var (
	jb         jsonBatch
	jsonRet    [4]uint32
	pathWords  []uint32
	oneDoc     [2]uint32
	pluginPath []string
)

func stringsAt(paths []string) (uint32, uint32) {
	pathWords = pathWords[:0]
	for _, p := range paths {
		if len(p) == 0 {
			pathWords = append(pathWords, 1, 0)
		} else {
			pathWords = append(pathWords, uint32(uintptr(unsafe.Pointer(unsafe.StringData(p)))), uint32(len(p)))
		}
	}
	return ptrOfWords(pathWords), uint32(len(paths))
}

func jsonRead(data []byte, docs []uint32, paths []string) (fields []uint32, text []byte) {
	pp, pn := stringsAt(paths)
	jsonReadRaw(ptrOf(data), uint32(len(data)), ptrOfWords(docs), uint32(len(docs))*4, pp, pn, addr(&jsonRet[0]))
	runtime.KeepAlive(data)
	runtime.KeepAlive(docs)
	runtime.KeepAlive(paths)
	return wordsAt(jsonRet[0], jsonRet[1]/4), bytesAt(jsonRet[2], jsonRet[3])
}

func (b *jsonBatch) start(data []byte, words []uint32, paths []string) {
	b.data, b.words, b.paths, b.nread = data, words, paths, len(paths)
	b.stride = 1 + 3*len(paths)
	b.fields, b.text = nil, nil
	b.edits, b.etext, b.wdocs, b.pending = b.edits[:0], b.etext[:0], b.wdocs[:0], b.pending[:0]
	clear(b.docmap)
	if len(paths) == 0 {
		return
	}
	n := len(words) / 12
	docs := make([]uint32, 2*n)
	for i := 0; i < n; i++ {
		docs[2*i] = words[12*i+2]
		docs[2*i+1] = words[12*i+3]
	}
	b.fields, b.text = jsonRead(data, docs, paths)
}

func (b *jsonBatch) readOne(i int, path int) ([]uint32, []byte) {
	oneDoc = [2]uint32{b.words[12*i+2], b.words[12*i+3]}
	if path < 0 {
		return jsonRead(b.data, oneDoc[:], nil)
	}
	return jsonRead(b.data, oneDoc[:], b.paths[path:path+1])
}

func (b *jsonBatch) doc(i int) uint32 {
	if j, ok := b.docmap[i]; ok {
		return j
	}
	j := uint32(len(b.wdocs) / 2)
	if b.docmap == nil {
		b.docmap = map[int]uint32{}
	}
	b.docmap[i] = j
	b.wdocs = append(b.wdocs, b.words[12*i+2], b.words[12*i+3])
	return j
}

func (b *jsonBatch) failure(i int) string {
	if b.words[12*i+3] == none {
		return "record has no value"
	}
	root := uint32(0)
	if b.fields != nil {
		root = b.fields[i*b.stride]
	} else {
		f, _ := b.readOne(i, -1)
		root = f[0]
	}
	if root == 0 {
		return "value is not valid JSON"
	}
	return editFailed
}

// finish writes every edited document in one call and points the outputs that carry one at it;
// an input whose document cannot be written is rejected.
func (b *jsonBatch) finish(e *Emitter) {
	if len(b.pending) == 0 {
		return
	}
	pp, pn := stringsAt(b.paths)
	jsonWriteRaw(ptrOf(b.data), uint32(len(b.data)), ptrOfWords(b.wdocs), uint32(len(b.wdocs))*4, pp, pn,
		ptrOfWords(b.edits), uint32(len(b.edits))*4, ptrOf(b.etext), uint32(len(b.etext)), addr(&jsonRet[0]))
	runtime.KeepAlive(b)
	out, docs := bytesAt(jsonRet[0], jsonRet[1]), wordsAt(jsonRet[2], jsonRet[3]/4)
	base := uint32(len(e.data))
	e.data = append(e.data, out...)
	var failed map[uint32]bool
	for k := 0; k < len(b.pending); k += 3 {
		pos, j, i := b.pending[k], b.pending[k+1], b.pending[k+2]
		n := docs[2*j+1]
		if n == none {
			if !failed[i] {
				if failed == nil {
					failed = map[uint32]bool{}
				}
				failed[i] = true
				reject(int(i), b.failure(int(i)))
			}
			continue
		}
		e.records[pos] = base + docs[2*j]
		e.records[pos+1] = n
	}
	if failed != nil { // a rejected input emits nothing: drop its outputs, as after an error
		kept := e.records[:0]
		for k := 0; k < len(e.records); k += 10 {
			if !failed[e.records[k]] {
				kept = append(kept, e.records[k:k+10]...)
			}
		}
		e.records = kept
	}
}

// JSON is a record's value as a JSON document, read and edited by the host with serde_json's
// rules. A path is an index into the plugin's JSONPaths (read for the whole batch in one host
// call) or one from Path (an undeclared path: reading it costs a host call of its own). Edits
// apply in order; Output.JSON = r.JSON() emits the edited document, filled in by the SDK after
// the batch with all of this record's edits applied, serialised as serde_json does. Valid during
// the Transform call it was made in.
type JSON struct {
	b *jsonBatch
	i int
}

// JSON is the record's value as a JSON document.
func (r *Record) JSON() JSON { return JSON{&jb, r.index} }

// Path is the index of the JSON Pointer p: a declared one's, or a new one for this batch.
func (d JSON) Path(p string) int {
	for i, q := range d.b.paths {
		if q == p {
			return i
		}
	}
	if len(d.b.paths) == d.b.nread { // still the plugin's own slice: copy it
		d.b.paths = append([]string(nil), d.b.paths...)
	}
	d.b.paths = append(d.b.paths, p)
	return len(d.b.paths) - 1
}

// field is (kind, text) of path i.
func (d JSON) field(i int) (Kind, []byte) {
	if i < 0 || i >= len(d.b.paths) {
		panic("sluice: JSON path index out of range (use an index into JSONPaths or one from Path)")
	}
	var f []uint32
	var text []byte
	x := 1
	if i < d.b.nread {
		f, text, x = d.b.fields, d.b.text, d.i*d.b.stride+1+3*i
	} else {
		f, text = d.b.readOne(d.i, i)
	}
	return Kind(f[x]), text[f[x+1] : f[x+1]+f[x+2]]
}

// Root is the kind of the whole document (Missing when it is not valid JSON); no host call when
// the plugin declared paths.
func (d JSON) Root() Kind {
	if d.b.fields != nil {
		return Kind(d.b.fields[d.i*d.b.stride])
	}
	f, _ := d.b.readOne(d.i, -1)
	return Kind(f[0])
}

// Valid reports whether the value is valid JSON (false for an absent value too).
func (d JSON) Valid() bool { return d.Root() != Missing }

// Kind is what path i found.
func (d JSON) Kind(i int) Kind {
	if i >= 0 && i < d.b.nread {
		return Kind(d.b.fields[d.i*d.b.stride+1+3*i])
	}
	k, _ := d.field(i)
	return k
}

// String is the string at path i, and whether there is one.
func (d JSON) String(i int) (string, bool) {
	k, t := d.field(i)
	if k != String {
		return "", false
	}
	return string(t), true
}

// Text is the JSON text at path i (a string's decoded value; see Kind), valid during the call;
// nil for missing, null, false and true.
func (d JSON) Text(i int) []byte {
	_, t := d.field(i)
	return t
}

func (d JSON) edit(i int, op uint32, text string) {
	if i < 0 || i >= len(d.b.paths) {
		panic("sluice: JSON path index out of range (use an index into JSONPaths or one from Path)")
	}
	b := d.b
	b.edits = append(b.edits, b.doc(d.i), uint32(i), op, uint32(len(b.etext)), uint32(len(text)))
	b.etext = append(b.etext, text...)
}

// Set sets path i to the string s (a missing key of an existing object is added at its end).
func (d JSON) Set(i int, s string) { d.edit(i, 1, s) }

// SetBytes sets path i to the string held in s as UTF-8 (copied: s may be reused at once).
func (d JSON) SetBytes(i int, s []byte) { d.editBytes(i, 1, s) }

// SetRaw sets path i to the JSON text json (copied).
func (d JSON) SetRaw(i int, json []byte) { d.editBytes(i, 2, json) }

func (d JSON) editBytes(i int, op uint32, text []byte) {
	if i < 0 || i >= len(d.b.paths) {
		panic("sluice: JSON path index out of range (use an index into JSONPaths or one from Path)")
	}
	b := d.b
	b.edits = append(b.edits, b.doc(d.i), uint32(i), op, uint32(len(b.etext)), uint32(len(text)))
	b.etext = append(b.etext, text...)
}

// Remove removes path i (nothing if it is missing).
func (d JSON) Remove(i int) { d.edit(i, 0, "") }
