"""plugins/testing/python-json-edits with the SDK's batch hook (`transform_batch`), for
host/tests/languages.rs (json_edits_agree_in_python_js_and_go): the same outcomes from columns,
per-index edits, undeclared paths read per record, `out.reject` after edits and
`out.forward_all(json=True)` with documents that fail to be written."""

import sluice
from sluice import MISSING, NUMBER, TRUE


class JsonEditsBatch(sluice.Transform):
    def __init__(self, config):
        self.json_paths = ["/name", sluice.pointer("tags", 0), "/drop"]

    def transform_batch(self, batch, out):
        js = batch.json
        names = js.strings(0)
        js.set_strings(0, [None if n is None else "seen:" + n for n in names])
        kinds = js.kinds(1)
        for i in [i for i, k in enumerate(kinds) if k == NUMBER]:
            js.set_raw(i, 1, batch.record(i).json.text(1) + "0")
        for i in range(len(batch)):
            js.remove(i, 2)
            doc = batch.record(i).json
            n = doc.kind("/n")  # undeclared: a host call of its own
            if n != MISSING:
                js.set_raw(i, "/n_kind", str(n))
            if doc.kind("/fail") == TRUE:
                js.set(i, "/missing/x", "y")  # no parent: the document cannot be written
            if doc.kind("/reject") == TRUE:
                out.reject(i, "asked to reject")
                out.reject(i, "a second rejection is ignored")
        out.forward_all(json=True)


WitWorld = sluice.export(JsonEditsBatch)
