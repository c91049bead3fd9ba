/* Ints, the distinct streams of a batch, protobuf's wire format: shared by append.c and replay.c. */
#include "walc.h"

/* ------------------------------------------------------------------ ints */

/* An int in [0, 2**64) as uint64_t; OverflowError or TypeError otherwise (PyLong_AsUnsignedLongLong's).
   Before 3.12, PyLong_AsUnsignedLongLong converts a value of three or more digits (>= 2**60: most
   fingerprints) byte by byte; an exact int whose digits fit 64 bits is read digit by digit here instead
   (3.11's PyLongObject: ob_size digits of PyLong_SHIFT bits, least significant first; three calls per
   appended event read fingerprints). */
int as_u64(PyObject *value, uint64_t *out) {
#if PY_VERSION_HEX < 0x030C0000
    if (PyLong_CheckExact(value) && Py_SIZE(value) >= 0) {
        Py_ssize_t size = Py_SIZE(value);
        const digit *digits = ((PyLongObject *)value)->ob_digit;
        Py_ssize_t top_bits = 64 - (size - 1) * PyLong_SHIFT; /* what the most significant digit may hold */
        if (size == 0 || top_bits >= PyLong_SHIFT || (top_bits > 0 && !(digits[size - 1] >> top_bits))) {
            uint64_t converted = 0;
            for (Py_ssize_t i = size; i-- > 0;) converted = converted << PyLong_SHIFT | digits[i];
            *out = converted;
            return 0;
        }
    }
#endif
    unsigned long long converted = PyLong_AsUnsignedLongLong(value);
    if (converted == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    *out = converted;
    return 0;
}

/* A list of ints is converted into owned memory; anything else must export native uint64 items (format
   Q, or L where a long is 64 bits: array("Q"), numpy's uint64), which are read in place. */
int u64s_get(PyObject *source, U64s *out) {
    out->owned = NULL;
    out->view.obj = NULL;
    if (PyList_Check(source)) {
        Py_ssize_t count = PyList_GET_SIZE(source);
        out->owned = PyMem_Malloc((size_t)(count ? count : 1) * sizeof(uint64_t));
        if (!out->owned) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < count; i++)
            if (as_u64(PyList_GET_ITEM(source, i), &out->owned[i]) < 0) {
                PyMem_Free(out->owned);
                out->owned = NULL;
                return -1;
            }
        out->values = out->owned;
        out->count = count;
        return 0;
    }
    if (PyObject_GetBuffer(source, &out->view, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) return -1;
    const char *format = out->view.format ? out->view.format : "B";
    if (*format == '@' || *format == '=') format++;
    if (out->view.itemsize != sizeof(uint64_t) || (strcmp(format, "Q") && strcmp(format, "L"))) {
        PyBuffer_Release(&out->view);
        PyErr_SetString(PyExc_TypeError, "expected a list of ints or an array('Q')");
        return -1;
    }
    out->values = out->view.buf;
    out->count = out->view.len / (Py_ssize_t)sizeof(uint64_t);
    return 0;
}

void u64s_release(U64s *u64s) {
    PyMem_Free(u64s->owned);
    u64s->owned = NULL;
    if (u64s->view.obj) PyBuffer_Release(&u64s->view);
}

/* ------------------------------------------------------------------ streams of a batch, grouped */

/* The distinct streams of a batch (str keys compared as a dict compares them): per-event work on a
   stream's index or version is done once per stream instead of once per event. */
void grouped_free(Grouped *grouped) {
    PyMem_Free(grouped->groups);
    PyMem_Free(grouped->group_of);
}

int group_streams(PyObject *streams, Grouped *grouped) {
    Py_ssize_t count = PyList_GET_SIZE(streams), capacity = 8;
    while (capacity < 2 * count) capacity *= 2;
    grouped->count = 0;
    /* only the slots need zeroing: a group is filled in when it is found, group_of for every event */
    grouped->groups = PyMem_Malloc((size_t)(count ? count : 1) * sizeof(StreamGroup));
    grouped->group_of = PyMem_Malloc((size_t)(count ? count : 1) * sizeof(Py_ssize_t));
    uint32_t *slots = PyMem_Calloc((size_t)capacity, sizeof(uint32_t)); /* group + 1, 0: empty */
    if (!grouped->groups || !grouped->group_of || !slots) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *stream = PyList_GET_ITEM(streams, i);
        if (i && stream == PyList_GET_ITEM(streams, i - 1)) { /* a run of one stream's events */
            Py_ssize_t found = grouped->group_of[i - 1];
            grouped->groups[found].count++;
            grouped->group_of[i] = found;
            continue;
        }
        if (!PyUnicode_Check(stream)) {
            PyErr_SetString(PyExc_TypeError, "streams must be str");
            goto fail;
        }
        /* an exact str keeps its hash once computed (keys' names have theirs already) */
        Py_hash_t hash = PyUnicode_CheckExact(stream) ? ((PyASCIIObject *)stream)->hash : -1;
        if (hash == -1 && (hash = PyObject_Hash(stream)) == -1) goto fail;
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
            grouped->groups[found] = (StreamGroup){.stream = stream, .hash = hash};
            slots[slot] = (uint32_t)(found + 1);
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
int read_varint(const unsigned char **p, const unsigned char *end, uint64_t *out) {
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

size_t put_varint(unsigned char *p, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)(v & 0x7f) | 0x80;
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

size_t varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Fields 1 (event_id), 2 (event_type) and 3 (stream) of a serialized envelope: the scan stops once all
   three are found (a serializer writes a singular field once, so the rest cannot hold another of them),
   else reads to the end. 0 when the bytes read are not a plain sequence of fields (groups, truncation):
   the caller falls back. The usual layout, a serializer's (fields in number order), each of the three
   under 128 bytes, is read without the general loop. */
int envelope_fields(const unsigned char *p, Py_ssize_t size, const unsigned char *start[4],
                    Py_ssize_t length[4]) {
    const unsigned char *end = p + size;
    for (int f = 0; f < 4; f++) {
        start[f] = NULL;
        length[f] = 0;
    }
    const unsigned char *at = p;
    for (int f = 1; f <= 3 && end - at >= 2 && at[0] == (f << 3 | 2) && at[1] < 0x80 && at[1] <= end - at - 2;
         f++) {
        start[f] = at + 2;
        length[f] = at[1];
        at += 2 + at[1];
    }
    if (start[3]) return 1;
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
            p += value;
            if (field >= 1 && field <= 3) {
                start[field] = p - value;
                length[field] = (Py_ssize_t)value;
                if (start[1] && start[2] && start[3]) return 1;
            }
            break;
        default:
            return 0;
        }
    }
    return 1;
}
