// Host JSON access for C++ plugins: the C SDK's sluice_hostjson.h (the WIT `json` interface) in
// C++ clothes. Declare the paths in `init`; in `transform`, `paths.doc(out)` is the record's view
// (the first call of a batch reads every record in one host call) and `doc.edit()` an edited
// copy whose `value()` goes in an output; the SDK writes every edited document of the batch in
// one host call after the last record. Results are serde_json's, the same in every language.
//
//     sluice::json::Paths paths({"/id", "/email"});          // in init
//     auto doc = paths.doc(out);                               // in transform
//     if (doc.kind() != SLUICE_JSON_OBJECT) return sluice::reject("not an object");
//     auto edit = doc.edit();
//     edit.set_str(1, "hidden");
//     out.emit({.key = record.key(), .value = edit.value()});
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "sluice.hpp"
#include "sluice_hostjson.h"

namespace sluice::json {

/// A field: kind and text (see sluice_field), valid until the batch ends.
struct Field {
    sluice_json_kind kind;
    std::string_view text;
};

class Edit {
  public:
    explicit Edit(sluice_edit e) : e_(e) {}
    void set_str(size_t path, std::string_view s) { sluice_edit_set_str(e_, path, s.data(), s.size()); }
    void set_raw(size_t path, std::string_view json) { sluice_edit_set_raw(e_, path, json.data(), json.size()); }
    void remove(size_t path) { sluice_edit_remove(e_, path); }
    /// The edited document, for an output's `value`: a placeholder the SDK recognises and replaces
    /// after the batch (never read as bytes).
    Bytes value() const {
        sluice_bytes b = sluice_edit_value(e_);
        return std::span<const uint8_t>(b.ptr, b.len);
    }

  private:
    sluice_edit e_;
};

class Doc {
  public:
    explicit Doc(sluice_doc d) : d_(d) {}
    sluice_json_kind kind() const { return sluice_doc_kind(&d_); }
    Field get(size_t path) const {
        sluice_field f = sluice_doc_get(&d_, path);
        return {f.kind, {f.ptr, f.len}};
    }
    Edit edit() const { return Edit(sluice_doc_edit(&d_)); }

  private:
    sluice_doc d_;
};

class Paths {
  public:
    Paths() = default;
    explicit Paths(const std::vector<std::string> &paths) {
        std::vector<const char *> ptrs;
        for (auto &p : paths) ptrs.push_back(p.c_str());
        p_ = sluice_paths_new(ptrs.data(), ptrs.size());
    }
    /// The JSON Pointer of top-level key `key`.
    static std::string pointer(std::string_view key) {
        char *p = sluice_pointer(key.data(), key.size());
        std::string s(p);
        free(p);
        return s;
    }
    Doc doc(Emitter &out) { return Doc(sluice_doc_of(p_, out.c())); }

  private:
    sluice_paths *p_ = nullptr;
};

} // namespace sluice::json
