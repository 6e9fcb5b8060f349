// mask-pii in C++: the behaviour of examples/plugins/rust-mask-pii, byte for byte.
//
// Masks the fields named in the `fields` config (default `email,phone`) of a JSON object value:
// an `email` field becomes `a****@example.com`, any other field keeps only its last two letters
// or digits. Rejects a record without a value, a value that is not a JSON object, a missing or
// empty string `id`, an invalid email and a masked field that is not a string.
//
// The JSON work is the host's (sluice_hostjson.hpp): `id` and the masked fields of the whole
// batch are read in one host call and the masked strings set back; no JSON is parsed here.
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "sluice.hpp"
#include "sluice_hostjson.hpp"
#include "sluice_text.h"

namespace {

std::string_view trim(std::string_view s) {
    size_t start;
    size_t n = sluice_trim(s.data(), s.size(), &start);
    return s.substr(start, n);
}

sluice::Result<std::string> mask_email(std::string_view email) {
    size_t at = email.find('@');
    if (at == std::string_view::npos || at == 0 || at + 1 == email.size() ||
        email.find('@', at + 1) != std::string_view::npos)
        return sluice::reject("invalid email `" + std::string(email) + "`");
    size_t first = 0;
    sluice_utf8_next(email.data(), &first);
    return std::string(email.substr(0, first)) + "****" + std::string(email.substr(at));
}

std::string mask_tail(std::string_view text) {
    size_t total = 0;
    for (size_t i = 0; i < text.size();)
        if (sluice_is_alphanumeric(sluice_utf8_next(text.data(), &i))) total++;
    std::string out;
    out.reserve(text.size());
    size_t seen = 0;
    for (size_t i = 0; i < text.size();) {
        size_t start = i;
        uint32_t c = sluice_utf8_next(text.data(), &i);
        if (sluice_is_alphanumeric(c) && ++seen + 2 <= total) out += '*';
        else out.append(text.substr(start, i - start));
    }
    return out;
}

} // namespace

struct MaskPii {
    std::vector<std::string> fields;
    /// Per field: whether its name contains `email` (decided once, in init).
    std::vector<bool> is_email;
    /// `/id`, then one pointer per masked field.
    sluice::json::Paths json;

    static sluice::Result<MaskPii> init(const sluice::Config &config) {
        MaskPii m;
        std::string_view spec = config.get("fields").value_or("email,phone");
        for (;;) {
            size_t comma = spec.find(',');
            std::string_view f = trim(spec.substr(0, comma));
            if (!f.empty()) m.fields.emplace_back(f);
            if (comma == std::string_view::npos) break;
            spec.remove_prefix(comma + 1);
        }
        if (m.fields.empty()) return sluice::reject("config `fields` must name at least one field to mask");
        for (size_t i = 0; i < config.size(); i++)
            if (config.key_at(i) != "fields")
                return sluice::reject("unknown config key `" + std::string(config.key_at(i)) + "` (expected `fields`)");
        for (auto &f : m.fields) m.is_email.push_back(f.find("email") != std::string::npos);
        std::vector<std::string> paths{"/id"};
        for (auto &f : m.fields) paths.push_back(sluice::json::Paths::pointer(f));
        m.json = sluice::json::Paths(paths);
        return m;
    }

    sluice::Status transform(const sluice::Record &record, sluice::Emitter &out) {
        if (!record.value()) return sluice::reject("record has no value");
        auto doc = json.doc(out);
        if (doc.kind() != SLUICE_JSON_OBJECT) return sluice::reject("value is not a JSON object");
        auto id = doc.get(0);
        if (id.kind != SLUICE_JSON_STRING || id.text.empty())
            return sluice::reject("missing or empty string field `id`");
        auto edit = doc.edit();
        for (size_t i = 0; i < fields.size(); i++) {
            auto v = doc.get(i + 1);
            if (v.kind == SLUICE_JSON_MISSING) continue;
            if (v.kind != SLUICE_JSON_STRING) return sluice::reject("field `" + fields[i] + "` is not a string");
            if (is_email[i]) {
                auto masked = mask_email(v.text);
                if (!masked) return sluice::reject(masked.error());
                edit.set_str(i + 1, *masked);
            } else {
                edit.set_str(i + 1, mask_tail(v.text));
            }
        }
        out.emit({.key = record.key(), .value = edit.value(), .headers = record.headers()});
        return {};
    }
};

SLUICE_EXPORT(MaskPii)
