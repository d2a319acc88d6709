/*
 * The remote-read hot path in C: a whole STREAMED_XOR_CHUNKS reply to a window's columns.
 *
 * An accelerator, not a second implementation to trust: it takes only the regular case and answers None
 * for anything else, and the pure-Python path (observe/sources/prometheus_remote_read.py, the reference,
 * which the tests compare this against) then reads the reply and raises its precise errors. The regular
 * case is what Prometheus sends: frames with a good CRC32-C, each holding series whose labels come first
 * and whose XOR chunks follow in time order without overlap, every series once. None for: a bad CRC or
 * length, malformed protobuf, a series seen twice (split over frames, or in two queries), labels after a
 * chunk, overlapping or out-of-order chunks, a truncated or corrupt chunk.
 *
 * Formats: storage/remote/chunked.go (frame: uvarint length, big-endian CRC32-C of the data, the data),
 * prompb/remote.proto and types.proto (ChunkedReadResponse, ChunkedSeries, Chunk), tsdb/chunkenc/xor.go
 * and bstream.go (the XOR chunk), as of Prometheus 2.42. Every read is bounds-checked.
 *
 * streamed_window(body, start_ms, end_ms, max_frame_bytes)
 *   -> (label_bytes: list[bytes], ends: list[int], timestamps: bytes, values: bytes, skipped: dict[int, int])
 *      timestamps and values in native byte order (array('q') and array('Q') read them with frombytes);
 *      skipped counts the chunks of other encodings by encoding number.
 *   or None.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1; /* Castagnoli, reflected */
        crc_table[i] = c;
    }
}

static uint32_t crc32c(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n--) c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* A uvarint at *pos (< end); 0 when truncated or longer than 10 bytes. */
static int uvarint(const uint8_t *buf, size_t end, size_t *pos, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (*pos >= end) return 0;
        uint8_t b = buf[(*pos)++];
        v |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80) {
            *out = v;
            return 1;
        }
    }
    return 0;
}

/* -- XOR chunks ------------------------------------------------------------------------------------ */

typedef struct {
    const uint8_t *d;
    size_t nbits; /* bits in the stream */
    size_t pos;   /* next bit */
} bits_t;

static int read_bits(bits_t *b, int n, uint64_t *out) {
    if (b->pos + (size_t)n > b->nbits) return 0;
    uint64_t v = 0;
    size_t p = b->pos;
    int need = n;
    while (need > 0) {
        int off = (int)(p & 7), avail = 8 - off, take = need < avail ? need : avail;
        uint8_t byte = b->d[p >> 3];
        v = (v << take) | ((uint64_t)(byte >> (avail - take)) & ((1u << take) - 1));
        need -= take;
        p += take;
    }
    b->pos = p;
    *out = v;
    return 1;
}

static int read_bit(bits_t *b, int *out) {
    if (b->pos >= b->nbits) return 0;
    *out = (b->d[b->pos >> 3] >> (7 - (b->pos & 7))) & 1;
    b->pos++;
    return 1;
}

static int read_byte_varint(bits_t *b, uint64_t *out) {
    uint64_t v = 0, byte;
    for (int shift = 0; shift < 70; shift += 7) {
        if (!read_bits(b, 8, &byte)) return 0;
        v |= (byte & 0x7F) << shift;
        if (byte < 0x80) {
            *out = v;
            return 1;
        }
    }
    return 0;
}

/* xorRead: the next value given the previous one and the window (leading, trailing). */
static int read_value(bits_t *b, uint64_t *v, int *leading, int *trailing) {
    int bit;
    uint64_t x;
    if (!read_bit(b, &bit)) return 0;
    if (!bit) return 1; /* same value */
    if (!read_bit(b, &bit)) return 0;
    if (bit) { /* a new window */
        uint64_t lead, sig;
        if (!read_bits(b, 5, &lead) || !read_bits(b, 6, &sig)) return 0;
        if (sig == 0) sig = 64;
        if ((int)lead + (int)sig > 64) return 0;
        *leading = (int)lead;
        *trailing = 64 - (int)lead - (int)sig;
    }
    int mbits = 64 - *leading - *trailing;
    if (!read_bits(b, mbits, &x)) return 0;
    *v ^= (mbits == 64 ? x : x << *trailing);
    return 1;
}

