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

from wit_world import WitWorld as _World
from wit_world.imports import host as _host
from wit_world.imports import types as _types
from componentize_py_types import Err as _Err

__all__ = [
    "Transform", "Record", "Emitter", "Config", "Reject", "ConfigError", "export", "log",
    "debug", "info", "warn", "error",
]

NONE = 0xFFFFFFFF
_NO_TS = (0, 0x80000000)  # i64::MIN: no timestamp / keep the input's


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

    __slots__ = ("_batch", "_b", "_headers")

    def __init__(self, batch, b):
        self._batch = batch
        self._b = b
        self._headers = None

    @property
    def key(self):
        w = self._batch.records
        return _bytes(self._batch.data, w[self._b], w[self._b + 1])

    @property
    def value(self):
        w = self._batch.records
        return _bytes(self._batch.data, w[self._b + 2], w[self._b + 3])

    @property
    def headers(self):
        if self._headers is None:
            batch = self._batch
            data, w, hw = batch.data, batch.records, batch.headers
            h0 = w[self._b + 4]
            hs = []
            for h in range(h0, h0 + w[self._b + 5]):
                x = h * 4
                hs.append((data[hw[x]:hw[x] + hw[x + 1]].decode(), _bytes(data, hw[x + 2], hw[x + 3])))
            self._headers = hs
        return self._headers

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


class Emitter:
    """Where ``transform`` writes the outputs of the record it is given."""

    __slots__ = ("_data", "_records", "_headers", "_outputs", "_input")

    def __init__(self, data, records, headers, outputs):
        self._data = data
        self._records = records
        self._headers = headers
        self._outputs = outputs
        self._input = 0

    def _span(self, b):
        if b is None:
            return 0, NONE
        d = self._data
        off = len(d)
        d += b
        return off, len(b)

    def emit(self, value=None, key=None, headers=(), timestamp=None, to=None):
        """Emits one output record. ``value``/``key``: ``bytes``, ``str`` (UTF-8) or ``None``;
        ``headers``: ``(name, value)`` pairs; ``timestamp``: milliseconds, ``None`` = the
        input's; ``to``: a named output declared in the pipeline config, ``None`` = default."""
        if isinstance(value, str):
            value = value.encode()
        if isinstance(key, str):
            key = key.encode()
        hs = self._headers
        first = len(hs) // 4
        for name, hv in headers:
            if isinstance(hv, str):
                hv = hv.encode()
            hs.extend(self._span(name.encode()))
            hs.extend(self._span(hv))
        ko, kl = self._span(key)
        vo, vl = self._span(value)
        if timestamp is None:
            ts = _NO_TS
        else:
            t = timestamp & 0xFFFFFFFFFFFFFFFF
            ts = (t & 0xFFFFFFFF, t >> 32)
        if to is None:
            o = NONE
        else:
            try:
                o = self._outputs.index(to)
            except ValueError:
                o = len(self._outputs)
                self._outputs.append(to)
        self._records.extend((self._input, ko, kl, vo, vl, first, len(hs) // 4 - first, ts[0], ts[1], o))

    def forward(self, record):
        """Sends ``record`` on unchanged (key, value, headers, timestamp) to the default output."""
        # The output's data starts with the input's, so the input's spans stay valid.
        w = record._batch.records
        b = record._b
        hs = self._headers
        first = len(hs) // 4
        h0 = w[b + 4]
        hs.extend(record._batch.headers[h0 * 4:(h0 + w[b + 5]) * 4])
        self._records.extend((self._input, w[b], w[b + 1], w[b + 2], w[b + 3], first, w[b + 5], w[b + 6], w[b + 7], NONE))


class Transform:
    """Base class of a plugin. Override ``transform``; override ``__init__(self, config)`` to read
    the config (the default accepts any config)."""

    def __init__(self, config):
        pass

    def transform(self, record, out):
        raise NotImplementedError


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


def _bytes(data, off, length):
    if length == NONE:
        return None
    return data[off:off + length]


def export(cls):
    """Returns the ``WitWorld`` class componentize-py expects, running ``cls`` per record."""

    class WitWorld(_World):
        plugin = None

        def init(self, config):
            try:
                WitWorld.plugin = cls(Config(config))
            except Exception as e:  # refuse the config with the message
                raise _Err(str(e) or type(e).__name__)

        def process(self, batch):
            plugin = WitWorld.plugin
            out_data = bytearray(batch.data)  # forwarded spans point into this copy
            out_records = []
            out_headers = []
            outputs = []
            errors = []
            out = Emitter(out_data, out_records, out_headers, outputs)
            for i in range(len(batch.records) // 12):
                r = Record(batch, i * 12)
                out._input = i
                marks = (len(out_data), len(out_records), len(out_headers))
                try:
                    plugin.transform(r, out)
                except Exception as e:
                    del out_data[marks[0]:]
                    del out_records[marks[1]:]
                    del out_headers[marks[2]:]
                    errors.append(_types.InputError(input=i, message=str(e) or type(e).__name__))
            return _types.OutputBatch(data=bytes(out_data), records=out_records, headers=out_headers,
                                      outputs=outputs, errors=errors)

    return WitWorld
