/* Replay's checked, stamped bodies and the idempotency index's recent entries (FpTable). */
#include "walc.h"

/* ------------------------------------------------------------------ stamped_bodies */

static PyObject *corrupt(const char *message, uint64_t offset, Py_ssize_t index) {
    PyObject *error = Py_BuildValue("(sKn)", message, (unsigned long long)offset, index);
    if (error) {
        PyErr_SetObject(PyExc_ValueError, error);
        Py_DECREF(error);
    }
    return NULL;
}

PyObject *walc_stamped_bodies(PyObject *self, PyObject *args) {
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
        if (memcmp(record, WALC_MAGIC, 4) || get_u64(record + 12) != position || end > size ||
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

static int fp_add(FpTable *table, uint64_t key, uint64_t position) {
    if (position == 0) {
        PyErr_SetString(PyExc_ValueError, "positions start at 1");
        return -1;
    }
    fp_put(table->keys, table->values, table->capacity, key, position);
    table->count++;
    return 0;
}

/* add_run(fps, first): fps[i] -> first + i; fps a list of ints or an array("Q") (so below) */
static PyObject *fp_add_run(FpTable *table, PyObject *args) {
    PyObject *fps, *result = NULL;
    unsigned long long first;
    if (!fp_ready(table) || !PyArg_ParseTuple(args, "OK:add_run", &fps, &first)) return NULL;
    U64s keys;
    if (u64s_get(fps, &keys) < 0) return NULL;
    if (fp_reserve(table, keys.count) < 0) goto done;
    for (Py_ssize_t i = 0; i < keys.count; i++)
        if (fp_add(table, keys.values[i], first + (uint64_t)i) < 0) goto done;
    result = Py_None;
    Py_INCREF(result);
done:
    u64s_release(&keys);
    return result;
}

/* add_many(fps, positions): of the same length */
static PyObject *fp_add_many(FpTable *table, PyObject *args) {
    PyObject *fps, *positions, *result = NULL;
    if (!fp_ready(table) || !PyArg_ParseTuple(args, "OO:add_many", &fps, &positions)) return NULL;
    U64s keys, values;
    if (u64s_get(fps, &keys) < 0) return NULL;
    if (u64s_get(positions, &values) < 0) {
        u64s_release(&keys);
        return NULL;
    }
    if (values.count != keys.count) {
        PyErr_SetString(PyExc_ValueError, "add_many needs as many positions as fingerprints");
        goto done;
    }
    if (fp_reserve(table, keys.count) < 0) goto done;
    for (Py_ssize_t i = 0; i < keys.count; i++)
        if (fp_add(table, keys.values[i], values.values[i]) < 0) goto done;
    result = Py_None;
    Py_INCREF(result);
done:
    u64s_release(&keys);
    u64s_release(&values);
    return result;
}

/* find(fps) -> {index in fps: [positions, ascending]} for the fingerprints held */
static PyObject *fp_find(FpTable *table, PyObject *fps) {
    if (!fp_ready(table)) return NULL;
    U64s keys;
    if (u64s_get(fps, &keys) < 0) return NULL;
    PyObject *found = PyDict_New();
    if (!found) goto fail;
    for (Py_ssize_t i = 0; i < keys.count; i++) {
        uint64_t key = keys.values[i];
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
    u64s_release(&keys);
    return found;
fail:
    Py_XDECREF(found);
    u64s_release(&keys);
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

PyTypeObject FpTableType = {
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
