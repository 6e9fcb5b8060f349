"""mask-pii in Python: the behaviour of examples/plugins/rust-mask-pii, byte for byte.

Masks the fields named in the `fields` config (default `email,phone`) of a JSON object value:
an `email` field becomes `a****@example.com`, any other field keeps only its last two letters or
digits. Rejects a record without a value, a value that is not a JSON object, a missing or empty
string `id`, an invalid email and a masked field that is not a string.
"""

import re

import sluice
from sluice import MISSING, OBJECT
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
        # Read by the host for the whole batch: `id` (path 0) and each masked field (1..).
        self.json_paths = ["/id"] + [sluice.pointer(f) for f in self.fields]
        self.masks = [(i + 1, f, mask_email if "email" in f else mask_tail)
                      for i, f in enumerate(self.fields)]

    def transform_batch(self, batch, out):
        # Column by column, in the order of the per-record checks: a record's first rejection
        # stands, so each gets the message of its first failing check, as in the other languages.
        js = batch.json
        ids = js.strings(0)  # `None` where `id` is not a string
        if not all(ids):
            present = batch.values_present()
            kinds = js.kinds("")
            for i in [i for i, s in enumerate(ids) if not s]:
                if not present[i]:
                    out.reject(i, "record has no value")
                elif kinds[i] != OBJECT:
                    out.reject(i, "value is not a JSON object")
                else:
                    out.reject(i, "missing or empty string field `id`")
        for path, field, mask in self.masks:
            texts = js.strings(path)
            if None in texts:  # not strings (a missing field is left alone), and no mask for them
                kinds = js.kinds(path)
                for i in [i for i, t in enumerate(texts) if t is None and kinds[i] != MISSING]:
                    out.reject(i, f"field `{field}` is not a string")
                masked = [None if t is None else mask(t) for t in texts]
            else:
                masked = list(map(mask, texts))
            if mask is mask_email and None in masked:  # invalid emails
                for i in [i for i, (t, m) in enumerate(zip(texts, masked)) if m is None and t is not None]:
                    out.reject(i, f"invalid email `{texts[i]}`")
            js.set_strings(path, masked)
        out.forward_all(json=True)


def mask_email(email):
    """``a****@example.com``, or ``None`` when ``email`` is not valid."""
    local, at, domain = email.partition("@")
    if not at or not local or not domain or "@" in domain:
        return None
    return f"{local[0]}****@{domain}"


_ALNUM = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_STAR_ALNUM = bytes.maketrans(_ALNUM, b"*" * len(_ALNUM))
# Reading the text backwards: everything up to and including its second letter or digit.
_LAST_TWO = re.compile("[^0-9A-Za-z]*[0-9A-Za-z][^0-9A-Za-z]*[0-9A-Za-z]")


def mask_tail(text):
    if text.isascii():  # letters and digits are [0-9A-Za-z] here: find and replace them in C
        cut = len(text) - 2
        if cut <= 0:  # two characters or fewer: nothing to mask
            return text
        if not text[cut:].isalnum():  # unless it ends in two, find the last two
            last_two = _LAST_TWO.match(text[::-1])
            if last_two is None:  # fewer than two: nothing to mask
                return text
            cut = len(text) - last_two.end()
        return text[:cut].encode().translate(_STAR_ALNUM).decode() + text[cut:]
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
