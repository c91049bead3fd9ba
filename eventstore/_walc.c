/* Compiled batch operations of the file store's append and replay hot paths (eventstore.walbatch).

Each function does for a whole batch what eventstore.walbatch's pure-Python fallback does with C-level
maps and a few Python loops, and produces the same objects byte for byte (tests/eventstore/test_walbatch.py
holds them to each other):

  keys(payloads)                          streams and event-id fingerprints read from serialized
                                          EventEnvelopes (fields 3 and 1; field 2 checked present), or
                                          None when any is missing or the bytes are unusual (the caller
                                          then takes the Python path, which names the problem)
  next_versions(streams, pending, known)  each event's stream version, advancing `pending` in place
  frame_batch(first, versions, fps, streams, payloads, base)
                                          the framed records as one bytes object and their offsets
                                          (native uint32, base onwards); the last record has FLAG_COMMIT
  distinct(fps)                           whether no fingerprint of the list occurs twice
  index_streams(known, streams, first, make)
                                          append positions first.. to each stream's array in `known`
  FpTable                                 the idempotency index's recent entries: fingerprint -> positions
  stamped_bodies(data, offsets, first)    the envelopes of records at offsets (positions first..), each
                                          with its stream_version and global_position appended (fields 4
                                          and 5, as eventstore.wal.stamp does), after checking the headers
                                          against the index (ValueError(message, offset, index) if not)

The record format is eventstore/wal.py's: magic(4) body_len(u32) crc32c(u32) | position(u64)
stream_version(u64) fingerprint(u64) stream_len(u16) flags(u16) | stream + envelope, little-endian; the
CRC32C covers everything after the crc field. Fingerprints are CRC-32 (zlib's) << 32 | CRC32C of the id's
UTF-8 bytes.
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define HAVE_SSE42_PATH 1
#endif

#define HEADER_SIZE 40
#define CRC_START 12
#define FLAG_COMMIT 1
static const unsigned char MAGIC[4] = {0xe5, 0x5e, 0x01, 0x7a};

/* ------------------------------------------------------------------ CRCs */

static uint32_t crc32c_table[8][256];
static uint32_t crc32_table[8][256];
static int have_sse42 = 0;

static void init_tables(void) {
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

static uint32_t crc32c(uint32_t crc, const unsigned char *p, size_t n) {
#ifdef HAVE_SSE42_PATH
    if (have_sse42) return crc32c_hw(crc, p, n);
#endif
    return crc_sliced(crc32c_table, crc, p, n);
}

static uint32_t crc32_ieee(const unsigned char *p, size_t n) { return crc_sliced(crc32_table, 0, p, n); }

/* ------------------------------------------------------------------ little-endian stores and loads */

static void put_u16(unsigned char *p, uint16_t v) { p[0] = v & 0xff; p[1] = v >> 8; }
static void put_u32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (v >> (8 * i)) & 0xff; }
static void put_u64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (v >> (8 * i)) & 0xff; }
static uint16_t get_u16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const unsigned char *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

/* ------------------------------------------------------------------ ints */

/* An int in [0, 2**64) as uint64_t; OverflowError or TypeError otherwise (PyLong_AsUnsignedLongLong's).
   Before 3.12, PyLong_AsUnsignedLongLong converts a value of three or more digits (>= 2**60: most
   fingerprints) byte by byte; the mask conversion shifts whole digits, once the value is known to fit. */