/* Appends the chunk's samples with start < t <= end to ts/vs (growing them); 0 on a corrupt chunk. */
typedef struct {
    int64_t *ts;
    uint64_t *vs;
    size_t n, cap;
} cols_t;

static int cols_push(cols_t *c, int64_t t, uint64_t v) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 4096;
        int64_t *ts = PyMem_Realloc(c->ts, cap * sizeof(int64_t));
        if (!ts) return 0;
        c->ts = ts;
        uint64_t *vs = PyMem_Realloc(c->vs, cap * sizeof(uint64_t));
        if (!vs) return 0;
        c->vs = vs;
        c->cap = cap;
    }
    c->ts[c->n] = t;
    c->vs[c->n] = v;
    c->n++;
    return 1;
}

/* 1: decoded; 0: corrupt (None); -1: out of memory (exception set). `last` is the series' newest
 * timestamp so far (its samples must rise strictly), `have_last` whether there is one. */
static int decode_xor(const uint8_t *d, size_t len, int64_t start, int64_t end, cols_t *out, int64_t *last,
                      int *have_last) {
    if (len < 2) return 0;
    unsigned n = ((unsigned)d[0] << 8) | d[1];
    if (n == 0) return 1;
    bits_t b = {d, len * 8, 16};
    uint64_t raw, v, delta_u;
    if (!read_byte_varint(&b, &raw)) return 0;
    int64_t t = (int64_t)((raw >> 1) ^ (~(raw & 1) + 1)); /* zigzag */
    if (!read_bits(&b, 64, &v)) return 0;
    int leading = 0, trailing = 0;
    int64_t delta = 0;
    for (unsigned i = 0; i < n; i++) {
        if (i == 1) {
            if (!read_byte_varint(&b, &delta_u)) return 0;
            delta = (int64_t)delta_u;
            t = (int64_t)((uint64_t)t + delta_u);
            if (!read_value(&b, &v, &leading, &trailing)) return 0;
        } else if (i > 1) {
            int bit, sz = 0;
            int64_t dod = 0;
            for (int k = 0; k < 4; k++) {
                if (!read_bit(&b, &bit)) return 0;
                if (!bit) break;
                sz = k + 1;
            }
            if (sz) {
                static const int widths[5] = {0, 14, 17, 20, 64};
                uint64_t x;
                if (!read_bits(&b, widths[sz], &x)) return 0;
                if (sz == 4) {
                    dod = (int64_t)x;
                } else {
                    int w = widths[sz];
                    dod = x > (1ull << (w - 1)) ? (int64_t)x - (int64_t)(1ull << w) : (int64_t)x; /* bitRange */
                }
            }
            delta = (int64_t)((uint64_t)delta + (uint64_t)dod);
            t = (int64_t)((uint64_t)t + (uint64_t)delta);
            if (!read_value(&b, &v, &leading, &trailing)) return 0;
        }
        if (t > start && t <= end) {
            if (*have_last && t <= *last) return 0; /* out of order: the Python path says where */
            *last = t;
            *have_last = 1;
            if (!cols_push(out, t, v)) {
                PyErr_NoMemory();
                return -1;
            }
        }
    }
    return 1;
}

/* -- protobuf ------------------------------------------------------------------------------------- */

typedef struct {
    PyObject *labels; /* list[bytes] */
    PyObject *ends;   /* list[int] */
    PyObject *seen;   /* dict: label bytes -> None */
    PyObject *skipped; /* dict: encoding -> count */
    cols_t cols;
} result_t;

/* A varint field's value; 0 on malformed. */
static int field_varint(const uint8_t *buf, size_t end, size_t *pos, uint64_t *out) { return uvarint(buf, end, pos, out); }

/* One length-delimited payload [*start, *stop) after its tag; 0 on malformed. */
static int field_len(const uint8_t *buf, size_t end, size_t *pos, size_t *start, size_t *stop) {
    uint64_t n;
    if (!uvarint(buf, end, pos, &n) || n > end - *pos) return 0;
    *start = *pos;
    *stop = *pos + (size_t)n;
    *pos = *stop;
    return 1;
}

