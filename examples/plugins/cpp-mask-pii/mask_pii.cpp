// mask-pii in C++: the behaviour of examples/plugins/rust-mask-pii, byte for byte.
//
// Masks the fields named in the `fields` config (default `email,phone`) of a JSON object value:
// an `email` field becomes `a****@example.com`, any other field keeps only its last two letters
// or digits. Rejects a record without a value, a value that is not a JSON object, a missing or
// empty string `id`, an invalid email and a masked field that is not a string.
#include <string>
#include <string_view>
#include <vector>

#include "sluice.hpp"
#include "sluice_json.hpp"
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
        return m;
    }

    sluice::Status transform(const sluice::Record &record, sluice::Emitter &out) {
        auto value = record.value();
        if (!value) return sluice::reject("record has no value");
        auto user = sluice::json::Document::parse(*value);
        if (!user || !user->is_object()) return sluice::reject("value is not a JSON object");
        sj_value *id = user->get("id");
        if (!sluice::json::is_string(id) || sluice::json::string(id).empty())
            return sluice::reject("missing or empty string field `id`");
        for (const auto &field : fields) {
            sj_value *v = user->get(field);
            if (!v) continue;
            if (!sluice::json::is_string(v)) return sluice::reject("field `" + field + "` is not a string");
            std::string_view text = sluice::json::string(v);
            if (field.find("email") != std::string::npos) {
                auto masked = mask_email(text);
                if (!masked) return sluice::reject(masked.error());
                sluice::json::set_string(v, *masked);
            } else {
                sluice::json::set_string(v, mask_tail(text));
            }
        }
        std::string json = user->dump();
        out.emit({.key = record.key(), .value = sluice::bytes(json), .headers = record.headers()});
        return {};
    }
};

SLUICE_EXPORT(MaskPii)
