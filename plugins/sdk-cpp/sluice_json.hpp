// JSON with serde_json's rules (see plugins/sdk-c/sluice_json.h) behind a C++ handle.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "sluice_json.h"

namespace sluice::json {

/// An owned JSON document.
class Document {
  public:
    /// Parses UTF-8 bytes; std::nullopt where serde_json would fail.
    static std::optional<Document> parse(std::span<const uint8_t> bytes) {
        Document d;
        if (!sj_parse(bytes.data(), bytes.size(), &d.v_)) return std::nullopt;
        return d;
    }
    Document() { v_.kind = SJ_NULL; }
    Document(Document &&o) noexcept : v_(o.v_) { o.v_.kind = SJ_NULL; }
    Document &operator=(Document &&o) noexcept {
        std::swap(v_, o.v_);
        return *this;
    }
    Document(const Document &) = delete;
    ~Document() { sj_free(&v_); }

    sj_value &root() { return v_; }
    bool is_object() const { return v_.kind == SJ_OBJECT; }
    /// The member `key` of the root object, or nullptr.
    sj_value *get(std::string_view key) { return sj_get(&v_, key.data(), key.size()); }
    /// Compact JSON text, as serde_json::to_vec writes it.
    std::string dump() const {
        sj_buf b{};
        sj_write(&b, &v_);
        std::string s(reinterpret_cast<const char *>(b.ptr), b.len);
        sj_buf_free(&b);
        return s;
    }

  private:
    sj_value v_;
};

inline bool is_string(const sj_value *v) { return v && v->kind == SJ_STRING; }
inline std::string_view string(const sj_value *v) { return {v->as.s.ptr, v->as.s.len}; }
inline void set_string(sj_value *v, std::string_view s) { sj_set_string(v, s.data(), s.size()); }

} // namespace sluice::json