static int skip_field(const uint8_t *buf, size_t end, size_t *pos, unsigned wt) {
    uint64_t x;
    size_t a, b;
    switch (wt) {
    case 0: return uvarint(buf, end, pos, &x);
    case 1: if (end - *pos < 8) return 0; *pos += 8; return 1;
    case 2: return field_len(buf, end, pos, &a, &b);
    case 5: if (end - *pos < 4) return 0; *pos += 4; return 1;
    default: return 0;
    }
}

/* One ChunkedSeries in buf[pos, end): 1 kept or empty, 0 irregular (None), -1 exception. */
static int series_chunks(const uint8_t *buf, size_t pos, size_t end, int64_t start_ms, int64_t end_ms, result_t *r);

static int series(const uint8_t *buf, size_t pos, size_t end, int64_t start_ms, int64_t end_ms, result_t *r) {
    size_t labels_at = pos, first_sample = r->cols.n;
    /* the labels first, one run */
    while (pos < end && buf[pos] == 0x0A) {
        size_t a, b;
        pos++;
        if (!field_len(buf, end, &pos, &a, &b)) return 0;
    }
    size_t labels_end = pos;
    PyObject *lb = PyBytes_FromStringAndSize((const char *)buf + labels_at, (Py_ssize_t)(labels_end - labels_at));
    if (!lb) return -1;
    int known = PyDict_Contains(r->seen, lb);
    if (known != 0 || PyDict_SetItem(r->seen, lb, Py_None) < 0) {
        Py_DECREF(lb);
        return known > 0 ? 0 : -1; /* a series seen twice (split over frames, two queries): merged in Python */
    }
    int status = series_chunks(buf, pos, end, start_ms, end_ms, r);
    if (status == 1 && r->cols.n > first_sample) {
        PyObject *e = PyLong_FromSize_t(r->cols.n);
        if (!e || PyList_Append(r->labels, lb) < 0 || PyList_Append(r->ends, e) < 0) status = -1;
        Py_XDECREF(e);
    }
    Py_DECREF(lb);
    return status;
}

/* The fields after a ChunkedSeries' labels: its chunks, decoded into r->cols. */
static int series_chunks(const uint8_t *buf, size_t pos, size_t end, int64_t start_ms, int64_t end_ms, result_t *r) {
    uint64_t key;
    int64_t last = 0, prev_max = 0;
    int have_last = 0, have_prev = 0;
    while (pos < end) {
        if (!uvarint(buf, end, &pos, &key)) return 0;
        unsigned field = (unsigned)(key >> 3), wt = (unsigned)(key & 7);
        if (field == 1) return 0; /* a label after a chunk */
        if (field != 2) {
            if (!skip_field(buf, end, &pos, wt)) return 0;
            continue;
        }
        size_t cs, ce;
        if (wt != 2 || !field_len(buf, end, &pos, &cs, &ce)) return 0;
        /* the Chunk */
        int64_t mint = 0, maxt = 0;
        uint64_t ctype = 0, x;
        const uint8_t *data = NULL;
        size_t dlen = 0;
        size_t p = cs;
        while (p < ce) {
            if (!uvarint(buf, ce, &p, &key)) return 0;
            unsigned f = (unsigned)(key >> 3), w = (unsigned)(key & 7);
            if (f >= 1 && f <= 3) {
                if (w != 0 || !field_varint(buf, ce, &p, &x)) return 0;
                if (f == 1) mint = (int64_t)x;
                else if (f == 2) maxt = (int64_t)x;
                else ctype = x;
            } else if (f == 4) {
                size_t a, b;
                if (w != 2 || !field_len(buf, ce, &p, &a, &b)) return 0;
                data = buf + a;
                dlen = b - a;
            } else if (!skip_field(buf, ce, &p, w)) {
                return 0;
            }
        }
        if (maxt <= start_ms || mint > end_ms) continue; /* outside the window: not decoded */
        if (ctype != 1) { /* not XOR: counted by encoding, never decoded */
            PyObject *k = PyLong_FromUnsignedLongLong(ctype);
            if (!k) return -1;
            PyObject *had = PyDict_GetItemWithError(r->skipped, k);
            long long count = had ? PyLong_AsLongLong(had) + 1 : 1;
            if (!had && PyErr_Occurred()) { Py_DECREF(k); return -1; }
            PyObject *c = PyLong_FromLongLong(count);
            int bad = !c || PyDict_SetItem(r->skipped, k, c) < 0;
            Py_XDECREF(c);
            Py_DECREF(k);
            if (bad) return -1;
            continue;
        }
        if (have_prev && mint <= prev_max) return 0; /* overlapping or out of order: merged in Python */
        prev_max = maxt;
        have_prev = 1;
        int got = decode_xor(data ? data : (const uint8_t *)"", dlen, start_ms, end_ms, &r->cols, &last, &have_last);
        if (got <= 0) return got;
    }
    return 1;
}