static int as_u64(PyObject *value, uint64_t *out) {
#if PY_VERSION_HEX < 0x030C0000
    if (PyLong_CheckExact(value) && Py_SIZE(value) >= 0 && _PyLong_NumBits(value) <= 64) {
        *out = PyLong_AsUnsignedLongLongMask(value);
        return 0;
    }
#endif
    unsigned long long converted = PyLong_AsUnsignedLongLong(value);
    if (converted == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    *out = converted;
    return 0;
}

/* ------------------------------------------------------------------ streams of a batch, grouped */

/* The distinct streams of a batch (str keys compared as a dict compares them): per-event work on a
   stream's index or version is done once per stream instead of once per event. */
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

static void grouped_free(Grouped *grouped) {
    PyMem_Free(grouped->groups);
    PyMem_Free(grouped->group_of);
}

static int group_streams(PyObject *streams, Grouped *grouped) {
    Py_ssize_t count = PyList_GET_SIZE(streams), capacity = 8;
    while (capacity < 2 * count) capacity *= 2;
    grouped->count = 0;
    grouped->groups = PyMem_Calloc((size_t)(count ? count : 1), sizeof(StreamGroup));
    grouped->group_of = PyMem_Calloc((size_t)(count ? count : 1), sizeof(Py_ssize_t));
    Py_ssize_t *slots = PyMem_Calloc((size_t)capacity, sizeof(Py_ssize_t));  /* group + 1, 0: empty */
    if (!grouped->groups || !grouped->group_of || !slots) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *stream = PyList_GET_ITEM(streams, i);
        if (!PyUnicode_Check(stream)) {
            PyErr_SetString(PyExc_TypeError, "streams must be str");
            goto fail;
        }
        Py_hash_t hash = PyObject_Hash(stream);
        if (hash == -1) goto fail;
        size_t slot = (size_t)hash & (size_t)(capacity - 1);
        Py_ssize_t found = -1;
        for (; slots[slot]; slot = (slot + 1) & (size_t)(capacity - 1)) {
            StreamGroup *group = &grouped->groups[slots[slot] - 1];
            if (group->stream == stream) {
                found = slots[slot] - 1;
                break;
            }
            if (group->hash != hash) continue;
            int equal = PyUnicode_Compare(group->stream, stream);
            if (equal == -1 && PyErr_Occurred()) goto fail;
            if (equal == 0) {
                found = slots[slot] - 1;
                break;
            }
        }
        if (found < 0) {
            found = grouped->count++;
            grouped->groups[found].stream = stream;
            grouped->groups[found].hash = hash;
            slots[slot] = found + 1;
        }
        grouped->groups[found].count++;
        grouped->group_of[i] = found;
    }
    PyMem_Free(slots);
    return 0;
fail:
    PyMem_Free(slots);
    grouped_free(grouped);
    grouped->groups = NULL;
    grouped->group_of = NULL;
    return -1;
}

/* ------------------------------------------------------------------ protobuf wire format */

/* Read a varint at *p (< end); 0 on a malformed or truncated one. */
static int read_varint(const unsigned char **p, const unsigned char *end, uint64_t *out) {
    uint64_t value = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        unsigned char byte = *(*p)++;
        value |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *out = value;
            return 1;
        }
    }
    return 0;
}

static size_t put_varint(unsigned char *p, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)(v & 0x7f) | 0x80;
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

static size_t varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* The last occurrences of fields 1 (event_id), 2 (event_type) and 3 (stream) of a serialized envelope.
   0 when the bytes are not a plain sequence of fields (groups, truncation): the caller falls back. */
static int envelope_fields(const unsigned char *p, Py_ssize_t size, const unsigned char *start[4],
                           Py_ssize_t length[4]) {
    const unsigned char *end = p + size;
    for (int f = 0; f < 4; f++) {
        start[f] = NULL;
        length[f] = 0;
    }
    while (p < end) {
        uint64_t tag, value;
        if (!read_varint(&p, end, &tag)) return 0;
        uint64_t field = tag >> 3;
        switch (tag & 7) {
        case 0:
            if (!read_varint(&p, end, &value)) return 0;
            break;
        case 1:
            if (end - p < 8) return 0;
            p += 8;
            break;
        case 5:
            if (end - p < 4) return 0;
            p += 4;
            break;
        case 2:
            if (!read_varint(&p, end, &value) || value > (uint64_t)(end - p)) return 0;
            if (field >= 1 && field <= 3) {
                start[field] = p;
                length[field] = (Py_ssize_t)value;
            }
            p += value;
            break;
        default:
            return 0;
        }
    }
    return 1;
}

/* ------------------------------------------------------------------ keys */

/* A batch's distinct streams, by their UTF-8 bytes: one str object each (decoded, and later hashed,
   once), so that equal streams of a batch are the same object. Open addressing, at most half full. */
typedef struct {
    uint32_t hash;
    Py_ssize_t length;
    const unsigned char *bytes;  /* inside a payload of the batch */
    PyObject *stream;            /* a new reference */
} SeenStream;

