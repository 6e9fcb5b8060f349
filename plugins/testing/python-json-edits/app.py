"""Every host JSON operation of the Python SDK, for host/tests/languages.rs
(json_edits_agree_in_python_js_and_go): declared and undeclared paths, set, set_raw, remove, an
edit that fails, a rejection after edits, and values that are absent or not JSON."""

import sluice
from sluice import MISSING, NUMBER, TRUE


class JsonEdits(sluice.Transform):
    def __init__(self, config):
        self.json_paths = ["/name", sluice.pointer("tags", 0), "/drop"]

    def transform(self, record, out):
        doc = record.json
        name = doc.string(0)
        if name is not None:
            doc.set(0, "seen:" + name)
        if doc.kind(1) == NUMBER:
            doc.set_raw(1, doc.text(1) + "0")
        doc.remove(2)
        n = doc.kind("/n")  # undeclared: a host call of its own
        if n != MISSING:
            doc.set_raw("/n_kind", str(n))
        if doc.kind("/fail") == TRUE:
            doc.set("/missing/x", "y")  # no parent: the document cannot be written
        if doc.kind("/reject") == TRUE:
            raise sluice.Reject("asked to reject")
        out.emit(key=record.key, value=doc, headers=record.headers)


WitWorld = sluice.export(JsonEdits)