static PyObject *streamed_window(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer body;
    long long start_ms, end_ms;
    Py_ssize_t max_frame;
    if (!PyArg_ParseTuple(args, "y*LLn", &body, &start_ms, &end_ms, &max_frame)) return NULL;
    const uint8_t *buf = body.buf;
    size_t size = (size_t)body.len, pos = 0;
    result_t r = {PyList_New(0), PyList_New(0), PyDict_New(), PyDict_New(), {NULL, NULL, 0, 0}};
    PyObject *out = NULL;
    int status = 1; /* 1 regular so far, 0 irregular, -1 exception */
    if (!r.labels || !r.ends || !r.seen || !r.skipped) status = -1;
    while (status == 1 && pos < size) {
        uint64_t len;
        if (!uvarint(buf, size, &pos, &len) || len > (uint64_t)max_frame || size - pos < 4 || len > size - pos - 4) {
            status = 0;
            break;
        }
        uint32_t want = (uint32_t)buf[pos] << 24 | (uint32_t)buf[pos + 1] << 16 | (uint32_t)buf[pos + 2] << 8 | buf[pos + 3];
        size_t fs = pos + 4, fe = fs + (size_t)len;
        pos = fe;
        if (crc32c(buf + fs, (size_t)len) != want) {
            status = 0;
            break;
        }
        /* the ChunkedReadResponse */
        size_t p = fs;
        while (status == 1 && p < fe) {
            uint64_t key;
            if (!uvarint(buf, fe, &p, &key)) { status = 0; break; }
            unsigned field = (unsigned)(key >> 3), wt = (unsigned)(key & 7);
            if (field == 1) {
                size_t a, b;
                if (wt != 2 || !field_len(buf, fe, &p, &a, &b)) { status = 0; break; }
                status = series(buf, a, b, start_ms, end_ms, &r);
            } else if (field == 2) {
                uint64_t qi;
                if (wt != 0 || !uvarint(buf, fe, &p, &qi)) status = 0;
            } else if (!skip_field(buf, fe, &p, wt)) {
                status = 0;
            }
        }
    }
    if (status == 1) {
        PyObject *ts = PyBytes_FromStringAndSize((const char *)r.cols.ts, (Py_ssize_t)(r.cols.n * sizeof(int64_t)));
        PyObject *vs = PyBytes_FromStringAndSize((const char *)r.cols.vs, (Py_ssize_t)(r.cols.n * sizeof(uint64_t)));
        if (ts && vs) out = PyTuple_Pack(5, r.labels, r.ends, ts, vs, r.skipped);
        Py_XDECREF(ts);
        Py_XDECREF(vs);
    } else if (status == 0) {
        out = Py_NewRef(Py_None);
    }
    PyMem_Free(r.cols.ts);
    PyMem_Free(r.cols.vs);
    Py_XDECREF(r.labels);
    Py_XDECREF(r.ends);
    Py_XDECREF(r.seen);
    Py_XDECREF(r.skipped);
    PyBuffer_Release(&body);
    return out;
}

static PyMethodDef methods[] = {
    {"streamed_window", streamed_window, METH_VARARGS,
     "streamed_window(body, start_ms, end_ms, max_frame_bytes) -> (label_bytes, ends, timestamps, values, "
     "skipped) or None: the regular case of a STREAMED_XOR_CHUNKS reply; None sends it to the Python path."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "observe.protocol._remote_read_native", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__remote_read_native(void) {
    crc_init();
    return PyModule_Create(&module);
}