static PyObject *walc_keys(PyObject *self, PyObject *payloads) {
    if (!PyList_CheckExact(payloads)) {
        PyErr_SetString(PyExc_TypeError, "keys expects a list of bytes");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(payloads), capacity = 8;
    while (capacity < 2 * count) capacity *= 2;
    PyObject *streams = PyList_New(count), *fps = PyList_New(count);
    PyObject *result = NULL;
    SeenStream *seen = PyMem_Calloc((size_t)capacity, sizeof(SeenStream));
    if (!seen) PyErr_NoMemory();
    if (!streams || !fps || !seen) goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *payload = PyList_GET_ITEM(payloads, i);
        if (!PyBytes_CheckExact(payload)) {
            PyErr_SetString(PyExc_TypeError, "keys expects a list of bytes");
            goto done;
        }
        const unsigned char *start[4];
        Py_ssize_t length[4];
        if (!envelope_fields((const unsigned char *)PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload), start,
                             length) ||
            !length[1] || !length[2] || !length[3])
            goto unusual;
        uint32_t hash = 2166136261u;
        for (Py_ssize_t b = 0; b < length[3]; b++) hash = (hash ^ start[3][b]) * 16777619u;
        size_t slot = hash & (size_t)(capacity - 1);
        while (seen[slot].stream && (seen[slot].hash != hash || seen[slot].length != length[3] ||
                                     memcmp(seen[slot].bytes, start[3], (size_t)length[3])))
            slot = (slot + 1) & (size_t)(capacity - 1);
        if (!seen[slot].stream) {
            PyObject *decoded = PyUnicode_DecodeUTF8((const char *)start[3], length[3], NULL);
            if (!decoded) {
                PyErr_Clear();
                goto unusual;
            }
            seen[slot] = (SeenStream){hash, length[3], start[3], decoded};
        }
        Py_INCREF(seen[slot].stream);
        PyList_SET_ITEM(streams, i, seen[slot].stream);
        uint64_t fp = (uint64_t)crc32_ieee(start[1], (size_t)length[1]) << 32 |
                      crc32c(0, start[1], (size_t)length[1]);
        PyObject *value = PyLong_FromUnsignedLongLong(fp);
        if (!value) goto done;
        PyList_SET_ITEM(fps, i, value);
    }
    result = PyTuple_Pack(2, streams, fps);
    goto done;
unusual:  /* unusual or invalid: the Python path decides */
    result = Py_None;
    Py_INCREF(result);
done:
    if (seen)
        for (Py_ssize_t slot = 0; slot < capacity; slot++) Py_XDECREF(seen[slot].stream);
    PyMem_Free(seen);
    Py_XDECREF(streams);
    Py_XDECREF(fps);
    return result;
}

/* ------------------------------------------------------------------ next_versions */

static PyObject *walc_next_versions(PyObject *self, PyObject *args) {
    PyObject *streams, *pending, *known, *versions = NULL;
    if (!PyArg_ParseTuple(args, "O!O!O!:next_versions", &PyList_Type, &streams, &PyDict_Type, &pending,
                          &PyDict_Type, &known))
        return NULL;
    Grouped grouped;
    if (group_streams(streams, &grouped) < 0) return NULL;
    for (Py_ssize_t g = 0; g < grouped.count; g++) {  /* each stream's version before the batch */
        StreamGroup *group = &grouped.groups[g];
        PyObject *current = PyDict_GetItemWithError(pending, group->stream);  /* borrowed */
        if (current) {
            group->version = PyLong_AsLongLong(current);
            if (group->version == -1 && PyErr_Occurred()) goto done;
        } else {
            if (PyErr_Occurred()) goto done;
            PyObject *positions = PyDict_GetItemWithError(known, group->stream);
            if (!positions && PyErr_Occurred()) goto done;
            group->version = positions ? (long long)PyObject_Length(positions) : 0;
            if (group->version < 0) goto done;
        }
    }
    Py_ssize_t count = PyList_GET_SIZE(streams);
    versions = PyList_New(count);
    if (!versions) goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *next = PyLong_FromLongLong(++grouped.groups[grouped.group_of[i]].version);
        if (!next) goto fail;
        PyList_SET_ITEM(versions, i, next);
    }
    for (Py_ssize_t g = 0; g < grouped.count; g++) {  /* pending: each stream's version after it */
        PyObject *version = PyLong_FromLongLong(grouped.groups[g].version);
        int failed = !version || PyDict_SetItem(pending, grouped.groups[g].stream, version) < 0;
        Py_XDECREF(version);
        if (failed) goto fail;
    }
    goto done;
fail:
    Py_CLEAR(versions);
done:
    grouped_free(&grouped);
    return versions;
}

/* ------------------------------------------------------------------ frame_batch */

