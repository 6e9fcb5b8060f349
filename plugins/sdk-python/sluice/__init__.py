"""Python guest SDK for Sluice transforms.

Subclass :class:`Transform` -- ``__init__(self, config)`` builds the plugin from its config (raise
:class:`ConfigError` to refuse it) and ``transform(self, record, out)`` is called for every record
in order: write 0..N outputs with ``out.emit(...)`` / ``out.forward(record)``, or raise
:class:`Reject` (or any exception) to send that record to the dead-letter topic with the message
as its reason. Then export it from ``app.py``::

    import sluice

    class Upper(sluice.Transform):
        def transform(self, record, out):
            if record.value is None:
                raise sluice.Reject("record has no value")
            out.emit(key=record.key, value=record.value.upper(), headers=record.headers)

    WitWorld = sluice.export(Upper)

The SDK runs the batch loop over the host's batch encoding (``wit/sluice.wit``); authors see plain
records.
"""

# Every list of words in the contract is a ``list<u8>`` of little-endian ``u32`` words, which
# componentize-py hands over as one ``bytes`` object (a ``list<u32>`` costs ~0.45 µs a word in
# its conversion to ``int``s). The SDK reads words through ``memoryview(b).cast("I")`` (wasm32 is
# little-endian and ``I`` is 4 bytes there), indexing only the words it needs; it writes an
# output's words with one ``struct`` pack into a ``bytearray``, copies unchanged headers as byte
# slices, and lays out the batch's JSON edits once, in C (``zip``, ``map``, strided stores).
from array import array as _array
from itertools import accumulate as _accumulate
from itertools import repeat as _repeat
from operator import add as _add
from struct import Struct as _Struct

_P4 = _Struct("<4I").pack
_P10 = _Struct("<10I").pack
_U4 = _Struct("<4I").unpack_from
_ABSENT = _Struct("<2I").pack(0, 0xFFFFFFFF)  # a span of nothing
_decode = bytes.decode
_I4 = _Struct("<4I").iter_unpack

from wit_world import WitWorld as _World
from wit_world.imports import host as _host
from wit_world.imports import types as _types
from wit_world.imports import json as _json
from componentize_py_types import Err as _Err

__all__ = [
    "Transform", "Record", "Emitter", "Batch", "BatchJson", "BatchEmitter", "Config", "Reject", "ConfigError", "export", "log",
    "debug", "info", "warn", "error", "StatefulTransform", "Json", "pointer", "MISSING", "NULL", "FALSE", "TRUE",
    "NUMBER", "STRING", "ARRAY", "OBJECT",
]

NONE = 0xFFFFFFFF


class Reject(Exception):
    """Raised by ``transform``: this record goes to the dead-letter topic with the message."""


class ConfigError(Exception):
    """Raised by ``__init__``: the host refuses this config with the message."""


class Config:
    """The plugin's config: string pairs from the pipeline config, in file order."""

    __slots__ = ("pairs",)

    def __init__(self, pairs):
        self.pairs = [(k, v) for k, v in pairs]

    def get(self, key, default=None):
        for k, v in self.pairs:
            if k == key:
                return v
        return default

    def __iter__(self):
        return iter(self.pairs)

    def keys(self):
        return [k for k, _ in self.pairs]


