// Keyed state and timers for C++ plugins of the `stateful-transform` world, over the C SDK's
// sluice_state.h (docs/state.md).
//
// A stateful plugin is a class as for SLUICE_EXPORT, plus an `on_timer` called for every timer
// that fired, exported with SLUICE_EXPORT_STATEFUL (build.sh then embeds the
// `stateful-transform` world):
//
//     struct Counter {
//         static sluice::Result<Counter> init(const sluice::Config &) { return Counter{}; }
//         sluice::Status transform(const sluice::Record &r, sluice::Emitter &out) {
//             auto key = sluice::text(*r.key());
//             auto old = sluice::state::get(key);          // std::optional<sluice::state::Value>
//             sluice::state::put(key, "...");
//             sluice::timers::register_at(sluice::timers::Domain::EventTime, key, *r.timestamp() + 1000);
//             ...
//         }
//         sluice::Status on_timer(const sluice::timers::Timer &t, sluice::Emitter &out) { ... }
//     };
//     SLUICE_EXPORT_STATEFUL(Counter)
//
// State is scoped to the partition of the records being processed (and to the plugin); a call's
// changes apply only if the call returns. `init` has no partition: state calls trap there.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice.hpp"
#include "sluice_state.h"

namespace sluice {

namespace state {

/// Bytes the host returned, owned (freed when the Value goes); views as bytes or text.
class Value {
  public:
    explicit Value(sluice_buf b) : b_(b) {}
    Value(Value &&o) noexcept : b_(std::exchange(o.b_, sluice_buf{})) {}
    Value &operator=(Value &&o) noexcept {
        if (this != &o) {
            sluice_buf_free(&b_);
            b_ = std::exchange(o.b_, sluice_buf{});
        }
        return *this;
    }
    Value(const Value &) = delete;
    Value &operator=(const Value &) = delete;
    ~Value() { sluice_buf_free(&b_); }

    std::span<const uint8_t> bytes() const { return {b_.ptr, b_.len}; }
    std::string_view text() const { return {reinterpret_cast<const char *>(b_.ptr), b_.len}; }
    size_t size() const { return b_.len; }

  private:
    sluice_buf b_;
};

namespace detail {
inline std::string_view sv(std::span<const uint8_t> b) { return sluice::text(b); }
inline sluice_bytes c(std::string_view s) { return sluice_some(s.data(), s.size()); }
inline sluice_bytes c(const std::optional<std::string_view> &s) {
    return s ? sluice_some(s->data(), s->size()) : sluice_none();
}
} // namespace detail

/// The value stored under `key`, if any.
inline std::optional<Value> get(std::string_view key) {
    sluice_buf b;
    if (!sluice_state_get(key.data(), key.size(), &b)) return std::nullopt;
    return Value(b);
}
inline std::optional<Value> get(std::span<const uint8_t> key) { return get(detail::sv(key)); }

/// Stores `value` under `key`.
inline void put(std::string_view key, std::string_view value) {
    sluice_state_put(key.data(), key.size(), value.data(), value.size());
}
inline void put(std::span<const uint8_t> key, std::span<const uint8_t> value) {
    put(detail::sv(key), detail::sv(value));
}

/// Removes `key` (nothing if it is absent).
inline void erase(std::string_view key) { sluice_state_delete(key.data(), key.size()); }
inline void erase(std::span<const uint8_t> key) { erase(detail::sv(key)); }

/// A key and its value, viewing a Scan page or a Values set.
struct EntryView {
    std::string_view key;
    std::string_view value;
};

/// One page of a scan: entries owned by the page (freed when it goes).
class Page {
  public:
    explicit Page(sluice_entries e) : e_(e) {}
    Page(Page &&o) noexcept : e_(std::exchange(o.e_, sluice_entries{})) {}
    Page &operator=(Page &&o) noexcept {
        if (this != &o) {
            sluice_entries_free(&e_);
            e_ = std::exchange(o.e_, sluice_entries{});
        }
        return *this;
    }
    Page(const Page &) = delete;
    Page &operator=(const Page &) = delete;
    ~Page() { sluice_entries_free(&e_); }

    size_t size() const { return e_.count; }
    bool empty() const { return e_.count == 0; }
    EntryView operator[](size_t i) const {
        const auto &e = e_.entries[i];
        return {{reinterpret_cast<const char *>(e.key.ptr), e.key.len},
                {reinterpret_cast<const char *>(e.value.ptr), e.value.len}};
    }

  private:
    sluice_entries e_;
};

/// Up to `limit` entries whose keys start with `prefix`, in ascending byte order of key,
/// starting after `after` when given (to page through a long scan; at most SLUICE_SCAN_MAX).
inline Page scan(std::string_view prefix, std::optional<std::string_view> after = std::nullopt,
                 uint32_t limit = SLUICE_SCAN_MAX) {
    sluice_entries e;
    sluice_state_scan(prefix.data(), prefix.size(), detail::c(after), limit, &e);
    return Page(e);
}

/// Every entry under `prefix`, fetched `page` entries a crossing:
/// `for (auto [key, value] : sluice::state::Scan("user/")) ...` (views valid until the next step).
class Scan {
  public:
    explicit Scan(std::string_view prefix, uint32_t page = 0) {
        sluice_scan_begin(&it_, prefix.data(), prefix.size(), page);
    }
    Scan(const Scan &) = delete;
    Scan &operator=(const Scan &) = delete;
    ~Scan() { sluice_scan_end(&it_); }