static PyObject *walc_frame_batch(PyObject *self, PyObject *args) {
    unsigned long long first, base;
    PyObject *versions, *fps, *streams, *payloads;
    if (!PyArg_ParseTuple(args, "KO!O!O!O!K:frame_batch", &first, &PyList_Type, &versions, &PyList_Type, &fps,
                          &PyList_Type, &streams, &PyList_Type, &payloads, &base))
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(payloads);
    if (count == 0 || PyList_GET_SIZE(versions) != count || PyList_GET_SIZE(fps) != count ||
        PyList_GET_SIZE(streams) != count) {
        PyErr_SetString(PyExc_ValueError, "frame_batch needs as many versions, fps and streams as payloads");
        return NULL;
    }
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *stream = PyList_GET_ITEM(streams, i), *payload = PyList_GET_ITEM(payloads, i);
        Py_ssize_t stream_len;
        if (!PyUnicode_Check(stream) || !PyBytes_Check(payload)) {
            PyErr_SetString(PyExc_TypeError, "frame_batch expects str streams and bytes payloads");
            return NULL;
        }
        if (!PyUnicode_AsUTF8AndSize(stream, &stream_len)) return NULL;
        if (stream_len > 0xffff) {
            PyErr_SetString(PyExc_OverflowError, "a stream name is longer than 65535 bytes");
            return NULL;
        }
        if ((uint64_t)stream_len + PyBytes_GET_SIZE(payload) > 0xffffffffu) {
            PyErr_SetString(PyExc_OverflowError, "a record body is longer than 4 GiB");
            return NULL;
        }
        total += HEADER_SIZE + stream_len + PyBytes_GET_SIZE(payload);
    }
    if (base + (uint64_t)total > 0xffffffffu) {
        PyErr_SetString(PyExc_OverflowError, "record offsets past 4 GiB do not fit the segment index");
        return NULL;
    }
    PyObject *buffer = PyBytes_FromStringAndSize(NULL, total);
    PyObject *offsets = PyBytes_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(uint32_t));
    if (!buffer || !offsets) goto fail;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(buffer);
    uint32_t *offset_out = (uint32_t *)PyBytes_AS_STRING(offsets);
    Py_ssize_t at = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *payload = PyList_GET_ITEM(payloads, i);
        Py_ssize_t stream_len, payload_len = PyBytes_GET_SIZE(payload);
        const char *stream = PyUnicode_AsUTF8AndSize(PyList_GET_ITEM(streams, i), &stream_len);
        uint64_t version, fp;
        if (as_u64(PyList_GET_ITEM(versions, i), &version) < 0 || as_u64(PyList_GET_ITEM(fps, i), &fp) < 0)
            goto fail;
        unsigned char *record = out + at;
        uint32_t body_len = (uint32_t)(stream_len + payload_len);
        memcpy(record, MAGIC, 4);
        put_u32(record + 4, body_len);
        put_u64(record + 12, first + (uint64_t)i);
        put_u64(record + 20, version);
        put_u64(record + 28, fp);
        put_u16(record + 36, (uint16_t)stream_len);
        put_u16(record + 38, i == count - 1 ? FLAG_COMMIT : 0);
        memcpy(record + HEADER_SIZE, stream, (size_t)stream_len);
        memcpy(record + HEADER_SIZE + stream_len, PyBytes_AS_STRING(payload), (size_t)payload_len);
        put_u32(record + 8, crc32c(0, record + CRC_START, (size_t)(HEADER_SIZE - CRC_START) + body_len));
        offset_out[i] = (uint32_t)(base + (uint64_t)at);
        at += HEADER_SIZE + body_len;
    }
    PyObject *result = PyTuple_Pack(2, buffer, offsets);
    Py_DECREF(buffer);
    Py_DECREF(offsets);
    return result;
fail:
    Py_XDECREF(buffer);
    Py_XDECREF(offsets);
    return NULL;
}

/* ------------------------------------------------------------------ index_streams */

static PyObject *append_name, *frombytes_name;
/* A stream with this many new positions or more gets them with one frombytes call (native uint64, in
   order; the view and the call cost about as much as four appends), one with fewer with appends. */
#define FROMBYTES_FROM 4

