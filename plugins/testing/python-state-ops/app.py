"""Every state and timer call of the Python SDK, with a summary of what each returned as the
output value (the same in every language: see js-state-ops, go-state-ops); then the record
counts in tumbling windows of 1 s, emitted when their timers fire."""

import sluice
from sluice import state


class StateOps(sluice.StatefulTransform):
    def __init__(self, config):
        self.windows = state.TumblingWindows(1000, zero=lambda: 0, add=lambda n, _: n + 1)

    def transform(self, record, out):
        k = record.key
        state.put_many([(k + b"/a", b"1"), (k + b"/b", b"2"), (k + b"/c", None)])
        got = state.get_many([k + b"/a", k + b"/b", k + b"/c"])
        state.delete(k + b"/a")
        listed = state.scan(k + b"/", None, 10)
        paged = state.scan(k + b"/", k + b"/a", 10)
        wm = state.watermark()
        summary = "get_many=%s scan=%s after=%s wm=%s" % (
            ",".join("-" if v is None else v.decode() for v in got),
            ",".join(kk.decode() + "=" + v.decode() for kk, v in listed),
            ",".join(kk.decode() for kk, _ in paged),
            "none" if wm is None else str(wm),
        )
        self.windows.add(k, record.timestamp, None)
        out.emit(key=k, value=summary)

    def on_timer(self, timer, out):
        w = self.windows.fire(timer)
        if w is not None:
            out.emit(key=w.key, value="%d-%d: %d" % (w.start, w.end, w.value))


WitWorld = sluice.export(StateOps)
