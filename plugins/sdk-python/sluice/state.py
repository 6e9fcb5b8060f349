"""Keyed state and timers for plugins of the ``stateful-transform`` world (``wit/sluice.wit``,
interfaces ``state`` and ``timers``), and event-time windows built on them.

State lives in the host, scoped to the partition of the records being processed: it survives
traps, hot swaps and restarts, and a record that is rejected changes nothing. Keys and values are
``bytes`` (a ``str`` is taken as UTF-8).

Use these from a :class:`sluice.StatefulTransform`, whose ``on_timer(timer, out)`` is called
for every timer that fired.
"""

from array import array as _array

from wit_world.imports import state as _state
from wit_world.imports import timers as _timers

from . import json as _json

NONE = 0xFFFFFFFF
I64_MIN = -(1 << 63)

EVENT_TIME = 0
"""A timer that fires once the partition's watermark (largest timestamp seen minus the allowed
lateness) reaches its time."""
PROCESSING_TIME = 1
"""A timer that fires at the first batch boundary after the host's clock passes its time."""

_DOMAINS = (_timers.TimeDomain.EVENT_TIME, _timers.TimeDomain.PROCESSING_TIME)


def _b(x):
    return x.encode() if isinstance(x, str) else bytes(x)


def get(key):
    """The value stored under ``key`` (``bytes``), or ``None``."""
    return _state.get(_b(key))


def put(key, value):
    """Stores ``value`` under ``key``."""
    _state.put(_b(key), _b(value))


def delete(key):
    """Removes ``key`` (nothing if it is absent)."""
    _state.delete(_b(key))


def scan(prefix=b"", after=None, limit=1000):
    """Up to ``limit`` ``(key, value)`` pairs whose keys start with ``prefix``, in ascending byte
    order, starting after the key ``after`` when given."""
    return _state.scan(_b(prefix), None if after is None else _b(after), limit)


def scan_all(prefix=b"", page=1000):
    """Every ``(key, value)`` pair whose key starts with ``prefix``, in order, a page at a time."""
    after = None
    while True:
        entries = scan(prefix, after, page)
        yield from entries
        if len(entries) < page:
            return
        after = entries[-1][0]


def get_many(keys):
    """Several ``get``s in one host call: a list of ``bytes`` or ``None``, one per key."""
    data = bytearray()
    words = []
    for k in keys:
        k = _b(k)
        words += (len(data), len(k))
        data += k
    got, spans = _state.get_many(bytes(data), _array("I", words).tobytes())
    spans = memoryview(spans).cast("I")  # little-endian u32 words, as every word list
    return [None if spans[i + 1] == NONE else got[spans[i]:spans[i] + spans[i + 1]]
            for i in range(0, len(spans), 2)]


def put_many(entries):
    """Several ``put``s and ``delete``s (a value of ``None``) in one host call, in order:
    ``entries`` is an iterable of ``(key, value)``."""
    data = bytearray()
    words = []
    for k, v in entries:
        k = _b(k)
        words += (len(data), len(k))
        data += k
        if v is None:
            words += (0, NONE)
        else:
            v = _b(v)
            words += (len(data), len(v))
            data += v
    _state.put_many(bytes(data), _array("I", words).tobytes())


def register(domain, key, at):
    """Registers a timer for ``key`` at ``at`` (ms since the Unix epoch) in ``domain``
    (``EVENT_TIME`` or ``PROCESSING_TIME``); the same timer registered twice is one timer."""
    _timers.register(_DOMAINS[domain], _b(key), at)


def cancel(domain, key, at):
    """Cancels the timer registered with the same ``(domain, key, at)``, if any."""
    _timers.cancel(_DOMAINS[domain], _b(key), at)


def watermark():
    """The partition's watermark (ms), or ``None`` before any record."""
    w = _timers.watermark()
    return None if w == I64_MIN else w


class Timer:
    """A timer that fired: ``key`` (``bytes``), ``domain`` (``EVENT_TIME`` or
    ``PROCESSING_TIME``) and ``time`` (ms)."""

    __slots__ = ("key", "domain", "time")

    def __init__(self, key, domain, time):
        self.key = key
        self.domain = domain
        self.time = time

    def __repr__(self):
        return f"Timer(key={self.key!r}, domain={self.domain}, time={self.time})"


def _fired(fired):
    data, w = fired.data, memoryview(fired.timers).cast("I")
    for x in range(0, len(w), 5):
        t = w[x + 3] | (w[x + 4] << 32)
        if t >> 63:
            t -= 1 << 64
        yield Timer(data[w[x]:w[x] + w[x + 1]], w[x + 2], t)


# --- Windows ---------------------------------------------------------------------------------
#
# A window's accumulator is kept in state under `NAME \0 kind \0 KEY \0 START(8 bytes, big
# endian)` as JSON (sluice.json, serde_json's rules), and an event-time timer with that same
# state key fires when the watermark reaches the window's end; `fire(timer)` then returns the
# result once and deletes the state. So a window's result is emitted once, and survives restarts
# like any state.


