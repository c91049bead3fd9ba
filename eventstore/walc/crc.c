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

/* The hardware CRC32C runs three lanes of LANE bytes at once (the instruction's latency, not its
   throughput, bounds one lane), then joins them: a CRC register is linear over GF(2), so the register
   after A then B is the register after A moved past |B| zero bytes, xor B's register from zero.
   lane_shift[k][b]: where byte k of a register holding b there lands after LANE zero bytes. */
#define LANE 128
static uint32_t lane_shift[4][256];

static inline uint32_t past_lane(uint32_t reg) {
    return lane_shift[0][reg & 0xff] ^ lane_shift[1][(reg >> 8) & 0xff] ^ lane_shift[2][(reg >> 16) & 0xff] ^
           lane_shift[3][reg >> 24];
}

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
    uint32_t bit_past_lane[32]; /* where each register bit lands after LANE zero bytes; the rest is xor */
    for (int bit = 0; bit < 32; bit++) {
        uint32_t reg = 1u << bit;
        for (int zero = 0; zero < LANE; zero++) reg = (reg >> 8) ^ crc32c_table[0][reg & 0xff];
        bit_past_lane[bit] = reg;
    }
    for (int k = 0; k < 4; k++)
        for (uint32_t b = 0; b < 256; b++) {
            uint32_t reg = 0;
            for (int bit = 0; bit < 8; bit++)
                if (b >> bit & 1) reg ^= bit_past_lane[8 * k + bit];
            lane_shift[k][b] = reg;
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
    while (n >= 3 * LANE) {
        uint64_t c1 = 0, c2 = 0;
        for (const unsigned char *end = p + LANE; p < end; p += 8) {
            uint64_t w0, w1, w2;
            memcpy(&w0, p, 8);
            memcpy(&w1, p + LANE, 8);
            memcpy(&w2, p + 2 * LANE, 8);
            c = _mm_crc32_u64(c, w0);
            c1 = _mm_crc32_u64(c1, w1);
            c2 = _mm_crc32_u64(c2, w2);
        }
        c = past_lane(past_lane((uint32_t)c) ^ (uint32_t)c1) ^ (uint32_t)c2;
        p += 2 * LANE;
        n -= 3 * LANE;
    }
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
