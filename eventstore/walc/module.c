/* Compiled batch operations of the file store's append and replay hot paths (eventstore.walbatch).

Each function does for a whole batch what eventstore.walbatch's pure-Python fallback does with C-level
maps and a few Python loops, and produces the same objects byte for byte (tests/eventstore/test_walbatch.py
holds them to each other):

  keys(payloads)                          streams and event-id fingerprints (an array("Q")) read from
                                          serialized EventEnvelopes (fields 3 and 1; field 2 checked
                                          present), or None when any is missing or the bytes are unusual
                                          (the caller then takes the Python path, which names the problem);
                                          what takes fingerprints below takes that array or a list of ints;
                                          a stream name is one str object from call to call (a bounded
                                          table: decoded and hashed once, not once per batch)
  next_versions(streams, pending, known)  each event's stream version, advancing `pending` in place
  frame_batch(first, versions, fps, streams, payloads, base)
                                          the framed records as one bytes object and their offsets
                                          (native uint32, base onwards); the last record has FLAG_COMMIT
  frame_new(first, streams, fps, payloads, pending, known, base, record=True)
                                          next_versions and frame_batch in one call (streams grouped
                                          once, versions never boxed): the records and offsets; pending
                                          left as it was unless record
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

Files: crc.c (the CRCs), wire.c (ints, a batch's streams grouped, protobuf's wire format), append.c,
replay.c, walc.h (what they share); this file, the module's table.
*/
#include "walc.h"

static PyMethodDef methods[] = {
    {"keys", walc_keys, METH_O, "event ids, streams and fingerprints of serialized envelopes, or None"},
    {"next_versions", walc_next_versions, METH_VARARGS, "each event's stream version; advances pending"},
    {"frame_batch", walc_frame_batch, METH_VARARGS, "framed records of one batch and their offsets"},
    {"frame_new", walc_frame_new, METH_VARARGS, "next_versions and frame_batch in one call"},
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
    if (walc_init_append() < 0) return NULL;
    if (PyType_Ready(&FpTableType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m && (PyModule_AddIntConstant(m, "HARDWARE_CRC32C", have_sse42) < 0 ||
              PyModule_AddObjectRef(m, "FpTable", (PyObject *)&FpTableType) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
