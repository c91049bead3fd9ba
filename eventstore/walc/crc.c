/* CRC32C (the records' checksum; the SSE4.2 instruction where the CPU has it) and zlib's CRC-32 (half of
   an event id's fingerprint). */
#include "walc.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define HAVE_SSE42_PATH 1
#endif

/* ------------------------------------------------------------------ CRCs */

static uint32_t crc32c_table[8][256];
static uint32_t crc32_table[8][256];
int have_sse42 = 0;

void init_tables(void) {
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n, z = n;
        for (int k = 0; k < 8; k++) {
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            z = z & 1 ? (z >> 1) ^ 0xEDB88320u : z >> 1;
        }
        crc32c_table[0][n] = c;
        crc32_table[0][n] = z;
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int k = 1; k < 8; k++) {
            crc32c_table[k][n] = (crc32c_table[k - 1][n] >> 8) ^ crc32c_table[0][crc32c_table[k - 1][n] & 0xff];
            crc32_table[k][n] = (crc32_table[k - 1][n] >> 8) ^ crc32_table[0][crc32_table[k - 1][n] & 0xff];
        }
#ifdef HAVE_SSE42_PATH
    __builtin_cpu_init();
    have_sse42 = __builtin_cpu_supports("sse4.2") != 0;
#endif
}

/* Table-driven CRC, eight bytes at a time ("slicing by 8"), for either reflected polynomial. */
static uint32_t crc_sliced(uint32_t table[8][256], uint32_t crc, const unsigned char *p, size_t n) {
    crc = ~crc;
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        word ^= crc;  /* little-endian hosts (x86-64, aarch64) */
        crc = table[7][word & 0xff] ^ table[6][(word >> 8) & 0xff] ^ table[5][(word >> 16) & 0xff] ^
              table[4][(word >> 24) & 0xff] ^ table[3][(word >> 32) & 0xff] ^ table[2][(word >> 40) & 0xff] ^
              table[1][(word >> 48) & 0xff] ^ table[0][word >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
    return ~crc;
}

#ifdef HAVE_SSE42_PATH
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = ~crc & 0xffffffffu;
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = _mm_crc32_u64(c, word);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}
#endif

uint32_t crc32c(uint32_t crc, const unsigned char *p, size_t n) {
#ifdef HAVE_SSE42_PATH
    if (have_sse42) return crc32c_hw(crc, p, n);
#endif
    return crc_sliced(crc32c_table, crc, p, n);
}

uint32_t crc32_ieee(const unsigned char *p, size_t n) { return crc_sliced(crc32_table, 0, p, n); }

/* ------------------------------------------------------------------ CRC32C, both ways (for the tests) */

PyObject *walc_crc32c(PyObject *self, PyObject *args) {
    Py_buffer data;
    unsigned int crc = 0;
    if (!PyArg_ParseTuple(args, "y*|I:crc32c", &data, &crc)) return NULL;
    uint32_t value = crc32c(crc, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLong(value);
}

PyObject *walc_crc32c_table(PyObject *self, PyObject *args) {
    Py_buffer data;
    unsigned int crc = 0;
    if (!PyArg_ParseTuple(args, "y*|I:crc32c_table", &data, &crc)) return NULL;
    uint32_t value = crc_sliced(crc32c_table, crc, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLong(value);
}
