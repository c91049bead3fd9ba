/* The append path's batch operations: keys, next_versions, frame_batch, frame_new, index_streams, distinct. */
#include "walc.h"

/* ------------------------------------------------------------------ keys */

/* keys' fingerprints: an empty array("Q") copied, then extended from native uint64 bytes, by the array
   type's methods called unbound (cheaper than calling the type) */
static PyObject *frombytes_name, *empty_fps, *copy_array, *array_frombytes;

int walc_init_append(void) {
    frombytes_name = PyUnicode_InternFromString("frombytes");
    PyObject *module = PyImport_ImportModule("array");
    PyObject *array_type = module ? PyObject_GetAttrString(module, "array") : NULL;
    Py_XDECREF(module);
    if (!frombytes_name || !array_type) {
        Py_XDECREF(array_type);
        return -1;
    }
    empty_fps = PyObject_CallFunction(array_type, "s", "Q");
    copy_array = PyObject_GetAttrString(array_type, "__copy__");
    array_frombytes = PyObject_GetAttr(array_type, frombytes_name);
    Py_DECREF(array_type);
    return empty_fps && copy_array && array_frombytes ? 0 : -1;
}

/* A new array("Q") holding the native uint64 bytes `values` */
static PyObject *fps_array(PyObject *values) {
    PyObject *array = PyObject_Vectorcall(copy_array, &empty_fps, 1, NULL);
    if (!array) return NULL;
    PyObject *call[2] = {array, values};
    PyObject *extended = PyObject_Vectorcall(array_frombytes, call, 2, NULL);
    if (!extended) {
        Py_DECREF(array);
        return NULL;
    }
    Py_DECREF(extended);
    return array;
}

/* Stream names by their UTF-8 bytes, kept from batch to batch: one str object per name (decoded and
   hashed once while it stays here, not once per batch), so equal streams are the same object and dict
   lookups on them find the hash cached. Open addressing, at most half full; when NAMES_HELD names are
   held the table is emptied and fills again (a bound on what it keeps alive). */
#define NAME_SLOTS 8192
#define NAMES_HELD (NAME_SLOTS / 2)
typedef struct {
    uint32_t hash;
    Py_ssize_t length;
    const char *bytes; /* the str's own UTF-8 (cached inside it while it lives) */
    PyObject *stream;  /* a reference held by the table; NULL: empty */
} Name;
static Name names[NAME_SLOTS];
static Py_ssize_t names_held;

static void names_clear(void) {
    for (Py_ssize_t i = 0; i < NAME_SLOTS; i++) Py_CLEAR(names[i].stream);
    names_held = 0;
}

/* The str for these UTF-8 bytes (borrowed from the table); NULL with no error set where they do not
   decode (the caller falls back), NULL with an error on failure. */
static PyObject *stream_name(const unsigned char *bytes, Py_ssize_t length) {
    uint32_t hash = 2166136261u;
    for (Py_ssize_t b = 0; b < length; b++) hash = (hash ^ bytes[b]) * 16777619u;
    size_t slot = hash & (NAME_SLOTS - 1);
    for (; names[slot].stream; slot = (slot + 1) & (NAME_SLOTS - 1))
        if (names[slot].hash == hash && names[slot].length == length &&
            !memcmp(names[slot].bytes, bytes, (size_t)length))
            return names[slot].stream;
    PyObject *decoded = PyUnicode_DecodeUTF8((const char *)bytes, length, NULL);
    if (!decoded) {
        PyErr_Clear();
        return NULL;
    }
    Py_ssize_t utf8_length;
    const char *utf8 = PyUnicode_AsUTF8AndSize(decoded, &utf8_length);
    if (!utf8 || PyObject_Hash(decoded) == -1) {
        Py_DECREF(decoded);
        return NULL;
    }
    if (names_held >= NAMES_HELD) {
        names_clear();
        slot = hash & (NAME_SLOTS - 1);
    }
    names[slot] = (Name){hash, utf8_length, utf8, decoded};
    names_held++;
    return decoded;
}

PyObject *walc_keys(PyObject *self, PyObject *payloads) {
    if (!PyList_CheckExact(payloads)) {
        PyErr_SetString(PyExc_TypeError, "keys expects a list of bytes");
        return NULL;
    }
    Py_ssize_t count = PyList_GET_SIZE(payloads);
    PyObject *streams = PyList_New(count), *fps = PyBytes_FromStringAndSize(NULL, count * 8), *array = NULL;
    PyObject *result = NULL;
    if (!streams || !fps) goto done;
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
        PyObject *stream = stream_name(start[3], length[3]);
        if (!stream) {
            if (PyErr_Occurred()) goto done;
            goto unusual;
        }
        Py_INCREF(stream);
        PyList_SET_ITEM(streams, i, stream);
        ((uint64_t *)PyBytes_AS_STRING(fps))[i] = (uint64_t)crc32_ieee(start[1], (size_t)length[1]) << 32 |
                                                   crc32c(0, start[1], (size_t)length[1]);
    }
    array = fps_array(fps);
    if (array) result = PyTuple_Pack(2, streams, array);
    goto done;
