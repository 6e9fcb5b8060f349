// C++ guest SDK for Sluice transforms (C++23), a thin layer over the C SDK in plugins/sdk-c.
//
// A plugin is a class with a static `init` building it from its config (an error refuses the
// config) and a `transform` called for every record, in order: it emits 0..N outputs, or returns
// an error that sends that record to the dead-letter topic with the message as its reason
// (outputs already emitted for it are discarded).
//
//     struct Upper {
//         static sluice::Result<Upper> init(const sluice::Config &) { return Upper{}; }
//         sluice::Status transform(const sluice::Record &r, sluice::Emitter &out) {
//             if (!r.value()) return sluice::reject("record has no value");
//             std::string v(r.value_text());
//             for (auto &c : v) c = std::toupper(c);
//             out.emit({.key = r.key(), .value = sluice::bytes(v), .headers = r.headers()});
//             return {};
//         }
//     };
//     SLUICE_EXPORT(Upper)
//
// Built without exceptions (-fno-exceptions): errors are values (std::expected).
#pragma once

#include <cstdint>
#include <cstring>
#include <expected>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice.h"

namespace sluice {

/// Bytes that may be absent (a Kafka null): std::nullopt.
using Bytes = std::optional<std::span<const uint8_t>>;
using Status = std::expected<void, std::string>;
template <class T> using Result = std::expected<T, std::string>;

/// An error for `transform` or `init` to return.
inline std::unexpected<std::string> reject(std::string message) {
    return std::unexpected(std::move(message));
}

inline Bytes bytes(std::string_view s) {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t *>(s.data()), s.size());
}

inline Bytes from_c(sluice_bytes b) {
    if (!b.present) return std::nullopt;
    return std::span<const uint8_t>(b.ptr, b.len);
}

inline sluice_bytes to_c(const Bytes &b) {
    if (!b) return sluice_none();
    return sluice_some(b->data(), b->size());
}

inline std::string_view text(std::span<const uint8_t> b) {
    return {reinterpret_cast<const char *>(b.data()), b.size()};
}

struct Header {
    std::string_view name;
    Bytes value;
};

/// One input record; views into the batch, valid during the call.
class Record {
  public:
    explicit Record(const sluice_record *r) : r_(r) {}
    Bytes key() const { return from_c(r_->key); }
    Bytes value() const { return from_c(r_->value); }
    std::vector<Header> headers() const {
        std::vector<Header> hs;
        hs.reserve(r_->header_count);
        for (size_t i = 0; i < r_->header_count; i++)
            hs.push_back({text({r_->headers[i].name.ptr, r_->headers[i].name.len}), from_c(r_->headers[i].value)});
        return hs;
    }
    /// The value of the first header called `name`.
    std::optional<Bytes> header(std::string_view name) const {
        for (size_t i = 0; i < r_->header_count; i++)
            if (text({r_->headers[i].name.ptr, r_->headers[i].name.len}) == name) return from_c(r_->headers[i].value);
        return std::nullopt;
    }
    std::optional<int64_t> timestamp() const {
        return r_->has_timestamp ? std::optional<int64_t>(r_->timestamp) : std::nullopt;
    }
    std::string_view topic() const { return text({r_->topic.ptr, r_->topic.len}); }
    int32_t partition() const { return r_->partition; }
    int64_t offset() const { return r_->offset; }
    const sluice_record *c() const { return r_; }

  private:
    const sluice_record *r_;
};

/// One output record: absent key/value by default; no timestamp keeps the input's; an empty `to`
/// sends it to the pipeline's default output.
struct Output {
    Bytes key;
    Bytes value;
    std::vector<Header> headers;
    std::optional<int64_t> timestamp;
    std::string to;
};

class Emitter {
  public:
    explicit Emitter(sluice_emitter *e) : e_(e) {}
    void emit(const Output &o) {
        std::vector<sluice_header> hs;
        hs.reserve(o.headers.size());
        for (auto &h : o.headers) hs.push_back({bytes_c(h.name), to_c(h.value)});
        sluice_output c{};
        c.key = to_c(o.key);
        c.value = to_c(o.value);
        c.headers = hs.data();
        c.header_count = hs.size();
        c.has_timestamp = o.timestamp.has_value();
        c.timestamp = o.timestamp.value_or(0);
        c.to = o.to.empty() ? nullptr : o.to.c_str();
        sluice_emit(e_, &c);
    }
    /// Sends `r` on unchanged (key, value, headers, timestamp) to the default output.
    void forward(const Record &r) { sluice_forward(e_, r.c()); }
    sluice_emitter *c() { return e_; }

  private:
    static sluice_bytes bytes_c(std::string_view s) { return sluice_some(s.data(), s.size()); }
    sluice_emitter *e_;
};

/// The plugin's config: string pairs from the pipeline config, in file order.
class Config {
  public:
    explicit Config(const sluice_config *c) : c_(c) {}
    std::optional<std::string_view> get(std::string_view key) const {
        for (size_t i = 0; i < size(); i++)
            if (key_at(i) == key) return value_at(i);
        return std::nullopt;
    }
    size_t size() const { return sluice_config_len(c_); }
    std::string_view key_at(size_t i) const { return sluice_config_key(c_, i); }
    std::string_view value_at(size_t i) const { return sluice_config_value(c_, i); }

  private:
    const sluice_config *c_;
};

namespace log {
inline void write(sluice_level level, std::string_view m) {
    sluice_log(level, "%.*s", static_cast<int>(m.size()), m.data());
}
inline void debug(std::string_view m) { write(SLUICE_DEBUG, m); }
inline void info(std::string_view m) { write(SLUICE_INFO, m); }
inline void warn(std::string_view m) { write(SLUICE_WARN, m); }
inline void error(std::string_view m) { write(SLUICE_ERROR, m); }
} // namespace log

namespace detail {
template <class T> std::optional<T> &instance() {
    static std::optional<T> plugin;
    return plugin;
}
} // namespace detail

} // namespace sluice

/// Exports plugin class `T` as the component's `init` and `process`.
#define SLUICE_EXPORT(T)                                                                           \
    extern "C" const char *sluice_init(const sluice_config *config) {                             \
        auto made = T::init(sluice::Config(config));                                              \
        if (!made) return sluice_errorf("%s", made.error().c_str());                              \
        sluice::detail::instance<T>().emplace(std::move(*made));                                  \
        return nullptr;                                                                           \
    }                                                                                              \
    extern "C" int sluice_transform(const sluice_record *record, sluice_emitter *out) {           \
        sluice::Emitter emitter(out);                                                              \
        auto status = sluice::detail::instance<T>()->transform(sluice::Record(record), emitter);  \
        if (!status)                                                                               \
            return sluice_reject_message(out, status.error().data(), status.error().size());     \
        return 0;                                                                                  \
    }
