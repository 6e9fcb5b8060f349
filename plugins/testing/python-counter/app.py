"""A per-key counter (the stateful plugin of host/tests/languages.rs): emits each key's running
count, and when an event-time timer at the end of the record's second fires, that key's count
then. Keys are required."""

import sluice
from sluice import state


class Counter(sluice.StatefulTransform):
    def transform(self, record, out):
        if record.key is None:
            raise sluice.Reject("record has no key")
        n = int(state.get(record.key) or b"0") + 1
        state.put(record.key, str(n))
        ts = record.timestamp
        if ts is not None and ts >= 0:
            state.register(state.EVENT_TIME, record.key, ts - ts % 1000 + 1000)
        out.emit(key=record.key, value=str(n))

    def on_timer(self, timer, out):
        n = state.get(timer.key)
        out.emit(key=timer.key, value=f"{(n or b'0').decode()} at {timer.time}", timestamp=timer.time)


WitWorld = sluice.export(Counter)