class Record:
    """One input record. ``key``/``value`` are ``bytes`` or ``None`` (a Kafka null); ``headers``
    is a list of ``(name: str, value: bytes | None)`` in producer order; ``timestamp`` is
    milliseconds since the Unix epoch or ``None``. Each field is decoded when first read."""

    # `_horig` and `_hraw`: the headers as first read and their words (set with `_headers`), so
    # that emitting them unchanged copies their words instead of encoding them again.
    __slots__ = ("_batch", "_b", "_headers", "_horig", "_hraw")

    def __init__(self, batch, b):
        self._batch = batch
        self._b = b
        self._headers = None

    # The accessors below run per record in a plugin's loop: written out inline (no helper
    # calls), each reads only the words it needs.

    @property
    def key(self):
        batch = self._batch
        w = batch.records
        b = self._b
        n = w[b + 1]
        if n == NONE:
            return None
        o = w[b]
        return batch.data[o:o + n]

    @property
    def value(self):
        batch = self._batch
        w = batch.records
        b = self._b
        n = w[b + 3]
        if n == NONE:
            return None
        o = w[b + 2]
        return batch.data[o:o + n]

    @property
    def headers(self):
        hs = self._headers
        if hs is None:
            batch = self._batch
            w = batch.records
            b = self._b
            x = w[b + 4] << 4
            hw = self._hraw = batch.hraw[x:x + (w[b + 5] << 4)]
            if len(hw) == 16:  # the usual case, one header: without a loop
                data = batch.data
                o, nl, vo, vl = _U4(hw)
                hs = [(data[o:o + nl].decode(), None if vl == NONE else data[vo:vo + vl])]
            else:
                hs = []
                if hw:
                    data = batch.data
                    for o, nl, vo, vl in _I4(hw):
                        hs.append((data[o:o + nl].decode(), None if vl == NONE else data[vo:vo + vl]))
            self._horig = tuple(hs)
            self._headers = hs
        return hs

    @property
    def timestamp(self):
        w = self._batch.records
        lo, hi = w[self._b + 6], w[self._b + 7]
        if lo == 0 and hi == 0x80000000:
            return None
        t = lo | (hi << 32)
        return t - (1 << 64) if hi & 0x80000000 else t

    @property
    def topic(self):
        return self._batch.topics[self._batch.records[self._b + 8]]

    @property
    def partition(self):
        p = self._batch.records[self._b + 9]
        return p - (1 << 32) if p & 0x80000000 else p

    @property
    def offset(self):
        w = self._batch.records
        return w[self._b + 10] | (w[self._b + 11] << 32)

    def header(self, name):
        """The value of the first header called ``name`` (``None`` if absent or null)."""
        for n, v in self.headers:
            if n == name:
                return v
        return None

    @property
    def json(self):
        """The record's value as a JSON document (:class:`Json`): the fields the plugin declared
        in ``json_paths``, read by the host for the whole batch, and edits to it."""
        return Json(self._batch._json, self._b // 12)


# What a JSON path found: the `kind` enum of the `json` interface (wit/sluice.wit).
MISSING, NULL, FALSE, TRUE, NUMBER, STRING, ARRAY, OBJECT = range(8)

_EDIT_FAILED = ("the edited JSON value could not be written: an edit's parent is missing or not an "
                "object or array, an array index is out of range, or raw JSON does not parse")


def pointer(*keys):
    """The JSON Pointer (RFC 6901) of the field reached through ``keys``: ``pointer("a/b", 0)``
    is ``"/a~1b/0"``; ``pointer()`` is ``""``, the whole document."""
    return "".join("/" + str(k).replace("~", "~0").replace("/", "~1") for k in keys)


class _JsonBatch:
    """One batch's JSON work: what the host read for the declared paths (one ``read`` call before
    the records are transformed) and the edits recorded, written in one ``write`` call after.

    A declared path's kinds and strings are turned into per-document lists for the whole batch
    the first time a record asks for them (``memoryview`` slices and ``map`` in C), so that
    ``kind`` and ``string`` are a dict lookup and a list index per record. A document's index
    in ``write`` is its input's index: the documents no output carries are sent absent."""

    __slots__ = ("batch", "data", "words", "fields", "text", "stride", "nread", "index", "ids",
                 "paths", "edits", "blocks", "pending", "kcols", "scols", "stext")

    def __init__(self, batch, paths, index, ids):
        self.batch = batch
        self.data = batch.data
        self.words = batch.records
        self.nread = len(paths)
        self.stride = 1 + 3 * len(paths)
        self.index = index  # JSON Pointer -> its index in `paths`
        self.ids = ids  # a declared path, as its index or its pointer -> its index
        self.paths = paths
        self.fields = None
        self.text = b""
        self.edits = []  # (document, path, operation, text bytes) per edit, in order
        # Column edits of `BatchJson.set_strings`, kept as columns (no tuple per edit): (number
        # of `edits` before it, documents, path, text bytes of each).
        self.blocks = []
        self.pending = []  # (byte position of an output's value span in the records, input), flat
        self.kcols = {}  # path -> the kind of it in every document
        self.scols = {}  # path -> its string (or None) in every document
        self.stext = None  # `text` decoded, when it is ASCII
        if paths:
            # Every record's value span, words 2 and 3 of its 12 (bytes 8..16 of 48): one strided
            # copy in C of the 8-byte pairs at 1, 7, 13, ...
            docs = memoryview(batch.raw).cast("Q")[1::6].tobytes()
            f = _json.read(self.data, docs, paths)
            self.fields = _words(f.fields)
            self.text = f.text

    def declared(self, path):
        """The index of ``path`` among the paths read for the batch, or ``None``."""
        if isinstance(path, int):
            return path if 0 <= path < self.nread else None
        if type(path) is str:
            i = self.index.get(path)
            return i if i is not None and i < self.nread else None
        return None

    def kind_column(self, path):
        """The kind of ``path`` in every document (``bytes``, one per document), or ``None`` when it was not read
        for the batch (``""``, the document's root, always is when any path was)."""
        f = self.fields
        if f is None:
            return None
        # A kind is below 256: the low byte of each word, as a `bytes` (no `int` made per word).
        if path == "":
            col = f[0::self.stride].tobytes()[0::4]
        else:
            i = self.declared(path)
            if i is None:
                return None
            col = f[1 + 3 * i::self.stride].tobytes()[0::4]
        self.kcols[path] = col
        return col

    def string_column(self, path):
        """The string at ``path`` (or ``None``) in every document, or ``None`` when it was not
        read for the batch."""
        i = self.declared(path) if self.fields is not None else None
        if i is None:
            return None
        kinds = self.kcols.get(path)
        if kinds is None:
            kinds = self.kind_column(path)
        f = self.fields
        offs = f[2 + 3 * i::self.stride].tolist()
        ends = list(map(_add, offs, f[3 + 3 * i::self.stride].tolist()))
        text = self.text
        if text.isascii():  # byte offsets are character offsets: slice one decoded `str`
            s = self.stext
            if s is None:
                s = self.stext = text.decode()
            col = list(map(s.__getitem__, map(slice, offs, ends)))
        else:
            col = list(map(_decode, map(text.__getitem__, map(slice, offs, ends))))
        if kinds.count(STRING) != len(kinds):  # some are not strings: None for those
            col = [t if k == STRING else None for t, k in zip(col, kinds)]
        self.scols[path] = col
        return col

    def slot(self, path):
        """Index of ``path`` among the paths of ``write``, added when it is new (an edit may
        name a path the plugin did not declare)."""
        i = self.index.get(path) if type(path) is str else None
        if i is None:
            if type(path) is not str:
                raise IndexError(f"JSON path index {path!r} is not one of the {self.nread} declared in json_paths")
            if len(self.paths) == self.nread:  # still the plugin's own list and dict: copy them
                self.paths = list(self.paths)
                self.index = dict(self.index)
            i = len(self.paths)
            self.paths.append(path)
            self.index[path] = i
        return i

    def read_one(self, i, path):
        """Reads an undeclared ``path`` of document ``i`` with a host call of its own."""
        x = i * 48 + 8
        f = _json.read(self.data, self.batch.raw[x:x + 8], [path] if path is not None else [])
        return _words(f.fields), f.text

    def finish(self, out_data, out_records, errors):
        """Writes every edited document in one call and points the outputs that carry one at it;
        an input whose document cannot be written is rejected."""
        p = self.pending  # (byte position of an output's value span in out_records, input)
        if not p:
            return
        n = len(self.words) // 12
        pos = p[0::2]
        ins = p[1::2]
        m = len(pos)
        raw = self.batch.raw
        used = set(ins)
        if len(used) == n:  # every document: all value spans, as for `read`
            docs = memoryview(raw).cast("Q")[1::6].tobytes()
        else:  # only those an output carries; the others absent, which the host skips
            w = bytearray(_ABSENT * n)
            for i in used:
                x = i * 48 + 8
                w[i * 8:i * 8 + 8] = raw[x:x + 8]
            docs = bytes(w)
        res = _json.write(self.data, docs, self.paths, *_edit_words(self.edits, self.blocks))
        base = len(out_data)
        out_data += res.data
        d = _words(res.docs).tolist()
        offs = d[0::2]
        lens = d[1::2]
        r = memoryview(out_records).cast("I")
        if pos == list(range(pos[0], pos[0] + 40 * m, 40)):
            # The usual shape: the outputs that carry a document are consecutive, each carrying
            # its own input's (every input in order, or every input not rejected by a
            # `transform_batch`). Every value span is then every 10th word from the first: two
            # strided stores in C, when no document failed.
            if m == n and ins == list(range(n)):
                o, k = offs, lens
            else:
                o = list(map(offs.__getitem__, ins))
                k = list(map(lens.__getitem__, ins))
            if NONE not in k:
                s = pos[0] >> 2
                r[s:s + 10 * m:10] = _array("I", map(base.__add__, o))
                r[s + 1:s + 10 * m:10] = _array("I", k)
                r.release()
                return
        failed = set()
        for x, i in zip(pos, ins):
            k = lens[i]
            if k == NONE:
                if i not in failed:
                    failed.add(i)
                    errors.append(_types.InputError(input=i, message=self.failure(i)))
                continue
            x >>= 2
            r[x] = base + offs[i]
            r[x + 1] = k
        if failed:  # a rejected input emits nothing: drop its outputs, as after an exception
            kept = b"".join([out_records[k:k + 40] for k in range(0, len(out_records), 40) if r[k >> 2] not in failed])
            r.release()
            out_records[:] = kept
        r.release()

    def failure(self, i):
        if self.words[i * 12 + 3] == NONE:
            return "record has no value"
        if self.fields is not None:
            valid = self.fields[i * self.stride]
        else:
            valid = self.read_one(i, None)[0][0]
        return _EDIT_FAILED if valid else "value is not valid JSON"


def _edit_words(edits, blocks=()):
    """``edits`` (and the column ``blocks`` between them) as the ``write`` call takes them: 5
    words per edit (document, path, operation, and the span of its text) and the texts end to
    end, in the order they were made."""
    if blocks:
        docs, paths, ops, texts = [], [], [], []
        start = 0
        for at, d, p, t in blocks:
            if at > start:
                d0, p0, o0, t0 = zip(*edits[start:at])
                docs += d0
                paths += p0
                ops += o0
                texts += t0
                start = at
            docs += d
            paths += _repeat(p, len(t))
            ops += _repeat(1, len(t))
            texts += t
        if start < len(edits):
            d0, p0, o0, t0 = zip(*edits[start:])
            docs += d0
            paths += p0
            ops += o0
            texts += t0
        if not docs:
            return b"", b""
    elif not edits:
        return b"", b""
    else:
        docs, paths, ops, texts = zip(*edits)
    lens = list(map(len, texts))
    words = _array("I", bytes(20 * len(docs)))
    w = memoryview(words)
    w[0::5] = _array("I", docs)
    w[1::5] = _array("I", paths)
    w[2::5] = _array("I", ops)
    w[3::5] = _array("I", _accumulate(lens, initial=0))[:-1]
    w[4::5] = _array("I", lens)
    w.release()
    return words.tobytes(), b"".join(texts)


class Json:
    """A record's value as a JSON document, read and edited by the host with serde_json's rules.

    A path is an index into the plugin's ``json_paths`` (fastest) or a JSON Pointer string;
    declared paths were read for the whole batch in one host call, an undeclared one costs a host
    call of its own. Edits (``set``, ``set_raw``, ``remove``) apply in order; emit the edited
    document with ``out.emit(value=record.json)``: the SDK fills it in after the batch, with all
    of this record's edits applied, serialised as serde_json does (compact, key order kept). A
    view is valid during the ``transform`` call it was made in."""

    __slots__ = ("_jb", "_i")

    def __init__(self, jb, i):
        self._jb = jb
        self._i = i

    def _field(self, path):
        """(kind, text bytes, offset, length) of ``path``."""
        jb = self._jb
        i = jb.index.get(path) if type(path) is str else path
        if type(i) is int and 0 <= i < jb.nread:
            f = jb.fields
            x = self._i * jb.stride + 1 + 3 * i
            return f[x], jb.text, f[x + 1], f[x + 2]
        if type(path) is not str:
            raise IndexError(f"JSON path index {path!r} is not one of the {jb.nread} declared in json_paths")
        f, text = jb.read_one(self._i, path)
        return f[1], text, f[2], f[3]

    @property
    def valid(self):
        """Whether the value is valid JSON (``False`` for an absent value too)."""
        jb = self._jb
        if jb.fields is not None:
            return jb.fields[self._i * jb.stride] != MISSING
        return jb.read_one(self._i, None)[0][0] != MISSING

    def kind(self, path):
        """What ``path`` found: ``MISSING``, ``NULL``, ``FALSE``, ``TRUE``, ``NUMBER``,
        ``STRING``, ``ARRAY`` or ``OBJECT`` (``MISSING`` when the value is not valid JSON).
        ``kind("")``, the whole document's, costs no host call."""
        col = self._jb.kcols.get(path)
        if col is None:
            col = self._jb.kind_column(path)
            if col is None:
                return self._field(path)[0]
        return col[self._i]

    def string(self, path):
        """The string at ``path``, or ``None`` when it is missing or not a string."""
        col = self._jb.scols.get(path)
        if col is None:
            col = self._jb.string_column(path)
            if col is None:
                k, text, o, n = self._field(path)
                return text[o:o + n].decode() if k == STRING else None
        return col[self._i]

    def text(self, path):
        """The JSON text at ``path`` (compact, as serde_json prints it; a string's is its decoded
        value, see ``kind``), or ``None`` when it is missing."""
        k, text, o, n = self._field(path)
        if k == MISSING:
            return None
        if k == NULL:
            return "null"
        if k == FALSE:
            return "false"
        if k == TRUE:
            return "true"
        return text[o:o + n].decode()

    def get(self, path, default=None):
        """The value at ``path`` as Python (``None``, ``bool``, ``int``/``float``, ``str``, and
        ``dict``/``list`` as :func:`sluice.json.loads` builds them), or ``default`` when missing."""
        k, text, o, n = self._field(path)
        if k == MISSING:
            return default
        if k == STRING:
            return text[o:o + n].decode()
        if k <= TRUE:
            return (None, False, True)[k - NULL]
        from . import json as _pyjson
        return _pyjson.loads(text[o:o + n])

    def _edit(self, path, op, b):
        jb = self._jb
        p = jb.ids.get(path)
        if p is None:
            p = jb.slot(path)
        jb.edits.append((self._i, p, op, b))

    def set(self, path, value):
        """Sets ``path`` to the string ``value`` (a missing key of an existing object is added at
        its end)."""
        jb = self._jb
        p = jb.ids.get(path)
        if p is None:
            p = jb.slot(path)
        jb.edits.append((self._i, p, 1, value.encode()))

    def set_raw(self, path, json_text):
        """Sets ``path`` to the JSON text ``json_text`` (``str`` or UTF-8 ``bytes``); text that
        does not parse fails this record's document."""
        self._edit(path, 2, json_text.encode() if isinstance(json_text, str) else bytes(json_text))

    def remove(self, path):
        """Removes ``path`` (nothing if it is missing)."""
        self._edit(path, 0, b"")


class _NoRecord:
    _headers = None


_NO_RECORD = _NoRecord()


class Emitter:
    """Where ``transform`` writes the outputs of the record it is given."""

    __slots__ = ("_data", "_records", "_headers", "_outputs", "_input", "_record")

    # `records` and `headers` are bytearrays of the output batch's words (40 bytes per record,
    # 16 per header).
    def __init__(self, data, records, headers, outputs):
        self._data = data
        self._records = records
        self._headers = headers
        self._outputs = outputs
        self._input = 0
        self._record = _NO_RECORD  # the record being transformed: its headers are copied as words

    def emit(self, value=None, key=None, headers=(), timestamp=None, to=None):
        """Emits one output record. ``value``/``key``: ``bytes``, ``str`` (UTF-8) or ``None``, and
        ``value`` may be a :class:`Json` view: the edited document;
        ``headers``: ``(name, value)`` pairs; ``timestamp``: milliseconds, ``None`` = the
        input's; ``to``: a named output declared in the pipeline config, ``None`` = default."""
        # Runs once per output: spans are appended inline, without helper calls.
        d = self._data
        hs = self._headers
        first = len(hs) >> 4
        if headers:
            r = self._record
            if headers is r._headers and tuple(headers) == r._horig:
                hs += r._hraw
            else:
                for name, hv in headers:
                    if isinstance(hv, str):
                        hv = hv.encode()
                    name = name.encode()
                    no = len(d)
                    d += name
                    if hv is None:
                        hs += _P4(no, len(name), 0, NONE)
                    else:
                        hs += _P4(no, len(name), len(d), len(hv))
                        d += hv
        if key is None:
            ko = 0
            kl = NONE
        else:
            if isinstance(key, str):
                key = key.encode()
            ko = len(d)
            kl = len(key)
            d += key
        if value is None:
            vo = 0
            vl = NONE
        elif type(value) is Json:  # the edited document: filled in after the batch's `write`
            value._jb.pending += (len(self._records) + 12, value._i)
            vo = 0
            vl = NONE
        else:
            if isinstance(value, str):
                value = value.encode()
            vo = len(d)
            vl = len(value)
            d += value
        if timestamp is None and to is None:  # the usual case: the input's timestamp, default output
            self._records += _P10(self._input, ko, kl, vo, vl, first, (len(hs) >> 4) - first, 0, 0x80000000, NONE)
            return
        if timestamp is None:
            t0 = 0
            t1 = 0x80000000
        else:
            t = timestamp & 0xFFFFFFFFFFFFFFFF
            t0 = t & 0xFFFFFFFF
            t1 = t >> 32
        if to is None:
            o = NONE
        else:
            try:
                o = self._outputs.index(to)
            except ValueError:
                o = len(self._outputs)
                self._outputs.append(to)
        self._records += _P10(self._input, ko, kl, vo, vl, first, (len(hs) >> 4) - first, t0, t1, o)

    def forward(self, record):
        """Sends ``record`` on unchanged (key, value, headers, timestamp) to the default output."""
        # The output's data starts with the input's, so the input's spans stay valid.
        batch = record._batch
        w = batch.records
        b = record._b
        hs = self._headers
        first = len(hs) >> 4
        h0 = w[b + 4]
        n = w[b + 5]
        if n:
            hs += batch.hraw[h0 << 4:(h0 + n) << 4]
        self._records += _P10(self._input, w[b], w[b + 1], w[b + 2], w[b + 3], first, n, w[b + 6], w[b + 7], NONE)


class BatchJson:
    """The JSON documents of a whole batch, for ``transform_batch``: columns of the declared
    ``json_paths`` (one entry per record, in input order, read by the host in one call) and edits
    by record index. A path is an index into ``json_paths`` or one of its JSON Pointers; columns
    exist only for declared paths (and ``""``, the whole document), edits may name any path."""

    __slots__ = ("_jb", "_n")

    def __init__(self, jb, n):
        self._jb = jb
        self._n = n

    def _undeclared(self, path):
        return ValueError(f"JSON path {path!r} was not declared in json_paths: add it there to "
                          "read it for the whole batch (or read it per record with "
                          "batch.record(i).json)")

    def kinds(self, path):
        """What ``path`` found in every document, as ``bytes`` (one kind per record: ``MISSING``
        ... ``OBJECT``; ``MISSING`` where the value is absent or not valid JSON). ``kinds("")``
        gives each document's root kind."""
        jb = self._jb
        col = jb.kcols.get(path)
        if col is None:
            col = jb.kind_column(path) if self._n else b""
            if col is None:
                raise self._undeclared(path)
        return col

    def strings(self, path):
        """The string at ``path`` in every document: a list of ``str``, ``None`` where it is
        missing or not a string. The list is the SDK's own: copy it before changing it."""
        jb = self._jb
        col = jb.scols.get(path)
        if col is None:
            col = jb.string_column(path) if self._n else []
            if col is None:
                raise self._undeclared(path)
        return col

    def set_strings(self, path, column):
        """Sets ``path`` of every document to the string at its index in ``column`` (as
        :meth:`Json.set`); ``None`` leaves that document unchanged. ``column`` has one entry per
        record. Edits of a record that is rejected are dropped with it."""
        if len(column) != self._n:
            raise ValueError(f"set_strings: the column has {len(column)} entries for {self._n} records")
        jb = self._jb
        p = jb.ids.get(path)
        if p is None:
            p = jb.slot(path)
        if None in column:
            docs = [i for i, v in enumerate(column) if v is not None]
            column = [v for v in column if v is not None]
        else:
            docs = range(self._n)
        jb.blocks.append((len(jb.edits), docs, p, list(map(str.encode, column))))

    def _doc(self, i):
        if not 0 <= i < self._n:
            raise IndexError(f"record index {i} is out of range: the batch has {self._n} records")
        return Json(self._jb, i)

    def set(self, i, path, value):
        """Sets ``path`` of record ``i``'s document to the string ``value``."""
        self._doc(i).set(path, value)

    def set_raw(self, i, path, json_text):
        """Sets ``path`` of record ``i``'s document to the JSON text ``json_text``."""
        self._doc(i).set_raw(path, json_text)

    def remove(self, i, path):
        """Removes ``path`` from record ``i``'s document."""
        self._doc(i).remove(path)


class Batch:
    """The input batch as ``transform_batch`` sees it: ``len(batch)`` records, columns aligned
    with them (index ``i`` is the batch's ``i``-th record), and ``record(i)`` for the rest."""

    __slots__ = ("_batch", "_n", "json")

    def __init__(self, batch, n):
        self._batch = batch
        self._n = n
        self.json = BatchJson(batch._json, n)
        """The batch's JSON documents (:class:`BatchJson`)."""

    def __len__(self):
        return self._n

    def record(self, i):
        """Record ``i`` (:class:`Record`), for what the columns do not give."""
        if not 0 <= i < self._n:
            raise IndexError(f"record index {i} is out of range: the batch has {self._n} records")
        return Record(self._batch, i * 12)

    def values_present(self):
        """Whether each record has a value (``False`` for a Kafka null), as a list of ``bool``."""
        return list(map(NONE.__ne__, self._batch.records[3::12].tolist()))

    def _spans(self, w):
        data = self._batch.data
        offs = self._batch.records[w::12].tolist()
        lens = self._batch.records[w + 1::12].tolist()
        return [None if n == NONE else data[o:o + n] for o, n in zip(offs, lens)]

    def keys(self):
        """Every record's key (``bytes`` or ``None``), as a list."""
        return self._spans(0)

    def values(self):
        """Every record's value (``bytes`` or ``None``), as a list."""
        return self._spans(2)


class BatchEmitter:
    """Where ``transform_batch`` writes its outputs: reject records by index, then forward every
    record not rejected in one call."""

    __slots__ = ("_batch", "_n", "_data", "_records", "_headers", "_rejected", "_done")

    def __init__(self, batch, n, data, records, headers):
        self._batch = batch
        self._n = n
        self._data = data
        self._records = records
        self._headers = headers
        self._rejected = {}  # input -> message, the first one given
        self._done = False

    def reject(self, i, message):
        """Sends record ``i`` to the dead-letter topic with ``message`` as its reason; it is not
        forwarded and its edits are dropped. A record's first rejection stands (later ones for
        it are ignored), so checks written column by column in the order of the per-record checks
        give each record the message of its first failing check."""
        if self._done:
            raise RuntimeError("reject after forward_all: reject records first")
        if not 0 <= i < self._n:
            raise IndexError(f"record index {i} is out of range: the batch has {self._n} records")
        self._rejected.setdefault(i, str(message))

    def rejected(self, i):
        """Whether record ``i`` has been rejected."""
        return i in self._rejected

    def forward_all(self, json=False):
        """Forwards every record not rejected, in input order, to the default output: key,
        headers and timestamp as they came and the value as it came (as ``out.forward(record)``
        would) or, with ``json=True``, its document with all its edits applied (as
        ``out.emit(key=record.key, value=record.json, headers=record.headers)`` would). Called
        at most once, after the rejections; a batch whose plugin never calls it emits nothing."""
        if self._done:
            raise RuntimeError("forward_all called twice for one batch")
        self._done = True
        batch = self._batch
        jb = batch._json
        n = self._n
        if not json and (jb.edits or jb.blocks):
            raise ValueError("forward_all(json=False) would drop the batch's JSON edits: pass json=True "
                             "to forward the edited documents")
        w = batch.records
        rej = self._rejected
        keep = [i for i in range(n) if i not in rej] if rej else range(n)
        m = len(keep)
        if not m:
            return

        def pick(col):  # a column of the input words, for the records kept
            col = col.tolist()
            return col if not rej else list(map(col.__getitem__, keep))

        hs = self._headers
        counts = pick(w[5::12])
        first = _array("I", _accumulate(counts, initial=len(hs) >> 4))
        starts = pick(w[4::12])
        # The headers as words (offsets into the input's data, which the output's starts with):
        # the whole input list when every record is kept in order, else each kept record's slice.
        hraw = batch.hraw
        if not rej and starts == first[:-1].tolist() and len(hs) == 0:
            hs += hraw[:first[-1] << 4]
        else:
            hs += b"".join([hraw[s << 4:(s + c) << 4] for s, c in zip(starts, counts)])
        rec = _array("I", bytes(40 * m))
        r = memoryview(rec)
        r[0::10] = _array("I", keep)
        r[1::10] = _array("I", pick(w[0::12]))
        r[2::10] = _array("I", pick(w[1::12]))
        if json:  # filled in by `_JsonBatch.finish` after the batch's `write`
            r[4::10] = _array("I", [NONE]) * m
            base = len(self._records) + 12
            flat = [0] * (2 * m)
            flat[0::2] = range(base, base + 40 * m, 40)
            flat[1::2] = keep
            jb.pending += flat
        else:
            r[3::10] = _array("I", pick(w[2::12]))
            r[4::10] = _array("I", pick(w[3::12]))
        r[5::10] = first[:-1]
        r[6::10] = _array("I", counts)
        if json:  # "the input's timestamp", as `emit` writes it
            r[8::10] = _array("I", [0x80000000]) * m
        else:  # the input's timestamp words, as `forward` copies them
            r[7::10] = _array("I", pick(w[6::12]))
            r[8::10] = _array("I", pick(w[7::12]))
        r[9::10] = _array("I", [NONE]) * m  # the default output
        r.release()
        self._records += rec

    def _errors(self):
        return [_types.InputError(input=i, message=self._rejected[i]) for i in sorted(self._rejected)]


class Transform:
    """Base class of a plugin. Override ``transform``; override ``__init__(self, config)`` to read
    the config (the default accepts any config).

    Or define ``transform_batch(self, batch, out)`` instead: called once per batch with a
    :class:`Batch` (columns of the declared JSON paths, aligned with the records) and a
    :class:`BatchEmitter` (``reject(i, message)``, ``forward_all(json=True)``), so that the
    per-record work is list comprehensions over columns and the rest is done per batch. An
    exception escaping it dead-letters every record of the batch with its message."""

    transform_batch = None

    def __init__(self, config):
        pass

    def transform(self, record, out):
        raise NotImplementedError


class StatefulTransform(Transform):
    """Base class of a plugin of the ``stateful-transform`` world: keyed state and timers
    (``sluice.state``) and ``on_timer(self, timer, out)``, called for every timer that fired, with
    the same emitter as ``transform`` (raise to dead-letter the timer). ``build.sh`` builds a
    plugin whose sources name ``StatefulTransform`` for that world."""

    def on_timer(self, timer, out):
        pass


def _log(level, message):
    _host.log(level, str(message))


def debug(message):
    _log(_host.Level.DEBUG, message)


def info(message):
    _log(_host.Level.INFO, message)


def warn(message):
    _log(_host.Level.WARN, message)


def error(message):
    _log(_host.Level.ERROR, message)


class log:  # noqa: N801 - `sluice.log.info(...)` reads like the other SDKs
    debug = staticmethod(debug)
    info = staticmethod(info)
    warn = staticmethod(warn)
    error = staticmethod(error)


def _words(b):
    """The little-endian ``u32`` words of a word list (``bytes`` from the host) as a view."""
    return memoryview(b).cast("I")


class _Batch:
    """The input batch as the SDK reads it: ``data``, views of the records' and headers' words
    (``raw``: the records' bytes), the topics, and the batch's JSON work."""

    __slots__ = ("data", "raw", "records", "hraw", "headers", "topics", "_json")

    def __init__(self, batch):
        self.data = batch.data
        self.raw = batch.records
        self.records = _words(batch.records)
        self.hraw = batch.headers
        self.headers = _words(batch.headers)
        self.topics = batch.topics
        self._json = None


def export(cls):
    """Returns the ``WitWorld`` class componentize-py expects, running ``cls`` per record."""

    class WitWorld(_World):
        plugin = None
        paths = []
        index = {}
        ids = {}

        def init(self, config):
            try:
                plugin = cls(Config(config))
                paths = [str(p) for p in getattr(plugin, "json_paths", None) or ()]
            except Exception as e:  # refuse the config with the message
                raise _Err(str(e) or type(e).__name__)
            if getattr(plugin, "transform_batch", None) is not None and isinstance(plugin, StatefulTransform):
                raise _Err("transform_batch is for stateless transforms: a StatefulTransform's state "
                           "and timers belong to the record being transformed; define transform instead")
            WitWorld.plugin = plugin
            WitWorld.paths = paths
            WitWorld.index = {p: i for i, p in reversed(list(enumerate(paths)))}
            WitWorld.ids = {**{i: i for i in range(len(paths))}, **WitWorld.index}

        def process(self, wit_batch):
            plugin = WitWorld.plugin
            batch = _Batch(wit_batch)
            out_data = bytearray(batch.data)  # forwarded spans point into this copy
            out_records = bytearray()
            out_headers = bytearray()
            outputs = []
            errors = []
            out = Emitter(out_data, out_records, out_headers, outputs)
            jb = batch._json = _JsonBatch(batch, WitWorld.paths, WitWorld.index, WitWorld.ids)
            if getattr(plugin, "transform_batch", None) is not None:
                return WitWorld.process_batch(plugin, batch, jb, out_data, out_records, out_headers)
            edits = jb.edits
            pending = jb.pending
            transform = plugin.transform
            for i in range(len(batch.records) // 12):
                r = out._record = Record(batch, i * 12)
                out._input = i
                # What a record that raises has written is cut off at these lengths.
                marks = (len(out_data), len(out_records), len(out_headers), len(edits), len(pending))
                try:
                    transform(r, out)
                except Exception as e:
                    for c, m in zip((out_data, out_records, out_headers, edits, pending), marks):
                        del c[m:]
                    errors.append(_types.InputError(input=i, message=str(e) or type(e).__name__))
            jb.finish(out_data, out_records, errors)
            batch._json = None
            return _types.OutputBatch(data=bytes(out_data), records=bytes(out_records),
                                      headers=bytes(out_headers), outputs=outputs, errors=errors)

        @staticmethod
        def process_batch(plugin, batch, jb, out_data, out_records, out_headers):
            n = len(batch.records) // 12
            out = BatchEmitter(batch, n, out_data, out_records, out_headers)
            try:
                plugin.transform_batch(Batch(batch, n), out)
                errors = out._errors()
            except Exception as e:
                if n > 1:
                    # Which record raised is unknown: trap, and the host re-runs the batch in
                    # halves on fresh instances until the record is alone (the rest go through).
                    raise
                message = str(e) or type(e).__name__
                del out_data[len(batch.data):], out_records[:], out_headers[:], jb.edits[:], jb.blocks[:], jb.pending[:]
                errors = [_types.InputError(input=0, message=message)]
            jb.finish(out_data, out_records, errors)
            batch._json = None
            return _types.OutputBatch(data=bytes(out_data), records=bytes(out_records),
                                      headers=bytes(out_headers), outputs=[], errors=errors)

    if issubclass(cls, StatefulTransform):
        from . import state as _state

        class StatefulWitWorld(WitWorld):
            def on_timer(self, fired):
                plugin = WitWorld.plugin
                out_data = bytearray()
                out_records = bytearray()
                out_headers = bytearray()
                outputs = []
                errors = []
                out = Emitter(out_data, out_records, out_headers, outputs)
                for i, timer in enumerate(_state._fired(fired)):
                    out._input = i
                    marks = (len(out_data), len(out_records), len(out_headers))
                    try:
                        plugin.on_timer(timer, out)
                    except Exception as e:
                        del out_data[marks[0]:]
                        del out_records[marks[1]:]
                        del out_headers[marks[2]:]
                        errors.append(_types.InputError(input=i, message=str(e) or type(e).__name__))
                return _types.OutputBatch(data=bytes(out_data), records=bytes(out_records),
                                          headers=bytes(out_headers), outputs=outputs, errors=errors)

        return StatefulWitWorld
    return WitWorld
