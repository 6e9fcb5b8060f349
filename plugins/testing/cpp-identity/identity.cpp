// Forwards every record unchanged: the SDK's floor (batch decoding and encoding) in C++.
#include "sluice.hpp"

struct Identity {
    static sluice::Result<Identity> init(const sluice::Config &) { return Identity{}; }
    sluice::Status transform(const sluice::Record &record, sluice::Emitter &out) {
        out.forward(record);
        return {};
    }
};

SLUICE_EXPORT(Identity)
