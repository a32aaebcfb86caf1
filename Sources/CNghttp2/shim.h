// Exposes libnghttp2's C API (Debian libnghttp2-dev, 1.52) to Swift as the CNghttp2 module.
#ifndef FLOTILLA_CNGHTTP2_SHIM_H
#define FLOTILLA_CNGHTTP2_SHIM_H
#include <nghttp2/nghttp2.h>
#endif
