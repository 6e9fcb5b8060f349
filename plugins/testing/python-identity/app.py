"""Forwards every record unchanged: the SDK's floor (batch decoding and encoding) in Python."""

import sluice


class Identity(sluice.Transform):
    def transform(self, record, out):
        out.forward(record)


WitWorld = sluice.export(Identity)