static PyObject *walc_index_streams(PyObject *self, PyObject *args) {
    PyObject *known, *streams, *make, *result = NULL;
    unsigned long long first;
    if (!PyArg_ParseTuple(args, "O!O!KO:index_streams", &PyDict_Type, &known, &PyList_Type, &streams, &first,
                          &make))
        return NULL;
    Grouped grouped;
    if (group_streams(streams, &grouped) < 0) return NULL;
    Py_ssize_t count = PyList_GET_SIZE(streams), start = 0;
    uint64_t *positions = PyMem_Malloc((size_t)(count ? count : 1) * sizeof(uint64_t));
    if (!positions) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t g = 0; g < grouped.count; g++) {
        grouped.groups[g].start = start;
        start += grouped.groups[g].count;
        grouped.groups[g].count = 0;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        StreamGroup *group = &grouped.groups[grouped.group_of[i]];
        positions[group->start + group->count++] = first + (uint64_t)i;
    }
    for (Py_ssize_t g = 0; g < grouped.count; g++) {
        StreamGroup *group = &grouped.groups[g];
        PyObject *array = PyDict_GetItemWithError(known, group->stream);  /* borrowed */
        if (array) {
            Py_INCREF(array);  /* held across the frombytes call */
        } else {
            if (PyErr_Occurred()) goto done;
            array = PyObject_CallNoArgs(make);
            if (!array) goto done;
            if (PyDict_SetItem(known, group->stream, array) < 0) {
                Py_DECREF(array);
                goto done;
            }
        }
        int failed = 0;
        if (group->count < FROMBYTES_FROM) {
            for (Py_ssize_t k = 0; k < group->count && !failed; k++) {
                PyObject *position = PyLong_FromUnsignedLongLong(positions[group->start + k]);
                PyObject *appended = position ? PyObject_CallMethodOneArg(array, append_name, position) : NULL;
                Py_XDECREF(position);
                failed = !appended;
                Py_XDECREF(appended);
            }
        } else {
            PyObject *view = PyMemoryView_FromMemory((char *)(positions + group->start),
                                                     group->count * (Py_ssize_t)sizeof(uint64_t), PyBUF_READ);
            PyObject *appended = view ? PyObject_CallMethodOneArg(array, frombytes_name, view) : NULL;
            Py_XDECREF(view);
            failed = !appended;
            Py_XDECREF(appended);
        }
        Py_DECREF(array);
        if (failed) goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_Free(positions);
    grouped_free(&grouped);
    return result;
}

/* ------------------------------------------------------------------ stamped_bodies */

static PyObject *corrupt(const char *message, uint64_t offset, Py_ssize_t index) {
    PyObject *error = Py_BuildValue("(sKn)", message, (unsigned long long)offset, index);
    if (error) {
        PyErr_SetObject(PyExc_ValueError, error);
        Py_DECREF(error);
    }
    return NULL;
}

static PyObject *walc_stamped_bodies(PyObject *self, PyObject *args) {
    Py_buffer data, offsets;
    unsigned long long first;
    if (!PyArg_ParseTuple(args, "y*y*K:stamped_bodies", &data, &offsets, &first)) return NULL;
    PyObject *bodies = NULL;
    if (offsets.len % (Py_ssize_t)sizeof(uint32_t)) {
        PyErr_SetString(PyExc_ValueError, "offsets must be uint32");
        goto done;
    }
    Py_ssize_t count = offsets.len / (Py_ssize_t)sizeof(uint32_t);
    const unsigned char *bytes = data.buf;
    uint64_t size = (uint64_t)data.len;
    const uint32_t *at = offsets.buf;
    bodies = PyList_New(count);
    if (!bodies) goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        uint64_t start = at[i];
        if (start + HEADER_SIZE > size) {
            corrupt("the index points past the segment", start, i);
            goto fail;
        }
        const unsigned char *record = bytes + start;
        uint64_t position = first + (uint64_t)i;
        uint64_t end = start + HEADER_SIZE + get_u32(record + 4);
        uint16_t stream_len = get_u16(record + 36);
        if (memcmp(record, MAGIC, 4) || get_u64(record + 12) != position || end > size ||
            (i + 1 < count && end != at[i + 1]) || stream_len > get_u32(record + 4)) {
            corrupt("the index does not match the segment", start, i);
            goto fail;
        }
        uint64_t version = get_u64(record + 20);
        Py_ssize_t envelope_len = (Py_ssize_t)(end - start - HEADER_SIZE - stream_len);
        Py_ssize_t stamped_len = envelope_len + 2 + (Py_ssize_t)varint_size(version) + (Py_ssize_t)varint_size(position);
        PyObject *body = PyBytes_FromStringAndSize(NULL, stamped_len);
        if (!body) goto fail;
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(body);
        memcpy(out, record + HEADER_SIZE + stream_len, (size_t)envelope_len);
        out += envelope_len;
        *out++ = 0x20;  /* field 4, varint: stream_version */
        out += put_varint(out, version);
        *out++ = 0x28;  /* field 5, varint: global_position */
        put_varint(out, position);
        PyList_SET_ITEM(bodies, i, body);
    }
    goto done;
