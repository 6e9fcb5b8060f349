//! Benchmark plugin: forwards every record `copies` times (config, a decimal such as `4.4`: the
//! fraction is spread evenly, so 4.4 forwards 4 or 5 copies and 4.4 on average). It writes as
//! many Kafka records per input as a stateful pipeline does, with no state: the e2e bench's
//! ceiling for such a pipeline.

use sluice_plugin::{Config, Emitter, Record, Transform, export_transform};

struct Fanout {
    /// Copies per record, in tenths.
    tenths: u64,
    /// Tenths owed so far.
    owed: u64,
}

impl Transform for Fanout {
    fn init(config: &Config) -> Result<Self, String> {
        let copies: f64 = config
            .get("copies")
            .unwrap_or("1")
            .parse()
            .ok()
            .filter(|c: &f64| *c >= 0.0)
            .ok_or("config `copies` must be a non-negative number")?;
        Ok(Fanout {
            tenths: (copies * 10.0).round() as u64,
            owed: 0,
        })
    }

    fn transform(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<(), String> {
        self.owed += self.tenths;
        while self.owed >= 10 {
            self.owed -= 10;
            out.forward(record);
        }
        Ok(())
    }
}

export_transform!(Fanout);
