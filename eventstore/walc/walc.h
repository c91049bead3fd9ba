/* Shared by the files of eventstore._walc (module.c lists what the module offers and the record format). */
#ifndef ESPER_WALC_H
#define ESPER_WALC_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* Nothing of the extension is visible outside its shared object. */
#pragma GCC visibility push(hidden)

#define HEADER_SIZE 40
#define CRC_START 12
#define FLAG_COMMIT 1
#define WALC_MAGIC "\xe5\x5e\x01\x7a"

/* crc.c */
extern int have_sse42;
void init_tables(void);
uint32_t crc32c(uint32_t crc, const unsigned char *p, size_t n);
uint32_t crc32_ieee(const unsigned char *p, size_t n);
PyObject *walc_crc32c(PyObject *self, PyObject *args);
PyObject *walc_crc32c_table(PyObject *self, PyObject *args);

/* little-endian stores and loads */
static inline void put_u16(unsigned char *p, uint16_t v) { p[0] = v & 0xff; p[1] = v >> 8; }
static inline void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (v >> (8 * i)) & 0xff;
}
static inline void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (v >> (8 * i)) & 0xff;
}
static inline uint16_t get_u16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t get_u64(const unsigned char *p) {
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* a fingerprint's home slot in an open-addressed table of capacity (a power of two) slots */
static inline size_t fp_slot(uint64_t key, Py_ssize_t capacity) {
    key ^= key >> 33;  /* fingerprints are CRCs: well mixed already; fold the high half in anyway */
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t)key & (size_t)(capacity - 1);
}

/* wire.c: ints, a batch's streams grouped, protobuf's wire format */
int as_u64(PyObject *value, uint64_t *out);
/* A batch's fingerprints or positions: a list of ints (converted), or an array("Q") read in place. */
typedef struct {
    const uint64_t *values;
    Py_ssize_t count;
    uint64_t *owned;  /* the converted list's values, or NULL */
    Py_buffer view;   /* the array's, where view.obj */
} U64s;
int u64s_get(PyObject *source, U64s *out);
void u64s_release(U64s *u64s);
typedef struct {
    PyObject *stream;  /* borrowed from the list: the first event's object of this stream */
    Py_hash_t hash;
    Py_ssize_t count;  /* events of the batch in this stream */
    Py_ssize_t start;  /* index_streams: where its positions start in the grouped buffer */
    long long version; /* next_versions: its version before (then after) the batch */
} StreamGroup;

typedef struct {
    StreamGroup *groups;
    Py_ssize_t count;
    Py_ssize_t *group_of;  /* per event */
} Grouped;
void grouped_free(Grouped *grouped);
int group_streams(PyObject *streams, Grouped *grouped);
int read_varint(const unsigned char **p, const unsigned char *end, uint64_t *out);
size_t put_varint(unsigned char *p, uint64_t v);
size_t varint_size(uint64_t v);
int envelope_fields(const unsigned char *p, Py_ssize_t size, const unsigned char *start[4], Py_ssize_t length[4]);

/* append.c: the append path's batch operations */
int walc_init_append(void);
PyObject *walc_keys(PyObject *self, PyObject *payloads);
PyObject *walc_next_versions(PyObject *self, PyObject *args);
PyObject *walc_frame_batch(PyObject *self, PyObject *args);
PyObject *walc_frame_new(PyObject *self, PyObject *args);
PyObject *walc_index_streams(PyObject *self, PyObject *args);
PyObject *walc_distinct(PyObject *self, PyObject *fps);

/* replay.c: replay's checked, stamped bodies and the idempotency index's table */
PyObject *walc_stamped_bodies(PyObject *self, PyObject *args);
extern PyTypeObject FpTableType;

#pragma GCC visibility pop

#endif
