// A simulated guest page's bytes drawn from its word, eight words at a time with AVX-512, for Guests.
#ifndef FLOTILLA_CPAGESTREAM_H
#define FLOTILLA_CPAGESTREAM_H
#include <stdint.h>

/// Whether this CPU has AVX-512F and AVX-512DQ (the 64-bit vector multiply); always false off x86-64.
int flotilla_page_stream_vector_available(void);

/// Writes the 511 words (4088 bytes, little-endian) that follow `word` in its page: SplitMix64 seeded
/// as `SeededGenerator(seed: word)` seeds it, drawn in order. Call only when
/// `flotilla_page_stream_vector_available()` is true.
void flotilla_page_stream_fill(uint64_t word, void *rest);

/// 1 when the 4088 bytes at `rest` are the ones `flotilla_page_stream_fill(word, …)` writes, else 0.
/// Call only when `flotilla_page_stream_vector_available()` is true.
int flotilla_page_stream_matches(uint64_t word, const void *rest);
#endif