    /// The next entry, or nothing at the end.
    std::optional<EntryView> next() {
        const sluice_entry *e = sluice_scan_next(&it_);
        if (!e) return std::nullopt;
        return EntryView{{reinterpret_cast<const char *>(e->key.ptr), e->key.len},
                         {reinterpret_cast<const char *>(e->value.ptr), e->value.len}};
    }

    struct End {};
    class Iterator {
      public:
        explicit Iterator(Scan *s) : s_(s), cur_(s->next()) {}
        EntryView operator*() const { return *cur_; }
        Iterator &operator++() {
            cur_ = s_->next();
            return *this;
        }
        bool operator!=(End) const { return cur_.has_value(); }

      private:
        Scan *s_;
        std::optional<EntryView> cur_;
    };
    Iterator begin() { return Iterator(this); }
    End end() { return {}; }

  private:
    sluice_scan_iter it_;
};

/// The values of several keys read in one crossing (owned; freed when it goes).
class Values {
  public:
    explicit Values(sluice_values v) : v_(v) {}
    Values(Values &&o) noexcept : v_(std::exchange(o.v_, sluice_values{})) {}
    Values(const Values &) = delete;
    Values &operator=(const Values &) = delete;
    ~Values() { sluice_values_free(&v_); }

    size_t size() const { return v_.count; }
    /// The value of the i-th key asked, nothing when it is absent.
    std::optional<std::string_view> operator[](size_t i) const {
        const auto &b = v_.ptr[i];
        if (!b.present) return std::nullopt;
        return std::string_view(reinterpret_cast<const char *>(b.ptr), b.len);
    }

  private:
    sluice_values v_;
};

/// Several `get`s in one crossing.
inline Values get_many(std::span<const std::string_view> keys) {
    std::vector<sluice_bytes> ks;
    ks.reserve(keys.size());
    for (auto k : keys) ks.push_back(detail::c(k));
    sluice_values v;
    sluice_state_get_many(ks.data(), ks.size(), &v);
    return Values(v);
}
inline Values get_many(std::initializer_list<std::string_view> keys) {
    return get_many(std::span<const std::string_view>(keys.begin(), keys.size()));
}

/// A put (value given) or delete (no value) of a put_many.
struct Entry {
    std::string_view key;
    std::optional<std::string_view> value;
};

/// Several puts and deletes in one crossing, applied in order.
inline void put_many(std::span<const Entry> entries) {
    std::vector<sluice_entry> es;
    es.reserve(entries.size());
    for (const auto &e : entries) es.push_back({detail::c(e.key), detail::c(e.value)});
    sluice_state_put_many(es.data(), es.size());
}
inline void put_many(std::initializer_list<Entry> entries) {
    put_many(std::span<const Entry>(entries.begin(), entries.size()));
}

} // namespace state

namespace timers {

/// Which clock a timer follows.
enum class Domain : uint32_t {
    /// The partition's watermark (largest timestamp seen minus the allowed lateness).
    EventTime = SLUICE_EVENT_TIME,
    /// The host's wall clock, at batch boundaries.
    ProcessingTime = SLUICE_PROCESSING_TIME,
};

/// A timer that fired; the key is valid during the call.
struct Timer {
    std::string_view key;
    Domain domain;
    int64_t time;
};

/// Registers a timer for `key` at `at` (ms since the Unix epoch); the same (domain, key, at)
/// twice is one timer. (`register` is a C++ keyword.)
inline void register_at(Domain d, std::string_view key, int64_t at) {
    sluice_timer_register(static_cast<sluice_time_domain>(d), key.data(), key.size(), at);
}

/// Cancels the timer registered with the same (domain, key, at), if any.
inline void cancel(Domain d, std::string_view key, int64_t at) {
    sluice_timer_cancel(static_cast<sluice_time_domain>(d), key.data(), key.size(), at);
}

/// The partition's watermark (ms), nothing before any record.
inline std::optional<int64_t> watermark() {
    int64_t w;
    if (!sluice_watermark(&w)) return std::nullopt;
    return w;
}

} // namespace timers

} // namespace sluice

/// Exports stateful plugin class `T` (init, transform and on_timer) as the component's `init`,
/// `process` and `on-timer`.
#define SLUICE_EXPORT_STATEFUL(T)                                                                  \
    SLUICE_EXPORT(T)                                                                               \
    extern "C" int sluice_on_timer(const sluice_timer *timer, sluice_emitter *out) {              \
        sluice::Emitter emitter(out);                                                              \
        sluice::timers::Timer t{                                                                   \
            {reinterpret_cast<const char *>(timer->key.ptr), timer->key.len},                      \
            static_cast<sluice::timers::Domain>(timer->domain), timer->time};                      \
        auto status = sluice::detail::instance<T>()->on_timer(t, emitter);                         \
        if (!status)                                                                               \
            return sluice_reject_message(out, status.error().data(), status.error().size());     \
        return 0;                                                                                  \
    }
