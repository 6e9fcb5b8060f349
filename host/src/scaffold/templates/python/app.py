import sluice


class Plugin(sluice.Transform):
    def __init__(self, config):
        self.tag = config.get("tag", "{{name}}")
        sluice.log.info(f"tagging records with `{self.tag}`")

    def transform(self, record, out):
        if record.value is None:
            raise sluice.Reject("record has no value")  # to the dead-letter topic
        out.emit(key=record.key, value=record.value, headers=record.headers + [("tag", self.tag)])


WitWorld = sluice.export(Plugin)
