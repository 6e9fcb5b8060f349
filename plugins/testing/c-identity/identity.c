/* Forwards every record unchanged: the SDK's floor (batch decoding and encoding) in C. */
#include "sluice.h"

const char *sluice_init(const sluice_config *config) {
    (void)config;
    return 0;
}

int sluice_transform(const sluice_record *record, sluice_emitter *out) {
    sluice_forward(out, record);
    return 0;
}
