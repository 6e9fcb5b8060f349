import { defineTransform, log, Reject } from "sluice";

class Plugin {
  constructor(config) {
    this.tag = config.get("tag", "{{name}}");
    log.info(`tagging records with \`${this.tag}\``);
  }

  transform(record, out) {
    if (record.value === null) throw new Reject("record has no value"); // to the dead-letter topic
    out.emit({ key: record.key, value: record.value, headers: [...record.headers, ["tag", this.tag]] });
  }
}

const plugin = defineTransform(Plugin);
export const init = plugin.init;
export const process = plugin.process;
