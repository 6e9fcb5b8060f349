"""Forwards every record unchanged with the SDK's batch hook (`out.forward_all()`: keys, values
and headers as they came), for host/tests/languages.rs
(identity_forwards_the_same_records_in_every_language)."""

import sluice


class IdentityBatch(sluice.Transform):
    def transform_batch(self, batch, out):
        out.forward_all()


WitWorld = sluice.export(IdentityBatch)