unusual: /* unusual or invalid: the Python path decides */
    result = Py_None;
    Py_INCREF(result);
done:
    Py_XDECREF(streams);
    Py_XDECREF(fps);
    Py_XDECREF(array);
    return result;
}

/* ------------------------------------------------------------------ next_versions */

/* Each group's stream version before the batch: `pending`'s where it holds the stream, else the number of
   positions `known` holds for it. */
static int versions_before(Grouped *grouped, PyObject *pending, PyObject *known) {
    for (Py_ssize_t g = 0; g < grouped->count; g++) {
        StreamGroup *group = &grouped->groups[g];
        PyObject *current = PyDict_GetItemWithError(pending, group->stream);  /* borrowed */
        if (current) {
            group->version = PyLong_AsLongLong(current);
            if (group->version == -1 && PyErr_Occurred()) return -1;
        } else {
            if (PyErr_Occurred()) return -1;
            PyObject *positions = PyDict_GetItemWithError(known, group->stream);
            if (!positions && PyErr_Occurred()) return -1;
            group->version = positions ? (long long)PyObject_Length(positions) : 0;
            if (group->version < 0) return -1;
        }
    }
    return 0;
}

/* `pending`: each group's stream version after the batch. */
static int versions_after(Grouped *grouped, PyObject *pending) {
    for (Py_ssize_t g = 0; g < grouped->count; g++) {
        PyObject *version = PyLong_FromLongLong(grouped->groups[g].version);
        int failed = !version || PyDict_SetItem(pending, grouped->groups[g].stream, version) < 0;
        Py_XDECREF(version);
        if (failed) return -1;
    }
    return 0;
}

PyObject *walc_next_versions(PyObject *self, PyObject *args) {
    PyObject *streams, *pending, *known, *versions = NULL;
    if (!PyArg_ParseTuple(args, "O!O!O!:next_versions", &PyList_Type, &streams, &PyDict_Type, &pending,
                          &PyDict_Type, &known))
        return NULL;
    Grouped grouped;
    if (group_streams(streams, &grouped) < 0) return NULL;
    if (versions_before(&grouped, pending, known) < 0) goto done;
    Py_ssize_t count = PyList_GET_SIZE(streams);
    versions = PyList_New(count);
    if (!versions) goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *next = PyLong_FromLongLong(++grouped.groups[grouped.group_of[i]].version);
        if (!next) goto fail;
        PyList_SET_ITEM(versions, i, next);
    }
    if (versions_after(&grouped, pending) < 0) goto fail;
    goto done;
fail:
    Py_CLEAR(versions);
done:
    grouped_free(&grouped);
    return versions;
}

/* ------------------------------------------------------------------ frame_batch */

/* The framed records of a batch and their offsets from base; versions[i]: event i's stream version. */
static PyObject *frame_records(unsigned long long first, const uint64_t *versions, const uint64_t *fps,
                               PyObject *streams, PyObject *payloads, unsigned long long base) {
    Py_ssize_t count = PyList_GET_SIZE(payloads);
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
        uint64_t version = versions[i], fp = fps[i];
        unsigned char *record = out + at;
        uint32_t body_len = (uint32_t)(stream_len + payload_len);
        memcpy(record, WALC_MAGIC, 4);
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

PyObject *walc_frame_batch(PyObject *self, PyObject *args) {
    unsigned long long first, base;
    PyObject *versions, *fps, *streams, *payloads;
    if (!PyArg_ParseTuple(args, "KO!OO!O!K:frame_batch", &first, &PyList_Type, &versions, &fps, &PyList_Type,
                          &streams, &PyList_Type, &payloads, &base))
        return NULL;
    U64s fp_values;
    if (u64s_get(fps, &fp_values) < 0) return NULL;
    Py_ssize_t count = PyList_GET_SIZE(payloads);
    PyObject *result = NULL;
    uint64_t *converted = NULL;
    if (count == 0 || PyList_GET_SIZE(versions) != count || fp_values.count != count ||
        PyList_GET_SIZE(streams) != count) {
        PyErr_SetString(PyExc_ValueError, "frame_batch needs as many versions, fps and streams as payloads");
        goto done;
    }
    converted = PyMem_Malloc((size_t)count * sizeof(uint64_t));
    if (!converted) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++)
        if (as_u64(PyList_GET_ITEM(versions, i), &converted[i]) < 0) goto done;
    result = frame_records(first, converted, fp_values.values, streams, payloads, base);
done:
    PyMem_Free(converted);
    u64s_release(&fp_values);
    return result;
}

