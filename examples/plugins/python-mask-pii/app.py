"""mask-pii in Python: the behaviour of examples/plugins/rust-mask-pii, byte for byte.

Masks the fields named in the `fields` config (default `email,phone`) of a JSON object value:
an `email` field becomes `a****@example.com`, any other field keeps only its last two letters or
digits. Rejects a record without a value, a value that is not a JSON object, a missing or empty
string `id`, an invalid email and a masked field that is not a string.
"""

import sluice
from sluice import json
from sluice.text import is_alphanumeric, trim


class MaskPii(sluice.Transform):
    def __init__(self, config):
        fields = [trim(f) for f in config.get("fields", "email,phone").split(",")]
        self.fields = [f for f in fields if f]
        if not self.fields:
            raise sluice.ConfigError("config `fields` must name at least one field to mask")
        for key in config.keys():
            if key != "fields":
                raise sluice.ConfigError(f"unknown config key `{key}` (expected `fields`)")

    def transform(self, record, out):
        if record.value is None:
            raise sluice.Reject("record has no value")
        try:
            user = json.loads(record.value)
        except ValueError:
            user = None
        if type(user) is not dict:
            raise sluice.Reject("value is not a JSON object")
        id_ = user.get("id")
        if type(id_) is not str or not id_:
            raise sluice.Reject("missing or empty string field `id`")
        for field in self.fields:
            if field not in user:
                continue
            text = user[field]
            if type(text) is not str:
                raise sluice.Reject(f"field `{field}` is not a string")
            user[field] = mask_email(text) if "email" in field else mask_tail(text)
        out.emit(key=record.key, value=json.dumps(user), headers=record.headers)


def mask_email(email):
    local, at, domain = email.partition("@")
    if not at or not local or not domain or "@" in domain:
        raise sluice.Reject(f"invalid email `{email}`")
    return f"{local[0]}****@{domain}"


def mask_tail(text):
    total = sum(1 for c in text if is_alphanumeric(c))
    seen = 0
    chars = []
    for c in text:
        if is_alphanumeric(c):
            seen += 1
            if seen + 2 <= total:
                c = "*"
        chars.append(c)
    return "".join(chars)


WitWorld = sluice.export(MaskPii)
