// A per-key counter (the stateful plugin of host/tests/languages.rs, as in Rust, Python,
// JavaScript, Go and C): emits each key's running count, and when an event-time timer at the end
// of the record's second fires, that key's count then. Keys are required.
#include <charconv>
#include <cstdint>
#include <string>

#include "sluice.hpp"
#include "sluice_state.hpp"

using sluice::timers::Domain;

struct Counter {
    static sluice::Result<Counter> init(const sluice::Config &) { return Counter{}; }

    sluice::Status transform(const sluice::Record &r, sluice::Emitter &out) {
        if (!r.key()) return sluice::reject("record has no key");
        std::string_view key = sluice::text(*r.key());
        uint64_t n = 0;
        if (auto old = sluice::state::get(key)) {
            auto text = old->text();
            auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), n);
            if (err != std::errc() || end != text.data() + text.size()) n = 0;
        }
        std::string count = std::to_string(n + 1);
        sluice::state::put(key, count);
        if (auto ts = r.timestamp(); ts && *ts >= 0)
            sluice::timers::register_at(Domain::EventTime, key, *ts - *ts % 1000 + 1000);
        out.emit({.key = r.key(), .value = sluice::bytes(count)});
        return {};
    }

    sluice::Status on_timer(const sluice::timers::Timer &t, sluice::Emitter &out) {
        auto n = sluice::state::get(t.key);
        std::string value(n ? n->text() : "0");
        value += " at " + std::to_string(t.time);
        out.emit({.key = sluice::bytes(t.key), .value = sluice::bytes(value), .timestamp = t.time});
        return {};
    }
};

SLUICE_EXPORT_STATEFUL(Counter)