fail:
    Py_CLEAR(bodies);
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&offsets);
    return bodies;
}

/* ------------------------------------------------------------------ FpTable */

/* The idempotency index's recent entries (eventstore.idindex): fingerprint -> position, a key may hold
   several positions (fingerprints can collide). Open addressing with linear probing over two uint64
   arrays, position 0 marking an empty slot (positions start at 1); grown by doubling at half full. */
typedef struct {
    PyObject_HEAD
    uint64_t *keys;
    uint64_t *values;
    Py_ssize_t capacity;  /* a power of two */
    Py_ssize_t count;
} FpTable;

static inline size_t fp_slot(uint64_t key, Py_ssize_t capacity) {
    key ^= key >> 33;  /* fingerprints are CRCs: well mixed already; fold the high half in anyway */
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t)key & (size_t)(capacity - 1);
}

static void fp_put(uint64_t *keys, uint64_t *values, Py_ssize_t capacity, uint64_t key, uint64_t value) {
    size_t slot = fp_slot(key, capacity);
    while (values[slot]) slot = (slot + 1) & (size_t)(capacity - 1);
    keys[slot] = key;
    values[slot] = value;
}

static int fp_reserve(FpTable *table, Py_ssize_t more) {
    Py_ssize_t capacity = table->capacity;
    while ((table->count + more) * 2 > capacity) capacity *= 2;
    if (capacity == table->capacity) return 0;
    uint64_t *keys = PyMem_Calloc((size_t)capacity, sizeof(uint64_t));
    uint64_t *values = PyMem_Calloc((size_t)capacity, sizeof(uint64_t));
    if (!keys || !values) {
        PyMem_Free(keys);
        PyMem_Free(values);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < table->capacity; i++)
        if (table->values[i]) fp_put(keys, values, capacity, table->keys[i], table->values[i]);
    PyMem_Free(table->keys);
    PyMem_Free(table->values);
    table->keys = keys;
    table->values = values;
    table->capacity = capacity;
    return 0;
}

static int fp_init(FpTable *table, PyObject *args, PyObject *kwargs) {
    if (!PyArg_ParseTuple(args, ":FpTable")) return -1;
    PyMem_Free(table->keys);
    PyMem_Free(table->values);
    table->capacity = 1024;
    table->count = 0;
    table->keys = PyMem_Calloc((size_t)table->capacity, sizeof(uint64_t));
    table->values = PyMem_Calloc((size_t)table->capacity, sizeof(uint64_t));
    if (!table->keys || !table->values) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void fp_dealloc(FpTable *table) {
    PyMem_Free(table->keys);
    PyMem_Free(table->values);
    Py_TYPE(table)->tp_free((PyObject *)table);
}

static int fp_ready(FpTable *table) {
    if (table->keys) return 1;
    PyErr_SetString(PyExc_RuntimeError, "FpTable is not initialised");
    return 0;
}

static int fp_add(FpTable *table, PyObject *fp, uint64_t position) {
    uint64_t key;
    if (as_u64(fp, &key) < 0) return -1;
    if (position == 0) {
        PyErr_SetString(PyExc_ValueError, "positions start at 1");
        return -1;
    }
    fp_put(table->keys, table->values, table->capacity, key, position);
    table->count++;
    return 0;
}

/* add_run(fps, first): fps[i] -> first + i */
static PyObject *fp_add_run(FpTable *table, PyObject *args) {
    PyObject *fps;
    unsigned long long first;
    if (!fp_ready(table) || !PyArg_ParseTuple(args, "O!K:add_run", &PyList_Type, &fps, &first)) return NULL;
    Py_ssize_t count = PyList_GET_SIZE(fps);
    if (fp_reserve(table, count) < 0) return NULL;
    for (Py_ssize_t i = 0; i < count; i++)
        if (fp_add(table, PyList_GET_ITEM(fps, i), first + (uint64_t)i) < 0) return NULL;
    Py_RETURN_NONE;
}

/* add_many(fps, positions): two lists of the same length */
static PyObject *fp_add_many(FpTable *table, PyObject *args) {
    PyObject *fps, *positions;
    if (!fp_ready(table) ||
        !PyArg_ParseTuple(args, "O!O!:add_many", &PyList_Type, &fps, &PyList_Type, &positions))
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(fps);
    if (PyList_GET_SIZE(positions) != count) {
        PyErr_SetString(PyExc_ValueError, "add_many needs as many positions as fingerprints");
        return NULL;
    }
    if (fp_reserve(table, count) < 0) return NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        uint64_t position;
        if (as_u64(PyList_GET_ITEM(positions, i), &position) < 0) return NULL;
        if (fp_add(table, PyList_GET_ITEM(fps, i), position) < 0) return NULL;
    }
    Py_RETURN_NONE;
}

