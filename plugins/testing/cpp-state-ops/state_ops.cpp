// Every state call of the C++ SDK, with a summary of what each returned as the output value (the
// same in every language: see go-state-ops, c-state-ops). The scan goes through the paging range
// one entry a page, so its continuation after the last key is exercised too; a timer registered
// and cancelled must not fire (it would add an output).
#include <string>

#include "sluice.hpp"
#include "sluice_state.hpp"

namespace state = sluice::state;

struct StateOps {
    static sluice::Result<StateOps> init(const sluice::Config &) { return StateOps{}; }

    sluice::Status transform(const sluice::Record &r, sluice::Emitter &out) {
        if (!r.key()) return sluice::reject("record has no key");
        std::string k(sluice::text(*r.key()));
        std::string a = k + "/a", b = k + "/b", c = k + "/c";
        state::put_many({{a, "1"}, {b, "2"}, {c, std::nullopt}});
        auto got = state::get_many({a, b, c});
        state::erase(a);
        // A timer registered and cancelled never fires (on_timer would show it).
        auto at = r.timestamp().value_or(0);
        sluice::timers::register_at(sluice::timers::Domain::EventTime, k + "/t", at);
        sluice::timers::cancel(sluice::timers::Domain::EventTime, k + "/t", at);

        std::string summary = "get_many=";
        for (size_t i = 0; i < got.size(); i++) {
            if (i) summary += ',';
            summary += got[i] ? std::string(*got[i]) : "-";
        }
        summary += " scan=";
        bool first = true;
        for (auto [key, value] : state::Scan(k + "/", 1)) {
            if (!first) summary += ',';
            first = false;
            summary += std::string(key) + "=" + std::string(value);
        }
        summary += " after=";
        auto paged = state::scan(k + "/", a, 10);
        for (size_t i = 0; i < paged.size(); i++) {
            if (i) summary += ',';
            summary += paged[i].key;
        }
        auto wm = sluice::timers::watermark();
        summary += " wm=" + (wm ? std::to_string(*wm) : std::string("none"));
        out.emit({.key = r.key(), .value = sluice::bytes(summary)});
        return {};
    }

    sluice::Status on_timer(const sluice::timers::Timer &t, sluice::Emitter &out) {
        out.emit({.key = sluice::bytes(t.key), .value = sluice::bytes("a cancelled timer fired")});
        return {};
    }
};

SLUICE_EXPORT_STATEFUL(StateOps)
