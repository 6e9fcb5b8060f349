"""Forwards every record on the raw batch layout, without the SDK: the floor of a Python plugin
(host/benches/languages.rs). Word lists are `list<u8>` of little-endian u32 words (`bytes`)."""

from array import array

from wit_world import WitWorld as World
from wit_world.imports import types

NONE = 0xFFFFFFFF


class WitWorld(World):
    def init(self, config):
        pass

    def process(self, batch):
        r = memoryview(batch.records).cast("I")
        out = []
        for i in range(len(r) // 12):
            b = i * 12
            out.extend((i, r[b], r[b + 1], r[b + 2], r[b + 3], r[b + 4], r[b + 5], 0, 0x80000000, NONE))
        return types.OutputBatch(data=batch.data, records=array("I", out).tobytes(), headers=batch.headers,
                                 outputs=[], errors=[])
