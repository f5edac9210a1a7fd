/*
 * siphash.h - SipHash-1-3, the keyed hash of the item table.
 *
 * Keys come from the network, so the table's hash is keyed with 16 random bytes per store:
 * a client cannot choose keys that all land in one bucket (hash flooding).
 */
#ifndef PYCACHE_SIPHASH_H
#define PYCACHE_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t siphash13(const uint8_t key[16], const void *data, size_t len);

#endif
