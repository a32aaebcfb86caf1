// SplitMix64 eight lanes at a time (AVX-512): a page of 4 KiB made or checked at memory speed, about ten
// times the scalar loop, so a migration's copy is not bound by the simulation's own page work.
#include "cpagestream.h"

#if defined(__x86_64__)
#include <immintrin.h>

// SeededGenerator's constants (Sources/ClusterModel/SeededGenerator.swift): the seed's spread, the
// increment and the two multipliers of the output mix. Output k (k = 1…511, at byte 8k of the page)
// is mix(start + k × increment), so eight of them are independent lanes of one vector.
#define SEED_MULTIPLIER 0xD1B54A32D192ED03ULL
#define SEED_MASK 0x8CB92BA72F3D8DD7ULL
#define INCREMENT 0x9E3779B97F4A7C15ULL
#define MIX1 0xBF58476D1CE4E5B9ULL
#define MIX2 0x94D049BB133111EBULL
// 511 words: 63 vectors of eight, then seven in a masked one.
#define FULL_VECTORS 63
#define LAST_MASK 0x7F

int flotilla_page_stream_vector_available(void) {
    // The build targets baseline x86-64, so AVX-512 is enabled per function below and the caller
    // checks the CPU once before using it.
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
}

__attribute__((target("avx512f,avx512dq")))
static inline __m512i first_states(uint64_t word) {
    uint64_t start = (word * SEED_MULTIPLIER) ^ SEED_MASK;
    __m512i lanes = _mm512_set_epi64(8, 7, 6, 5, 4, 3, 2, 1);
    return _mm512_add_epi64(_mm512_set1_epi64((long long)start),
                            _mm512_mullo_epi64(lanes, _mm512_set1_epi64((long long)INCREMENT)));
}

__attribute__((target("avx512f,avx512dq")))
static inline __m512i mix(__m512i z) {
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), _mm512_set1_epi64((long long)MIX1));
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), _mm512_set1_epi64((long long)MIX2));
    return _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
}

__attribute__((target("avx512f,avx512dq")))
void flotilla_page_stream_fill(uint64_t word, void *rest) {
    unsigned char *out = rest;
    __m512i states = first_states(word);
    const __m512i step = _mm512_set1_epi64((long long)(INCREMENT * 8));
    for (int vector = 0; vector < FULL_VECTORS; vector++) {
        _mm512_storeu_si512(out + 64 * vector, mix(states));
        states = _mm512_add_epi64(states, step);
    }
    _mm512_mask_storeu_epi64(out + 64 * FULL_VECTORS, LAST_MASK, mix(states));
}

__attribute__((target("avx512f,avx512dq")))
int flotilla_page_stream_matches(uint64_t word, const void *rest) {
    const unsigned char *in = rest;
    __m512i states = first_states(word);
    const __m512i step = _mm512_set1_epi64((long long)(INCREMENT * 8));
    // Differences are gathered and looked at once: no branch per vector in the common (equal) case.
    __mmask8 differ = 0;
    for (int vector = 0; vector < FULL_VECTORS; vector++) {
        differ |= _mm512_cmpneq_epi64_mask(_mm512_loadu_si512(in + 64 * vector), mix(states));
        states = _mm512_add_epi64(states, step);
    }
    __m512i last = _mm512_maskz_loadu_epi64(LAST_MASK, in + 64 * FULL_VECTORS);
    differ |= _mm512_mask_cmpneq_epi64_mask(LAST_MASK, last, mix(states));
    return differ == 0;
}
#else
int flotilla_page_stream_vector_available(void) { return 0; }

// Never called: the caller checks flotilla_page_stream_vector_available() first.
void flotilla_page_stream_fill(uint64_t word, void *rest) {
    (void)word;
    (void)rest;
}

int flotilla_page_stream_matches(uint64_t word, const void *rest) {
    (void)word;
    (void)rest;
    return 0;
}
#endif