class WindowResult:
    """A closed window: ``key`` (``bytes``), ``start`` and ``end`` (ms, end exclusive), and the
    aggregate ``value``."""

    __slots__ = ("key", "start", "end", "value")

    def __init__(self, key, start, end, value):
        self.key = key
        self.start = start
        self.end = end
        self.value = value

    def __repr__(self):
        return f"WindowResult(key={self.key!r}, start={self.start}, end={self.end}, value={self.value!r})"


def _be(n):
    return (n & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")


def _unbe(b):
    n = int.from_bytes(b, "big")
    return n - (1 << 64) if n >> 63 else n


class _Windows:
    def __init__(self, name, kind, zero, add):
        if "\0" in name:
            raise ValueError("a window name may not contain NUL")
        self.prefix = name.encode() + b"\0" + kind + b"\0"
        self.zero = zero
        self.add_fn = add

    def _key(self, key, start):
        return self.prefix + _b(key) + b"\0" + _be(start)

    def _update(self, skey, end, item):
        old = get(skey)
        acc = self.zero() if old is None else _json.loads(old)[1]
        put(skey, _json.dumps([end, self.add_fn(acc, item)]))
        register(EVENT_TIME, skey, end)

    def owns(self, timer):
        """Whether ``timer`` is one of these windows' timers."""
        return timer.domain == EVENT_TIME and timer.key.startswith(self.prefix)

    def fire(self, timer):
        """The window closed by ``timer`` (a :class:`WindowResult`, once), or ``None`` when the
        timer is not one of these windows' or the window was already emitted."""
        if not self.owns(timer):
            return None
        stored = get(timer.key)
        if stored is None:
            return None
        end, acc = _json.loads(stored)
        if end != timer.time:  # a session extended since this timer was set: not closed yet
            return None
        delete(timer.key)
        rest = timer.key[len(self.prefix):]
        return WindowResult(rest[:-9], _unbe(rest[-8:]), end, acc)


class TumblingWindows(_Windows):
    """Fixed, non-overlapping event-time windows of ``size`` ms per key: ``[k*size, (k+1)*size)``.
    ``zero()`` makes an empty aggregate and ``add(aggregate, item)`` returns the next one (both
    JSON-able values). Call ``add(key, timestamp, item)`` per record and emit ``fire(timer)`` in
    ``on_timer``: each window's result comes once, when the watermark passes its end."""

    def __init__(self, size, zero, add, name="tumbling"):
        if size <= 0:
            raise ValueError("a window size must be positive")
        super().__init__(name, b"t", zero, add)
        self.size = size

    def add(self, key, timestamp, item):
        start = timestamp - timestamp % self.size
        self._update(self._key(key, start), start + self.size, item)


class SlidingWindows(_Windows):
    """Overlapping event-time windows of ``size`` ms starting every ``slide`` ms per key; a
    record counts in every window that contains its timestamp. As :class:`TumblingWindows`."""

    def __init__(self, size, slide, zero, add, name="sliding"):
        if size <= 0 or slide <= 0 or size % slide:
            raise ValueError("window size and slide must be positive, and the size a multiple of the slide")
        super().__init__(name, b"s", zero, add)
        self.size = size
        self.slide = slide

    def add(self, key, timestamp, item):
        last = timestamp - timestamp % self.slide
        start = last - self.size + self.slide
        while start <= last:
            self._update(self._key(key, start), start + self.size, item)
            start += self.slide


class SessionWindows(_Windows):
    """Event-time sessions per key: records less than ``gap`` ms apart fall into one session,
    which closes ``gap`` ms after its last record (once the watermark passes that). A record
    that bridges two sessions merges them (their aggregates with ``merge(a, b)``)."""

    def __init__(self, gap, zero, add, merge, name="session"):
        if gap <= 0:
            raise ValueError("a session gap must be positive")
        super().__init__(name, b"g", zero, add)
        self.gap = gap
        self.merge = merge

    def add(self, key, timestamp, item):
        base = self.prefix + _b(key) + b"\0"
        start, end = timestamp, timestamp + self.gap
        acc = self.add_fn(self.zero(), item)
        # Sessions of this key that overlap [timestamp - gap, timestamp + gap): merged with it.
        for skey, stored in list(scan_all(base)):
            s = _unbe(skey[-8:])
            e, a = _json.loads(stored)
            if s < end and timestamp < e:
                start, end = min(start, s), max(end, e)
                acc = self.merge(a, acc)
                delete(skey)
                cancel(EVENT_TIME, skey, e)
        skey = base + _be(start)
        put(skey, _json.dumps([end, acc]))
        register(EVENT_TIME, skey, end)
