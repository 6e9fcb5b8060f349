#include <string>

#include "sluice.hpp"

struct Plugin {
    std::string tag;

    static sluice::Result<Plugin> init(const sluice::Config &config) {
        Plugin p{std::string(config.get("tag").value_or("{{name}}"))};
        sluice::log::info("tagging records with `" + p.tag + "`");
        return p; // or sluice::reject("...") to refuse the config
    }

    sluice::Status transform(const sluice::Record &record, sluice::Emitter &out) {
        if (!record.value()) return sluice::reject("record has no value"); // to the dead-letter topic
        auto headers = record.headers();
        headers.push_back({"tag", sluice::bytes(tag)});
        out.emit({.key = record.key(), .value = record.value(), .headers = headers});
        return {};
    }
};

SLUICE_EXPORT(Plugin)
