"""Forwards every record unchanged with the SDK's batch hook (`out.forward_all()`: keys, values
and headers as they came), for host/tests/languages.rs
(identity_forwards_the_same_records_in_every_language). With config `raise_on = VALUE`, raises
from `transform_batch` when a record has that value (an exception the hook does not catch:
`a_record_that_raises_in_a_batch_hook_is_dead_lettered_alone`)."""

import sluice


class IdentityBatch(sluice.Transform):
    def __init__(self, config):
        poison = config.get("raise_on")
        self.poison = poison.encode() if poison is not None else None

    def transform_batch(self, batch, out):
        if self.poison is not None and self.poison in batch.values():
            raise ValueError(f"saw {self.poison.decode()}")
        out.forward_all()


WitWorld = sluice.export(IdentityBatch)
