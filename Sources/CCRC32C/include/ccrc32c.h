// CRC-32C with the SSE4.2 `crc32` instruction, for RaftStorage's write-ahead log checksums.
#ifndef FLOTILLA_CCRC32C_H
#define FLOTILLA_CCRC32C_H
#include <stddef.h>
#include <stdint.h>

/// Whether this CPU has the SSE4.2 `crc32` instruction (always false off x86-64).
int flotilla_crc32c_hardware_available(void);

/// Advances the raw (not inverted) CRC-32C state `crc` over `count` bytes at `bytes` with the
/// `crc32` instruction. Call only when `flotilla_crc32c_hardware_available()` is true.
uint32_t flotilla_crc32c_hardware(uint32_t crc, const void *bytes, size_t count);
#endif