/* ------------------------------------------------------------------ frame_new */

/* next_versions and frame_batch in one call: the streams grouped once, the versions never boxed.
   `record` false: `pending` is read but not advanced (a group's last request: nobody reads it after). */
PyObject *walc_frame_new(PyObject *self, PyObject *args) {
    unsigned long long first, base;
    PyObject *streams, *fps, *payloads, *pending, *known;
    int record = 1;
    if (!PyArg_ParseTuple(args, "KO!OO!O!O!K|p:frame_new", &first, &PyList_Type, &streams, &fps, &PyList_Type,
                          &payloads, &PyDict_Type, &pending, &PyDict_Type, &known, &base, &record))
        return NULL;
    U64s fp_values;
    if (u64s_get(fps, &fp_values) < 0) return NULL;
    Py_ssize_t count = PyList_GET_SIZE(payloads);
    if (count == 0 || fp_values.count != count || PyList_GET_SIZE(streams) != count) {
        PyErr_SetString(PyExc_ValueError, "frame_new needs as many fps and streams as payloads");
        u64s_release(&fp_values);
        return NULL;
    }
    Grouped grouped;
    if (group_streams(streams, &grouped) < 0) {
        u64s_release(&fp_values);
        return NULL;
    }
    PyObject *result = NULL;
    uint64_t *versions = PyMem_Malloc((size_t)count * sizeof(uint64_t));
    if (!versions) {
        PyErr_NoMemory();
        goto done;
    }
    if (versions_before(&grouped, pending, known) < 0) goto done;
    for (Py_ssize_t i = 0; i < count; i++) versions[i] = (uint64_t)++grouped.groups[grouped.group_of[i]].version;
    result = frame_records(first, versions, fp_values.values, streams, payloads, base);
    if (result && record && versions_after(&grouped, pending) < 0) Py_CLEAR(result);
done:
    PyMem_Free(versions);
    grouped_free(&grouped);
    u64s_release(&fp_values);
    return result;
}

/* ------------------------------------------------------------------ index_streams */

/* Each stream gets its new positions with one frombytes call (native uint64 bytes, in order; as cheap as
   one append of an int already for one position), the arrays' type's method looked up once per call (per
   type met) and called unbound: no method lookup, bound method or int object per stream. */

PyObject *walc_index_streams(PyObject *self, PyObject *args) {
    PyObject *known, *streams, *make, *result = NULL;
    unsigned long long first;
    if (!PyArg_ParseTuple(args, "O!O!KO:index_streams", &PyDict_Type, &known, &PyList_Type, &streams, &first,
                          &make))
        return NULL;
    Grouped grouped;
    if (group_streams(streams, &grouped) < 0) return NULL;
    PyObject *frombytes = NULL;
    PyTypeObject *methods_of = NULL;
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
        if (Py_TYPE(array) != methods_of) {
            Py_XDECREF(frombytes);
            methods_of = Py_TYPE(array);
            frombytes = PyObject_GetAttr((PyObject *)methods_of, frombytes_name);
        }
        const char *added = (const char *)(positions + group->start);
        Py_ssize_t bytes = group->count * (Py_ssize_t)sizeof(uint64_t);
        PyObject *call[2] = {array, frombytes ? PyBytes_FromStringAndSize(added, bytes) : NULL};
        PyObject *appended = call[1] ? PyObject_Vectorcall(frombytes, call, 2, NULL) : NULL;
        Py_XDECREF(call[1]);
        Py_XDECREF(appended);
        Py_DECREF(array);
        if (!appended) goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    Py_XDECREF(frombytes);
    PyMem_Free(positions);
    grouped_free(&grouped);
    return result;
}

/* ------------------------------------------------------------------ distinct */

/* Whether no fingerprint of the list occurs twice (open addressing over the values, at most half full). */
PyObject *walc_distinct(PyObject *self, PyObject *fps) {
    U64s fp_values;
    if (u64s_get(fps, &fp_values) < 0) return NULL;
    Py_ssize_t count = fp_values.count, capacity = 8;
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
        uint64_t key = fp_values.values[i];
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
    u64s_release(&fp_values);
    Py_XINCREF(result);
    return result;
}