/* find(fps) -> {index in fps: [positions, ascending]} for the fingerprints held */
static PyObject *fp_find(FpTable *table, PyObject *fps) {
    if (!fp_ready(table)) return NULL;
    if (!PyList_CheckExact(fps)) {
        PyErr_SetString(PyExc_TypeError, "find expects a list of ints");
        return NULL;
    }
    PyObject *found = PyDict_New();
    if (!found) return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(fps); i++) {
        uint64_t key;
        if (as_u64(PyList_GET_ITEM(fps, i), &key) < 0) goto fail;
        PyObject *positions = NULL;
        for (size_t slot = fp_slot(key, table->capacity); table->values[slot];
             slot = (slot + 1) & (size_t)(table->capacity - 1)) {
            if (table->keys[slot] != key) continue;
            if (!positions && !(positions = PyList_New(0))) goto fail;
            PyObject *value = PyLong_FromUnsignedLongLong(table->values[slot]);
            int failed = !value || PyList_Append(positions, value) < 0;
            Py_XDECREF(value);
            if (failed) {
                Py_DECREF(positions);
                goto fail;
            }
        }
        if (!positions) continue;
        PyObject *index = PyLong_FromSsize_t(i);
        int failed = !index || PyList_Sort(positions) < 0 || PyDict_SetItem(found, index, positions) < 0;
        Py_XDECREF(index);
        Py_DECREF(positions);
        if (failed) goto fail;
    }
    return found;
fail:
    Py_DECREF(found);
    return NULL;
}

/* items() -> (keys, positions): native uint64 bytes, in no particular order */
static PyObject *fp_items(FpTable *table, PyObject *unused) {
    if (!fp_ready(table)) return NULL;
    PyObject *keys = PyBytes_FromStringAndSize(NULL, table->count * (Py_ssize_t)sizeof(uint64_t));
    PyObject *values = PyBytes_FromStringAndSize(NULL, table->count * (Py_ssize_t)sizeof(uint64_t));
    if (!keys || !values) {
        Py_XDECREF(keys);
        Py_XDECREF(values);
        return NULL;
    }
    uint64_t *key_out = (uint64_t *)PyBytes_AS_STRING(keys), *value_out = (uint64_t *)PyBytes_AS_STRING(values);
    for (Py_ssize_t i = 0; i < table->capacity; i++)
        if (table->values[i]) {
            *key_out++ = table->keys[i];
            *value_out++ = table->values[i];
        }
    PyObject *result = PyTuple_Pack(2, keys, values);
    Py_DECREF(keys);
    Py_DECREF(values);
    return result;
}

static PyObject *fp_clear(FpTable *table, PyObject *unused) {
    if (!fp_ready(table)) return NULL;
    memset(table->values, 0, (size_t)table->capacity * sizeof(uint64_t));
    table->count = 0;
    Py_RETURN_NONE;
}

static PyObject *fp_nbytes(FpTable *table, PyObject *unused) {
    return PyLong_FromSsize_t(table->capacity * 2 * (Py_ssize_t)sizeof(uint64_t));
}

static Py_ssize_t fp_len(FpTable *table) { return table->count; }

