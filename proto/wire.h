/**
 * @file wire.h
 * Little-endian integers on the wire, for every Ferry protocol codec.
 *
 * Byte-by-byte so that they are correct on any host byte order and never do
 * unaligned loads; compilers turn them into single moves on x86-64.
 */
#ifndef FERRY_PROTO_WIRE_H
#define FERRY_PROTO_WIRE_H

#include <stdint.h>

static inline uint16_t wire_get_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

static inline uint32_t wire_get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t wire_get_u64(const uint8_t *p)
{
	return (uint64_t)wire_get_u32(p) | (uint64_t)wire_get_u32(p + 4) << 32;
}

static inline void wire_put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void wire_put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline void wire_put_u64(uint8_t *p, uint64_t v)
{
	wire_put_u32(p, (uint32_t)v);
	wire_put_u32(p + 4, (uint32_t)(v >> 32));
}

#endif /* FERRY_PROTO_WIRE_H */
