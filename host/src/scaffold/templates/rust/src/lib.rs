use sluice_plugin::{Config, Emitter, Record, Transform, export_transform, log};

struct Plugin {
    tag: String,
}

impl Transform for Plugin {
    fn init(config: &Config) -> Result<Self, String> {
        let tag = config.get("tag").unwrap_or("{{name}}").to_string();
        log::info(&format!("tagging records with `{tag}`"));
        Ok(Plugin { tag })
    }

    fn transform(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
        let value = record.value.ok_or("record has no value")?; // Err: to the dead-letter topic
        out.record()
            .key(record.key)
            .value(Some(value))
            .headers(&record.headers)
            .header("tag", Some(self.tag.as_bytes()))
            .emit();
        Ok(())
    }
}

export_transform!(Plugin);