static PyMethodDef fp_methods[] = {
    {"add_run", (PyCFunction)fp_add_run, METH_VARARGS, "add fps[i] -> first + i"},
    {"add_many", (PyCFunction)fp_add_many, METH_VARARGS, "add fps[i] -> positions[i]"},
    {"find", (PyCFunction)fp_find, METH_O, "{index in fps: ascending positions} of the fingerprints held"},
    {"items", (PyCFunction)fp_items, METH_NOARGS, "(keys, positions) as native uint64 bytes"},
    {"clear", (PyCFunction)fp_clear, METH_NOARGS, "remove every entry (the arrays are kept)"},
    {"nbytes", (PyCFunction)fp_nbytes, METH_NOARGS, "bytes of the table's arrays"},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods fp_sequence = {.sq_length = (lenfunc)fp_len};

static PyTypeObject FpTableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "eventstore._walc.FpTable",
    .tp_basicsize = sizeof(FpTable),
    .tp_dealloc = (destructor)fp_dealloc,
    .tp_as_sequence = &fp_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "fingerprint -> positions, the idempotency index's recent entries",
    .tp_methods = fp_methods,
    .tp_init = (initproc)fp_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------ distinct */

/* Whether no fingerprint of the list occurs twice (open addressing over the values, at most half full). */
static PyObject *walc_distinct(PyObject *self, PyObject *fps) {
    if (!PyList_CheckExact(fps)) {
        PyErr_SetString(PyExc_TypeError, "distinct expects a list of ints");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(fps), capacity = 8;
    while (capacity < 2 * count) capacity *= 2;
    uint64_t *keys = PyMem_Malloc((size_t)capacity * sizeof(uint64_t));
    unsigned char *used = PyMem_Calloc((size_t)capacity, 1);
    PyObject *result = NULL;
    if (!keys || !used) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_True;
    for (Py_ssize_t i = 0; i < count; i++) {
        uint64_t key;
        if (as_u64(PyList_GET_ITEM(fps, i), &key) < 0) {
            result = NULL;
            goto done;
        }
        size_t slot = fp_slot(key, capacity);
        for (; used[slot]; slot = (slot + 1) & (size_t)(capacity - 1))
            if (keys[slot] == key) {
                result = Py_False;
                goto done;
            }
        used[slot] = 1;
        keys[slot] = key;
    }
done:
    PyMem_Free(keys);
    PyMem_Free(used);
    Py_XINCREF(result);
    return result;
}

/* ------------------------------------------------------------------ CRC32C, both ways (for the tests) */

static PyObject *walc_crc32c(PyObject *self, PyObject *args) {
    Py_buffer data;
    unsigned int crc = 0;
    if (!PyArg_ParseTuple(args, "y*|I:crc32c", &data, &crc)) return NULL;
    uint32_t value = crc32c(crc, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLong(value);
}

static PyObject *walc_crc32c_table(PyObject *self, PyObject *args) {
    Py_buffer data;
    unsigned int crc = 0;
    if (!PyArg_ParseTuple(args, "y*|I:crc32c_table", &data, &crc)) return NULL;
    uint32_t value = crc_sliced(crc32c_table, crc, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    return PyLong_FromUnsignedLong(value);
}

static PyMethodDef methods[] = {
    {"keys", walc_keys, METH_O, "event ids, streams and fingerprints of serialized envelopes, or None"},
    {"next_versions", walc_next_versions, METH_VARARGS, "each event's stream version; advances pending"},
    {"frame_batch", walc_frame_batch, METH_VARARGS, "framed records of one batch and their offsets"},
    {"index_streams", walc_index_streams, METH_VARARGS, "append positions to each stream's array"},
    {"distinct", walc_distinct, METH_O, "whether no fingerprint of the list occurs twice"},
    {"stamped_bodies", walc_stamped_bodies, METH_VARARGS, "checked, stamped envelopes of records"},
    {"crc32c", walc_crc32c, METH_VARARGS, "CRC32C (Castagnoli) of bytes, continuing crc"},
    {"crc32c_table", walc_crc32c_table, METH_VARARGS, "CRC32C without the hardware instruction"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_walc", NULL, -1, methods};

PyMODINIT_FUNC PyInit__walc(void) {
    init_tables();
    append_name = PyUnicode_InternFromString("append");
    frombytes_name = PyUnicode_InternFromString("frombytes");
    if (!append_name || !frombytes_name) return NULL;
    if (PyType_Ready(&FpTableType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m && (PyModule_AddIntConstant(m, "HARDWARE_CRC32C", have_sse42) < 0 ||
              PyModule_AddObjectRef(m, "FpTable", (PyObject *)&FpTableType) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
