/* The codec's C engine: the hot scans of codec/_speedups.py, in C.
 *
 * What lives here: the C twins of the Python reference in _speedups.py and
 * _markers.py, with the same answers for every input (tests/test_engines.py
 * holds one against the other): is_flat, pack_ints, str_keys, and ExtHook,
 * msgpack's ext hook for one blob.  Built for every supported interpreter,
 * without Py_BUILD_CORE: nothing here knows a struct layout.
 * What must never live here: anything about frames (the snapshot layer's
 * engine, snapshot/_csnapshot.c) or a Python callback registered at start-up.
 * The Python objects the ext hook hands out (the markers of _markers.py,
 * the well-known globals, CorruptSnapshot, msgpack's ExtType) are imported
 * by name when this module is, as _pickle imports copyreg; a missing name is
 * an ImportError, and the ext codes this file knows are checked against
 * codec/_tags.py then too.
 *
 * Below them: the parser of a blob's bytes (unpack), the msgpack writer
 * (pack, and the Packed nodes the value encoder writes containers as), the
 * value encoder (Encoder.enc and Encoder.enc_items) and the value decoder
 * (Decoder.dec and Decoder.dec_items), each with its section's own header.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>

#include "../frames/_capi.h"
#include "_memo.h"
#include "../_lists.h"

/* An int's value when it fits in one digit (|v| < 2**30: most ints a frame
 * holds), read as CPython's own inline accessors read it, with no call;
 * else 0 and the caller asks PyLong_AsLongLongAndOverflow.  `o` is a
 * PyLong (an exact int, or a bool). */
static inline int
cc_compact_long(PyObject *o, long long *out)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (PyUnstable_Long_IsCompact((PyLongObject *)o)) {
        *out = (long long)PyUnstable_Long_CompactValue((PyLongObject *)o);
        return 1;
    }
#else
    Py_ssize_t size = Py_SIZE(o); /* 3.11: the sign and number of digits */
    if (size >= -1 && size <= 1) {
        *out = (long long)size * (long long)((PyLongObject *)o)->ob_digit[0];
        return 1;
    }
#endif
    return 0;
}

/* PyLong_AsLongLongAndOverflow, with the one-digit case inline. */
static inline long long
cc_as_long_long(PyObject *o, int *overflow)
{
    long long v;
    if (cc_compact_long(o, &v)) {
        *overflow = 0;
        return v;
    }
    return PyLong_AsLongLongAndOverflow(o, overflow);
}

/* Codec fast path: True when every item of the list is exactly one of
 * int, float, str, bytes, bool or None, so msgpack can pack it without any
 * identity bookkeeping.  A pure C loop: ~1 ns per item. */
static PyObject *
cc_is_flat(PyObject *module, PyObject *obj)
{
    if (!PyList_CheckExact(obj)) {
        Py_RETURN_FALSE;
    }
    Py_ssize_t n = PyList_GET_SIZE(obj);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(obj, i);
        PyTypeObject *t = Py_TYPE(item);
        if (t == &PyLong_Type) {
            int overflow = 0;
            (void)cc_as_long_long(item, &overflow);
            if (overflow) {
                Py_RETURN_FALSE;
            }
            continue;
        }
        /* None by identity: _PyNone_Type stopped being exported in 3.13. */
        if (item != Py_None && t != &PyUnicode_Type && t != &PyFloat_Type &&
            t != &PyBool_Type && t != &PyBytes_Type) {
            Py_RETURN_FALSE;
        }
    }
    Py_RETURN_TRUE;
}

/* Codec fast path for lists of ints: the EXT_INTLIST payload (one width
 * byte, then every item as a signed little-endian integer of the narrowest
 * width, 1, 2, 4 or 8 bytes, that holds them all), or None when some item is
 * not exactly an int (bool included) or does not fit in 64 bits.  Two C
 * passes, where msgpack (or array.array) would spend ~20 ns per item. */
static PyObject *
cc_pack_ints(PyObject *module, PyObject *obj)
{
    if (!PyList_CheckExact(obj)) {
        Py_RETURN_NONE;
    }
    Py_ssize_t n = PyList_GET_SIZE(obj);
    long long lo = 0, hi = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(obj, i);
        if (!PyLong_CheckExact(item)) {
            Py_RETURN_NONE;
        }
        int overflow = 0;
        long long v = cc_as_long_long(item, &overflow);
        if (overflow) {
            Py_RETURN_NONE;
        }
        if (v == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    int width = (lo >= -128 && hi <= 127) ? 1
              : (lo >= -32768 && hi <= 32767) ? 2
              : (lo >= -2147483648LL && hi <= 2147483647LL) ? 4 : 8;
    if (n > (PY_SSIZE_T_MAX - 1) / width) {
        return PyErr_NoMemory();
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, 1 + n * width);
    if (out == NULL) return NULL;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out);
    *p++ = (unsigned char)width;
    for (Py_ssize_t i = 0; i < n; i++) {
        /* The list cannot have changed: no Python code ran since pass 1. */
        int overflow = 0;
        unsigned long long u =
            (unsigned long long)cc_as_long_long(PyList_GET_ITEM(obj, i), &overflow);
        for (int k = 0; k < width; k++) {
            *p++ = (unsigned char)(u >> (8 * k));
        }
    }
    return out;
}

/* Codec fast path for dicts: the tuple of the keys when every key is exactly
 * a str (a record's shape), else None. */
static PyObject *
cc_str_keys(PyObject *module, PyObject *obj)
{
    if (!PyDict_CheckExact(obj)) {
        Py_RETURN_NONE;
    }
    Py_ssize_t n = PyDict_GET_SIZE(obj), pos = 0, i = 0;
    PyObject *k, *v;
    /* the first key first: a dict keyed by ints makes no tuple */
    if (PyDict_Next(obj, &pos, &k, &v) && !PyUnicode_CheckExact(k)) Py_RETURN_NONE;
    pos = 0;
    PyObject *keys = PyTuple_New(n);
    if (keys == NULL) return NULL;
    while (PyDict_Next(obj, &pos, &k, &v)) {
        if (!PyUnicode_CheckExact(k) || i >= n) {
            Py_DECREF(keys);
            Py_RETURN_NONE;
        }
        PyTuple_SET_ITEM(keys, i++, Py_NewRef(k));
    }
    if (i != n) {
        Py_DECREF(keys);
        Py_RETURN_NONE;
    }
    return keys;
}


/* ------------------------------------------------------------ ext hook */

/* The ext codes of blob format version 1 (codec/_tags.py; checked at import). */
enum { EXT_TAG = 0, EXT_REF = 1, EXT_BIGINT = 2, EXT_COMPLEX = 3, EXT_BYTEARRAY = 4,
       EXT_WELLKNOWN = 5, EXT_PICKLE = 6, EXT_NONE = 7, EXT_SURROGATE_STR = 8,
       EXT_INTLIST = 9, EXT_BUFFER = 10, EXT_HEADER = 0x43 };

/* Imported by name in the module's init (see the top comment). */
static PyObject *cc_Deferred, *cc_NONE_MARK, *cc_TAG_BY_DATA, *cc_HEADERS, *cc_WELLKNOWN,
    *cc_CorruptSnapshot, *cc_ExtType;
static Py_ssize_t cc_max_equal_hashes;

static struct {
    const char *module, *name;
    PyObject **target;
} cc_imports[] = {
    {"corosnap.codec._markers", "Deferred", &cc_Deferred},
    {"corosnap.codec._markers", "NONE_MARK", &cc_NONE_MARK},
    {"corosnap.codec._markers", "TAG_BY_DATA", &cc_TAG_BY_DATA},
    {"corosnap.codec._markers", "HEADERS", &cc_HEADERS},
    {"corosnap.codec._globals", "WELLKNOWN", &cc_WELLKNOWN},
    {"corosnap._errors", "CorruptSnapshot", &cc_CorruptSnapshot},
    {"msgpack", "ExtType", &cc_ExtType},
};

static struct {
    const char *name;
    long value;
} cc_ext_codes[] = {
    {"EXT_TAG", EXT_TAG}, {"EXT_REF", EXT_REF}, {"EXT_BIGINT", EXT_BIGINT},
    {"EXT_COMPLEX", EXT_COMPLEX}, {"EXT_BYTEARRAY", EXT_BYTEARRAY},
    {"EXT_WELLKNOWN", EXT_WELLKNOWN}, {"EXT_PICKLE", EXT_PICKLE}, {"EXT_NONE", EXT_NONE},
    {"EXT_SURROGATE_STR", EXT_SURROGATE_STR}, {"EXT_INTLIST", EXT_INTLIST},
    {"EXT_BUFFER", EXT_BUFFER},
    {"EXT_HEADER", EXT_HEADER},
};

typedef struct {
    PyObject_HEAD
    PyObject *by_hash; /* this blob's big ints and complex numbers, by hash (or NULL) */
    vectorcallfunc vectorcall;
} ExtHook;

static Py_ssize_t cc_deferred_code_offset, cc_deferred_data_offset;

static PyObject *
cc_corrupt(const char *message)
{
    PyErr_SetString(cc_CorruptSnapshot, message);
    return NULL;
}

/* As _markers._counted: v (stolen), counted by hash in self->by_hash (made
 * on first use: most blobs hold no big number). */
static PyObject *
cc_counted(ExtHook *self, PyObject *v)
{
    if (v == NULL) return NULL;
    if (self->by_hash == NULL && (self->by_hash = PyDict_New()) == NULL) {
        Py_DECREF(v);
        return NULL;
    }
    PyObject *by_hash = self->by_hash;
    Py_hash_t h = PyObject_Hash(v);
    PyObject *key = h == -1 ? NULL : PyLong_FromSsize_t(h);
    if (key == NULL) goto error;
    PyObject *old = PyDict_GetItemWithError(by_hash, key);
    int rc = 0;
    if (old == NULL) {
        rc = PyErr_Occurred() ? -1 : PyDict_SetItem(by_hash, key, v);
    }
    else if (PySet_CheckExact(old)) {
        rc = PySet_Add(old, v);
        if (rc == 0 && PySet_GET_SIZE(old) > cc_max_equal_hashes) {
            PyErr_Format(cc_CorruptSnapshot, "more than %zd distinct numbers share one hash: "
                         "refusing a hash-flooding blob", cc_max_equal_hashes);
            rc = -1;
        }
    }
    else {
        int eq = PyObject_RichCompareBool(old, v, Py_EQ);
        if (eq < 0) {
            rc = -1;
        }
        else if (!eq) {
            PyObject *both = PySet_New(NULL);
            rc = both == NULL || PySet_Add(both, old) < 0 || PySet_Add(both, v) < 0 ||
                 PyDict_SetItem(by_hash, key, both) < 0 ? -1 : 0;
            Py_XDECREF(both);
        }
    }
    Py_DECREF(key);
    if (rc < 0) goto error;
    return v;
error:
    Py_DECREF(v);
    return NULL;
}

static PyObject *
cc_deferred(PyObject *code_obj, PyObject *data)
{
    PyTypeObject *type = (PyTypeObject *)cc_Deferred;
    PyObject *out = type->tp_alloc(type, 0);
    if (out == NULL) return NULL;
    *(PyObject **)((char *)out + cc_deferred_code_offset) = Py_NewRef(code_obj);
    *(PyObject **)((char *)out + cc_deferred_data_offset) = Py_NewRef(data);
    return out;
}

static PyObject *ExtHook_ext(ExtHook *self, PyObject *code_obj, long code, const char *p,
                             Py_ssize_t len, PyObject *data);
static PyObject *ExtHook_known(ExtHook *self, PyObject *code_obj, long code, const char *p,
                               Py_ssize_t len, PyObject *data);

/* ExtHook(code, data): as _markers.ext_hook_for(by_hash, code, data).
 * Called through vectorcall by msgpack's unpacker, once per ext. */
static PyObject *
ExtHook_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    ExtHook *self = (ExtHook *)callable;
    if (kwnames != NULL && PyTuple_GET_SIZE(kwnames) != 0) {
        PyErr_SetString(PyExc_TypeError, "ext hook takes no keyword arguments");
        return NULL;
    }
    if (PyVectorcall_NARGS(nargsf) != 2) {
        PyErr_Format(PyExc_TypeError, "ext_hook expected 2 arguments, got %zd",
                     PyVectorcall_NARGS(nargsf));
        return NULL;
    }
    PyObject *code_obj = args[0], *data = args[1];
    long code = PyLong_AsLong(code_obj);
    if (code == -1 && PyErr_Occurred()) return NULL;
    if (!PyBytes_Check(data)) {
        PyErr_Format(PyExc_TypeError, "ext hook data must be bytes, got %.100s",
                     Py_TYPE(data)->tp_name);
        return NULL;
    }
    return ExtHook_ext(self, code_obj, code, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data),
                       data);
}

/* The shared Tag of each one-byte payload, once looked up (a kind's Tag
 * never changes once registered). */
static PyObject *cc_tag_by_byte[256];
/* The header ext last met and its marker (HEADERS[data]): every blob starts
 * with one, nearly always the same. */
static PyObject *cc_last_header_data = NULL, *cc_last_header = NULL;

/* The ext (code, the len bytes at p): data is those bytes as a bytes object,
 * or NULL (then made only when needed). */
static PyObject *
ExtHook_ext(ExtHook *self, PyObject *code_obj, long code, const char *p, Py_ssize_t len,
            PyObject *data)
{
    PyObject *made = NULL, *out;
    if (code == EXT_TAG && len == 1 && cc_tag_by_byte[(unsigned char)p[0]] != NULL) {
        return Py_NewRef(cc_tag_by_byte[(unsigned char)p[0]]);
    }
    if (code == EXT_HEADER && cc_last_header != NULL &&
        PyBytes_GET_SIZE(cc_last_header_data) == len &&
        memcmp(PyBytes_AS_STRING(cc_last_header_data), p, (size_t)len) == 0) {
        return Py_NewRef(cc_last_header); /* every blob starts with one */
    }
    if (code != EXT_NONE && code != EXT_BIGINT && code != EXT_WELLKNOWN &&
        code != EXT_COMPLEX && code != EXT_SURROGATE_STR && data == NULL) {
        if ((data = made = PyBytes_FromStringAndSize(p, len)) == NULL) return NULL;
    }
    out = ExtHook_known(self, code_obj, code, p, len, data);
    if (out != NULL && code == EXT_TAG && len == 1 && cc_tag_by_byte[(unsigned char)p[0]] == NULL) {
        cc_tag_by_byte[(unsigned char)p[0]] = Py_NewRef(out);
    }
    Py_XDECREF(made);
    return out;
}

/* ExtHook_ext's answer for every code (data is set for the codes that need it). */
static PyObject *
ExtHook_known(ExtHook *self, PyObject *code_obj, long code, const char *p, Py_ssize_t len,
              PyObject *data)
{
    switch (code) {
    case EXT_TAG: {
        PyObject *tag = PyDict_GetItemWithError(cc_TAG_BY_DATA, data);
        if (tag != NULL) return Py_NewRef(tag);
        if (!PyErr_Occurred()) PyErr_Format(cc_CorruptSnapshot, "unknown tag %R", data);
        return NULL;
    }
    case EXT_REF:
    case EXT_BYTEARRAY:
    case EXT_PICKLE:
    case EXT_INTLIST:
    case EXT_BUFFER:
        return cc_deferred(code_obj, data);
    case EXT_NONE:
        return Py_NewRef(cc_NONE_MARK);
    case EXT_BIGINT:
        return cc_counted(self, _PyLong_FromByteArray((const unsigned char *)p, (size_t)len, 1, 1));
    case EXT_WELLKNOWN:
        if (len != 1 || (unsigned char)p[0] >= PyTuple_GET_SIZE(cc_WELLKNOWN)) {
            return cc_corrupt("unknown well-known global");
        }
        return Py_NewRef(PyTuple_GET_ITEM(cc_WELLKNOWN, (unsigned char)p[0]));
    case EXT_COMPLEX: {
        if (len != 16) return cc_corrupt("complex payload must be 16 bytes");
        double re = PyFloat_Unpack8(p, 1), im = PyFloat_Unpack8(p + 8, 1);
        if ((re == -1.0 || im == -1.0) && PyErr_Occurred()) return NULL;
        return cc_counted(self, PyComplex_FromDoubles(re, im));
    }
    case EXT_SURROGATE_STR: {
        PyObject *s = PyUnicode_DecodeUTF8(p, len, "surrogatepass");
        if (s == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            PyErr_Format(cc_CorruptSnapshot, "malformed string: %S", value);
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
        }
        return s;
    }
    case EXT_HEADER: {
        PyObject *header = PyDict_GetItemWithError(cc_HEADERS, data);
        if (header != NULL) {
            Py_XSETREF(cc_last_header_data, Py_NewRef(data));
            Py_XSETREF(cc_last_header, Py_NewRef(header));
            return Py_NewRef(header);
        }
        if (PyErr_Occurred()) return NULL;
        break;
    }
    default:
        break;
    }
    /* a header; anything else is refused by the walk */
    PyObject *cargs[2] = {code_obj, data};
    return PyObject_Vectorcall(cc_ExtType, cargs, 2, NULL);
}

static PyObject *
ExtHook_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwds != NULL && PyDict_GET_SIZE(kwds) != 0)) {
        PyErr_SetString(PyExc_TypeError, "ExtHook() takes no arguments");
        return NULL;
    }
    ExtHook *self = (ExtHook *)type->tp_alloc(type, 0);
    if (self != NULL) self->vectorcall = ExtHook_vectorcall;
    return (PyObject *)self;
}

static int
ExtHook_traverse(ExtHook *self, visitproc visit, void *arg)
{
    Py_VISIT(self->by_hash);
    return 0;
}

static int
ExtHook_clear(ExtHook *self)
{
    Py_CLEAR(self->by_hash);
    return 0;
}

static void
ExtHook_dealloc(ExtHook *self)
{
    PyObject_GC_UnTrack(self);
    ExtHook_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject ExtHook_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "corosnap.codec._ccodec.ExtHook",
    .tp_basicsize = sizeof(ExtHook),
    .tp_dealloc = (destructor)ExtHook_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(ExtHook, vectorcall),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "ExtHook(): msgpack's ext_hook for one blob (the C twin of "
              "_markers.ext_hook_for with a fresh by_hash)",
    .tp_traverse = (traverseproc)ExtHook_traverse,
    .tp_clear = (inquiry)ExtHook_clear,
    .tp_new = ExtHook_new,
};

/* ------------------------------------------------------------ parser
 *
 * unpack(data): what msgpack.unpackb(data, strict_map_key=False,
 * ext_hook=ExtHook()) returns, or None.  A blob's own parse, for loads: the
 * exts go straight to the ext hook's code (no call through msgpack's
 * PyObject_CallFunction and format strings per ext, no bytes object per
 * tag), which is most of the time msgpack spends on a blob.
 *
 * The contract is msgpack's, and msgpack stays the reference: this parser
 * only ever answers what unpackb would, or None.  It answers None (and the
 * caller parses with msgpack, which gives its own result or error) for
 * anything it is not sure to read exactly as msgpack does: any malformed or
 * truncated input, trailing bytes, nesting past MAX_DEPTH (msgpack's limit
 * is deeper), invalid UTF-8, an unhashable map key, the timestamp ext (-1),
 * and any error the ext hook raises.  What it builds is msgpack's: lists,
 * dicts (string keys interned, as msgpack's), str, bytes, int, float, bool,
 * None, and whatever the ext hook returns.  tests/test_engines.py holds the
 * two parsers against each other on every blob the suite makes and on
 * damaged copies.
 */

enum { CU_MAX_DEPTH = 512 };

typedef struct {
    const unsigned char *p, *end;
    ExtHook *hook;
    int depth;
    /* > 0 while a map key is read: a key is kept as it is (never walked,
     * never replaced by Decoder.dec), so its marker must be its own */
    int in_key;
    /* The back-references of one-byte index met so far in this parse, each
     * made once and shared by every value place that holds it (a Deferred
     * there is only read, by value: Decoder.dec resolves it against the
     * memo; a map key is kept as it is, so a key's marker is its own): a
     * blob of records refers to its classes and enum members hundreds of
     * times.  refs[k] is set only where bit k of has_ref is (only the
     * bitmap is zeroed for each parse). */
    uint64_t has_ref[4];
    PyObject *refs[256];
} Unpacker;

/* A declined parse: NULL, no exception. */
#define CU_DECLINE() return NULL

static PyObject *cu_value(Unpacker *u);

static inline int
cu_need(Unpacker *u, Py_ssize_t n)
{
    return n >= 0 && u->end - u->p >= n;
}

static inline uint64_t
cu_be(const unsigned char *p, int n)
{
    uint64_t x = 0;
    for (int k = 0; k < n; k++) x = (x << 8) | p[k];
    return x;
}

/* Short ASCII strings met before, shared: the parse of a blob makes the
 * same names again and again (module names and qualnames, attribute names,
 * the keys of dict shapes, enum member names), and each fresh copy costs
 * its allocation, its decoding and, once used as a key, its hash.  A
 * direct-mapped table of CU_STRINGS slots, each holding the last string of
 * at most CU_STRING_MAX bytes whose hash of its bytes picked the slot (a
 * strong reference: a str is immutable and holds nothing, so sharing one
 * is invisible but to `is`, as CPython's own interning; no reference to a
 * code object or module).  A map key, interned as before, replaces its
 * slot's string, so the next parse gets the interned one.  At most
 * CU_STRINGS * (CU_STRING_MAX + a str header) bytes stay alive. */
enum { CU_STRINGS = 1024, CU_STRING_MAX = 48 };
static PyObject *cu_strings[CU_STRINGS];

static inline uint64_t
cu_word(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

static inline uint32_t
cu_half(const unsigned char *p)
{
    uint32_t w;
    memcpy(&w, p, 4);
    return w;
}

/* The slot of the n bytes at p: their first and last word (overlapping for
 * fewer than 16 bytes) and every word between, mixed with n, then every
 * bit of that spread over the slot's bits (murmur3's final mix).  Strings
 * that share a slot simply take turns in it. */
static inline size_t
cu_string_slot(const unsigned char *p, Py_ssize_t n)
{
    uint64_t h = (uint64_t)n * 0x9E3779B97F4A7C15ull;
    if (n >= 8) {
        h = (h ^ cu_word(p)) * 0xff51afd7ed558ccdull;
        for (Py_ssize_t k = 8; k + 8 < n; k += 8) {
            h ^= h >> 33;
            h = (h ^ cu_word(p + k)) * 0xff51afd7ed558ccdull;
        }
        h ^= h >> 33;
        h ^= cu_word(p + n - 8);
    }
    else if (n >= 4) {
        h ^= ((uint64_t)cu_half(p) << 32) | cu_half(p + n - 4);
    }
    else if (n > 0) {
        h ^= (uint64_t)p[0] | ((uint64_t)p[n / 2] << 8) | ((uint64_t)p[n - 1] << 16);
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return (size_t)(h & (CU_STRINGS - 1));
}

/* Whether the n bytes at a and at b are the same (n <= CU_STRING_MAX): a
 * short name is compared as one or two words, without a call. */
static inline int
cu_same_bytes(const unsigned char *a, const unsigned char *b, Py_ssize_t n)
{
    if (n > 16) return memcmp(a, b, (size_t)n) == 0;
    if (n >= 8) return cu_word(a) == cu_word(b) && cu_word(a + n - 8) == cu_word(b + n - 8);
    if (n >= 4) return cu_half(a) == cu_half(b) && cu_half(a + n - 4) == cu_half(b + n - 4);
    for (Py_ssize_t k = 0; k < n; k++) {
        if (a[k] != b[k]) return 0;
    }
    return 1;
}

/* Remember `s` (a str, any) in its slot if it is short and ASCII. */
static void
cu_string_keep(PyObject *s)
{
    if (!PyUnicode_IS_ASCII(s) || PyUnicode_GET_LENGTH(s) > CU_STRING_MAX) return;
    size_t slot = cu_string_slot(PyUnicode_1BYTE_DATA(s), PyUnicode_GET_LENGTH(s));
    Py_XSETREF(cu_strings[slot], Py_NewRef(s));
}

static PyObject *
cu_str(Unpacker *u, Py_ssize_t n)
{
    if (!cu_need(u, n)) CU_DECLINE();
    size_t slot = 0;
    if (n <= CU_STRING_MAX) {
        slot = cu_string_slot(u->p, n);
        PyObject *known = cu_strings[slot];
        if (known != NULL && PyUnicode_GET_LENGTH(known) == n &&
            cu_same_bytes(PyUnicode_1BYTE_DATA(known), u->p, n)) {
            u->p += n;
            return Py_NewRef(known);
        }
    }
    PyObject *s = PyUnicode_DecodeUTF8((const char *)u->p, n, NULL);
    if (s == NULL) {
        PyErr_Clear();
        CU_DECLINE();
    }
    if (n <= CU_STRING_MAX && PyUnicode_IS_ASCII(s)) Py_XSETREF(cu_strings[slot], Py_NewRef(s));
    u->p += n;
    return s;
}

/* Unsigned 64-bit ints met before, shared like the short strings above (an
 * int is immutable and holds nothing, so sharing one is invisible but to
 * `is`).  msgpack's uint 64 form, the only one read here, is written for
 * ints of 2**32 and more; a blob holds one per frame, its code's
 * fingerprint, the same from one parse of the blob to the next, which the
 * restore then finds its code by (an int met before is compared by
 * identity, without its value).  A direct-mapped table of CU_U64 slots,
 * each holding the last int whose value picked it. */
enum { CU_U64 = 64 };
static struct {
    uint64_t value;
    PyObject *obj; /* held; NULL: empty */
} cu_u64[CU_U64];

/* Not inlined: in cu_value's switch it made the whole parse slower (1% more
 * instructions for a frame of 50 dict records). */
Py_NO_INLINE static PyObject *
cu_u64_int(uint64_t v)
{
    size_t slot = (size_t)((v ^ (v >> 23) ^ (v >> 47)) & (CU_U64 - 1));
    PyObject *known = cu_u64[slot].obj;
    if (known != NULL && cu_u64[slot].value == v) return Py_NewRef(known);
    PyObject *x = PyLong_FromUnsignedLongLong(v);
    if (x == NULL) return NULL;
    cu_u64[slot].obj = Py_NewRef(x);
    cu_u64[slot].value = v;
    Py_XDECREF(known); /* an int: releasing it runs no code */
    return x;
}

static PyObject *
cu_bin(Unpacker *u, Py_ssize_t n)
{
    if (!cu_need(u, n)) CU_DECLINE();
    PyObject *b = PyBytes_FromStringAndSize((const char *)u->p, n);
    if (b == NULL) {
        PyErr_Clear();
        CU_DECLINE();
    }
    u->p += n;
    return b;
}

static PyObject *
cu_array(Unpacker *u, Py_ssize_t n)
{
    if (!cu_need(u, n) || u->depth >= CU_MAX_DEPTH) CU_DECLINE(); /* an item is >= 1 byte */
    PyObject *out = PyList_New(n);
    if (out == NULL) {
        PyErr_Clear();
        CU_DECLINE();
    }
    /* An unknown ext is made by msgpack's ExtType, in Python: out of the
     * collector's view (gc.get_objects) until every item is set. */
    PyObject_GC_UnTrack(out);
    u->depth++;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = cu_value(u);
        if (x == NULL) {
            Py_DECREF(out);
            CU_DECLINE();
        }
        PyList_SET_ITEM(out, i, x);
    }
    u->depth--;
    PyObject_GC_Track(out);
    return out;
}

static PyObject *
cu_map(Unpacker *u, Py_ssize_t n)
{
    if (n < 0 || n > (u->end - u->p) / 2 || u->depth >= CU_MAX_DEPTH) CU_DECLINE();
    PyObject *out = PyDict_New();
    if (out == NULL) {
        PyErr_Clear();
        CU_DECLINE();
    }
    u->depth++;
    for (Py_ssize_t i = 0; i < n; i++) {
        u->in_key++;
        PyObject *k = cu_value(u);
        u->in_key--;
        PyObject *v = k == NULL ? NULL : cu_value(u);
        if (v != NULL && PyUnicode_CheckExact(k) && !PyUnicode_CHECK_INTERNED(k)) {
            PyUnicode_InternInPlace(&k);
            cu_string_keep(k);
        }
        if (v == NULL || PyDict_SetItem(out, k, v) < 0) {
            PyErr_Clear();
            Py_XDECREF(k);
            Py_XDECREF(v);
            Py_DECREF(out);
            CU_DECLINE();
        }
        Py_DECREF(k);
        Py_DECREF(v);
    }
    u->depth--;
    return out;
}

static PyObject *
cu_ext(Unpacker *u, Py_ssize_t n)
{
    if (n < 0 || !cu_need(u, n + 1)) CU_DECLINE();
    long code = (signed char)u->p[0];
    const char *p = (const char *)u->p + 1;
    u->p += n + 1;
    if (code == -1) CU_DECLINE(); /* msgpack's Timestamp */
    int ref = code == EXT_REF && n == 1 && !u->in_key ? (unsigned char)p[0] : -1;
    if (ref >= 0 && (u->has_ref[ref >> 6] >> (ref & 63)) & 1) return Py_NewRef(u->refs[ref]);
    PyObject *code_obj = PyLong_FromLong(code);
    PyObject *out = code_obj == NULL ? NULL : ExtHook_ext(u->hook, code_obj, code, p, n, NULL);
    Py_XDECREF(code_obj);
    if (out == NULL) PyErr_Clear();
    else if (ref >= 0) {
        u->refs[ref] = Py_NewRef(out);
        u->has_ref[ref >> 6] |= (uint64_t)1 << (ref & 63);
    }
    return out;
}

static PyObject *
cu_value(Unpacker *u)
{
    if (!cu_need(u, 1)) CU_DECLINE();
    unsigned char b = *u->p++;
    if (b <= 0x7f) return PyLong_FromLong(b);
    if (b >= 0xe0) return PyLong_FromLong((signed char)b);
    if (b <= 0x8f) return cu_map(u, b & 0x0f);
    if (b <= 0x9f) return cu_array(u, b & 0x0f);
    if (b <= 0xbf) return cu_str(u, b & 0x1f);
    static const int width[] = {
        /* c0 */ 0, -1, 0, 0, 1, 2, 4, 1, 2, 4, 4, 8, 1, 2, 4, 8,
        /* d0 */ 1, 2, 4, 8, 1, 2, 4, 8, 16, 1, 2, 4, 2, 4, 2, 4};
    int w = width[b - 0xc0];
    if (w < 0 || !cu_need(u, b >= 0xd4 && b <= 0xd8 ? 1 + w : w)) CU_DECLINE();
    const unsigned char *q = u->p;
    switch (b) {
    case 0xc0: return Py_NewRef(Py_None);
    case 0xc2: return Py_NewRef(Py_False);
    case 0xc3: return Py_NewRef(Py_True);
    case 0xc4: case 0xc5: case 0xc6:
        u->p += w;
        return cu_bin(u, (Py_ssize_t)cu_be(q, w));
    case 0xc7: case 0xc8: case 0xc9:
        u->p += w;
        return cu_ext(u, (Py_ssize_t)cu_be(q, w));
    case 0xca: {
        /* as msgpack: the 4 bytes as a C float, converted by a cast (which
         * quiets a signalling NaN; PyFloat_Unpack4 keeps it on 3.14+) */
        u->p += 4;
        uint32_t bits = (uint32_t)cu_be(q, 4);
        float f;
        memcpy(&f, &bits, 4);
        return PyFloat_FromDouble((double)f);
    }
    case 0xcb: {
        u->p += 8;
        double x = PyFloat_Unpack8((const char *)q, 0);
        if (x == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            CU_DECLINE();
        }
        return PyFloat_FromDouble(x);
    }
    case 0xcc: case 0xcd: case 0xce:
        u->p += w;
        return PyLong_FromUnsignedLongLong(cu_be(q, w));
    case 0xcf:
        u->p += 8;
        return cu_u64_int(cu_be(q, 8));
    case 0xd0: u->p += 1; return PyLong_FromLong((int8_t)q[0]);
    case 0xd1: u->p += 2; return PyLong_FromLong((int16_t)cu_be(q, 2));
    case 0xd2: u->p += 4; return PyLong_FromLong((int32_t)cu_be(q, 4));
    case 0xd3: u->p += 8; return PyLong_FromLongLong((int64_t)cu_be(q, 8));
    case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
        return cu_ext(u, w);
    case 0xd9: case 0xda: case 0xdb:
        u->p += w;
        return cu_str(u, (Py_ssize_t)cu_be(q, w));
    case 0xdc: case 0xdd:
        u->p += w;
        return cu_array(u, (Py_ssize_t)cu_be(q, w));
    default: /* 0xde, 0xdf */
        u->p += w;
        return cu_map(u, (Py_ssize_t)cu_be(q, w));
    }
}

static PyObject *
cu_unpack(PyObject *module, PyObject *data)
{
    if (!PyBytes_CheckExact(data)) {
        PyErr_Format(PyExc_TypeError, "unpack() takes bytes, not %.100s", Py_TYPE(data)->tp_name);
        return NULL;
    }
    /* The hook of the last parse, kept when nothing else held it, out of the
     * collector's view while it waits (it never leaves this function, and no
     * Python code can reach it): a parse makes none. */
    static ExtHook *spare_hook = NULL;
    ExtHook *hook = spare_hook;
    spare_hook = NULL;
    if (hook != NULL) {
        PyObject_GC_Track(hook); /* out of the collector's view while it waited */
        Py_CLEAR(hook->by_hash);
    }
    else {
        hook = (ExtHook *)ExtHook_Type.tp_alloc(&ExtHook_Type, 0);
        if (hook == NULL) return NULL;
        hook->vectorcall = ExtHook_vectorcall;
    }
    Unpacker u;
    u.p = (const unsigned char *)PyBytes_AS_STRING(data);
    u.end = u.p + PyBytes_GET_SIZE(data);
    u.hook = hook;
    u.depth = 0;
    u.in_key = 0;
    memset(u.has_ref, 0, sizeof(u.has_ref));
    PyObject *out = cu_value(&u);
    if (spare_hook == NULL && Py_REFCNT(hook) == 1) {
        Py_CLEAR(hook->by_hash); /* this blob's numbers */
        if (spare_hook == NULL && Py_REFCNT(hook) == 1) {
            PyObject_GC_UnTrack(hook); /* gc.get_objects() cannot reach it */
            spare_hook = hook;
        }
        else {
            Py_DECREF(hook);
        }
    }
    else {
        Py_DECREF(hook);
    }
    for (int w = 0; w < 4; w++) {
        for (uint64_t bits = u.has_ref[w]; bits != 0; bits &= bits - 1) {
            int k = 0;
            while (!((bits >> k) & 1)) k++;
            Py_DECREF(u.refs[w * 64 + k]);
        }
    }
    if (out == NULL || u.p != u.end) { /* declined: msgpack decides */
        PyErr_Clear();
        Py_XDECREF(out);
        Py_RETURN_NONE;
    }
    return out;
}

/* ------------------------------------------------------------ value encoder
 *
 * The C twin of Encoder.enc and Encoder.enc_items (codec/_encoder.py), as
 * _pickle's Pickler is pickle.py's.  It produces the bytes of the very tree
 * the Python methods produce (containers are written as msgpack bytes: see
 * the writer's section; the rest is a tree), reading and writing the
 * same Encoder's tables (memo, keep, strings, shapes, busy, ...): a value it
 * does not handle itself is handed to the Encoder's Python method for it,
 * which calls back into these for the values inside.  Handled here: the
 * scalars, lists (int lists and flat lists included), dicts (shapes, scalar
 * keys, T_DICT pairs), tuples, sets, frozensets, back-references, globals by
 * name, and the reduce protocol of instances (frozen and slotted dataclasses,
 * enums, datetimes, Decimals: whatever __reduce_ex__(4) or copyreg's
 * dispatch table gives), with the checkpoint and rollback to the fallback
 * pickler of Encoder._other.  Everything else (functions, classes, frames,
 * cells, iterators, buffers, exceptions, the strict re-encoding's checks)
 * goes to Python: Encoder._enc_other, Encoder._other, Encoder._enc_python.
 * An instance of a subclass of a type in the encoder's NO_REDUCE (itertools'
 * types) is not reduced here either: Encoder._other refuses it, with the
 * same words whichever engine met it.
 *
 * The Encoder's tables are its __slots__, read at their offsets (found once,
 * from the member descriptors of the Encoder class, and checked to be object
 * slots); each table's type is checked once per call.  The Encoder class and
 * its dispatch table are looked up when enc() is first called: they live in
 * codec/_encoder.py, which imports this module.
 *
 * What must never live here: a decision the Python encoder does not make the
 * same way.  tests/test_engines.py holds the two against each other, byte
 * for byte, on generated values and on the construct zoo.
 */

#if PY_VERSION_HEX >= 0x030C0000
#define CV_T_OBJECT_EX Py_T_OBJECT_EX
#else
#include <structmember.h>
#define CV_T_OBJECT_EX T_OBJECT_EX
#endif

enum { T_TUPLE = 1, T_SET = 2, T_FROZENSET = 3, T_DICT = 4, T_FLATLIST = 5, T_GLOBAL = 6,
       T_REDUCE = 11, T_NEWOBJ = 12, T_RANGEITER = 14, T_SEQITER = 15, T_SHAPED = 16,
       CV_NTAGS = 22 };

static PyObject *cv_Encoder, *cv_encoder_dict, *cv_DISPATCH, *cv_SnapshotError, *cv_global_name,
    *cv_WELLKNOWN_INDEX, *cv_copyreg_dispatch, *cv_newobj, *cv_slotnames;
static PyObject *cv_tags[CV_NTAGS];
static PyObject *cv_verified_entries; /* global_name's cache (cv_global_name_of) */
/* what cv_dataclass_reduce recognizes (loaded by cv_ready) */
static PyObject *cv_dc_getstate, *cv_dc_FIELD, *cv_object_reduce_ex, *cv_object_reduce,
    *cv_object_getstate, *cv_s_dataclass_fields, *cv_s_field_type, *cv_s_fname, *cv_s_getstate,
    *cv_s_getnewargs_ex, *cv_s_getnewargs;
static PyObject *cv_dataclass_reduce(PyObject *v);
static PyObject *cv_refs[256], *cv_wellknown[256];
static Py_ssize_t cv_intlist_min, cv_shape_min, cv_buffer_min;
static PyObject *cv_s_enc_other, *cv_s_other, *cv_s_enc_python, *cv_s_module_value,
    *cv_s_rollback, *cv_s_pickle, *cv_s_class_ref, *cv_s_callable_ref, *cv_s_reduce_ex,
    *cv_s_module, *cv_s_qualname, *cv_s_no_reduce, *cv_four, *cv_s_reduce, *cv_s_start,
    *cv_s_stop, *cv_s_step, *cv_s_class, *cv_s_name, *cv_s_module_indexes, *cv_s_everything,
    *cv_s_module_index;

enum { F_MEMO, F_KEEP, F_STRINGS, F_CODES, F_SHAPES, F_BUSY, F_OFFERED, F_STRICT,
       F_BUFFER_CALLBACK, F_GLOBAL_IDS, F_PENDING_GLOBALS, F_GLOBAL_VALUES, F_MODULES, F_COUNT };
static const char *cv_field_names[F_COUNT] = {
    "memo", "keep", "strings", "codes", "shapes", "busy", "offered", "strict",
    "buffer_callback", "global_ids", "pending_globals", "global_values", "modules"};
static Py_ssize_t cv_offsets[F_COUNT];
/* codec/_encoder.py's ModuleIndex and the offset of its `addresses` slot
 * (cv_ready). */
static PyTypeObject *cv_ModuleIndex;
static Py_ssize_t cv_addresses_offset;
/* global_ids or an entry of global_values: one module's index (or {}) */
#define CV_IS_INDEX(ids) (PyDict_CheckExact(ids) || Py_IS_TYPE(ids, cv_ModuleIndex))


/* ------------------------------------------------ the encoder's memo table */

/* Memo: Encoder.memo under the C engine (codec/_memo.h says why and how).
 * From Python it is a mapping of object ids to memo indexes, with the
 * operations the Python encoder uses on its dict: get, [], in, del, len,
 * clear, and iteration over the ids.  Keys are ints that can be an address
 * (an id is a positive int); any other key is simply absent. */
static PyTypeObject Memo_Type;
#define Memo_CheckExact(o) Py_IS_TYPE(o, &Memo_Type)

/* 1 and *out for a key that can be an object's id, 0 for any other. */
static int
memo_key(PyObject *k, void **out)
{
    if (!PyLong_Check(k) || PyBool_Check(k)) return 0;
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(k, &overflow);
    if (x == -1 && PyErr_Occurred()) return -1;
    if (overflow < 0 || (overflow == 0 && x <= 0)) return 0;
    void *p = PyLong_AsVoidPtr(k);
    if (p == NULL) {
        if (!PyErr_Occurred()) return 0;
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear();
        return 0;
    }
    *out = p;
    return 1;
}

static PyObject *
memo_make(PyTypeObject *type)
{
    MemoObject *m = (MemoObject *)type->tp_alloc(type, 0);
    if (m == NULL) return NULL;
    m->table = NULL; /* made by the first entry */
    m->mask = 0;
    m->used = 0;
    return (PyObject *)m;
}

static PyObject *
memo_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kwargs != NULL && PyDict_GET_SIZE(kwargs) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Memo() takes no arguments");
        return NULL;
    }
    return memo_make(type);
}

static void
memo_dealloc(PyObject *self)
{
    PyMem_Free(((MemoObject *)self)->table);
    Py_TYPE(self)->tp_free(self);
}

static Py_ssize_t
memo_length(PyObject *self)
{
    return ((MemoObject *)self)->used;
}

static PyObject *
memo_subscript(PyObject *self, PyObject *k)
{
    void *key = NULL;
    int r = memo_key(k, &key);
    if (r < 0) return NULL;
    Py_ssize_t i = r ? memo_get((MemoObject *)self, key) : -1;
    if (i < 0) {
        PyErr_SetObject(PyExc_KeyError, k);
        return NULL;
    }
    return PyLong_FromSsize_t(i);
}

static int
memo_ass_subscript(PyObject *self, PyObject *k, PyObject *v)
{
    MemoObject *m = (MemoObject *)self;
    void *key = NULL;
    int r = memo_key(k, &key);
    if (r < 0) return -1;
    if (v == NULL) {
        if (r == 0 || memo_del(m, key) == 0) {
            PyErr_SetObject(PyExc_KeyError, k);
            return -1;
        }
        return 0;
    }
    if (r == 0) {
        PyErr_Format(PyExc_TypeError, "a Memo key is an object's id (a positive int), not %R",
                     k);
        return -1;
    }
    Py_ssize_t value = PyLong_Check(v) && !PyBool_Check(v) ? PyLong_AsSsize_t(v) : -2;
    if (value == -1 && PyErr_Occurred()) return -1;
    if (value < 0) {
        PyErr_Format(PyExc_TypeError, "a Memo value is a memo index (an int >= 0), not %R",
                     v);
        return -1;
    }
    return memo_put(m, key, value, 1, NULL) < 0 ? -1 : 0;
}

static int
memo_contains(PyObject *self, PyObject *k)
{
    void *key = NULL;
    int r = memo_key(k, &key);
    if (r <= 0) return r;
    return memo_get((MemoObject *)self, key) >= 0;
}

static PyObject *
memo_get_method(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "get expected 1 or 2 arguments, got %zd", nargs);
        return NULL;
    }
    void *key = NULL;
    int r = memo_key(args[0], &key);
    if (r < 0) return NULL;
    Py_ssize_t i = r ? memo_get((MemoObject *)self, key) : -1;
    if (i >= 0) return PyLong_FromSsize_t(i);
    return Py_NewRef(nargs == 2 ? args[1] : Py_None);
}

static PyObject *
memo_clear_method(PyObject *self, PyObject *unused)
{
    if (memo_clear((MemoObject *)self) < 0) return NULL;
    Py_RETURN_NONE;
}

/* [(id, index)] in table order: what items() and iteration read. */
static PyObject *
memo_pairs(MemoObject *m, int keys_only)
{
    PyObject *out = PyList_New(0);
    for (size_t i = 0; out != NULL && m->table != NULL && i <= m->mask; i++) {
        if (m->table[i].key == NULL) continue;
        PyObject *k = PyLong_FromVoidPtr(m->table[i].key);
        PyObject *x = k == NULL || keys_only ? Py_XNewRef(k)
            : Py_BuildValue("(Nn)", Py_NewRef(k), m->table[i].value);
        Py_XDECREF(k);
        if (x == NULL || PyList_Append(out, x) < 0) Py_CLEAR(out);
        Py_XDECREF(x);
    }
    return out;
}

static PyObject *
memo_items_method(PyObject *self, PyObject *unused)
{
    return memo_pairs((MemoObject *)self, 0);
}

static PyObject *
memo_iter(PyObject *self)
{
    PyObject *keys = memo_pairs((MemoObject *)self, 1);
    if (keys == NULL) return NULL;
    PyObject *it = PyObject_GetIter(keys);
    Py_DECREF(keys);
    return it;
}

static PyObject *
memo_repr(PyObject *self)
{
    MemoObject *m = (MemoObject *)self;
    return PyUnicode_FromFormat("<corosnap Memo: %zd entries in %zu slots>", m->used,
                                m->table == NULL ? (size_t)0 : m->mask + 1);
}

/* == and != with another Memo or a dict: the same ids with the same indexes. */
static PyObject *
memo_richcompare(PyObject *self, PyObject *other, int op)
{
    if ((op != Py_EQ && op != Py_NE) || !(Memo_CheckExact(other) || PyDict_Check(other))) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    MemoObject *m = (MemoObject *)self;
    Py_ssize_t n = PyObject_Length(other);
    if (n < 0) return NULL;
    int equal = m->used == n;
    if (equal && Memo_CheckExact(other)) {
        for (size_t i = 0; equal && m->table != NULL && i <= m->mask; i++) {
            if (m->table[i].key == NULL) continue;
            equal = memo_get((MemoObject *)other, m->table[i].key) == m->table[i].value;
        }
    }
    else if (equal) {
        Py_ssize_t pos = 0;
        PyObject *k, *x;
        while (equal && PyDict_Next(other, &pos, &k, &x)) {
            void *key = NULL;
            int r = memo_key(k, &key);
            if (r < 0) return NULL;
            Py_ssize_t want = PyLong_Check(x) && !PyBool_Check(x) ? PyLong_AsSsize_t(x) : -2;
            if (want == -1 && PyErr_Occurred()) {
                if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return NULL;
                PyErr_Clear();
                want = -2;
            }
            equal = r == 1 && want >= 0 && memo_get(m, key) == want;
        }
    }
    return PyBool_FromLong(op == Py_EQ ? equal : !equal);
}

static PyMappingMethods memo_as_mapping = {memo_length, memo_subscript, memo_ass_subscript};
static PySequenceMethods memo_as_sequence = {.sq_contains = memo_contains};
static PyMethodDef memo_methods[] = {
    {"get", (PyCFunction)(void (*)(void))memo_get_method, METH_FASTCALL,
     "get(id, default=None): the memo index of the object with this id, or default."},
    {"clear", memo_clear_method, METH_NOARGS,
     "Empty the memo (it keeps its slots, unless it had far more than it held)."},
    {"items", memo_items_method, METH_NOARGS, "[(id, memo index)], in no particular order."},
    {NULL, NULL, 0, NULL}};

static PyTypeObject Memo_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "corosnap.codec._ccodec.Memo",
    .tp_basicsize = sizeof(MemoObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Encoder.memo under the C engine: {id(object): memo index} as a C table of "
              "addresses (codec/_memo.h).",
    .tp_new = memo_new,
    .tp_dealloc = memo_dealloc,
    .tp_repr = memo_repr,
    .tp_iter = memo_iter,
    .tp_richcompare = memo_richcompare,
    .tp_as_mapping = &memo_as_mapping,
    .tp_as_sequence = &memo_as_sequence,
    .tp_methods = memo_methods,
    .tp_hash = PyObject_HashNotImplemented,
};

/* One call's view of an Encoder (strong references: a table cannot go away
 * while Python code called from here runs). */
typedef struct {
    PyObject *self, *memo, *keep, *strings, *codes, *shapes, *busy, *offered;
    int strict, buffers;
    /* The last shape met (its keys and index, in e->shapes), while no Python
     * code has run since: the next record with the very same key objects in
     * the same order has that shape (cw_dict). */
    PyObject *last_keys, *last_shape;
} Enc;

static PyObject *
cv_slot(PyObject *self, int field)
{
    PyObject *v = *(PyObject **)((char *)self + cv_offsets[field]);
    if (v == NULL) {
        PyErr_Format(PyExc_AttributeError, "Encoder.%s is not set", cv_field_names[field]);
    }
    return v;
}

static int
cv_ready(void)
{
    if (cv_Encoder != NULL) return 0;
    PyObject *m = PyImport_ImportModule("corosnap.codec._encoder");
    if (m == NULL) return -1;
    PyObject *encoder = PyObject_GetAttrString(m, "Encoder");
    PyObject *dispatch = PyObject_GetAttrString(m, "_DISPATCH");
    /* codec/_encoder.py's globals: NO_REDUCE is rebound there by the kinds
     * that register themselves (codec/_iterators.py), so it is read at each
     * use, as the Python encoder reads it. */
    PyObject *mdict = Py_NewRef(PyModule_GetDict(m));
    Py_DECREF(m);
    PyObject *errors = PyImport_ImportModule("corosnap._errors");
    PyObject *globals = PyImport_ImportModule("corosnap.codec._globals");
    PyObject *copyreg = PyImport_ImportModule("copyreg");
    PyObject *tags = PyImport_ImportModule("corosnap.codec._tags");
    int rc = -1;
    if (encoder == NULL || dispatch == NULL || errors == NULL || globals == NULL ||
        copyreg == NULL || tags == NULL) goto done;
    if (!PyType_Check(encoder) || !PyDict_CheckExact(dispatch) ||
        !PyType_IsSubtype((PyTypeObject *)cc_ExtType, &PyTuple_Type)) {
        PyErr_SetString(PyExc_ImportError, "corosnap.codec._ccodec: codec/_encoder.py is not "
                                           "what this module was built for");
        goto done;
    }
    PyObject *tp_dict = ((PyTypeObject *)encoder)->tp_dict;
    for (int f = 0; f < F_COUNT; f++) {
        PyObject *d = PyDict_GetItemString(tp_dict, cv_field_names[f]);
        if (d == NULL || Py_TYPE(d) != &PyMemberDescr_Type ||
            ((PyMemberDescrObject *)d)->d_member->type != CV_T_OBJECT_EX) {
            PyErr_Format(PyExc_ImportError, "corosnap.codec._ccodec: Encoder.%s is not a slot",
                         cv_field_names[f]);
            goto done;
        }
        cv_offsets[f] = ((PyMemberDescrObject *)d)->d_member->offset;
    }
    {
        PyObject *index_type = PyDict_GetItemString(mdict, "ModuleIndex");
        PyObject *d = index_type != NULL && PyType_Check(index_type) &&
                      PyType_IsSubtype((PyTypeObject *)index_type, &PyDict_Type)
            ? PyDict_GetItemString(((PyTypeObject *)index_type)->tp_dict, "addresses") : NULL;
        if (d == NULL || Py_TYPE(d) != &PyMemberDescr_Type ||
            ((PyMemberDescrObject *)d)->d_member->type != CV_T_OBJECT_EX) {
            PyErr_SetString(PyExc_ImportError, "corosnap.codec._ccodec: codec/_encoder.py has "
                                               "no dict subclass ModuleIndex with a slot "
                                               "addresses");
            goto done;
        }
        cv_addresses_offset = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_XSETREF(cv_ModuleIndex, (PyTypeObject *)Py_NewRef(index_type));
    }
    PyObject *all_tags = PyObject_GetAttrString(tags, "TAGS");
    if (all_tags == NULL) goto done;
    for (int k = 1; k < CV_NTAGS; k++) {
        PyObject *key = PyLong_FromLong(k);
        PyObject *tag = key == NULL ? NULL : PyObject_GetItem(all_tags, key);
        Py_XDECREF(key);
        if (tag == NULL) {
            Py_DECREF(all_tags);
            goto done;
        }
        Py_XSETREF(cv_tags[k], tag);
    }
    Py_DECREF(all_tags);
    struct { PyObject *module; const char *name; Py_ssize_t *target; } sizes[] = {
        {tags, "INTLIST_MIN", &cv_intlist_min}, {tags, "SHAPE_MIN", &cv_shape_min},
        {tags, "BUFFER_MIN_SIZE", &cv_buffer_min}};
    for (size_t k = 0; k < 3; k++) {
        PyObject *v = PyObject_GetAttrString(sizes[k].module, sizes[k].name);
        *sizes[k].target = v == NULL ? -1 : PyLong_AsSsize_t(v);
        Py_XDECREF(v);
        if (*sizes[k].target < 0) goto done;
    }
    struct { PyObject *module; const char *name; PyObject **target; } names[] = {
        {errors, "SnapshotError", &cv_SnapshotError},
        {globals, "global_name", &cv_global_name},
        {globals, "WELLKNOWN_INDEX", &cv_WELLKNOWN_INDEX},
        {copyreg, "dispatch_table", &cv_copyreg_dispatch},
        {copyreg, "__newobj__", &cv_newobj}, {copyreg, "_slotnames", &cv_slotnames}};
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        PyObject *v = PyObject_GetAttrString(names[k].module, names[k].name);
        if (v == NULL) goto done;
        Py_XSETREF(*names[k].target, v);
    }
    {
        /* global_name's cache (read in place: see cv_global_name_of) */
        PyObject *verified = PyObject_GetAttrString(globals, "_verified");
        PyObject *entries = verified == NULL ? NULL
                                             : PyObject_GetAttrString(verified, "_entries");
        Py_XDECREF(verified);
        if (entries == NULL) goto done;
        if (!PyDict_CheckExact(entries)) {
            Py_DECREF(entries);
            PyErr_SetString(PyExc_ImportError, "corosnap.codec._ccodec: global_name's cache "
                                               "is not what this module was built for");
            goto done;
        }
        Py_XSETREF(cv_verified_entries, entries);
    }
    if (!PyDict_CheckExact(cv_WELLKNOWN_INDEX) || !PyDict_Check(cv_copyreg_dispatch)) {
        PyErr_SetString(PyExc_ImportError, "corosnap.codec._ccodec: unexpected tables");
        goto done;
    }
    struct { PyObject **target; const char *text; } strs[] = {
        {&cv_s_enc_other, "_enc_other"}, {&cv_s_other, "_other"},
        {&cv_s_enc_python, "_enc_python"}, {&cv_s_module_value, "_module_value"},
        {&cv_s_rollback, "_rollback"}, {&cv_s_pickle, "_pickle"},
        {&cv_s_class_ref, "_class_ref"}, {&cv_s_callable_ref, "_callable_ref"},
        {&cv_s_reduce_ex, "__reduce_ex__"}, {&cv_s_module, "__module__"},
        {&cv_s_reduce, "__reduce__"}, {&cv_s_start, "start"}, {&cv_s_stop, "stop"},
        {&cv_s_step, "step"},
        {&cv_s_qualname, "__qualname__"}, {&cv_s_no_reduce, "NO_REDUCE"},
        {&cv_s_name, "__name__"}, {&cv_s_class, "__class__"},
        {&cv_s_dataclass_fields, "__dataclass_fields__"}, {&cv_s_field_type, "_field_type"},
        {&cv_s_fname, "name"}, {&cv_s_getstate, "__getstate__"},
        {&cv_s_getnewargs_ex, "__getnewargs_ex__"}, {&cv_s_getnewargs, "__getnewargs__"}, {&cv_s_module_indexes, "_module_indexes"},
        {&cv_s_everything, "_EVERYTHING"}, {&cv_s_module_index, "_module_index"}};
    for (size_t k = 0; k < sizeof(strs) / sizeof(strs[0]); k++) {
        if (*strs[k].target == NULL &&
            (*strs[k].target = PyUnicode_InternFromString(strs[k].text)) == NULL) goto done;
    }
    if (cv_four == NULL && (cv_four = PyLong_FromLong(4)) == NULL) goto done;
    {
        /* the slotted dataclass reduce (cv_dataclass_reduce): what it
         * recognizes; a dataclasses module without them leaves it off */
        PyObject *dc = PyImport_ImportModule("dataclasses");
        if (dc == NULL) goto done;
        PyObject *getstate = PyObject_GetAttrString(dc, "_dataclass_getstate");
        PyObject *field = getstate == NULL ? NULL : PyObject_GetAttrString(dc, "_FIELD");
        Py_DECREF(dc);
        PyObject *rex = PyObject_GetAttr((PyObject *)&PyBaseObject_Type, cv_s_reduce_ex);
        PyObject *red = rex == NULL ? NULL
                                    : PyObject_GetAttr((PyObject *)&PyBaseObject_Type, cv_s_reduce);
        PyObject *ogs = red == NULL ? NULL
                        : PyObject_GetAttr((PyObject *)&PyBaseObject_Type, cv_s_getstate);
        if (rex == NULL || red == NULL || ogs == NULL) {
            Py_XDECREF(getstate);
            Py_XDECREF(field);
            Py_XDECREF(rex);
            Py_XDECREF(red);
            goto done;
        }
        Py_XSETREF(cv_object_getstate, ogs);
        if (field == NULL) PyErr_Clear();
        Py_XSETREF(cv_object_reduce_ex, rex);
        Py_XSETREF(cv_object_reduce, red);
        Py_XSETREF(cv_dc_FIELD, field);
        Py_XSETREF(cv_dc_getstate, field == NULL ? NULL : getstate);
        if (field == NULL) Py_XDECREF(getstate);
    }
    cv_DISPATCH = Py_NewRef(dispatch);
    Py_XSETREF(cv_encoder_dict, Py_NewRef(mdict));
    cv_Encoder = Py_NewRef(encoder); /* last: marks the module ready */
    rc = 0;
done:
    Py_XDECREF(encoder);
    Py_XDECREF(dispatch);
    Py_DECREF(mdict);
    Py_XDECREF(errors);
    Py_XDECREF(globals);
    Py_XDECREF(copyreg);
    Py_XDECREF(tags);
    return rc;
}

static void
cv_release(Enc *e)
{
    Py_CLEAR(e->memo);
    Py_CLEAR(e->keep);
    Py_CLEAR(e->strings);
    Py_CLEAR(e->codes);
    Py_CLEAR(e->shapes);
    Py_CLEAR(e->busy);
    Py_CLEAR(e->offered);
    Py_CLEAR(e->last_keys);
    Py_CLEAR(e->last_shape);
}

static int
cv_load(Enc *e, PyObject *self)
{
    memset(e, 0, sizeof(*e));
    if (cv_ready() < 0) return -1;
    if (!PyObject_TypeCheck(self, (PyTypeObject *)cv_Encoder)) {
        PyErr_Format(PyExc_TypeError, "enc() needs a corosnap Encoder, got %.100s",
                     Py_TYPE(self)->tp_name);
        return -1;
    }
    e->self = self;
    PyObject *v;
#define CV_TABLE(field, member, check, what)                                              \
    if ((v = cv_slot(self, field)) == NULL) goto error;                                   \
    if (!check(v)) {                                                                      \
        PyErr_Format(PyExc_TypeError, "Encoder.%s must be a " what ", not %.100s",         \
                     cv_field_names[field], Py_TYPE(v)->tp_name);                         \
        goto error;                                                                       \
    }                                                                                     \
    e->member = Py_NewRef(v);
    CV_TABLE(F_MEMO, memo, Memo_CheckExact, "corosnap Memo")
    CV_TABLE(F_KEEP, keep, PyList_CheckExact, "list")
    CV_TABLE(F_STRINGS, strings, PyDict_CheckExact, "dict")
    CV_TABLE(F_CODES, codes, Memo_CheckExact, "corosnap Memo")
    CV_TABLE(F_SHAPES, shapes, PyDict_CheckExact, "dict")
    CV_TABLE(F_BUSY, busy, PySet_CheckExact, "set")
    CV_TABLE(F_OFFERED, offered, PyList_CheckExact, "list")
#undef CV_TABLE
    if ((v = cv_slot(self, F_STRICT)) == NULL) goto error;
    e->strict = PyObject_IsTrue(v);
    if (e->strict < 0) goto error;
    if ((v = cv_slot(self, F_BUFFER_CALLBACK)) == NULL) goto error;
    e->buffers = v != Py_None;
    return 0;
error:
    cv_release(e);
    return -1;
}

/* ExtType(code, payload), payload stolen.  msgpack's ExtType is a namedtuple
 * whose __new__ only checks the two types (right here by construction), so
 * it is made as tuple.__new__(ExtType, (code, payload)) does: a fifth of the
 * cost of calling the class, which matters for every back-reference past the
 * 256 cached ones. */
static PyObject *
cv_ext_steal(int code, PyObject *payload)
{
    if (payload == NULL) return NULL;
    PyObject *code_obj = PyLong_FromLong(code);
    PyObject *pair = code_obj == NULL ? NULL : PyTuple_Pack(2, code_obj, payload);
    PyObject *args = pair == NULL ? NULL : PyTuple_Pack(1, pair);
    PyObject *out = args == NULL ? NULL
        : PyTuple_Type.tp_new((PyTypeObject *)cc_ExtType, args, NULL);
    Py_XDECREF(code_obj);
    Py_XDECREF(pair);
    Py_XDECREF(args);
    Py_DECREF(payload);
    return out;
}

static PyObject *
cv_ext(int code, const char *data, Py_ssize_t len)
{
    return cv_ext_steal(code, PyBytes_FromStringAndSize(data, len));
}

/* ref_ext(index) */
static PyObject *
cv_ref(Py_ssize_t index)
{
    if (index < 256) {
        if (cv_refs[index] == NULL) {
            char b = (char)index;
            cv_refs[index] = cv_ext(EXT_REF, &b, 1);
        }
        return Py_XNewRef(cv_refs[index]);
    }
    unsigned char b[4];
    int n = index < 65536 ? 2 : 4;
    for (int k = 0; k < n; k++) b[k] = (unsigned char)((size_t)index >> (8 * (n - 1 - k)));
    return cv_ext(EXT_REF, (const char *)b, n);
}

#define CV_MEMO(e) ((MemoObject *)(e)->memo)

/* memo lookup: 1 and *out (a back-reference) when v is in the memo, 0 when
 * not, -1 on error. */
static int
cv_memo_ref(Enc *e, PyObject *v, PyObject **out)
{
    Py_ssize_t index = memo_get(CV_MEMO(e), v);
    if (index < 0) return 0;
    *out = cv_ref(index);
    return *out == NULL ? -1 : 1;
}

/* Encoder.register: v is memo entry len(keep) (the memo is keyed by the
 * address itself). */
static int
cv_register(Enc *e, PyObject *v)
{
    if (memo_put(CV_MEMO(e), v, PyList_GET_SIZE(e->keep), 1, NULL) < 0) return -1;
    return PyList_Append(e->keep, v);
}

static PyObject *
cv_call(Enc *e, PyObject *name, PyObject *arg)
{
    return PyObject_CallMethodOneArg(e->self, name, arg);
}

static PyObject *cv_string(Enc *e, PyObject *text);

/* Encoder._module_value once the noted globals are resolved: a global
 * reference if v is the value of a name in one of the frames' modules
 * (the index may be older than the module's last assignment: the name must
 * still be bound to this very object).  1 and *out, 0, or -1. */
static int
cv_module_value_c(Enc *e, PyObject *v, PyObject *key, PyObject **out)
{
    PyObject *values = cv_slot(e->self, F_GLOBAL_VALUES);
    if (values == NULL) return -1;
    if (!PyList_CheckExact(values)) {
        PyErr_SetString(PyExc_TypeError, "Encoder.global_values must be a list");
        return -1;
    }
    Py_INCREF(values);
    int rc = 0;
    for (Py_ssize_t k = 0; rc == 0 && k < PyList_GET_SIZE(values); k++) {
        PyObject *pair = PyList_GET_ITEM(values, k);
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            !PyDict_CheckExact(PyTuple_GET_ITEM(pair, 0)) ||
            !CV_IS_INDEX(PyTuple_GET_ITEM(pair, 1))) {
            /* a frame's globals of a dict subclass: Python's lookup */
            Py_DECREF(values);
            PyObject *r = cv_call(e, cv_s_module_value, v);
            if (r == NULL) return -1;
            if (r == Py_None) {
                Py_DECREF(r);
                return 0;
            }
            *out = r;
            return 1;
        }
        PyObject *hit = PyDict_GetItemWithError(PyTuple_GET_ITEM(pair, 1), key);
        if (hit == NULL) {
            if (PyErr_Occurred()) rc = -1;
            continue;
        }
        if (!PyTuple_CheckExact(hit) || PyTuple_GET_SIZE(hit) != 3 ||
            PyTuple_GET_ITEM(hit, 2) != v) continue;
        PyObject *bound = PyDict_GetItemWithError(PyTuple_GET_ITEM(pair, 0),
                                                  PyTuple_GET_ITEM(hit, 1));
        if (bound != v) {
            if (bound == NULL && PyErr_Occurred()) rc = -1;
            continue;
        }
        Py_INCREF(hit);
        PyObject *module = NULL, *name = NULL;
        if (cv_register(e, v) < 0 ||
            (module = cv_string(e, PyTuple_GET_ITEM(hit, 0))) == NULL ||
            (name = cv_string(e, PyTuple_GET_ITEM(hit, 1))) == NULL ||
            (*out = PyList_New(3)) == NULL) {
            Py_XDECREF(module);
            Py_XDECREF(name);
            rc = -1;
        }
        else {
            PyList_SET_ITEM(*out, 0, Py_NewRef(cv_tags[T_GLOBAL]));
            PyList_SET_ITEM(*out, 1, module);
            PyList_SET_ITEM(*out, 2, name);
            rc = 1;
        }
        Py_DECREF(hit);
    }
    Py_DECREF(values);
    return rc;
}

/* Encoder.resolve_globals, for the common case: every noted globals an
 * exact dict.  Each one's module index comes from _module_indexes when
 * cached and current (as _module_index checks it), else from
 * _module_index itself.  1 when done, 0 when it is Python's, -1 on error. */
static int
cv_resolve_globals(Enc *e)
{
    PyObject *pending = cv_slot(e->self, F_PENDING_GLOBALS);
    PyObject *values = pending == NULL ? NULL : cv_slot(e->self, F_GLOBAL_VALUES);
    PyObject *modules = values == NULL ? NULL : cv_slot(e->self, F_MODULES);
    if (modules == NULL) return -1;
    if (!PyList_CheckExact(pending) || !PyList_CheckExact(values) ||
        !PyList_CheckExact(modules)) return 0;
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(pending); k++) {
        if (!PyDict_CheckExact(PyList_GET_ITEM(pending, k))) return 0;
    }
    PyObject *indexes = PyDict_GetItemWithError(cv_encoder_dict, cv_s_module_indexes);
    PyObject *everything = indexes == NULL ? NULL
        : PyDict_GetItemWithError(cv_encoder_dict, cv_s_everything);
    PyObject *index_of = everything == NULL ? NULL
        : PyDict_GetItemWithError(cv_encoder_dict, cv_s_module_index);
    if (index_of == NULL || !PyDict_CheckExact(indexes)) return PyErr_Occurred() ? -1 : 0;
    int rc = 0;
    Py_INCREF(pending);
    Py_INCREF(values);
    Py_INCREF(modules);
    Py_INCREF(indexes);
    Py_INCREF(everything);
    Py_INCREF(index_of);
    for (Py_ssize_t k = 0; rc == 0 && k < PyList_GET_SIZE(pending); k++) {
        PyObject *g = Py_NewRef(PyList_GET_ITEM(pending, k));
        PyObject *module = PyDict_GetItemWithError(g, cv_s_name), *index = NULL, *id = NULL;
        if (module == NULL || !PyUnicode_Check(module)) {
            if (PyErr_Occurred()) rc = -1;
            Py_DECREF(g);
            continue;
        }
        Py_INCREF(module);
        if (PyList_Append(modules, module) < 0 || (id = PyLong_FromVoidPtr(g)) == NULL) {
            rc = -1;
        }
        else {
            PyObject *hit = PyDict_GetItemWithError(indexes, id);
            if (hit != NULL && PyTuple_CheckExact(hit) && PyTuple_GET_SIZE(hit) == 3 &&
                PyLong_CheckExact(PyTuple_GET_ITEM(hit, 1)) &&
                PyLong_AsSsize_t(PyTuple_GET_ITEM(hit, 1)) == PyDict_GET_SIZE(g)) {
                index = Py_NewRef(PyTuple_GET_ITEM(hit, 2));
            }
            else if (PyErr_Occurred()) {
                rc = -1;
            }
            else {
                index = PyObject_CallFunctionObjArgs(index_of, g, module, NULL);
                if (index == NULL) rc = -1;
            }
        }
        if (rc == 0) {
            int truth = PyObject_IsTrue(index);
            PyObject *pair = truth > 0 ? PyTuple_Pack(2, g, index) : NULL;
            if (truth < 0 || (truth > 0 && (pair == NULL || PyList_Append(values, pair) < 0))) {
                rc = -1;
            }
            Py_XDECREF(pair);
        }
        Py_XDECREF(index);
        Py_XDECREF(id);
        Py_DECREF(module);
        Py_DECREF(g);
    }
    if (rc == 0) corosnap_list_empty(pending); /* an exact list (checked above) */
    if (rc == 0) {
        /* global_ids: the one module's index, _EVERYTHING with more, {} with none */
        Py_ssize_t n = PyList_GET_SIZE(values);
        PyObject *ids = n == 1 ? PyTuple_GetItem(PyList_GET_ITEM(values, 0), 1)
                      : n ? everything : NULL;
        ids = ids != NULL ? Py_NewRef(ids) : n <= 1 && !PyErr_Occurred() ? PyDict_New() : NULL;
        if (ids == NULL) {
            rc = -1;
        }
        else {
            PyObject **slot = (PyObject **)((char *)e->self + cv_offsets[F_GLOBAL_IDS]);
            Py_XSETREF(*slot, ids);
        }
    }
    Py_DECREF(pending);
    Py_DECREF(values);
    Py_DECREF(modules);
    Py_DECREF(indexes);
    Py_DECREF(everything);
    Py_DECREF(index_of);
    return rc < 0 ? -1 : 1;
}

static PyObject *ci_everything; /* codec/_encoder.py's _EVERYTHING (ci_ready) */


/* Is the object at v's address a key of `ids`, a dict of ids (a module's
 * index, or a plain dict)?  1, 0, or -1.  A ModuleIndex answers from the
 * table of its ids kept in its `addresses` slot (made here on first use: an
 * index is never changed once built; one whose size no longer matches is
 * asked again), a plain dict with an int made for the id. */
static int
cv_index_has(PyObject *ids, PyObject *v)
{
    if (Py_IS_TYPE(ids, cv_ModuleIndex)) {
        PyObject **slot = (PyObject **)((char *)ids + cv_addresses_offset);
        PyObject *table = *slot;
        if (table == NULL || !Memo_CheckExact(table) ||
            ((MemoObject *)table)->used != PyDict_GET_SIZE(ids)) {
            table = memo_make(&Memo_Type);
            if (table == NULL) return -1;
            Py_ssize_t pos = 0;
            PyObject *k, *x;
            int ok = 1;
            while (ok && PyDict_Next(ids, &pos, &k, &x)) {
                void *p = NULL;
                int r = memo_key(k, &p);
                ok = r > 0 && memo_put((MemoObject *)table, p, 0, 1, NULL) >= 0;
                if (r < 0 || PyErr_Occurred()) {
                    Py_DECREF(table);
                    return -1;
                }
            }
            if (!ok) { /* a key that is no id: asked as a dict */
                Py_DECREF(table);
                goto as_dict;
            }
            Py_XSETREF(*slot, table);
        }
        return memo_get((MemoObject *)table, v) >= 0;
    }
as_dict:;
    PyObject *key = PyLong_FromVoidPtr(v);
    if (key == NULL) return -1;
    int in = PyDict_Contains(ids, key);
    Py_DECREF(key);
    return in;
}


/* `if self.global_ids and id(v) in self.global_ids: out = self._module_value(v)`:
 * 1 and *out when v is a module's global, 0 when not, -1 on error. */
static int
cv_module_value(Enc *e, PyObject *v, PyObject *key, PyObject **out)
{
    PyObject *ids = cv_slot(e->self, F_GLOBAL_IDS);
    if (ids == NULL) return -1;
    int truth, in = 0;
    if (CV_IS_INDEX(ids)) { /* one module's index (or none) */
        if (PyDict_GET_SIZE(ids) == 0) return 0;
        truth = 1;
        Py_INCREF(ids);
        in = cv_index_has(ids, v);
        Py_DECREF(ids);
    }
    else if (ids == ci_everything) { /* more than one, or not resolved yet */
        truth = in = 1; /* _Everything: true, and holds everything */
    }
    else {
        Py_INCREF(ids);
        truth = PyObject_IsTrue(ids);
        if (truth > 0) in = PySequence_Contains(ids, key);
        Py_DECREF(ids);
    }
    if (truth < 0 || in < 0) return -1;
    if (!truth || !in) return 0;
    PyObject *pending = cv_slot(e->self, F_PENDING_GLOBALS);
    if (pending == NULL) return -1;
    if (PyList_CheckExact(pending) && PyList_GET_SIZE(pending) == 0) {
        return cv_module_value_c(e, v, key, out); /* the globals are resolved */
    }
    int resolved = cv_resolve_globals(e);
    if (resolved < 0) return -1;
    if (resolved) {
        /* as _module_value goes on once resolve_globals is done */
        ids = cv_slot(e->self, F_GLOBAL_IDS);
        if (ids == NULL) return -1;
        if (!CV_IS_INDEX(ids) || PyDict_GET_SIZE(ids) != 0) {
            return cv_module_value_c(e, v, key, out);
        }
        return 0;
    }
    PyObject *r = cv_call(e, cv_s_module_value, v);
    if (r == NULL) return -1;
    if (r == Py_None) {
        Py_DECREF(r);
        return 0;
    }
    *out = r;
    return 1;
}

/* Encoder.string */
static PyObject *
cv_string(Enc *e, PyObject *text)
{
    PyObject *index = PyDict_GetItemWithError(e->strings, text);
    if (index != NULL) return Py_NewRef(index);
    if (PyErr_Occurred()) return NULL;
    PyObject *n = PyLong_FromSsize_t(PyDict_GET_SIZE(e->strings));
    int rc = n == NULL ? -1 : PyDict_SetItem(e->strings, text, n);
    Py_XDECREF(n);
    return rc < 0 ? NULL : Py_NewRef(text);
}

static PyObject *cv_enc(Enc *e, PyObject *v);

/* A new list: [tag, *(enc(x) for x in items)] (no tag when tag is NULL).
 * An exact list is walked by index as it is now (as a comprehension does), an
 * exact tuple as it is, anything else through its iterator. */
static PyObject *
cv_items(Enc *e, PyObject *tag, PyObject *items)
{
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    if (tag != NULL && PyList_Append(out, tag) < 0) goto error;
    if (PyList_CheckExact(items) || PyTuple_CheckExact(items)) {
        int is_list = PyList_CheckExact(items);
        for (Py_ssize_t i = 0; i < (is_list ? PyList_GET_SIZE(items) : PyTuple_GET_SIZE(items));
             i++) {
            PyObject *x = Py_NewRef(is_list ? PyList_GET_ITEM(items, i)
                                            : PyTuple_GET_ITEM(items, i));
            PyObject *y = cv_enc(e, x);
            Py_DECREF(x);
            if (y == NULL) goto error;
            int rc = PyList_Append(out, y);
            Py_DECREF(y);
            if (rc < 0) goto error;
        }
        return out;
    }
    PyObject *it = PyObject_GetIter(items);
    if (it == NULL) goto error;
    PyObject *x;
    while ((x = PyIter_Next(it)) != NULL) {
        PyObject *y = cv_enc(e, x);
        Py_DECREF(x);
        if (y == NULL || PyList_Append(out, y) < 0) {
            Py_XDECREF(y);
            Py_DECREF(it);
            goto error;
        }
        Py_DECREF(y);
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) goto error;
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

/* memo, then a module's global: the two ways a container or instance met
 * before (or owned by a module) is written.  1 and *out, 0, or -1. */
static int
cv_known(Enc *e, PyObject *v, PyObject *key, PyObject **out)
{
    int r = cv_memo_ref(e, v, out);
    if (r != 0) return r;
    return cv_module_value(e, v, key, out);
}

/* The start of a container or instance's encoding: its id (*key, owned by
 * the caller) and 1 with *out when it is known already (cv_known). */
#define CV_KNOWN_OR_RETURN(e, v, key, out)                                    \
    PyObject *key = PyLong_FromVoidPtr(v);                                    \
    if (key == NULL) return NULL;                                             \
    {                                                                         \
        int r_ = cv_known(e, v, key, &out);                                   \
        if (r_ != 0) {                                                        \
            Py_DECREF(key);                                                   \
            return r_ < 0 ? NULL : out;                                       \
        }                                                                     \
    }

/* ------------------------------------------------------------ writer
 *
 * The containers' msgpack bytes, written here, as _pickle writes opcodes.
 *
 * A list, dict, tuple, set or frozenset, and everything inside it, goes into
 * one buffer: the bytes msgpack.Packer(use_bin_type=True) writes for the
 * tree the Python encoder builds for the same value, with no tree of Python
 * objects in between.  The result is a Packed node, which sits in the trees
 * the rest of the encoder builds (a frame's fields, the reduce protocol's
 * lists) as any other node; pack() -- this engine's msgpack packer -- copies
 * it into the blob.  The values the writer hands to the tree encoder (an
 * instance's reduce, a global, a builtin iterator, whatever Python encodes)
 * come back as trees, packed into the buffer on the spot.
 *
 * What must not fail while values are still being encoded is left as a
 * hole: an object that pack() packs at the very end, where msgpack would
 * have met it.  That is an int past 64 bits and a str with a lone surrogate
 * (msgpack's OverflowError and UnicodeEncodeError, on which dumps encodes
 * again in strict mode, as it does on the Python engine), a buffer's
 * placeholder (decided once the encoding is over), and anything else pack()
 * must judge.  A hole keeps its offset and its depth.
 *
 * Depth: msgpack refuses a value nested more than 1,024 levels deep
 * (ValueError "recursion limit exceeded.").  A Packed node keeps the depth
 * of its deepest value, so that pack() refuses what msgpack would.
 *
 * pack(tree, default=None) is msgpack.Packer(use_bin_type=True,
 * default=default).pack(tree) for the trees the encoder builds: the same
 * bytes and the same errors (tests/test_packer.py holds it to msgpack).
 */

#define CW_NEST_LIMIT 1024
#define CW_JOIN_LATER 256 /* a Packed node this large is joined by pack(), not copied */

typedef struct {
    PyObject_HEAD
    PyObject *data;  /* bytes */
    PyObject *holes; /* NULL, or a list of (offset, depth, object) */
    int height;      /* the depth of the deepest value, below this one */
} Packed;

static int
Packed_traverse(Packed *self, visitproc visit, void *arg)
{
    Py_VISIT(self->holes);
    return 0;
}

static int
Packed_clear(Packed *self)
{
    Py_CLEAR(self->holes);
    return 0;
}

static void
Packed_dealloc(Packed *self)
{
    PyObject_GC_UnTrack(self);
    Py_CLEAR(self->data);
    Py_CLEAR(self->holes);
    PyObject_GC_Del(self);
}

static PyObject *
Packed_repr(Packed *self)
{
    return PyUnicode_FromFormat("<corosnap packed value: %zd bytes, %zd holes>",
                                PyBytes_GET_SIZE(self->data),
                                self->holes == NULL ? (Py_ssize_t)0
                                                    : PyList_GET_SIZE(self->holes));
}

static PyTypeObject Packed_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "corosnap.codec._ccodec.Packed",
    .tp_basicsize = sizeof(Packed),
    .tp_dealloc = (destructor)Packed_dealloc,
    .tp_repr = (reprfunc)Packed_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A value's msgpack bytes, written by the C encoder (made only there)",
    .tp_traverse = (traverseproc)Packed_traverse,
    .tp_clear = (inquiry)Packed_clear,
};

typedef struct {
    char *buf;
    Py_ssize_t len, cap;
    PyObject *holes;   /* as Packed's */
    int depth;         /* of the value being written (the first one: 0) */
    int height;        /* the deepest depth written */
    int final;         /* pack(): no holes, msgpack's errors */
    PyObject *dflt;    /* pack()'s default, or NULL */
    char small[128];
} W;

static void
w_init(W *w)
{
    w->buf = w->small;
    w->len = 0;
    w->cap = (Py_ssize_t)sizeof(w->small);
    w->holes = NULL;
    w->depth = w->height = w->final = 0;
    w->dflt = NULL;
}

static void
w_free(W *w)
{
    if (w->buf != w->small) PyMem_Free(w->buf);
    w->buf = w->small;
    Py_CLEAR(w->holes);
}

static int
w_grow(W *w, Py_ssize_t n)
{
    if (n > PY_SSIZE_T_MAX - w->len) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t cap = w->cap;
    while (cap < w->len + n) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            cap = w->len + n;
            break;
        }
        cap *= 2;
    }
    char *buf = w->buf == w->small ? PyMem_Malloc((size_t)cap)
                                   : PyMem_Realloc(w->buf, (size_t)cap);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (w->buf == w->small) memcpy(buf, w->small, (size_t)w->len);
    w->buf = buf;
    w->cap = cap;
    return 0;
}

#define W_NEED(w, n)                                                        \
    do {                                                                    \
        if ((n) > (w)->cap - (w)->len && w_grow((w), (n)) < 0) return -1;   \
    } while (0)

static int
w_raw(W *w, const char *p, Py_ssize_t n)
{
    W_NEED(w, n);
    memcpy(w->buf + w->len, p, (size_t)n);
    w->len += n;
    return 0;
}

/* One byte b, then x big-endian in nbytes bytes. */
static int
w_head(W *w, unsigned char b, unsigned long long x, int nbytes)
{
    W_NEED(w, 1 + nbytes);
    unsigned char *p = (unsigned char *)w->buf + w->len;
    *p++ = b;
    for (int k = nbytes - 1; k >= 0; k--) *p++ = (unsigned char)(x >> (8 * k));
    w->len += 1 + nbytes;
    return 0;
}

/* msgpack's narrowest encoding of an integer (pack_template.h's order). */
static int
w_int(W *w, long long d)
{
    if (d < -(1LL << 5)) {
        if (d < -(1LL << 15)) {
            return d < -(1LL << 31) ? w_head(w, 0xd3, (unsigned long long)d, 8)
                                    : w_head(w, 0xd2, (unsigned long long)d, 4);
        }
        return d < -(1 << 7) ? w_head(w, 0xd1, (unsigned long long)d, 2)
                             : w_head(w, 0xd0, (unsigned long long)d, 1);
    }
    if (d < (1 << 7)) return w_head(w, (unsigned char)(d & 0xff), 0, 0);
    if (d < (1LL << 16)) {
        return d < (1 << 8) ? w_head(w, 0xcc, (unsigned long long)d, 1)
                            : w_head(w, 0xcd, (unsigned long long)d, 2);
    }
    return d < (1LL << 32) ? w_head(w, 0xce, (unsigned long long)d, 4)
                           : w_head(w, 0xcf, (unsigned long long)d, 8);
}

static int
w_hole(W *w, PyObject *obj)
{
    if (w->holes == NULL && (w->holes = PyList_New(0)) == NULL) return -1;
    PyObject *hole = Py_BuildValue("(niO)", w->len, w->depth, obj);
    int rc = hole == NULL ? -1 : PyList_Append(w->holes, hole);
    Py_XDECREF(hole);
    return rc;
}

/* A str: UTF-8, as msgpack's PyUnicode_AsUTF8AndSize; one it cannot encode
 * is a hole (pack() raises the UnicodeEncodeError msgpack would). */
static int
w_str(W *w, PyObject *s)
{
    Py_ssize_t n;
    const char *p = PyUnicode_AsUTF8AndSize(s, &n);
    if (p == NULL) {
        if (w->final || !PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) return -1;
        PyErr_Clear();
        return w_hole(w, s);
    }
    int rc;
    if (n < 32) rc = w_head(w, (unsigned char)(0xa0 | n), 0, 0);
    else if (n < 256) rc = w_head(w, 0xd9, (unsigned long long)n, 1);
    else if (n < 65536) rc = w_head(w, 0xda, (unsigned long long)n, 2);
    else if ((unsigned long long)n <= 0xffffffffULL) rc = w_head(w, 0xdb, (unsigned long long)n, 4);
    else {
        PyErr_SetString(PyExc_ValueError, "unicode string is too large");
        return -1;
    }
    return rc < 0 ? -1 : w_raw(w, p, n);
}

static int
w_bin(W *w, const char *p, Py_ssize_t n)
{
    int rc;
    if (n < 256) rc = w_head(w, 0xc4, (unsigned long long)n, 1);
    else if (n < 65536) rc = w_head(w, 0xc5, (unsigned long long)n, 2);
    else if ((unsigned long long)n <= 0xffffffffULL) rc = w_head(w, 0xc6, (unsigned long long)n, 4);
    else {
        PyErr_SetString(PyExc_ValueError, "bytes object is too large");
        return -1;
    }
    return rc < 0 ? -1 : w_raw(w, p, n);
}

static int
w_ext(W *w, long code, const char *p, Py_ssize_t n)
{
    int rc;
    switch (n) {
    case 1: rc = w_head(w, 0xd4, 0, 0); break;
    case 2: rc = w_head(w, 0xd5, 0, 0); break;
    case 4: rc = w_head(w, 0xd6, 0, 0); break;
    case 8: rc = w_head(w, 0xd7, 0, 0); break;
    case 16: rc = w_head(w, 0xd8, 0, 0); break;
    default:
        if (n < 256) rc = w_head(w, 0xc7, (unsigned long long)n, 1);
        else if (n < 65536) rc = w_head(w, 0xc8, (unsigned long long)n, 2);
        else if ((unsigned long long)n <= 0xffffffffULL) rc = w_head(w, 0xc9, (unsigned long long)n, 4);
        else {
            PyErr_SetString(PyExc_ValueError, "EXT data is too large");
            return -1;
        }
    }
    if (rc < 0 || w_head(w, (unsigned char)(code & 0xff), 0, 0) < 0) return -1;
    return w_raw(w, p, n);
}

/* An array's or a map's header for n entries into out: its length. */
static int
w_count_head(unsigned char *out, int map, Py_ssize_t n)
{
    if (n < 16) {
        out[0] = (unsigned char)((map ? 0x80 : 0x90) | n);
        return 1;
    }
    if (n < 65536) {
        out[0] = map ? 0xde : 0xdc;
        out[1] = (unsigned char)(n >> 8);
        out[2] = (unsigned char)n;
        return 3;
    }
    out[0] = map ? 0xdf : 0xdd;
    for (int k = 0; k < 4; k++) out[1 + k] = (unsigned char)((size_t)n >> (8 * (3 - k)));
    return 5;
}

static int
w_count(W *w, int map, Py_ssize_t n)
{
    if ((unsigned long long)n > 0xffffffffULL) {
        PyErr_SetString(PyExc_ValueError, map ? "dict is too large" : "list is too large");
        return -1;
    }
    unsigned char head[5];
    return w_raw(w, (const char *)head, w_count_head(head, map, n));
}

/* An array written at `at` with a header for `expected` items that got
 * `actual` (a list that changed size while its items were encoded): the
 * header rewritten, the items moved if its width changed, and the holes
 * from `first_hole` on with them. */
static int
w_recount(W *w, Py_ssize_t at, Py_ssize_t expected, Py_ssize_t actual, Py_ssize_t first_hole)
{
    if (actual == expected) return 0;
    if ((unsigned long long)actual > 0xffffffffULL) {
        PyErr_SetString(PyExc_ValueError, "list is too large");
        return -1;
    }
    unsigned char old[5], head[5];
    int old_len = w_count_head(old, 0, expected), new_len = w_count_head(head, 0, actual);
    Py_ssize_t shift = new_len - old_len;
    if (shift > 0) W_NEED(w, shift);
    memmove(w->buf + at + new_len, w->buf + at + old_len, (size_t)(w->len - at - old_len));
    memcpy(w->buf + at, head, (size_t)new_len);
    w->len += shift;
    if (shift != 0 && w->holes != NULL) {
        for (Py_ssize_t k = first_hole; k < PyList_GET_SIZE(w->holes); k++) {
            PyObject *hole = PyList_GET_ITEM(w->holes, k);
            PyObject *moved = Py_BuildValue(
                "(nOO)", PyLong_AsSsize_t(PyTuple_GET_ITEM(hole, 0)) + shift,
                PyTuple_GET_ITEM(hole, 1), PyTuple_GET_ITEM(hole, 2));
            if (moved == NULL) return -1;
            PyList_SetItem(w->holes, k, moved);
        }
    }
    return 0;
}

static Py_ssize_t
w_nholes(W *w)
{
    return w->holes == NULL ? 0 : PyList_GET_SIZE(w->holes);
}

static int w_tree(W *w, PyObject *o);

/* A Packed node at the current depth: its bytes; its holes kept (shifted),
 * or packed in place by pack(). */
static int
w_packed(W *w, Packed *p)
{
    if (w->depth + p->height > w->height) w->height = w->depth + p->height;
    if (w->final && w->depth + p->height > CW_NEST_LIMIT) {
        PyErr_SetString(PyExc_ValueError, "recursion limit exceeded.");
        return -1;
    }
    const char *data = PyBytes_AS_STRING(p->data);
    Py_ssize_t n = PyBytes_GET_SIZE(p->data), at = 0, base = w->len;
    if (!w->final && n >= CW_JOIN_LATER) {
        /* kept by reference, copied once by pack(): an instance's parts
         * nest Packed nodes as deep as the instances do, and copying each
         * into its parent would copy the deepest ones once per level */
        return w_hole(w, (PyObject *)p);
    }
    if (p->holes == NULL) return w_raw(w, data, n);
    if (!w->final) {
        if (w_raw(w, data, n) < 0) return -1;
        if (w->holes == NULL && (w->holes = PyList_New(0)) == NULL) return -1;
        for (Py_ssize_t k = 0; k < PyList_GET_SIZE(p->holes); k++) {
            PyObject *hole = PyList_GET_ITEM(p->holes, k);
            PyObject *moved = Py_BuildValue(
                "(niO)", base + PyLong_AsSsize_t(PyTuple_GET_ITEM(hole, 0)),
                w->depth + (int)PyLong_AsLong(PyTuple_GET_ITEM(hole, 1)),
                PyTuple_GET_ITEM(hole, 2));
            int rc = moved == NULL ? -1 : PyList_Append(w->holes, moved);
            Py_XDECREF(moved);
            if (rc < 0) return -1;
        }
        return 0;
    }
    PyObject *holes = Py_NewRef(p->holes);
    int rc = 0, depth = w->depth;
    for (Py_ssize_t k = 0; rc == 0 && k < PyList_GET_SIZE(holes); k++) {
        PyObject *hole = PyList_GET_ITEM(holes, k);
        Py_ssize_t off = PyLong_AsSsize_t(PyTuple_GET_ITEM(hole, 0));
        PyObject *obj = Py_NewRef(PyTuple_GET_ITEM(hole, 2));
        w->depth = depth + (int)PyLong_AsLong(PyTuple_GET_ITEM(hole, 1));
        rc = w_raw(w, data + at, off - at);
        if (rc == 0) rc = w_tree(w, obj);
        Py_DECREF(obj);
        at = off;
    }
    w->depth = depth;
    Py_DECREF(holes);
    return rc < 0 ? -1 : w_raw(w, data + at, n - at);
}

/* An int, as msgpack packs it; one past 64 bits is a hole, or pack()'s
 * OverflowError (after its default, as msgpack does). */
static int
w_long(W *w, PyObject *o, int *overflowed)
{
    int overflow = 0;
    long long d = cc_as_long_long(o, &overflow);
    if (!overflow) {
        if (d == -1 && PyErr_Occurred()) return -1;
        return w_int(w, d);
    }
    if (overflow > 0) {
        /* PyLong_AsUnsignedLong reads the digits directly where
         * PyLong_AsUnsignedLongLong goes through _PyLong_AsByteArray (a
         * code's fingerprint is such an int, in every frame) */
        unsigned long long u = sizeof(unsigned long) == sizeof(unsigned long long)
                                   ? (unsigned long long)PyLong_AsUnsignedLong(o)
                                   : PyLong_AsUnsignedLongLong(o);
        if (!(u == (unsigned long long)-1 && PyErr_Occurred())) {
            return w_head(w, 0xcf, u, 8);
        }
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear();
    }
    if (!w->final) return w_hole(w, o);
    *overflowed = 1;
    return 0;
}

/* An ExtType (a tree node, as msgpack packs it). */
static int
w_exttype(W *w, PyObject *o)
{
    PyObject *code_obj = PyTuple_GET_SIZE(o) == 2 ? PyTuple_GET_ITEM(o, 0) : NULL;
    PyObject *data = code_obj == NULL ? NULL : PyTuple_GET_ITEM(o, 1);
    long code = code_obj == NULL || !PyLong_Check(code_obj) ? 1000 : PyLong_AsLong(code_obj);
    if (code == -1 && PyErr_Occurred()) return -1;
    if (code < -128 || code > 127 || data == NULL || !PyBytes_Check(data)) {
        PyErr_SetString(PyExc_ValueError, "malformed ExtType");
        return -1;
    }
    return w_ext(w, code, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data));
}

/* A list or tuple (a tree node, as msgpack packs it). */
static int
w_seq(W *w, PyObject *o)
{
    int is_list = PyList_Check(o);
    Py_ssize_t n = is_list ? PyList_GET_SIZE(o) : PyTuple_GET_SIZE(o);
    int rc = w_count(w, 0, n);
    w->depth++;
    for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
        if (is_list && PyList_GET_SIZE(o) != n) {
            PyErr_SetString(PyExc_RuntimeError, "list changed size during packing");
            rc = -1;
            break;
        }
        PyObject *x = Py_NewRef(is_list ? PyList_GET_ITEM(o, i) : PyTuple_GET_ITEM(o, i));
        rc = w_tree(w, x);
        Py_DECREF(x);
    }
    w->depth--;
    return rc;
}

/* msgpack's packing of a tree node (its order of checks: None, bools, int,
 * float, bytes-like, str, dict, ExtType, list or tuple, memoryview, then
 * default once), plus Packed nodes; an exact list, str or ExtType is tried
 * first (it can be no other kind). */
static int
w_tree(W *w, PyObject *o)
{
    PyObject *made = NULL;
    int rc = 0, default_used = 0;
again:
    if (w->depth > w->height) w->height = w->depth;
    if (w->depth > CW_NEST_LIMIT) {
        if (!w->final) {
            rc = w_hole(w, o);
            goto done;
        }
        PyErr_SetString(PyExc_ValueError, "recursion limit exceeded.");
        rc = -1;
        goto done;
    }
    if (Py_TYPE(o) == &Packed_Type) {
        rc = w_packed(w, (Packed *)o);
    }
    else if (PyList_CheckExact(o)) { /* the commonest nodes, exactly: none of the other kinds */
        rc = w_seq(w, o);
    }
    else if (PyUnicode_CheckExact(o)) {
        rc = w_str(w, o);
    }
    else if (Py_IS_TYPE(o, (PyTypeObject *)cc_ExtType)) {
        rc = w_exttype(w, o);
    }
    else if (o == Py_None) {
        rc = w_head(w, 0xc0, 0, 0);
    }
    else if (o == Py_True || o == Py_False) {
        rc = w_head(w, o == Py_True ? 0xc3 : 0xc2, 0, 0);
    }
    else if (PyLong_Check(o)) {
        int overflowed = 0;
        rc = w_long(w, o, &overflowed);
        if (rc == 0 && overflowed) {
            if (w->dflt != NULL && !default_used) goto use_default;
            PyErr_SetString(PyExc_OverflowError, "Integer value out of range");
            rc = -1;
        }
    }
    else if (PyFloat_Check(o)) {
        W_NEED(w, 9);
        w->buf[w->len] = (char)0xcb;
        rc = PyFloat_Pack8(PyFloat_AS_DOUBLE(o), w->buf + w->len + 1, 0);
        if (rc == 0) w->len += 9;
    }
    else if (PyBytes_Check(o)) {
        rc = w_bin(w, PyBytes_AS_STRING(o), PyBytes_GET_SIZE(o));
    }
    else if (PyByteArray_Check(o)) {
        rc = w_bin(w, PyByteArray_AS_STRING(o), PyByteArray_GET_SIZE(o));
    }
    else if (PyUnicode_Check(o)) {
        rc = w_str(w, o);
    }
    else if (PyDict_Check(o)) {
        rc = w_count(w, 1, PyDict_GET_SIZE(o));
        Py_ssize_t pos = 0, size = PyDict_GET_SIZE(o), seen = 0;
        PyObject *k, *v;
        w->depth++;
        while (rc == 0 && PyDict_Next(o, &pos, &k, &v)) {
            if (++seen > size) {
                PyErr_SetString(PyExc_RuntimeError, "dictionary keys changed during packing");
                rc = -1;
                break;
            }
            Py_INCREF(k);
            Py_INCREF(v);
            rc = w_tree(w, k);
            if (rc == 0) rc = w_tree(w, v);
            Py_DECREF(k);
            Py_DECREF(v);
            if (rc == 0 && PyDict_GET_SIZE(o) != size) {
                PyErr_SetString(PyExc_RuntimeError, "dictionary changed size during packing");
                rc = -1;
            }
        }
        w->depth--;
    }
    else if (PyObject_TypeCheck(o, (PyTypeObject *)cc_ExtType)) {
        rc = w_exttype(w, o);
    }
    else if (PyList_Check(o) || PyTuple_Check(o)) {
        rc = w_seq(w, o);
    }
    else if (PyMemoryView_Check(o)) {
        Py_buffer view;
        rc = PyObject_GetBuffer(o, &view, PyBUF_SIMPLE);
        if (rc == 0) {
            rc = w_bin(w, view.buf, view.len);
            PyBuffer_Release(&view);
        }
    }
    else if (!w->final) {
        rc = w_hole(w, o);
    }
    else if (w->dflt != NULL && !default_used) {
        goto use_default;
    }
    else {
        PyErr_Format(PyExc_TypeError, "can not serialize '%.200s' object", Py_TYPE(o)->tp_name);
        rc = -1;
    }
done:
    Py_XDECREF(made);
    return rc;
use_default:
    default_used = 1;
    {
        PyObject *x = PyObject_CallOneArg(w->dflt, o);
        Py_XSETREF(made, x);
    }
    if (made == NULL) {
        rc = -1;
        goto done;
    }
    o = made;
    goto again;
}

/* pack(tree, default=None): the blob's bytes (see the section's header). */
static PyObject *
cw_pack(PyObject *module, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject *dflt = nargs == 2 ? args[1] : Py_None;
    if (nargs < 1 || nargs + nkw > 2 ||
        (nkw == 1 && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, 0),
                                                      "default") != 0)) {
        PyErr_SetString(PyExc_TypeError, "pack(tree, default=None)");
        return NULL;
    }
    if (nkw == 1) dflt = args[1];
    W w;
    w_init(&w);
    w.final = 1;
    w.dflt = dflt != Py_None ? dflt : NULL;
    PyObject *out = w_tree(&w, args[0]) < 0 ? NULL : PyBytes_FromStringAndSize(w.buf, w.len);
    w_free(&w);
    return out;
}

/* The Packed node of what w holds (its holes moved into it). */
static PyObject *
w_packed_new(W *w)
{
    Packed *p = PyObject_GC_New(Packed, &Packed_Type);
    if (p == NULL) return NULL;
    p->data = PyBytes_FromStringAndSize(w->buf, w->len);
    p->holes = w->holes;
    w->holes = NULL;
    p->height = w->height;
    if (p->data == NULL) {
        Py_DECREF(p);
        return NULL;
    }
    if (p->holes != NULL) PyObject_GC_Track(p);
    return (PyObject *)p;
}

/* A tree node written (stolen): what the tree encoder gave back. */
static int
w_tree_steal(W *w, PyObject *t)
{
    if (t == NULL) return -1;
    int rc = w_tree(w, t);
    Py_DECREF(t);
    return rc;
}

static int cw_enc(Enc *e, W *w, PyObject *v);

/* The start of a container's encoding: 1 when it is known already (its
 * back-reference or global reference written), 0 once it is registered
 * (memo and keep), -1 on error: cv_known then cv_register.  When the
 * frames' modules are resolved and indexed by one dict (global_ids) that
 * does not hold v, the memo is asked and filled with one lookup
 * (PyDict_SetDefault); no Python code runs in between. */
static int
cw_start(Enc *e, W *w, PyObject *v)
{
    PyObject *key = NULL, *out = NULL;
    PyObject *ids = cv_slot(e->self, F_GLOBAL_IDS);
    PyObject *pending = ids == NULL ? NULL : cv_slot(e->self, F_PENDING_GLOBALS);
    if (pending == NULL) return -1;
    int r = 0;
    int fast = CV_IS_INDEX(ids) && PyList_CheckExact(pending) && PyList_GET_SIZE(pending) == 0;
    if (fast && PyDict_GET_SIZE(ids) != 0) {
        Py_INCREF(ids);
        int in = cv_index_has(ids, v);
        Py_DECREF(ids);
        if (in < 0) r = -1;
        fast = in == 0;
    }
    if (r == 0 && fast) {
        /* one probe: registered when new, else its back-reference */
        Py_ssize_t had = -1;
        r = memo_put(CV_MEMO(e), v, PyList_GET_SIZE(e->keep), 0, &had);
        if (r > 0) {
            r = PyList_Append(e->keep, v) < 0 ? -1 : 0;
        }
        else if (r == 0) {
            out = cv_ref(had);
            r = out == NULL || w_tree_steal(w, out) < 0 ? -1 : 1;
        }
        Py_XDECREF(key);
        return r;
    }
    if (r == 0 && key == NULL && (key = PyLong_FromVoidPtr(v)) == NULL) r = -1;
    if (r == 0) r = cv_known(e, v, key, &out);
    if (r == 0) {
        r = cv_register(e, v) < 0 ? -1 : 0;
    }
    else if (r > 0) {
        r = w_tree_steal(w, out) < 0 ? -1 : 1;
    }
    Py_XDECREF(key);
    return r;
}

/* [tag?, *(enc(x) for x in items)]: an exact list walked by index as it is
 * now (as a comprehension does), an exact tuple as it is, a set or frozenset
 * through its iterator. */
static int
cw_items(Enc *e, W *w, PyObject *tag, PyObject *items)
{
    int is_list = PyList_CheckExact(items), is_tuple = PyTuple_CheckExact(items);
    Py_ssize_t n = is_list ? PyList_GET_SIZE(items)
                 : is_tuple ? PyTuple_GET_SIZE(items) : PySet_GET_SIZE(items);
    Py_ssize_t expected = n + (tag != NULL), written = 0, at = w->len, first_hole = w_nholes(w);
    if (w_count(w, 0, expected) < 0) return -1;
    int rc = 0;
    w->depth++;
    if (tag != NULL) {
        rc = w_tree(w, tag);
        written++;
    }
    if (is_list || is_tuple) {
        for (Py_ssize_t i = 0; rc == 0 && i < (is_list ? PyList_GET_SIZE(items) : n); i++) {
            PyObject *x = Py_NewRef(is_list ? PyList_GET_ITEM(items, i)
                                            : PyTuple_GET_ITEM(items, i));
            rc = cw_enc(e, w, x);
            Py_DECREF(x);
            written++;
        }
    }
    else {
        PyObject *it = PyObject_GetIter(items), *x;
        if (it == NULL) rc = -1;
        while (rc == 0 && (x = PyIter_Next(it)) != NULL) {
            rc = cw_enc(e, w, x);
            Py_DECREF(x);
            written++;
        }
        if (rc == 0 && PyErr_Occurred()) rc = -1;
        Py_XDECREF(it);
    }
    w->depth--;
    return rc < 0 ? -1 : w_recount(w, at, expected, written, first_hole);
}

/* Encoder._list */
static int
cw_list(Enc *e, W *w, PyObject *v)
{
    int known = cw_start(e, w, v), rc;
    if (known != 0) return known < 0 ? -1 : 0;
    Py_ssize_t n = PyList_GET_SIZE(v);
    if (n < cv_intlist_min) return cw_items(e, w, NULL, v);
    PyObject *packed = cc_pack_ints(NULL, v);
    if (packed == NULL) return -1;
    if (packed != Py_None) {
        rc = w_ext(w, EXT_INTLIST, PyBytes_AS_STRING(packed), PyBytes_GET_SIZE(packed));
        Py_DECREF(packed);
        return rc;
    }
    Py_DECREF(packed);
    PyObject *flat = cc_is_flat(NULL, v);
    if (flat == NULL) return -1;
    int is_flat = flat == Py_True;
    Py_DECREF(flat);
    if (is_flat && e->buffers) {
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *x = PyList_GET_ITEM(v, i);
            if (PyBytes_CheckExact(x) && PyBytes_GET_SIZE(x) >= cv_buffer_min) {
                is_flat = 0;
                break;
            }
        }
    }
    if (!is_flat) return cw_items(e, w, NULL, v);
    /* [T_FLATLIST, *v]: every item a scalar msgpack takes as it is (no
     * Python code runs while they are written) */
    if (w_count(w, 0, n + 1) < 0) return -1;
    w->depth++;
    rc = w_tree(w, cv_tags[T_FLATLIST]);
    for (Py_ssize_t i = 0; rc == 0 && i < n; i++) {
        PyObject *x = Py_NewRef(PyList_GET_ITEM(v, i));
        rc = w_tree(w, x);
        Py_DECREF(x);
    }
    w->depth--;
    return rc;
}

/* Encoder._dict (not strict: the strict encoding goes to Python), iterating
 * the dict as a comprehension does: a size change between two items is the
 * RuntimeError it would raise.  [T_SHAPED, shape, *values] for a dict whose
 * str keys repeat an earlier one's, {k: enc(x)} when every key is a scalar
 * msgpack takes as it is (an int in [-2**63, 2**64)), else [T_DICT, enc(k),
 * enc(x), ...]. */
static int
cw_dict(Enc *e, W *w, PyObject *v)
{
    int known = cw_start(e, w, v), rc = 0;
    if (known != 0) return known < 0 ? -1 : 0;
    int kind = 1;
    PyObject *shape = NULL;
    if (e->last_keys != NULL && PyTuple_GET_SIZE(e->last_keys) == PyDict_GET_SIZE(v)) {
        Py_ssize_t pos = 0, i = 0;
        PyObject *k, *x;
        while (PyDict_Next(v, &pos, &k, &x) && k == PyTuple_GET_ITEM(e->last_keys, i)) i++;
        if (i == PyTuple_GET_SIZE(e->last_keys)) {
            shape = Py_NewRef(e->last_shape);
            kind = 0;
        }
    }
    PyObject *keys = kind == 0 ? Py_NewRef(Py_None) : cc_str_keys(NULL, v);
    if (keys == NULL) return -1;
    if (keys != Py_None) {
        if (PyTuple_GET_SIZE(keys) >= cv_shape_min) {
            /* Records repeat their keys: the first dict with these keys
             * defines a shape, later ones store the shape index and values. */
            shape = PyDict_GetItemWithError(e->shapes, keys);
            if (shape != NULL) {
                Py_INCREF(shape);
                kind = 0;
            }
            else {
                shape = PyErr_Occurred() ? NULL : PyLong_FromSsize_t(PyDict_GET_SIZE(e->shapes));
                rc = shape == NULL ? -1 : PyDict_SetItem(e->shapes, keys, shape);
                Py_CLEAR(shape);
            }
            if (kind == 0) {
                Py_XSETREF(e->last_keys, Py_NewRef(keys));
                Py_XSETREF(e->last_shape, Py_NewRef(shape));
            }
        }
    }
    else if (kind != 0) {
        /* Some key is not a str: a map when every key is a scalar msgpack
         * takes as it is, else T_DICT pairs. */
        Py_ssize_t pos = 0;
        PyObject *k, *x;
        while (kind == 1 && PyDict_Next(v, &pos, &k, &x)) {
            PyTypeObject *tk = Py_TYPE(k);
            if (tk == &PyUnicode_Type || tk == &PyFloat_Type || tk == &PyBool_Type ||
                tk == &PyBytes_Type || k == Py_None) {
                continue;
            }
            if (tk != &PyLong_Type) {
                kind = 2;
                break;
            }
            int overflow = 0;
            (void)cc_as_long_long(k, &overflow);
            if (overflow < 0) {
                kind = 2;
            }
            else if (overflow > 0) {
                (void)PyLong_AsUnsignedLongLong(k);
                if (PyErr_Occurred()) {
                    if (!PyErr_ExceptionMatches(PyExc_OverflowError)) {
                        Py_DECREF(keys);
                        return -1;
                    }
                    PyErr_Clear();
                    kind = 2;
                }
            }
        }
    }
    Py_DECREF(keys);
    if (rc < 0) return -1;
    Py_ssize_t size = PyDict_GET_SIZE(v), pos = 0;
    rc = kind == 1 ? w_count(w, 1, size) : w_count(w, 0, kind == 0 ? size + 2 : 2 * size + 1);
    w->depth++;
    if (rc == 0 && kind == 0) {
        rc = w_tree(w, cv_tags[T_SHAPED]);
        if (rc == 0) rc = w_tree(w, shape);
    }
    else if (rc == 0 && kind == 2) {
        rc = w_tree(w, cv_tags[T_DICT]);
    }
    Py_XDECREF(shape);
    PyObject *k, *x;
    Py_ssize_t seen = 0;
    while (rc == 0 && PyDict_Next(v, &pos, &k, &x)) {
        if (++seen > size) {
            /* keys deleted and added while values were encoded: what the
             * Python encoder's iteration raises */
            PyErr_SetString(PyExc_RuntimeError, "dictionary keys changed during iteration");
            rc = -1;
            break;
        }
        Py_INCREF(k);
        Py_INCREF(x);
        if (kind == 1) rc = w_tree(w, k);
        else if (kind == 2) rc = cw_enc(e, w, k);
        if (rc == 0) rc = cw_enc(e, w, x);
        Py_DECREF(k);
        Py_DECREF(x);
        if (rc == 0 && PyDict_GET_SIZE(v) != size) {
            PyErr_SetString(PyExc_RuntimeError, "dictionary changed size during iteration");
            rc = -1;
        }
    }
    w->depth--;
    return rc;
}

/* Encoder._set */
static int
cw_set(Enc *e, W *w, PyObject *v)
{
    int known = cw_start(e, w, v);
    if (known != 0) return known < 0 ? -1 : 0;
    return cw_items(e, w, cv_tags[T_SET], v);
}

/* A container written: list, dict, tuple, set, frozenset (the caller has
 * entered the recursion guard). */
static int
cw_container(Enc *e, W *w, PyObject *v)
{
    PyTypeObject *t = Py_TYPE(v);
    if (t == &PyList_Type) return cw_list(e, w, v);
    if (t == &PyDict_Type) return cw_dict(e, w, v);
    if (t == &PyTuple_Type) return cw_items(e, w, cv_tags[T_TUPLE], v);
    if (t == &PySet_Type) return cw_set(e, w, v);
    return cw_items(e, w, cv_tags[T_FROZENSET], v);
}

#define CW_IS_CONTAINER(t) ((t) == &PyList_Type || (t) == &PyDict_Type || \
    (t) == &PyTuple_Type || (t) == &PySet_Type || (t) == &PyFrozenSet_Type)

/* Encoder.enc, writing: a scalar or a container here, anything else
 * through the tree encoder (cv_enc) and packed. */
static int
cw_enc(Enc *e, W *w, PyObject *v)
{
    PyTypeObject *t = Py_TYPE(v);
    if (w->depth > w->height) w->height = w->depth;
    if (v == Py_None) return w_head(w, 0xc0, 0, 0);
    if (t == &PyLong_Type) {
        int overflowed = 0;
        return w_long(w, v, &overflowed);
    }
    if (t == &PyUnicode_Type) return w_str(w, v);
    if (t == &PyFloat_Type || t == &PyBool_Type) return w_tree(w, v);
    if (t == &PyBytes_Type && (!e->buffers || PyBytes_GET_SIZE(v) < cv_buffer_min)) {
        return w_bin(w, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
    }
    if (!CW_IS_CONTAINER(t)) {
        /* Python code may run, and roll the shapes back (before and after:
         * the tree encoder may set the cache itself, then roll back) */
        Py_CLEAR(e->last_keys);
        Py_CLEAR(e->last_shape);
        PyObject *tree = cv_enc(e, v);
        Py_CLEAR(e->last_keys);
        Py_CLEAR(e->last_shape);
        return w_tree_steal(w, tree);
    }
    if (Py_EnterRecursiveCall(" while encoding a value")) return -1;
    int rc = cw_container(e, w, v);
    Py_LeaveRecursiveCall();
    return rc;
}

/* _globals.global_name(v): its cache's answer read here when it has one
 * (_verified, an IdentityCache: id -> (weak reference, (module, qualname)),
 * valid while the reference still points at v), else the Python call. */
static PyObject *
cv_global_name_of(PyObject *v)
{
    if (cv_verified_entries != NULL) {
        PyObject *key = PyLong_FromVoidPtr(v);
        if (key == NULL) return NULL;
        PyObject *hit = PyDict_GetItemWithError(cv_verified_entries, key);
        Py_DECREF(key);
        if (hit == NULL && PyErr_Occurred()) return NULL;
        if (hit != NULL && PyTuple_CheckExact(hit) && PyTuple_GET_SIZE(hit) == 2 &&
            PyWeakref_Check(PyTuple_GET_ITEM(hit, 0)) &&
            PyTuple_CheckExact(PyTuple_GET_ITEM(hit, 1))) {
            PyObject *name = Py_NewRef(PyTuple_GET_ITEM(hit, 1));
#if PY_VERSION_HEX >= 0x030D0000
            PyObject *target = NULL;
            int alive = PyWeakref_GetRef(PyTuple_GET_ITEM(hit, 0), &target);
            Py_XDECREF(target); /* compared by address only */
            if (alive < 0) {
                Py_DECREF(name);
                return NULL;
            }
#else
            PyObject *target = PyWeakref_GET_OBJECT(PyTuple_GET_ITEM(hit, 0));
#endif
            if (target == v) return name;
            Py_DECREF(name);
        }
    }
    return PyObject_CallOneArg(cv_global_name, v);
}

/* v registered, as [T_GLOBAL, module, qualname] (name: global_name's pair). */
static PyObject *
cv_global_named(Enc *e, PyObject *v, PyObject *name)
{
    if (!PyTuple_CheckExact(name) || PyTuple_GET_SIZE(name) != 2) {
        PyErr_SetString(PyExc_TypeError, "global_name() must return a pair");
        return NULL;
    }
    PyObject *module = NULL, *qualname = NULL;
    if (cv_register(e, v) < 0 || (module = cv_string(e, PyTuple_GET_ITEM(name, 0))) == NULL ||
        (qualname = cv_string(e, PyTuple_GET_ITEM(name, 1))) == NULL) {
        Py_XDECREF(module);
        return NULL;
    }
    PyObject *out = PyList_New(3);
    if (out == NULL) {
        Py_DECREF(module);
        Py_DECREF(qualname);
        return NULL;
    }
    PyList_SET_ITEM(out, 0, Py_NewRef(cv_tags[T_GLOBAL]));
    PyList_SET_ITEM(out, 1, module);
    PyList_SET_ITEM(out, 2, qualname);
    return out;
}

/* Encoder._global_or_none: a new reference, Py_None (new) when v has no
 * importable name. */
static PyObject *
cv_global_or_none(Enc *e, PyObject *v)
{
    PyObject *key = PyLong_FromVoidPtr(v);
    if (key == NULL) return NULL;
    PyObject *wk = PyDict_GetItemWithError(cv_WELLKNOWN_INDEX, key);
    Py_DECREF(key);
    if (wk != NULL) {
        long index = PyLong_AsLong(wk);
        if (index == -1 && PyErr_Occurred()) return NULL;
        if (index < 0 || index > 255) {
            PyErr_SetString(PyExc_ValueError, "well-known index out of range");
            return NULL;
        }
        if (cv_wellknown[index] == NULL) {
            char b = (char)index;
            if ((cv_wellknown[index] = cv_ext(EXT_WELLKNOWN, &b, 1)) == NULL) return NULL;
        }
        return Py_NewRef(cv_wellknown[index]);
    }
    if (PyErr_Occurred()) return NULL;
    PyObject *out = NULL;
    int r = cv_memo_ref(e, v, &out);
    if (r != 0) return r < 0 ? NULL : out;
    PyObject *name = cv_global_name_of(v);
    if (name == NULL || name == Py_None) return name;
    out = cv_global_named(e, v, name);
    Py_DECREF(name);
    return out;
}

/* _class_ref / _callable_ref: the global, or (none) the Python method,
 * which raises the error naming it (_global_or_none changed nothing). */
static PyObject *
cv_named(Enc *e, PyObject *v, PyObject *method)
{
    PyObject *out = cv_global_or_none(e, v);
    if (out != Py_None) return out;
    Py_DECREF(out);
    return cv_call(e, method, v);
}

/* type_name(): the qualname of v's type, with its module unless builtins. */
static PyObject *
cv_type_name(PyObject *v)
{
    PyObject *t = (PyObject *)Py_TYPE(v);
    PyObject *module = PyObject_GetAttr(t, cv_s_module);
    PyObject *qualname = module == NULL ? NULL : PyObject_GetAttr(t, cv_s_qualname);
    PyObject *out = NULL;
    if (qualname != NULL) {
        int builtin = PyUnicode_Check(module) &&
                      PyUnicode_CompareWithASCIIString(module, "builtins") == 0;
        out = builtin ? PyObject_Str(qualname) : PyUnicode_FromFormat("%S.%S", module, qualname);
    }
    Py_XDECREF(module);
    Py_XDECREF(qualname);
    return out;
}

/* SnapshotError(f"{type_name(v)}{message}") with message's %R/%S filled. */
static PyObject *
cv_fail(PyObject *v, const char *format, PyObject *arg1, PyObject *arg2)
{
    PyObject *name = cv_type_name(v);
    if (name == NULL) return NULL;
    PyObject *tail = PyUnicode_FromFormat(format, arg1, arg2);
    if (tail != NULL) PyErr_Format(cv_SnapshotError, "%U%U", name, tail);
    Py_DECREF(name);
    Py_XDECREF(tail);
    return NULL;
}

static int
cv_append_steal(PyObject *list, PyObject *x)
{
    if (x == NULL) return -1;
    int rc = PyList_Append(list, x);
    Py_DECREF(x);
    return rc;
}

/* Encoder._reduce */
static PyObject *
cv_reduce(Enc *e, PyObject *v, PyObject *key)
{
    PyObject *reducer = PyDict_GetItemWithError(cv_copyreg_dispatch, (PyObject *)Py_TYPE(v));
    if (reducer == NULL && PyErr_Occurred()) return NULL;
    PyObject *rv = reducer != NULL ? PyObject_CallOneArg(reducer, v) : cv_dataclass_reduce(v);
    if (rv == NULL && reducer == NULL && !PyErr_Occurred()) {
        rv = PyObject_CallMethodOneArg(v, cv_s_reduce_ex, cv_four);
    }
    if (rv == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) return NULL;
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        Py_XDECREF(type);
        Py_XDECREF(tb);
        cv_fail(v, " cannot be reduced: %S", value, NULL);
        Py_XDECREF(value);
        return NULL;
    }
    PyObject *out = NULL, *head = NULL;
    if (PyUnicode_Check(rv)) {
        PyObject *name = cv_global_name_of(v);
        if (name == NULL) goto done;
        if (name == Py_None) {
            Py_DECREF(name);
            PyObject *module = PyObject_GetAttr(v, cv_s_module); /* getattr(v, "__module__", None) */
            if (module == NULL) {
                if (!PyErr_ExceptionMatches(PyExc_AttributeError)) goto done;
                PyErr_Clear();
                module = Py_NewRef(Py_None);
            }
            cv_fail(v, " reduces to the name %S.%S, which does not resolve back to it", module,
                    rv);
            Py_DECREF(module);
            goto done;
        }
        out = cv_global_named(e, v, name);
        Py_DECREF(name);
        goto done;
    }
    if (!PyTuple_Check(rv) || PyTuple_GET_SIZE(rv) < 2 || PyTuple_GET_SIZE(rv) > 6) {
        cv_fail(v, ".__reduce_ex__ returned %R", rv, NULL);
        goto done;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(rv);
    PyObject *func = PyTuple_GET_ITEM(rv, 0), *args = PyTuple_GET_ITEM(rv, 1);
    PyObject *state = n > 2 ? PyTuple_GET_ITEM(rv, 2) : Py_None;
    PyObject *listitems = n > 3 ? PyTuple_GET_ITEM(rv, 3) : Py_None;
    PyObject *dictitems = n > 4 ? PyTuple_GET_ITEM(rv, 4) : Py_None;
    PyObject *setter = n > 5 ? PyTuple_GET_ITEM(rv, 5) : Py_None;
    if (setter != Py_None) {
        cv_fail(v, " uses a state setter, not supported natively", NULL, NULL);
        goto done;
    }
    if (!PyTuple_Check(args)) {
        cv_fail(v, ".__reduce_ex__ gave non-tuple arguments", NULL, NULL);
        goto done;
    }
    if (PySet_Add(e->busy, key) < 0) goto done;
    head = PyList_New(0);
    if (head != NULL) {
        int rc;
        if (func == cv_newobj && PyTuple_GET_SIZE(args) > 0 &&
            PyType_Check(PyTuple_GET_ITEM(args, 0))) {
            PyObject *rest = PyTuple_GetSlice(args, 1, PyTuple_GET_SIZE(args));
            rc = PyList_Append(head, cv_tags[T_NEWOBJ]) < 0 ||
                 cv_append_steal(head, cv_named(e, PyTuple_GET_ITEM(args, 0),
                                                cv_s_class_ref)) < 0 ||
                 rest == NULL || cv_append_steal(head, cv_items(e, NULL, rest)) < 0 ? -1 : 0;
            Py_XDECREF(rest);
        }
        else {
            rc = PyList_Append(head, cv_tags[T_REDUCE]) < 0 ||
                 cv_append_steal(head, cv_named(e, func, cv_s_callable_ref)) < 0 ||
                 cv_append_steal(head, cv_items(e, NULL, args)) < 0 ? -1 : 0;
        }
        if (rc < 0) Py_CLEAR(head);
    }
    /* finally: self.busy.discard(id(v)), keeping an error being raised */
    {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        int rc = PySet_Discard(e->busy, key);
        if (type != NULL) {
            PyErr_Restore(type, value, tb);
        }
        else if (rc < 0) {
            Py_CLEAR(head);
        }
    }
    if (head == NULL || cv_register(e, v) < 0) goto done;
    PyObject *tail[3] = {NULL, NULL, NULL};
    int ok = 1;
    if (state != Py_None) {
        ok = (tail[0] = cv_enc(e, state)) != NULL;
    }
    if (ok && listitems != Py_None) {
        PyObject *items = PySequence_List(listitems);
        ok = items != NULL && (tail[1] = cv_items(e, NULL, items)) != NULL;
        Py_XDECREF(items);
    }
    if (ok && dictitems != Py_None) {
        PyObject *flat = PyList_New(0), *it = flat == NULL ? NULL : PyObject_GetIter(dictitems);
        PyObject *pair;
        ok = it != NULL;
        while (ok && (pair = PyIter_Next(it)) != NULL) {
            PyObject *inner = PyObject_GetIter(pair);
            Py_DECREF(pair);
            PyObject *x;
            ok = inner != NULL;
            while (ok && (x = PyIter_Next(inner)) != NULL) {
                ok = cv_append_steal(flat, x) == 0;
            }
            ok = ok && !PyErr_Occurred();
            Py_XDECREF(inner);
        }
        ok = ok && !PyErr_Occurred();
        Py_XDECREF(it);
        ok = ok && (tail[2] = cv_items(e, NULL, flat)) != NULL;
        Py_XDECREF(flat);
    }
    if (ok) {
        int last = 2;
        while (last >= 0 && (tail[last] == NULL || tail[last] == Py_None)) last--;
        for (int k = 0; ok && k <= last; k++) {
            ok = PyList_Append(head, tail[k] == NULL ? Py_None : tail[k]) == 0;
        }
    }
    for (int k = 0; k < 3; k++) Py_XDECREF(tail[k]);
    if (ok) out = Py_NewRef(head);
done:
    Py_XDECREF(head);
    Py_DECREF(rv);
    return out;
}

/* The commonest reduces, in C: what object.__reduce_ex__(4) builds, for
 * classes that keep object's __reduce_ex__ and __reduce__, have no
 * __getnewargs_ex__ or __getnewargs__, and are no list or dict:
 * (copyreg.__newobj__, (type(v),), state, None, None), where the state is
 *  - for a slotted dataclass, [getattr(v, f.name) for f in fields(v)]: the
 *    __getstate__ dataclass(slots=True) gives (dataclasses._dataclass_getstate);
 *  - for an instance with a __dict__ and object's __getstate__ (a plain
 *    class, a dataclass without slots), that very dict, or None when it is
 *    empty.  A class of this kind is checked once against the real reduce
 *    of its first instance (extra slots, a C base: anything else makes it
 *    Python's for good), and an instance whose own dict names one of the
 *    reduce methods is left to the real reduce.
 * What each class allows is remembered per class as the subtype cache does
 * (address and version tag; the names are held, the class is not). */
static struct {
    PyTypeObject *type;
    unsigned int tag;
    /* a tuple of the field names (slotted dataclass), True (instance dict,
     * checked), or None: not eligible */
    PyObject *names;
} cv_dc_cache[64];

static int
cv_lookup_optional(PyObject *obj, PyObject *name, PyObject **out)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyObject_GetOptionalAttr(obj, name, out);
#else
    return _PyObject_LookupAttr(obj, name, out);
#endif
}

/* What class t allows: its field names (a slotted dataclass), False (an
 * instance dict: to be checked against a real reduce), None (neither), NULL
 * on error (new reference). */
static PyObject *
cv_dc_names_uncached(PyTypeObject *t)
{
    PyObject *type = (PyObject *)t, *attr = NULL;
    int with_dict = t->tp_dictoffset != 0;
    /* an own __getattribute__ or __getattr__ may answer the reduce's lookups
     * on the instance otherwise */
    if (t->tp_new == NULL || t->tp_itemsize != 0 || t->tp_getattro != PyObject_GenericGetAttr ||
        PyType_IsSubtype(t, &PyList_Type) || PyType_IsSubtype(t, &PyDict_Type) ||
        (!with_dict && cv_dc_getstate == NULL)) {
        return Py_NewRef(Py_None);
    }
    struct { PyObject *name, *expected; } same[3] = {
        {cv_s_getstate, with_dict ? cv_object_getstate : cv_dc_getstate},
        {cv_s_reduce_ex, cv_object_reduce_ex}, {cv_s_reduce, cv_object_reduce}};
    for (int k = 0; k < 3; k++) {
        if (cv_lookup_optional(type, same[k].name, &attr) < 0) return NULL;
        int ok = attr == same[k].expected;
        Py_XDECREF(attr);
        if (!ok) return Py_NewRef(Py_None);
    }
    PyObject *absent[2] = {cv_s_getnewargs_ex, cv_s_getnewargs};
    for (int k = 0; k < 2; k++) {
        if (cv_lookup_optional(type, absent[k], &attr) < 0) return NULL;
        if (attr != NULL) {
            Py_DECREF(attr);
            return Py_NewRef(Py_None);
        }
    }
    if (with_dict) {
        /* slots beside the dict (a subclass of a slotted class): the state is
         * (dict, slots) when any is set, which a first instance with them
         * unset would not show; copyreg._slotnames is what the reduce reads */
        PyObject *slots = PyObject_CallOneArg(cv_slotnames, type);
        if (slots == NULL) return NULL;
        int none = PyList_CheckExact(slots) && PyList_GET_SIZE(slots) == 0;
        Py_DECREF(slots);
        return Py_NewRef(none ? Py_False : Py_None);
    }
    PyObject *fields = PyObject_GetAttr(type, cv_s_dataclass_fields);
    if (fields == NULL) return NULL;
    PyObject *names = PyList_New(0), *out = NULL;
    if (names == NULL || !PyDict_CheckExact(fields)) goto done;
    Py_ssize_t pos = 0;
    PyObject *k, *f;
    while (PyDict_Next(fields, &pos, &k, &f)) {
        Py_INCREF(f);
        PyObject *kind = PyObject_GetAttr(f, cv_s_field_type);
        PyObject *name = kind == NULL ? NULL : PyObject_GetAttr(f, cv_s_fname);
        Py_DECREF(f);
        int rc = name == NULL ? -1 : 0;
        if (rc == 0 && kind == cv_dc_FIELD) {
            rc = PyUnicode_Check(name) ? PyList_Append(names, name) : -2;
        }
        Py_XDECREF(kind);
        Py_XDECREF(name);
        if (rc == -2) { /* a field named by a non-str: Python's path */
            out = Py_NewRef(Py_None);
            goto done;
        }
        if (rc < 0) goto done;
    }
    out = PyList_AsTuple(names);
done:
    if (out == NULL && !PyErr_Occurred()) out = Py_NewRef(Py_None);
    Py_XDECREF(names);
    Py_DECREF(fields);
    return out;
}

/* The instance dict of v when its reduce can be built here, Py_None when it
 * names a reduce method itself (the real reduce then), NULL on error. */
static PyObject *
cv_dc_instance_dict(PyObject *v)
{
    PyObject *d = PyObject_GenericGetDict(v, NULL);
    if (d == NULL) return NULL;
    if (!PyDict_Check(d)) {
        Py_DECREF(d);
        return Py_NewRef(Py_None);
    }
    if (PyDict_GET_SIZE(d) != 0) {
        PyObject *names[5] = {cv_s_reduce_ex, cv_s_reduce, cv_s_getstate, cv_s_getnewargs_ex,
                              cv_s_getnewargs};
        for (int k = 0; k < 5; k++) {
            int in = PyDict_Contains(d, names[k]);
            if (in != 0) {
                Py_DECREF(d);
                return in < 0 ? NULL : Py_NewRef(Py_None);
            }
        }
    }
    return d;
}

/* (copyreg.__newobj__, (t,), state, None, None) */
static PyObject *
cv_dc_build(PyTypeObject *t, PyObject *state)
{
    PyObject *args = PyTuple_Pack(1, (PyObject *)t);
    PyObject *out = args == NULL ? NULL
                    : PyTuple_Pack(5, cv_newobj, args, state, Py_None, Py_None);
    Py_XDECREF(args);
    return out;
}

/* Whether rv is what cv_dc_build makes for v (with instance dict d). */
static int
cv_dc_same(PyObject *rv, PyObject *v, PyObject *d)
{
    return PyTuple_CheckExact(rv) && PyTuple_GET_SIZE(rv) == 5 &&
           PyTuple_GET_ITEM(rv, 0) == cv_newobj && PyTuple_CheckExact(PyTuple_GET_ITEM(rv, 1)) &&
           PyTuple_GET_SIZE(PyTuple_GET_ITEM(rv, 1)) == 1 &&
           PyTuple_GET_ITEM(PyTuple_GET_ITEM(rv, 1), 0) == (PyObject *)Py_TYPE(v) &&
           PyTuple_GET_ITEM(rv, 2) == (PyDict_GET_SIZE(d) ? d : Py_None) &&
           PyTuple_GET_ITEM(rv, 3) == Py_None && PyTuple_GET_ITEM(rv, 4) == Py_None;
}

/* The reduce of v when it is such an instance (new reference), NULL with no
 * error when it is not, NULL with an error. */
static PyObject *
cv_dataclass_reduce(PyObject *v)
{
    if (cv_object_getstate == NULL) return NULL;
    PyTypeObject *t = Py_TYPE(v);
    size_t slot = ((uintptr_t)t >> 4) & 63;
    unsigned int tag = t->tp_version_tag;
    PyObject *names;
    if (tag != 0 && cv_dc_cache[slot].type == t && cv_dc_cache[slot].tag == tag) {
        names = Py_NewRef(cv_dc_cache[slot].names);
    }
    else {
        names = cv_dc_names_uncached(t);
        if (names == NULL) return NULL;
        if (names == Py_False) {
            /* An instance dict: the real reduce of this first instance
             * decides, and is the answer this time. */
            Py_DECREF(names);
            PyObject *d = cv_dc_instance_dict(v);
            if (d == NULL || d == Py_None) {
                Py_XDECREF(d);
                return NULL;
            }
            unsigned int before = t->tp_version_tag;
            PyObject *rv = PyObject_CallMethodOneArg(v, cv_s_reduce_ex, cv_four);
            if (rv == NULL) {
                Py_DECREF(d);
                return NULL;
            }
            names = Py_NewRef(cv_dc_same(rv, v, d) ? Py_True : Py_None);
            Py_DECREF(d);
            /* remembered only if the class did not change meanwhile (the
             * reduce runs Python code): else the next instance checks again */
            tag = t->tp_version_tag;
            if (tag != 0 && tag == before) {
                cv_dc_cache[slot].type = t;
                cv_dc_cache[slot].tag = tag;
                Py_XSETREF(cv_dc_cache[slot].names, names);
            }
            else {
                Py_DECREF(names);
            }
            return rv;
        }
        tag = t->tp_version_tag;
        if (tag != 0) {
            cv_dc_cache[slot].type = t;
            cv_dc_cache[slot].tag = tag;
            Py_XSETREF(cv_dc_cache[slot].names, Py_NewRef(names));
        }
    }
    if (names == Py_None) {
        Py_DECREF(names);
        return NULL;
    }
    if (names == Py_True) {
        Py_DECREF(names);
        PyObject *d = cv_dc_instance_dict(v);
        if (d == NULL || d == Py_None) {
            Py_XDECREF(d);
            return NULL;
        }
        PyObject *out = cv_dc_build(t, PyDict_GET_SIZE(d) ? d : Py_None);
        Py_DECREF(d);
        return out;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    PyObject *state = PyList_New(n), *out = NULL;
    /* out of the collector's sight until every item is set (getattr may run
     * Python code, which could find it through gc.get_objects()) */
    if (state != NULL) PyObject_GC_UnTrack(state);
    for (Py_ssize_t k = 0; state != NULL && k < n; k++) {
        PyObject *x = PyObject_GetAttr(v, PyTuple_GET_ITEM(names, k));
        if (x == NULL) {
            Py_CLEAR(state);
            break;
        }
        PyList_SET_ITEM(state, k, x);
    }
    if (state != NULL) PyObject_GC_Track(state);
    Py_DECREF(names);
    if (state != NULL) out = cv_dc_build(t, state);
    Py_XDECREF(state);
    return out;
}

/* Whether t is a subclass of one of the classes in the tuple `types`,
 * remembered per class for as long as the class is unchanged (its address
 * and version tag, as cd_follows_unguarded_cached) and for one tuple at a
 * time (held, so its identity stands for its contents).  No class is held. */
static struct {
    PyTypeObject *type;
    unsigned int tag;
    int result;
} cv_subtype_cache[256];
static PyObject *cv_subtype_cache_types;

static int
cv_subtype_of_any(PyTypeObject *t, PyObject *types)
{
    if (types != cv_subtype_cache_types) {
        memset(cv_subtype_cache, 0, sizeof(cv_subtype_cache));
        Py_XSETREF(cv_subtype_cache_types, Py_NewRef(types));
    }
    size_t slot = ((uintptr_t)t >> 4) & 255;
    unsigned int tag = t->tp_version_tag;
    if (tag != 0 && cv_subtype_cache[slot].type == t && cv_subtype_cache[slot].tag == tag) {
        return cv_subtype_cache[slot].result;
    }
    int out = 0;
    for (Py_ssize_t k = 0; !out && k < PyTuple_GET_SIZE(types); k++) {
        out = PyType_IsSubtype(t, (PyTypeObject *)PyTuple_GET_ITEM(types, k));
    }
    if (tag != 0) {
        cv_subtype_cache[slot].type = t;
        cv_subtype_cache[slot].tag = tag;
        cv_subtype_cache[slot].result = out;
    }
    return out;
}

/* isinstance(v, types) for a tuple of classes whose metaclass is exactly
 * type (no __instancecheck__ of their own), as PyObject_IsInstance answers
 * it, with one lookup of v.__class__ rather than one per class; any other
 * tuple: PyObject_IsInstance itself. */
static int
cv_isinstance_types(PyObject *v, PyObject *types)
{
    Py_ssize_t n = PyTuple_GET_SIZE(types);
    for (Py_ssize_t k = 0; k < n; k++) {
        if (!PyType_CheckExact(Py_TYPE(PyTuple_GET_ITEM(types, k))) ||
            !PyType_Check(PyTuple_GET_ITEM(types, k))) {
            return PyObject_IsInstance(v, types);
        }
    }
    if (cv_subtype_of_any(Py_TYPE(v), types)) return 1;
    /* object_isinstance's second chance: a __class__ that is not type(v) */
    PyObject *icls = NULL;
#if PY_VERSION_HEX >= 0x030D0000
    if (PyObject_GetOptionalAttr(v, cv_s_class, &icls) < 0) return -1;
#else
    if (_PyObject_LookupAttr(v, cv_s_class, &icls) < 0) return -1;
#endif
    int out = 0;
    if (icls != NULL && icls != (PyObject *)Py_TYPE(v) && PyType_Check(icls)) {
        for (Py_ssize_t k = 0; !out && k < n; k++) {
            out = PyType_IsSubtype((PyTypeObject *)icls,
                                   (PyTypeObject *)PyTuple_GET_ITEM(types, k));
        }
    }
    Py_XDECREF(icls);
    return out;
}

/* Encoder._other for an instance (classes, exceptions and a self-reference
 * through constructor arguments are Python's): the reduce protocol, rolled
 * back to the fallback pickler when it raises SnapshotError. */
static PyObject *
cv_other(Enc *e, PyObject *v)
{
    if (PyType_Check(v) || PyExceptionInstance_Check(v)) return cv_call(e, cv_s_other, v);
    PyObject *out = NULL;
    CV_KNOWN_OR_RETURN(e, v, key, out)
    int busy = PySet_Contains(e->busy, key);
    if (busy != 0) {
        Py_DECREF(key);
        return busy < 0 ? NULL : cv_call(e, cv_s_other, v);
    }
    /* `if NO_REDUCE and isinstance(v, NO_REDUCE)`: a subclass of a type
     * whose reduce must not run (itertools' types, whose own reduce is
     * deprecated on 3.12 and 3.13 and gone on 3.14); Python's _other refuses
     * it with the error no fallback may retry. */
    PyObject *no_reduce = PyDict_GetItemWithError(cv_encoder_dict, cv_s_no_reduce);
    if (no_reduce == NULL && PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    }
    if (no_reduce != NULL && PyTuple_Check(no_reduce) && PyTuple_GET_SIZE(no_reduce) > 0) {
        Py_INCREF(no_reduce);
        int refused = cv_isinstance_types(v, no_reduce);
        Py_DECREF(no_reduce);
        if (refused != 0) {
            Py_DECREF(key);
            return refused < 0 ? NULL : cv_call(e, cv_s_other, v);
        }
    }
    Py_ssize_t cp[5] = {PyList_GET_SIZE(e->keep), PyDict_GET_SIZE(e->strings),
                        ((MemoObject *)e->codes)->used, PyDict_GET_SIZE(e->shapes),
                        PyList_GET_SIZE(e->offered)};
    out = cv_reduce(e, v, key);
    Py_DECREF(key);
    if (out != NULL || !PyErr_ExceptionMatches(cv_SnapshotError)) return out;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    /* the shapes are rolled back: the writer's last shape may be among them */
    Py_CLEAR(e->last_keys);
    Py_CLEAR(e->last_shape);
    PyObject *checkpoint = Py_BuildValue("(nnnnn)", cp[0], cp[1], cp[2], cp[3], cp[4]);
    PyObject *done = checkpoint == NULL ? NULL : cv_call(e, cv_s_rollback, checkpoint);
    Py_XDECREF(checkpoint);
    if (done != NULL) {
        Py_DECREF(done);
        out = PyObject_CallMethodObjArgs(e->self, cv_s_pickle, v, value, NULL);
    }
    Py_XDECREF(value);
    return out;
}

/* A range field as a C integer: 0, or -1 (with an error, or *ok = 0 when it
 * does not fit). */
static int
cv_range_field(PyObject *r, PyObject *name, Py_ssize_t *out, int *ok)
{
    PyObject *x = PyObject_GetAttr(r, name);
    if (x == NULL) return -1;
    *out = PyLong_CheckExact(x) ? PyLong_AsSsize_t(x) : -1;
    Py_DECREF(x);
    if (*out == -1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear();
        *ok = 0;
    }
    return 0;
}

/* The frames layer's C API (its range_reduce), imported on first use. */
static CorosnapFramesCAPI *cv_frames_api = NULL;

/* Encoder._rangeiter for the commonest shape, iter(range(stop)) advanced by
 * index (a for loop over range(n)); any other shape is the Python method's. */
static PyObject *
cv_rangeiter(Enc *e, PyObject *v)
{
    PyObject *out = NULL;
    int found = cv_memo_ref(e, v, &out);
    if (found != 0) return found < 0 ? NULL : out;
    /* 3.11 reduces to (iter, (the whole range,), items consumed); 3.12+ to
     * (iter, (the remaining range,), None), taken as range(stop) advanced by
     * start when step is 1 and start >= 0.  The frames layer reads the
     * iterator's struct and says what the reduce would (a range too big for
     * C longs has another type: its reduce is called). */
    PyObject *reduced = NULL;
    Py_ssize_t start = 0, stop = 0, step = 0, index = 0;
    int ok = 1;
    long fields[4];
    if (cv_frames_api == NULL && (cv_frames_api = CorosnapFrames_Import()) == NULL) goto error;
    if (cv_frames_api->range_reduce(v, fields)) {
        start = fields[0];
        stop = fields[1];
        step = fields[2];
        index = fields[3];
        if (index < 0) {
            index = 0;
            if (step == 1 && start >= 0) {
                index = start;
                start = 0;
            }
        }
        goto reduced;
    }
    reduced = PyObject_CallMethodNoArgs(v, cv_s_reduce);
    if (reduced == NULL) goto error;
    if (!PyTuple_CheckExact(reduced) || PyTuple_GET_SIZE(reduced) != 3 ||
        !PyTuple_CheckExact(PyTuple_GET_ITEM(reduced, 1)) ||
        PyTuple_GET_SIZE(PyTuple_GET_ITEM(reduced, 1)) != 1 ||
        !PyRange_Check(PyTuple_GET_ITEM(PyTuple_GET_ITEM(reduced, 1), 0))) {
        ok = 0;
    }
    else {
        PyObject *r = PyTuple_GET_ITEM(PyTuple_GET_ITEM(reduced, 1), 0);
        PyObject *consumed = PyTuple_GET_ITEM(reduced, 2);
        if (cv_range_field(r, cv_s_start, &start, &ok) < 0 ||
            cv_range_field(r, cv_s_stop, &stop, &ok) < 0 ||
            cv_range_field(r, cv_s_step, &step, &ok) < 0) goto error;
        if (consumed == Py_None) {
            if (step == 1 && start >= 0) {
                index = start;
                start = 0;
            }
        }
        else if (PyLong_CheckExact(consumed)) {
            index = PyLong_AsSsize_t(consumed);
            if (index == -1 && PyErr_Occurred()) {
                if (!PyErr_ExceptionMatches(PyExc_OverflowError)) goto error;
                PyErr_Clear();
                ok = 0;
            }
        }
        else {
            ok = 0;
        }
    }
    Py_CLEAR(reduced);
reduced:
    if (!ok || step != 1 || start != 0) {
        return cv_call(e, cv_s_enc_other, v); /* another shape: Python's */
    }
    if (cv_register(e, v) < 0) goto error;
    out = PyList_New(3);
    if (out == NULL) return NULL;
    PyList_SET_ITEM(out, 0, Py_NewRef(cv_tags[T_RANGEITER]));
    PyObject *a = PyLong_FromSsize_t(stop), *b = PyLong_FromSsize_t(index);
    if (a == NULL || b == NULL) {
        Py_XDECREF(a);
        Py_XDECREF(b);
        Py_DECREF(out);
        return NULL;
    }
    PyList_SET_ITEM(out, 1, a);
    PyList_SET_ITEM(out, 2, b);
    return out;
error:
    Py_XDECREF(reduced);
    return NULL;
}

/* Encoder._seqiter for list and tuple iterators: [T_SEQITER, enc(seq),
 * index] from the iterator's __reduce__ ((iter, (seq,), index), or (iter,
 * ((),)) once exhausted), registered after its sequence; a reduce of another
 * shape is Python's.  While the iterator is not exhausted the frames layer
 * reads its struct and says what the reduce would, without building it. */
static PyObject *
cv_seqiter(Enc *e, PyObject *v)
{
    PyObject *out = NULL;
    int found = cv_memo_ref(e, v, &out);
    if (found != 0) return found < 0 ? NULL : out;
    if (cv_frames_api == NULL && (cv_frames_api = CorosnapFrames_Import()) == NULL) {
        return NULL;
    }
    PyObject *seq, *index;
    Py_ssize_t at;
    if (cv_frames_api->seqiter_reduce(v, &seq, &at)) {
        seq = Py_NewRef(seq);
        index = PyLong_FromSsize_t(at);
    }
    else {
        PyObject *rv = PyObject_CallMethodNoArgs(v, cv_s_reduce);
        if (rv == NULL) return NULL;
        Py_ssize_t n = PyTuple_CheckExact(rv) ? PyTuple_GET_SIZE(rv) : 0;
        PyObject *args = n >= 2 ? PyTuple_GET_ITEM(rv, 1) : NULL;
        if (n < 2 || n > 3 || !PyTuple_CheckExact(args) || PyTuple_GET_SIZE(args) < 1 ||
            (n == 3 && !PyLong_CheckExact(PyTuple_GET_ITEM(rv, 2)))) {
            Py_DECREF(rv);
            return cv_call(e, cv_s_enc_other, v);
        }
        seq = Py_NewRef(PyTuple_GET_ITEM(args, 0));
        index = n == 3 ? Py_NewRef(PyTuple_GET_ITEM(rv, 2)) : PyLong_FromLong(0);
        Py_DECREF(rv);
    }
    if (!PyList_CheckExact(seq) && !PyTuple_CheckExact(seq)) {
        /* over a subclass: the reduce protocol, as Encoder._seqiter says */
        Py_DECREF(seq);
        Py_XDECREF(index);
        return cv_call(e, cv_s_enc_other, v);
    }
    PyObject *encoded = index == NULL ? NULL : cv_enc(e, seq);
    Py_DECREF(seq);
    if (encoded == NULL || cv_register(e, v) < 0 || (out = PyList_New(3)) == NULL) {
        Py_XDECREF(encoded);
        Py_XDECREF(index);
        return NULL;
    }
    PyList_SET_ITEM(out, 0, Py_NewRef(cv_tags[T_SEQITER]));
    PyList_SET_ITEM(out, 1, encoded);
    PyList_SET_ITEM(out, 2, index);
    return out;
}

/* Encoder.enc */
static PyObject *
cv_enc(Enc *e, PyObject *v)
{
    PyTypeObject *t = Py_TYPE(v);
    if (v == Py_None || t == &PyFloat_Type || t == &PyBool_Type) return Py_NewRef(v);
    if (t == &PyBytes_Type && (!e->buffers || PyBytes_GET_SIZE(v) < cv_buffer_min)) {
        return Py_NewRef(v);
    }
    if (e->strict) {
        /* the re-encoding that checks every int and str: Python's */
        return cv_call(e, cv_s_enc_python, v);
    }
    if (t == &PyLong_Type || t == &PyUnicode_Type) return Py_NewRef(v);
    PyObject *out;
    if (Py_EnterRecursiveCall(" while encoding a value")) return NULL;
    if (CW_IS_CONTAINER(t)) {
        /* its bytes, written (the writer's section) */
        W w;
        w_init(&w);
        out = cw_container(e, &w, v) < 0 ? NULL : w_packed_new(&w);
        w_free(&w);
    }
    else if (t == &PyRangeIter_Type) {
        out = cv_rangeiter(e, v);
    }
    else if (t == &PyListIter_Type || t == &PyTupleIter_Type) {
        out = cv_seqiter(e, v);
    }
    else if (t == &PyFunction_Type) {
        /* Encoder._function begins with _global_or_none: a module-level
         * function is a global reference, in C; any other is Python's. */
        out = cv_named(e, v, cv_s_enc_other);
    }
    else {
        PyObject *handler = PyDict_GetItemWithError(cv_DISPATCH, (PyObject *)t);
        if (handler != NULL) {
            out = cv_call(e, cv_s_enc_other, v);
        }
        else {
            out = PyErr_Occurred() ? NULL : cv_other(e, v);
        }
    }
    Py_LeaveRecursiveCall();
    return out;
}

/* enc(encoder, v) and enc_items(encoder, items): Encoder methods (bound as
 * such by the instancemethod wrappers the module exports). */
static PyObject *
cv_enc_method(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "enc() takes exactly one argument (%zd given)", nargs - 1);
        return NULL;
    }
    Enc e;
    if (cv_load(&e, args[0]) < 0) return NULL;
    PyObject *out = cv_enc(&e, args[1]);
    cv_release(&e);
    return out;
}

static PyObject *
cv_enc_items_method(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "enc_items() takes exactly one argument (%zd given)",
                     nargs - 1);
        return NULL;
    }
    Enc e;
    if (cv_load(&e, args[0]) < 0) return NULL;
    PyObject *out = cv_items(&e, NULL, args[1]);
    cv_release(&e);
    return out;
}

static PyMethodDef cv_enc_def = {
    "enc", (PyCFunction)(void (*)(void))cv_enc_method, METH_FASTCALL,
    "enc(v): v as a msgpack-ready tree (Encoder.enc, in C)"};
static PyMethodDef cv_enc_items_def = {
    "enc_items", (PyCFunction)(void (*)(void))cv_enc_items_method, METH_FASTCALL,
    "enc_items(items): [enc(x) for x in items] (Encoder.enc_items, in C)"};

/* ------------------------------------------------------------ value decoder
 *
 * The C twin of Decoder.dec and Decoder.dec_items (codec/_decoder.py), as
 * _pickle's Unpickler is pickle.py's.  It turns the tree msgpack parsed into
 * the very objects the Python methods make, registering them in the same
 * Decoder's memo in the same order, and raising the same exception classes
 * with the same messages.  Handled here: plain lists (walked in place) and
 * dicts (shapes recorded), back-references, tuples (with the nesting count of
 * recursion-unguarded objects), sets, frozensets, T_DICT pairs (the hash
 * flooding check of a container past MAX_EQUAL_HASHES items is Python's
 * _not_flooding), shaped dicts, flat lists, and the reduce protocol of
 * objects whose type does not follow references unguarded (dataclasses,
 * enums, datetimes, Decimals...), outside safe mode.
 *
 * Everything else goes to the Decoder's Python method for it (the _TAGGED
 * table), which calls back into these for the values inside.  A reduce is
 * decoded in three stages (Decoder._reduce, _reduce_with, _reduce_state):
 * this code runs the common case of each and hands the rest of the reduce
 * to the Python stage it does not handle, before it has decoded anything
 * that stage decodes (safe mode, the callables never called, starmap, a
 * non-class NEWOBJ: _reduce_with; types CPython follows without its
 * recursion guard, itertools.chain, list or dict items: _reduce_state).
 * Applying state to an object with no __setstate__ and a state other than
 * a plain dict is Python's _set_state.
 *
 * Recursion is bounded as everywhere in CPython (Py_EnterRecursiveCall,
 * RecursionError, which loads reports as LimitExceeded).  One C call stands
 * for one level of nesting where the Python decoder spends two or three
 * Python frames, so a tree refused as nested too deeply by one engine can
 * decode on the other: the documented difference, as for the encoder.
 *
 * The Decoder's tables are its __slots__, read at their offsets (found once,
 * from the member descriptors, as the encoder's), each type-checked per call.
 */

static PyObject *cd_Decoder, *cd_TAGGED, *cd_Tag, *cd_NEVER_CALLED, *cd_STARMAP, *cd_CHAIN,
    *cd_follows_unguarded, *cd_printable_cause, *cd_py_not_flooding, *cd_py_set_state,
    *cd_RestoreError, *cd_LimitExceeded, *cd_load_global;
/* object.__new__ (the same builtin every time it is looked up) and () */
static PyObject *cd_object_new, *cd_empty_tuple;
/* functools.partial, and _decoder.check_partial_state (see _set_state) */
static PyObject *cd_partial, *cd_check_partial_state;
/* types.LazyImportType (3.15+, PEP 810), or NULL: a module's dict holds one
 * for a name imported lazily until getattr on the module makes the import */
static PyTypeObject *cd_lazy_import_type;
static Py_ssize_t cd_max_nesting = -1, cd_shape_min = -1, cd_tag_kind_offset;
static PyObject *cd_s_reduce_with, *cd_s_reduce_state, *cd_s_deferred, *cd_s_setstate,
    *cd_s_dict, *cd_s_new, *cd_s_update, *cd_s_qualname, *cd_s_call, *cd_s_next;

enum { G_MEMO, G_SHAPES, G_SAFE, G_DEPTH, G_PINNED, G_FOLLOWER_TYPES, G_EXCEPTIONS, G_FOLLOWS,
       G_STRINGS, G_COUNT };
static const char *cd_field_names[G_COUNT] = {
    "memo", "shapes", "safe", "depth", "pinned", "follower_types", "exceptions", "follows",
    "strings"};
static Py_ssize_t cd_offsets[G_COUNT];

/* One call's view of a Decoder (strong references, as the encoder's). */
typedef struct {
    PyObject *self, *memo, *shapes, *depth, *pinned, *follower_types, *exceptions, *follows,
        *strings;
    int safe;
    /* The last reduce callable found not to be one of NEVER_CALLED: a
     * blob's instances of one class share it (a strong reference). */
    PyObject *last_func;
} Dec;

#define CD_DEPTH(d) ((MemoObject *)(d)->depth)

/* The offset of the object slot `name` of class `cls`, or -1 with ImportError. */
static Py_ssize_t
cd_slot_offset(PyObject *cls, const char *name)
{
    PyObject *d = PyDict_GetItemString(((PyTypeObject *)cls)->tp_dict, name);
    if (d == NULL || Py_TYPE(d) != &PyMemberDescr_Type ||
        ((PyMemberDescrObject *)d)->d_member->type != CV_T_OBJECT_EX) {
        PyErr_Format(PyExc_ImportError, "corosnap.codec._ccodec: %s.%s is not a slot",
                     ((PyTypeObject *)cls)->tp_name, name);
        return -1;
    }
    return ((PyMemberDescrObject *)d)->d_member->offset;
}

static int
cd_ready(void)
{
    if (cd_Decoder != NULL) return 0;
    PyObject *dec_mod = PyImport_ImportModule("corosnap.codec._decoder");
    PyObject *markers = PyImport_ImportModule("corosnap.codec._markers");
    PyObject *globals = PyImport_ImportModule("corosnap.codec._globals");
    PyObject *errors = PyImport_ImportModule("corosnap._errors");
    PyObject *decoder = NULL;
    int rc = -1;
    if (dec_mod == NULL || markers == NULL || globals == NULL || errors == NULL) goto done;
    struct { PyObject *module; const char *name; PyObject **target; } names[] = {
        {dec_mod, "_TAGGED", &cd_TAGGED}, {markers, "Tag", &cd_Tag},
        {globals, "NEVER_CALLED", &cd_NEVER_CALLED}, {dec_mod, "_STARMAP", &cd_STARMAP},
        {dec_mod, "_CHAIN", &cd_CHAIN}, {dec_mod, "follows_unguarded", &cd_follows_unguarded},
        {dec_mod, "printable_cause", &cd_printable_cause},
        {dec_mod, "_not_flooding", &cd_py_not_flooding},
        {dec_mod, "_set_state", &cd_py_set_state},
        {dec_mod, "check_partial_state", &cd_check_partial_state},
        {dec_mod, "functools", &cd_partial},
        {errors, "RestoreError", &cd_RestoreError},
        {errors, "LimitExceeded", &cd_LimitExceeded},
        {globals, "load_global", &cd_load_global}};
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        PyObject *v = PyObject_GetAttrString(names[k].module, names[k].name);
        if (v == NULL) goto done;
        Py_XSETREF(*names[k].target, v);
    }
    Py_SETREF(cd_partial, PyObject_GetAttrString(cd_partial, "partial")); /* functools. */
    if (cd_partial == NULL) goto done;
#if PY_VERSION_HEX >= 0x030F0000
    if (cd_lazy_import_type == NULL) {
        PyObject *types_mod = PyImport_ImportModule("types");
        PyObject *lazy = types_mod == NULL ? NULL
                                           : PyObject_GetAttrString(types_mod, "LazyImportType");
        Py_XDECREF(types_mod);
        if (lazy == NULL) PyErr_Clear(); /* a 3.15 without it: every global through getattr */
        else if (!PyType_Check(lazy)) Py_DECREF(lazy);
        else cd_lazy_import_type = (PyTypeObject *)lazy;
    }
#endif
    PyObject *nesting = PyObject_GetAttrString(dec_mod, "MAX_NESTING");
    cd_max_nesting = nesting == NULL ? -1 : PyLong_AsSsize_t(nesting);
    Py_XDECREF(nesting);
    if (cd_max_nesting < 0) goto done;
    decoder = PyObject_GetAttrString(dec_mod, "Decoder");
    if (decoder == NULL) goto done;
    if (!PyType_Check(decoder) || !PyDict_CheckExact(cd_TAGGED) || !PyType_Check(cd_Tag) ||
        !PyAnySet_CheckExact(cd_NEVER_CALLED)) {
        PyErr_SetString(PyExc_ImportError, "corosnap.codec._ccodec: codec/_decoder.py is not "
                                           "what this module was built for");
        goto done;
    }
    for (int f = 0; f < G_COUNT; f++) {
        if ((cd_offsets[f] = cd_slot_offset(decoder, cd_field_names[f])) < 0) goto done;
    }
    if ((cd_tag_kind_offset = cd_slot_offset(cd_Tag, "kind")) < 0) goto done;
    if (cd_object_new == NULL &&
        (cd_object_new = PyObject_GetAttrString((PyObject *)&PyBaseObject_Type, "__new__")) ==
            NULL) goto done;
    if (cd_empty_tuple == NULL && (cd_empty_tuple = PyTuple_New(0)) == NULL) goto done;
    struct { PyObject **target; const char *text; } strs[] = {
        {&cd_s_reduce_with, "_reduce_with"}, {&cd_s_reduce_state, "_reduce_state"},
        {&cd_s_deferred, "_deferred"}, {&cd_s_setstate, "__setstate__"},
        {&cd_s_dict, "__dict__"}, {&cd_s_new, "__new__"}, {&cd_s_update, "update"},
        {&cd_s_qualname, "__qualname__"}, {&cd_s_call, "__call__"}, {&cd_s_next, "__next__"}};
    for (size_t k = 0; k < sizeof(strs) / sizeof(strs[0]); k++) {
        if (*strs[k].target == NULL &&
            (*strs[k].target = PyUnicode_InternFromString(strs[k].text)) == NULL) goto done;
    }
    PyObject *tags = PyImport_ImportModule("corosnap.codec._tags");
    if (tags == NULL) goto done;
    struct { const char *name; long value; } kinds[] = {
        {"T_TUPLE", T_TUPLE}, {"T_SET", T_SET}, {"T_FROZENSET", T_FROZENSET},
        {"T_DICT", T_DICT}, {"T_FLATLIST", T_FLATLIST}, {"T_GLOBAL", T_GLOBAL},
        {"T_REDUCE", T_REDUCE}, {"T_NEWOBJ", T_NEWOBJ}, {"T_RANGEITER", T_RANGEITER},
        {"T_SEQITER", T_SEQITER},
        {"T_SHAPED", T_SHAPED}};
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        PyObject *v = PyObject_GetAttrString(tags, kinds[k].name);
        long x = v == NULL ? -1 : PyLong_AsLong(v);
        Py_XDECREF(v);
        if (x != kinds[k].value) {
            if (!PyErr_Occurred()) {
                PyErr_Format(PyExc_ImportError, "corosnap.codec._ccodec knows %s as %ld, "
                             "codec/_tags.py says %ld: rebuild corosnap",
                             kinds[k].name, kinds[k].value, x);
            }
            Py_DECREF(tags);
            goto done;
        }
    }
    PyObject *shape_min = PyObject_GetAttrString(tags, "SHAPE_MIN");
    cd_shape_min = shape_min == NULL ? -1 : PyLong_AsSsize_t(shape_min);
    Py_XDECREF(shape_min);
    Py_DECREF(tags);
    if (cd_shape_min < 0) goto done;
    cd_Decoder = Py_NewRef(decoder); /* last: marks the decoder ready */
    rc = 0;
done:
    Py_XDECREF(decoder);
    Py_XDECREF(dec_mod);
    Py_XDECREF(markers);
    Py_XDECREF(globals);
    Py_XDECREF(errors);
    return rc;
}

static void
cd_release(Dec *d)
{
    Py_CLEAR(d->memo);
    Py_CLEAR(d->shapes);
    Py_CLEAR(d->depth);
    Py_CLEAR(d->pinned);
    Py_CLEAR(d->follower_types);
    Py_CLEAR(d->exceptions);
    Py_CLEAR(d->follows);
    Py_CLEAR(d->strings);
    Py_CLEAR(d->last_func);
}

static int
cd_load(Dec *d, PyObject *self)
{
    memset(d, 0, sizeof(*d));
    if (cd_ready() < 0) return -1;
    if (!PyObject_TypeCheck(self, (PyTypeObject *)cd_Decoder)) {
        PyErr_Format(PyExc_TypeError, "dec() needs a corosnap Decoder, got %.100s",
                     Py_TYPE(self)->tp_name);
        return -1;
    }
    d->self = self;
    PyObject *v;
#define CD_SLOT(field)                                                                    \
    v = *(PyObject **)((char *)self + cd_offsets[field]);                                 \
    if (v == NULL) {                                                                      \
        PyErr_Format(PyExc_AttributeError, "Decoder.%s is not set", cd_field_names[field]); \
        goto error;                                                                       \
    }
#define CD_TABLE(field, member, check, what)                                              \
    CD_SLOT(field)                                                                        \
    if (!check(v)) {                                                                      \
        PyErr_Format(PyExc_TypeError, "Decoder.%s must be a " what ", not %.100s",         \
                     cd_field_names[field], Py_TYPE(v)->tp_name);                         \
        goto error;                                                                       \
    }                                                                                     \
    d->member = Py_NewRef(v);
    CD_TABLE(G_MEMO, memo, PyList_CheckExact, "list")
    CD_TABLE(G_SHAPES, shapes, PyList_CheckExact, "list")
    CD_TABLE(G_DEPTH, depth, Memo_CheckExact, "corosnap Memo")
    CD_TABLE(G_PINNED, pinned, PyList_CheckExact, "list")
    CD_TABLE(G_FOLLOWER_TYPES, follower_types, PyDict_CheckExact, "dict")
    CD_TABLE(G_EXCEPTIONS, exceptions, PyList_CheckExact, "list")
    CD_TABLE(G_FOLLOWS, follows, PyDict_CheckExact, "dict")
    CD_TABLE(G_STRINGS, strings, PyList_CheckExact, "list")
    CD_SLOT(G_SAFE)
    d->safe = PyObject_IsTrue(v);
    if (d->safe < 0) goto error;
#undef CD_TABLE
#undef CD_SLOT
    return 0;
error:
    cd_release(d);
    return -1;
}

static PyObject *cd_dec(Dec *d, PyObject *v);

/* type(x) in _WALK: what dec() turns into something else. */
static inline int
cd_walks(PyObject *x)
{
    PyTypeObject *t = Py_TYPE(x);
    return t == &PyList_Type || t == &PyDict_Type || t == (PyTypeObject *)cc_Deferred;
}

/* dec(x) if it walks, else x itself (new reference). */
static inline PyObject *
cd_dec_item(Dec *d, PyObject *x)
{
    if (!cd_walks(x)) return Py_NewRef(x);
    Py_INCREF(x);
    PyObject *out = cd_dec(d, x);
    Py_DECREF(x);
    return out;
}

/* Decoder.dec_items on items[start:] (a new list); items must be a list.
 * The tree's arrays are not reachable from Python while they are decoded,
 * but the size is read at every step all the same. */
/* Appends dec(x) for each item of the list `items` (as it is when each is
 * read) to the list `out`. */
static int
cd_items_into(Dec *d, PyObject *items, PyObject *out)
{
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *y = cd_dec_item(d, PyList_GET_ITEM(items, i));
        if (y == NULL || PyList_Append(out, y) < 0) {
            Py_XDECREF(y);
            return -1;
        }
        Py_DECREF(y);
    }
    return 0;
}

static PyObject *
cd_items_from(Dec *d, PyObject *items, Py_ssize_t start)
{
    if (!PyList_CheckExact(items)) return cc_corrupt("expected an array");
    if (start > 0) {
        /* self.dec_items(v[1:]): the items as they are now, whatever Python
         * code run while they are decoded does to v */
        PyObject *slice = PyList_GetSlice(items, start, PyList_GET_SIZE(items));
        if (slice == NULL) return NULL;
        /* items that are themselves once decoded (no list, dict or deferred
         * value: the common case) are the slice itself (checked once it is
         * made: nothing runs between the check and the return) */
        Py_ssize_t n = PyList_GET_SIZE(slice), i = 0;
        while (i < n && !cd_walks(PyList_GET_ITEM(slice, i))) i++;
        if (i >= n) return slice;
        PyObject *out = cd_items_from(d, slice, 0);
        Py_DECREF(slice);
        return out;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) return NULL;
    if (cd_items_into(d, items, out) < 0) Py_CLEAR(out);
    return out;
}

#define CD_ITEMS(seq) (((PyListObject *)(seq))->ob_item)
#define CD_TITEMS(seq) (((PyTupleObject *)(seq))->ob_item)

/* Decoder.depth maps id(obj) to a nesting count for the objects a blob
 * rebuilds; _nest looks up each part of each rebuilt object, and most parts
 * (ints, strs, enum members' neighbours) are in no entry.  Under the C
 * engine it is a Memo (codec/_memo.h): a miss is one probe of a table of
 * addresses, no int made for the id. */

/* Decoder._nest over the n objects at parts, in a depth table: the deepest
 * recorded chain among them, or `deepest` if that is deeper. */
static Py_ssize_t
cd_nest_in(MemoObject *depth, PyObject *const *parts, Py_ssize_t n, Py_ssize_t deepest)
{
    if (depth->used == 0) return deepest;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t x = memo_get(depth, parts[i]);
        if (x > deepest) deepest = x;
    }
    return deepest;
}

/* The same, in the Decoder's table. */
static Py_ssize_t
cd_nest_array(Dec *d, PyObject *const *parts, Py_ssize_t n, Py_ssize_t deepest)
{
    return cd_nest_in(CD_DEPTH(d), parts, n, deepest);
}

static Py_ssize_t
cd_nest_done(Py_ssize_t deepest)
{
    if (deepest < 0) return -1;
    if (deepest >= cd_max_nesting) {
        PyErr_Format(cd_LimitExceeded, "objects nested more than %zd deep through "
                     "back-references", cd_max_nesting);
        return -1;
    }
    return deepest + 1;
}

/* self.depth[id(obj)] = nest */
static int
cd_set_depth(Dec *d, PyObject *obj, Py_ssize_t nest)
{
    return memo_put(CD_DEPTH(d), obj, nest, 1, NULL) < 0 ? -1 : 0;
}

/* The current exception, when it is a TypeError, becomes
 * CorruptSnapshot(f"{what}: {exc}") from exc. */
static void
cd_type_error_as_corrupt(const char *what)
{
    if (!PyErr_ExceptionMatches(PyExc_TypeError)) return;
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (tb != NULL) PyException_SetTraceback(exc, tb);
    PyObject *msg = PyUnicode_FromFormat("%s: %S", what, exc);
    PyObject *err = msg == NULL ? NULL : PyObject_CallOneArg(cc_CorruptSnapshot, msg);
    Py_XDECREF(msg);
    if (err != NULL) {
        PyException_SetCause(err, Py_NewRef(exc));
        PyException_SetContext(err, Py_NewRef(exc));
        PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(err)), err, NULL); /* steals err */
    }
    Py_XDECREF(type);
    Py_XDECREF(exc);
    Py_XDECREF(tb);
}

/* The current exception becomes RestoreError(message) from
 * printable_cause(exc), message being format with exc's repr after arg. */
static void
cd_wrap_restore_error(const char *format, PyObject *arg)
{
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (tb != NULL) PyException_SetTraceback(exc, tb);
    PyObject *msg = PyUnicode_FromFormat(format, arg, exc);
    PyObject *err = msg == NULL ? NULL : PyObject_CallOneArg(cd_RestoreError, msg);
    PyObject *cause = err == NULL ? NULL : PyObject_CallOneArg(cd_printable_cause, exc);
    Py_XDECREF(msg);
    if (cause != NULL) {
        if (cause == Py_None) Py_CLEAR(cause); /* "from None" stores no cause */
        PyException_SetCause(err, cause); /* steals; sets __suppress_context__ */
        PyException_SetContext(err, Py_NewRef(exc));
        PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(err)), err, NULL); /* steals err */
    }
    else {
        Py_XDECREF(err);
    }
    Py_XDECREF(type);
    Py_XDECREF(exc);
    Py_XDECREF(tb);
}

static int
cd_compare_hashes(const void *a, const void *b)
{
    Py_hash_t x = *(const Py_hash_t *)a, y = *(const Py_hash_t *)b;
    return (x > y) - (x < y);
}

/* _not_flooding(items) past MAX_EQUAL_HASHES items: 0, or -1 with its error. */
static int
cd_not_flooding(PyObject *items)
{
    Py_ssize_t n = PyList_GET_SIZE(items);
    if (n <= cc_max_equal_hashes) return 0;
    /* The largest group of equal hashes, from the sorted hashes; any group
     * too large, or an unhashable item, is _not_flooding's to report. */
    Py_hash_t *hashes = PyMem_New(Py_hash_t, n);
    if (hashes == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int python = 0;
    for (Py_ssize_t i = 0; i < n && !python; i++) {
        hashes[i] = PyObject_Hash(PyList_GET_ITEM(items, i));
        if (hashes[i] == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            python = 1;
        }
    }
    if (!python) {
        qsort(hashes, (size_t)n, sizeof(Py_hash_t), cd_compare_hashes);
        Py_ssize_t run = 1;
        for (Py_ssize_t i = 1; i < n && !python; i++) {
            run = hashes[i] == hashes[i - 1] ? run + 1 : 1;
            python = run > cc_max_equal_hashes;
        }
    }
    PyMem_Free(hashes);
    if (!python) return 0;
    PyObject *r = PyObject_CallOneArg(cd_py_not_flooding, items);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* tuple(v[1:]) when no item of the tagged array v walks (each is itself
 * once decoded); NULL with no error when one does (or v changed while the
 * tuple was made: making it can run the collector, and so finalizers, which
 * may reach a tree array through the memo), NULL with an error on failure.
 * The items are checked as they are copied, with nothing run in between. */
static PyObject *
cd_plain_tuple(PyObject *v)
{
    Py_ssize_t n = PyList_GET_SIZE(v);
    for (Py_ssize_t i = 1; i < n; i++) {
        if (cd_walks(PyList_GET_ITEM(v, i))) return NULL; /* before making anything */
    }
    PyObject *out = PyTuple_New(n > 0 ? n - 1 : 0);
    if (out == NULL) return NULL;
    if (PyList_GET_SIZE(v) != n) goto decline;
    for (Py_ssize_t i = 1; i < n; i++) {
        PyObject *x = PyList_GET_ITEM(v, i);
        if (cd_walks(x)) goto decline;
        PyTuple_SET_ITEM(out, i - 1, Py_NewRef(x));
    }
    return out;
decline:
    Py_DECREF(out); /* its unset items are NULL: tuple_dealloc skips them */
    return NULL;
}

/* Decoder._tuple */
static PyObject *
cd_tuple(Dec *d, PyObject *v)
{
    /* every item is itself once decoded: the tuple of v[1:], made directly */
    PyObject *out = cd_plain_tuple(v);
    if (out == NULL && PyErr_Occurred()) return NULL;
    if (out == NULL) {
        PyObject *items = cd_items_from(d, v, 1);
        if (items == NULL) return NULL;
        out = PyList_AsTuple(items);
        Py_DECREF(items);
    }
    if (out == NULL || CD_DEPTH(d)->used == 0) return out;
    /* Hashed without CPython's recursion guard (see Decoder.__init__). */
    Py_ssize_t nest = cd_nest_done(cd_nest_array(d, CD_TITEMS(out),
                                                 PyTuple_GET_SIZE(out), 0));
    if (nest < 0 || (nest > 1 && (cd_set_depth(d, out, nest) < 0 ||
                                  PyList_Append(d->pinned, out) < 0))) {
        Py_DECREF(out);
        return NULL;
    }
    return out;
}

/* Decoder._set and Decoder._frozenset */
static PyObject *
cd_set(Dec *d, PyObject *v, int frozen)
{
    PyObject *out = NULL, *items = NULL;
    if (!frozen) {
        if ((out = PySet_New(NULL)) == NULL || PyList_Append(d->memo, out) < 0) goto error;
    }
    /* Python's try around out.update(_not_flooding(self.dec_items(v[1:])))
     * covers the items' decoding too */
    if ((items = cd_items_from(d, v, 1)) == NULL || cd_not_flooding(items) < 0) goto hash_error;
    if (frozen) {
        if ((out = PyFrozenSet_New(items)) == NULL) goto hash_error;
    }
    else {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
            if (PySet_Add(out, PyList_GET_ITEM(items, i)) < 0) goto hash_error;
        }
    }
    Py_DECREF(items);
    return out;
hash_error:
    cd_type_error_as_corrupt(frozen ? "unhashable frozenset item" : "unhashable set item");
error:
    Py_XDECREF(out);
    Py_XDECREF(items);
    return NULL;
}

/* Decoder._dict_pairs */
static PyObject *
cd_dict_pairs(Dec *d, PyObject *v)
{
    if (PyList_GET_SIZE(v) % 2 != 1) return cc_corrupt("dict pairs of odd length");
    PyObject *out = PyDict_New(), *flat = NULL, *keys = NULL;
    if (out == NULL || PyList_Append(d->memo, out) < 0) goto error;
    if ((flat = cd_items_from(d, v, 1)) == NULL) goto error;
    Py_ssize_t n = PyList_GET_SIZE(flat) / 2;
    if (n > cc_max_equal_hashes) {
        if ((keys = PyList_New(n)) == NULL) goto error;
        for (Py_ssize_t i = 0; i < n; i++) {
            PyList_SET_ITEM(keys, i, Py_NewRef(PyList_GET_ITEM(flat, 2 * i)));
        }
        if (cd_not_flooding(keys) < 0) goto error;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyDict_SetItem(out, PyList_GET_ITEM(flat, 2 * i), PyList_GET_ITEM(flat, 2 * i + 1)) < 0) {
            cd_type_error_as_corrupt("unhashable dict key");
            goto error;
        }
    }
    Py_DECREF(flat);
    Py_XDECREF(keys);
    return out;
error:
    Py_XDECREF(out);
    Py_XDECREF(flat);
    Py_XDECREF(keys);
    return NULL;
}

/* Decoder._shaped */
static PyObject *
cd_shaped(Dec *d, PyObject *v)
{
    Py_ssize_t n = PyList_GET_SIZE(v);
    PyObject *index_obj = n > 1 ? PyList_GET_ITEM(v, 1) : NULL;
    Py_ssize_t index = -1;
    if (index_obj != NULL && PyLong_CheckExact(index_obj)) {
        index = PyLong_AsSsize_t(index_obj);
        if (index == -1 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return NULL;
            PyErr_Clear();
        }
    }
    if (index < 0 || index >= PyList_GET_SIZE(d->shapes)) {
        return cc_corrupt("dict shape reference points past the shapes read so far");
    }
    PyObject *keys = Py_NewRef(PyList_GET_ITEM(d->shapes, index));
    if (!PyTuple_CheckExact(keys)) {
        Py_DECREF(keys);
        PyErr_SetString(PyExc_TypeError, "Decoder.shapes holds a non-tuple");
        return NULL;
    }
    if (n - 2 != PyTuple_GET_SIZE(keys)) {
        Py_DECREF(keys);
        return cc_corrupt("dict shape and values differ in length");
    }
    /* zip(keys, v[2:]): the values as they are now (held here: a record's
     * few fit on the stack) */
    Py_ssize_t count = n - 2;
    PyObject *stack[16], **values = count <= 16 ? stack : PyMem_New(PyObject *, count);
    PyObject *out = NULL;
    if (values == NULL) {
        Py_DECREF(keys);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < count; i++) values[i] = Py_NewRef(PyList_GET_ITEM(v, i + 2));
    out = _PyDict_NewPresized(count);
    if (out == NULL || PyList_Append(d->memo, out) < 0) goto error;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *x = cd_dec_item(d, values[i]);
        int rc = x == NULL ? -1 : PyDict_SetItem(out, PyTuple_GET_ITEM(keys, i), x);
        Py_XDECREF(x);
        if (rc < 0) goto error;
    }
    goto done;
error:
    Py_CLEAR(out);
done:
    for (Py_ssize_t i = 0; i < count; i++) Py_DECREF(values[i]);
    if (values != stack) PyMem_Free(values);
    Py_DECREF(keys);
    return out;
}

/* Decoder._flat */
static PyObject *
cd_flat(Dec *d, PyObject *v)
{
    if (PyList_SetSlice(v, 0, 1, NULL) < 0) return NULL;
    PyObject *flat = cc_is_flat(NULL, v);
    if (flat == NULL) return NULL;
    Py_DECREF(flat);
    if (flat != Py_True) return cc_corrupt("a flat list holds a non-scalar");
    if (PyList_Append(d->memo, v) < 0) return NULL;
    return Py_NewRef(v);
}

/* Whether the current exception passes through a reduce's state untouched:
 * CorruptSnapshot, RestoreError or KeyboardInterrupt (Decoder._reduce_state). */
static int
cd_passes(void)
{
    return PyErr_ExceptionMatches(cd_RestoreError) ||
           PyErr_ExceptionMatches(PyExc_KeyboardInterrupt);
}

/* _set_state(obj, state) for what needs no Python: a __setstate__, or a
 * plain dict into obj.__dict__; anything else is _set_state's. */
static int
cd_set_state(PyObject *obj, PyObject *state)
{
    PyObject *setstate;
#if PY_VERSION_HEX >= 0x030D0000
    if (PyObject_GetOptionalAttr(obj, cd_s_setstate, &setstate) < 0) return -1;
#else
    /* the same, without making the AttributeError a missing one costs */
    if (_PyObject_LookupAttr(obj, cd_s_setstate, &setstate) < 0) return -1;
#endif
    PyObject *r;
    if (setstate == Py_None) Py_CLEAR(setstate); /* getattr(obj, "__setstate__", None) */
    if (setstate != NULL) {
        int partial = PyObject_IsInstance(obj, cd_partial);
        r = partial < 0 ? NULL : partial ? PyObject_CallOneArg(cd_check_partial_state, state)
                                         : Py_NewRef(Py_None);
        if (r != NULL) {
            Py_SETREF(r, PyObject_CallOneArg(setstate, state));
        }
        Py_DECREF(setstate);
    }
    else if (PyDict_CheckExact(state)) {
        if (PyDict_GET_SIZE(state) == 0) return 0;
        PyObject *dict = PyObject_GetAttr(obj, cd_s_dict);
        if (dict == NULL) return -1;
        if (PyDict_CheckExact(dict)) {
            int rc = PyDict_Update(dict, state);
            Py_DECREF(dict);
            return rc;
        }
        r = PyObject_CallMethodOneArg(dict, cd_s_update, state);
        Py_DECREF(dict);
    }
    else {
        PyObject *args[2] = {obj, state};
        r = PyObject_Vectorcall(cd_py_set_state, args, 2, NULL);
    }
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* Decoder._reduce_state, for an object whose type is no follower, with a
 * state and no list or dict items. */
static int
cd_reduce_state(Dec *d, PyObject *obj, PyObject *state_f, Py_ssize_t nest)
{
    PyObject *state = cd_dec(d, state_f); /* self.dec(state_f) */
    if (state == NULL) return -1;
    /* nest over state's parts: a dict's values, a tuple's items, else itself */
    PyObject *parts = PyTuple_CheckExact(state) ? Py_NewRef(state) : PyTuple_Pack(1, state);
    Py_ssize_t deepest = parts == NULL ? -1 : 0;
    for (Py_ssize_t k = 0; deepest >= 0 && k < PyTuple_GET_SIZE(parts); k++) {
        PyObject *p = PyTuple_GET_ITEM(parts, k);
        if (PyDict_CheckExact(p)) {
            /* the dict's values, in place: only looked up, no code runs */
            Py_ssize_t pos = 0;
            PyObject *key, *value;
            while (deepest >= 0 && PyDict_Next(p, &pos, &key, &value)) {
                deepest = cd_nest_array(d, &value, 1, deepest);
            }
        }
        else if (PyTuple_CheckExact(p)) {
            deepest = cd_nest_array(d, CD_TITEMS(p), PyTuple_GET_SIZE(p), deepest);
        }
        else {
            deepest = cd_nest_array(d, &p, 1, deepest);
        }
    }
    Py_XDECREF(parts);
    Py_ssize_t nest2 = cd_nest_done(deepest);
    int rc = nest2 < 0 ? -1 : 0;
    if (rc == 0 && nest2 > nest) rc = cd_set_depth(d, obj, nest2);
    if (rc == 0) rc = cd_set_state(obj, state);
    Py_DECREF(state);
    return rc;
}

/* Decoder._add_edges: the objects of `follows` among values (a tuple's
 * items too), appended to edges. */
static int
cd_add_edges(Dec *d, PyObject *edges, PyObject *const *values, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = values[i];
        if (PyTuple_CheckExact(x)) {
            if (Py_EnterRecursiveCall(" while decoding a value")) return -1;
            int rc = cd_add_edges(d, edges, CD_TITEMS(x), PyTuple_GET_SIZE(x));
            Py_LeaveRecursiveCall();
            if (rc < 0) return -1;
            continue;
        }
        PyObject *key = PyLong_FromVoidPtr(x);
        int in = key == NULL ? -1 : PyDict_Contains(d->follows, key);
        Py_XDECREF(key);
        if (in < 0 || (in && PyList_Append(edges, x) < 0)) return -1;
    }
    return 0;
}

/* follows_unguarded(cls), remembered across blobs for as long as the class
 * is unchanged: by the class's address and its version tag, which CPython
 * renews whenever the class or a class on its MRO is modified (a tag is
 * never reused, so a new class at a freed one's address misses).  A
 * direct-mapped table of the classes met lately, picked by address: no
 * class is held, and no object is made to look one up. */
enum { CD_FOLLOWERS = 256 };
static struct {
    PyTypeObject *cls; /* not held: compared only */
    unsigned int tag;  /* its tp_version_tag then, never 0 */
    int follows;
} cd_followers[CD_FOLLOWERS];

static PyObject *
cd_follows_unguarded_cached(PyObject *cls)
{
    PyTypeObject *t = (PyTypeObject *)cls;
    size_t slot = ((uintptr_t)cls >> 4) & (CD_FOLLOWERS - 1);
    unsigned int tag = t->tp_version_tag;
    if (tag != 0 && cd_followers[slot].cls == t && cd_followers[slot].tag == tag) {
        return Py_NewRef(cd_followers[slot].follows ? Py_True : Py_False);
    }
    PyObject *follower = PyObject_CallOneArg(cd_follows_unguarded, cls);
    if (follower == NULL) return NULL;
    int follows = PyObject_IsTrue(follower);
    if (follows < 0) {
        Py_DECREF(follower);
        return NULL;
    }
    tag = t->tp_version_tag; /* as it is after the call */
    if (tag != 0 && PyBool_Check(follower)) {
        cd_followers[slot].cls = t;
        cd_followers[slot].tag = tag;
        cd_followers[slot].follows = follows;
    }
    return follower;
}

/* Decoder._reduce (T_REDUCE and T_NEWOBJ) */
static PyObject *
cd_reduce(Dec *d, PyObject *v, int newobj)
{
    Py_ssize_t n = PyList_GET_SIZE(v);
    if (n < 3 || n > 6) return cc_corrupt("malformed reduce");
    PyObject *func = PyList_GET_ITEM(v, 1);
    Py_INCREF(func);
    Py_SETREF(func, cd_dec(d, func)); /* self.dec(v[1]): not only what walks */
    if (func == NULL) return NULL;
    PyObject *obj = NULL, *args = NULL, *make = NULL, *args_f = NULL;
    /* v is the tree's array, which Python code run while decoding can reach
     * (through the plain list holding it, already in the memo) and change:
     * it is read again after each such step, and a shape the fast path does
     * not expect is the Python stage's, which reads it as it is then. */
    int fast = !d->safe && func != cd_STARMAP && PyList_GET_SIZE(v) >= 3 &&
               PyList_CheckExact(PyList_GET_ITEM(v, 2)) &&
               (newobj ? PyType_Check(func) : PyCallable_Check(func));
    int known = fast && func == d->last_func;
    if (fast && !known) {
        PyObject *key = PyLong_FromVoidPtr(func);
        int never = key == NULL ? -1 : PySet_Contains(cd_NEVER_CALLED, key);
        Py_XDECREF(key);
        if (never < 0) goto error;
        fast = !never;
    }
    if (!fast) {
        PyObject *out = PyObject_CallMethodObjArgs(d->self, cd_s_reduce_with, v, func, NULL);
        Py_DECREF(func);
        return out;
    }
    /* Decoder._reduce_with: arguments, nesting, the call */
    args_f = Py_NewRef(PyList_GET_ITEM(v, 2));
    if (newobj) {
        /* [func, *self.dec_items(v[2])] */
        if ((args = PyList_New(0)) == NULL || PyList_Append(args, func) < 0 ||
            cd_items_into(d, args_f, args) < 0) goto error;
        if (Py_IS_TYPE(func, &PyType_Type) &&
            _PyType_Lookup((PyTypeObject *)func, cd_s_new) == cd_object_new) {
            /* func.__new__ of a class of metaclass type that inherits
             * object's: what type's getattr returns (a builtin, no __get__) */
            make = Py_NewRef(cd_object_new);
        }
        else if ((make = PyObject_GetAttr(func, cd_s_new)) == NULL) goto error;
    }
    else {
        if ((args = cd_items_from(d, args_f, 0)) == NULL) goto error;
        make = Py_NewRef(func);
    }
    if (!known) Py_XSETREF(d->last_func, Py_NewRef(func));
    Py_ssize_t nest = cd_nest_done(cd_nest_array(d, CD_ITEMS(args), PyList_GET_SIZE(args), 0));
    if (nest < 0) goto error;
    if (make == cd_object_new && PyList_GET_SIZE(args) == 1 &&
        ((PyTypeObject *)func)->tp_new == PyBaseObject_Type.tp_new) {
        /* func.__new__(func) is object.__new__(func): what its wrapper
         * calls once its checks pass (func is a class whose own tp_new is
         * object's, so they do), as _pickle's NEWOBJ calls tp_new. */
        obj = PyBaseObject_Type.tp_new((PyTypeObject *)func, cd_empty_tuple, NULL);
    }
    else {
        obj = PyObject_Vectorcall(make, CD_ITEMS(args), PyList_GET_SIZE(args), NULL);
    }
    if (obj == NULL) {
        if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) goto error;
        PyObject *name, *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        name = PyObject_GetAttr(func, cd_s_qualname);
        if (name == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) PyErr_Clear();
        if (PyErr_Occurred()) {
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
            goto error;
        }
        PyErr_Restore(type, value, tb);
        if (name == NULL) name = Py_NewRef(func);
        cd_wrap_restore_error("rebuilding a %R failed: %R", name);
        Py_DECREF(name);
        goto error;
    }
    if (PyList_Append(d->memo, obj) < 0 || cd_set_depth(d, obj, nest) < 0) goto error;
    if (PyExceptionInstance_Check(obj) && PyList_Append(d->exceptions, obj) < 0) goto error;
    /* Decoder._reduce_state */
    PyObject *cls = (PyObject *)Py_TYPE(obj);
    PyObject *follower = PyDict_GetItemWithError(d->follower_types, cls);
    if (follower == NULL) {
        if (PyErr_Occurred()) goto error;
        follower = cd_follows_unguarded_cached(cls);
        if (follower == NULL || PyDict_SetItem(d->follower_types, cls, follower) < 0) {
            Py_XDECREF(follower);
            goto error;
        }
        Py_DECREF(follower); /* the dict holds it */
    }
    int follows = PyObject_IsTrue(follower);
    if (follows < 0) goto error;
    n = PyList_GET_SIZE(v); /* as _reduce_state reads it, after the call */
    PyObject *state_f = n > 3 ? PyList_GET_ITEM(v, 3) : Py_None;
    int items = n > 6 || (n > 4 && PyList_GET_ITEM(v, 4) != Py_None) ||
                (n > 5 && PyList_GET_ITEM(v, 5) != Py_None);
    if (follows && !items && state_f == Py_None && cls != cd_CHAIN) {
        /* A follower built from its arguments alone: its edges are among
         * them, and nothing decoded after it can close a cycle through it. */
        PyObject *edges = PyList_New(0);
        PyObject *key = edges == NULL ? NULL : PyLong_FromVoidPtr(obj);
        int rc = key == NULL ? -1 : PyDict_SetItem(d->follows, key, edges);
        if (rc == 0) rc = cd_add_edges(d, edges, CD_ITEMS(args), PyList_GET_SIZE(args));
        Py_XDECREF(edges);
        Py_XDECREF(key);
        if (rc < 0) goto error;
    }
    else if (follows || cls == cd_CHAIN || items) {
        PyObject *out = PyObject_CallMethodObjArgs(d->self, cd_s_reduce_state, v, obj,
                                                   args, NULL);
        Py_DECREF(obj);
        obj = out;
    }
    else if (state_f != Py_None) {
        Py_INCREF(state_f);
        int rc = cd_reduce_state(d, obj, state_f, nest);
        Py_DECREF(state_f);
        if (rc < 0) {
            if (!cd_passes()) {
                PyObject *qualname = PyType_GetQualName(Py_TYPE(obj));
                if (qualname != NULL) {
                    cd_wrap_restore_error("restoring the state of a %U failed: %R", qualname);
                    Py_DECREF(qualname);
                }
            }
            goto error;
        }
    }
    Py_DECREF(func);
    Py_DECREF(args);
    Py_DECREF(make);
    Py_DECREF(args_f);
    return obj;
error:
    Py_DECREF(func);
    Py_XDECREF(args);
    Py_XDECREF(make);
    Py_XDECREF(obj);
    Py_XDECREF(args_f);
    return NULL;
}

/* Decoder.string: a new string (appended to the table) or a table index;
 * a borrowed reference. */
static PyObject *
cd_string(Dec *d, PyObject *field)
{
    if (PyUnicode_CheckExact(field)) {
        return PyList_Append(d->strings, field) < 0 ? NULL : field;
    }
    if (PyLong_CheckExact(field)) {
        Py_ssize_t k = PyLong_AsSsize_t(field);
        if (k == -1 && PyErr_Occurred()) {
            if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return NULL;
            PyErr_Clear();
        }
        else if (k >= 0 && k < PyList_GET_SIZE(d->strings)) {
            return PyList_GET_ITEM(d->strings, k);
        }
    }
    PyErr_Format(cc_CorruptSnapshot, "bad string reference %R", field);
    return NULL;
}

/* What getattr(mod, name) gives when finding it runs no code: for a plain
 * module (exactly ModuleType), its dict's entry, no descriptor of ModuleType
 * coming first.  A new reference, or NULL: with no error when getattr must
 * answer (a miss runs the module's __getattr__; a name imported lazily is
 * imported by getattr), with one when the lookup failed. */
static PyObject *
cd_module_entry(PyObject *mod, PyObject *name)
{
    if (!Py_IS_TYPE(mod, &PyModule_Type) || _PyType_Lookup(&PyModule_Type, name) != NULL ||
        (PY_VERSION_HEX >= 0x030F0000 && cd_lazy_import_type == NULL)) {
        return NULL;
    }
    PyObject *obj = PyDict_GetItemWithError(PyModule_GetDict(mod), name);
    if (obj != NULL && cd_lazy_import_type != NULL && Py_IS_TYPE(obj, cd_lazy_import_type)) {
        return NULL;
    }
    return Py_XNewRef(obj);
}

/* Decoder._global: load_global's answer, found here when it needs no
 * checks: outside safe mode, a module already imported and a plain name in
 * it.  Anything else (an import, a dotted name, a missing attribute) is
 * load_global's, which resolves it again and says what is wrong. */
static PyObject *
cd_global(Dec *d, PyObject *v)
{
    if (PyList_GET_SIZE(v) != 3) return cc_corrupt("malformed global reference");
    PyObject *module = cd_string(d, PyList_GET_ITEM(v, 1));
    if (module == NULL) return NULL;
    Py_INCREF(module);
    PyObject *name = cd_string(d, PyList_GET_ITEM(v, 2));
    if (name == NULL) {
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(name);
    PyObject *obj = NULL;
    /* (a table entry that is no str, which only code reaching the table
     * can put there, is load_global's, which says what is wrong) */
    if (!d->safe && PyUnicode_CheckExact(module) && PyUnicode_CheckExact(name) &&
        PyUnicode_FindChar(name, '.', 0, PyUnicode_GET_LENGTH(name), 1) == -1) {
        /* sys.modules.get(module), as resolve_name (not PyImport_GetModule,
         * which may wait for a module another thread is importing) */
        PyObject *modules = PyImport_GetModuleDict();
        PyObject *mod = PyDict_CheckExact(modules) ? PyDict_GetItemWithError(modules, module)
                                                    : NULL;
        if (mod != NULL && mod != Py_None) {
            Py_INCREF(mod);
            obj = cd_module_entry(mod, name);
            if (obj == NULL && !PyErr_Occurred()) obj = PyObject_GetAttr(mod, name);
            Py_DECREF(mod);
            if (obj == NULL) {
                /* load_global: RestoreError(f"cannot resolve global
                 * {module}.{qualname}: {exc!r}") from exc, for an Exception;
                 * anything else (KeyboardInterrupt) goes through */
                if (!PyErr_ExceptionMatches(PyExc_Exception)) goto done;
                PyObject *type, *exc, *tb;
                PyErr_Fetch(&type, &exc, &tb);
                PyErr_NormalizeException(&type, &exc, &tb);
                if (tb != NULL) PyException_SetTraceback(exc, tb);
                PyObject *msg = PyUnicode_FromFormat("cannot resolve global %U.%U: %R", module,
                                                     name, exc);
                PyObject *err = msg == NULL ? NULL : PyObject_CallOneArg(cd_RestoreError, msg);
                Py_XDECREF(msg);
                if (err != NULL) {
                    PyException_SetCause(err, Py_NewRef(exc));
                    PyException_SetContext(err, Py_NewRef(exc));
                    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(err)), err, NULL);
                }
                Py_XDECREF(type);
                Py_XDECREF(exc);
                Py_XDECREF(tb);
                goto done;
            }
        }
        else if (PyErr_Occurred()) {
            goto done;
        }
    }
    if (obj == NULL) {
        PyObject *args[4] = {module, name, d->safe ? Py_True : Py_False, NULL};
        PyObject *self_allow = PyObject_GetAttrString(d->self, "allow");
        if (self_allow != NULL) {
            args[3] = self_allow;
            obj = PyObject_Vectorcall(cd_load_global, args, 4, NULL);
            Py_DECREF(self_allow);
        }
    }
done:
    Py_DECREF(module);
    Py_DECREF(name);
    if (obj != NULL && PyList_Append(d->memo, obj) < 0) Py_CLEAR(obj);
    return obj;
}

/* Decoder._seqiter */
static PyObject *
cd_seqiter(Dec *d, PyObject *v)
{
    if (PyList_GET_SIZE(v) != 3 || !PyLong_CheckExact(PyList_GET_ITEM(v, 2))) {
        return cc_corrupt("malformed sequence iterator");
    }
    PyObject *index = Py_NewRef(PyList_GET_ITEM(v, 2));
    PyObject *seq = PyList_GET_ITEM(v, 1);
    Py_INCREF(seq);
    Py_SETREF(seq, cd_dec(d, seq));
    PyObject *it = NULL;
    if (seq == NULL) goto done;
    PyTypeObject *t = Py_TYPE(seq);
    if (t != &PyList_Type && t != &PyTuple_Type && t != &PyUnicode_Type && t != &PyBytes_Type) {
        PyObject *name = PyType_GetName(t);
        if (name != NULL) {
            PyErr_Format(cc_CorruptSnapshot, "a sequence iterator over a %U", name);
            Py_DECREF(name);
        }
        goto done;
    }
    if ((it = PyObject_GetIter(seq)) == NULL) goto done;
    PyObject *r = PyObject_CallMethodOneArg(it, cd_s_setstate, index);
    if (r == NULL || PyList_Append(d->memo, it) < 0) Py_CLEAR(it);
    Py_XDECREF(r);
done:
    Py_DECREF(index);
    Py_XDECREF(seq);
    return it;
}

/* A tagged array: the kinds above, or the Decoder's Python method for it. */
static PyObject *
cd_tagged(Dec *d, PyObject *v)
{
    PyObject *kind_obj = *(PyObject **)((char *)PyList_GET_ITEM(v, 0) + cd_tag_kind_offset);
    long kind = kind_obj != NULL && PyLong_CheckExact(kind_obj) ? PyLong_AsLong(kind_obj) : -1;
    switch (kind) {
    case T_TUPLE: return cd_tuple(d, v);
    case T_SET: return cd_set(d, v, 0);
    case T_FROZENSET: return cd_set(d, v, 1);
    case T_DICT: return cd_dict_pairs(d, v);
    case T_FLATLIST: return cd_flat(d, v);
    case T_SHAPED: return cd_shaped(d, v);
    case T_REDUCE: return cd_reduce(d, v, 0);
    case T_NEWOBJ: return cd_reduce(d, v, 1);
    case T_SEQITER: return cd_seqiter(d, v);
    case T_GLOBAL: return cd_global(d, v);
    default: break;
    }
    if (kind_obj == NULL) {
        PyErr_SetString(PyExc_AttributeError, "kind");
        return NULL;
    }
    PyObject *method = PyDict_GetItemWithError(cd_TAGGED, kind_obj);
    if (method == NULL) {
        if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, kind_obj);
        return NULL;
    }
    Py_INCREF(method);
    PyObject *args[2] = {d->self, v};
    PyObject *out = PyObject_Vectorcall(method, args, 2, NULL);
    Py_DECREF(method);
    return out;
}

/* A plain list, walked in place, as the Python loop over enumerate(v). */
static PyObject *
cd_list(Dec *d, PyObject *v)
{
    if (PyList_Append(d->memo, v) < 0) return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); i++) {
        PyObject *x = PyList_GET_ITEM(v, i);
        if (!cd_walks(x)) continue;
        PyObject *y = cd_dec_item(d, x);
        if (y == NULL) return NULL;
        if (i >= PyList_GET_SIZE(v)) {
            Py_DECREF(y);
            PyErr_SetString(PyExc_IndexError, "list assignment index out of range");
            return NULL;
        }
        PyList_SetItem(v, i, y); /* steals y */
    }
    return Py_NewRef(v);
}

/* A plain dict: shape recorded, values decoded in place. */
static PyObject *
cd_dict(Dec *d, PyObject *v)
{
    if (PyList_Append(d->memo, v) < 0) return NULL;
    Py_ssize_t size = PyDict_GET_SIZE(v), pos = 0;
    PyObject *k, *x;
    if (size >= cd_shape_min) {
        /* tuple(v) when every key is a str: made as the keys are checked
         * (no code runs, so v stays as it is) */
        PyObject *shape = PyTuple_New(size);
        if (shape == NULL) return NULL;
        Py_ssize_t j = 0;
        while (PyDict_Next(v, &pos, &k, &x)) {
            if (!PyUnicode_CheckExact(k) || j >= size) {
                Py_CLEAR(shape);
                break;
            }
            PyTuple_SET_ITEM(shape, j++, Py_NewRef(k));
        }
        if (shape != NULL && j != size) Py_CLEAR(shape);
        if (shape != NULL) {
            int rc = PyList_Append(d->shapes, shape);
            Py_DECREF(shape);
            if (rc < 0) return NULL;
        }
        pos = 0;
    }
    while (PyDict_Next(v, &pos, &k, &x)) {
        if (!cd_walks(x)) continue;
        Py_INCREF(k);
        PyObject *y = cd_dec_item(d, x);
        int rc = y == NULL ? -1 : 0;
        if (rc == 0 && PyDict_GET_SIZE(v) != size) {
            PyErr_SetString(PyExc_RuntimeError, "dictionary changed size during iteration");
            rc = -1;
        }
        if (rc == 0) rc = PyDict_SetItem(v, k, y);
        Py_DECREF(k);
        Py_XDECREF(y);
        if (rc < 0) return NULL;
    }
    return Py_NewRef(v);
}

/* A Deferred: back-references here, the rest Decoder._deferred's. */
/* Decoder._deferred for the kinds whose decoding runs no code, against
 * `memo` (the Decoder's): a back-reference (the object it names), a
 * bytearray or an int list (made, and registered in the memo).  A new
 * reference; NULL with CorruptSnapshot for a malformed one; NULL with no
 * error for any other kind (the Decoder's Python method). */
static PyObject *
cd_deferred_plain(PyObject *memo, PyObject *v)
{
    PyObject *code = *(PyObject **)((char *)v + cc_deferred_code_offset);
    PyObject *data = *(PyObject **)((char *)v + cc_deferred_data_offset);
    long kind = code != NULL && PyLong_CheckExact(code) ? PyLong_AsLong(code) : -1;
    if (data == NULL || !PyBytes_CheckExact(data) ||
        (kind != EXT_REF && kind != EXT_INTLIST && kind != EXT_BYTEARRAY)) {
        return NULL; /* with PyLong_AsLong's error, if any */
    }
    if (kind == EXT_BYTEARRAY) {
        PyObject *out = PyByteArray_FromStringAndSize(PyBytes_AS_STRING(data),
                                                      PyBytes_GET_SIZE(data));
        if (out != NULL && PyList_Append(memo, out) < 0) Py_CLEAR(out);
        return out;
    }
    if (kind == EXT_INTLIST) {
        /* _unpack_ints: a width byte (1, 2, 4 or 8), then little-endian
         * signed integers of that width */
        Py_ssize_t size = PyBytes_GET_SIZE(data);
        const unsigned char *q = (const unsigned char *)PyBytes_AS_STRING(data);
        int width = size > 0 ? q[0] : 0;
        if ((width != 1 && width != 2 && width != 4 && width != 8) || (size - 1) % width) {
            return cc_corrupt("malformed int list");
        }
        Py_ssize_t count = (size - 1) / width;
        PyObject *out = PyList_New(count);
        if (out == NULL) return NULL;
        for (Py_ssize_t i = 0; i < count; i++) {
            const unsigned char *x = q + 1 + i * width;
            uint64_t u = 0;
            for (int k = width - 1; k >= 0; k--) u = (u << 8) | x[k];
            int64_t s = width == 8 ? (int64_t)u
                : (int64_t)(u ^ (1ULL << (8 * width - 1))) - (int64_t)(1ULL << (8 * width - 1));
            PyObject *item = PyLong_FromLongLong(s);
            if (item == NULL) {
                Py_DECREF(out);
                return NULL;
            }
            PyList_SET_ITEM(out, i, item);
        }
        if (PyList_Append(memo, out) < 0) Py_CLEAR(out);
        return out;
    }
    Py_ssize_t len = PyBytes_GET_SIZE(data);
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(data);
    if (len > 0 && len <= 4) {
        Py_ssize_t index = 0;
        for (Py_ssize_t k = 0; k < len; k++) index = (index << 8) | p[k];
        if (index < PyList_GET_SIZE(memo)) return Py_NewRef(PyList_GET_ITEM(memo, index));
    }
    PyObject *index = _PyLong_FromByteArray(p, (size_t)len, 0, 0);
    if (index != NULL) {
        PyErr_Format(cc_CorruptSnapshot,
                     "back-reference %S points past the objects read so far", index);
        Py_DECREF(index);
    }
    return NULL;
}

static PyObject *
cd_deferred(Dec *d, PyObject *v)
{
    PyObject *out = cd_deferred_plain(d->memo, v);
    if (out != NULL || PyErr_Occurred()) return out;
    return PyObject_CallMethodOneArg(d->self, cd_s_deferred, v);
}

/* Decoder.dec */
static PyObject *
cd_dec(Dec *d, PyObject *v)
{
    PyTypeObject *t = Py_TYPE(v);
    if (t == (PyTypeObject *)cc_Deferred) return cd_deferred(d, v);
    if (t != &PyList_Type && t != &PyDict_Type) {
        if (t == (PyTypeObject *)cc_ExtType && PyTuple_GET_SIZE(v) > 0) {
            PyErr_Format(cc_CorruptSnapshot, "unknown ext type %S", PyTuple_GET_ITEM(v, 0));
            return NULL;
        }
        return Py_NewRef(v);
    }
    if (Py_EnterRecursiveCall(" while decoding a value")) return NULL;
    PyObject *out;
    if (t == &PyDict_Type) {
        out = cd_dict(d, v);
    }
    else if (PyList_GET_SIZE(v) > 0 && Py_IS_TYPE(PyList_GET_ITEM(v, 0), (PyTypeObject *)cd_Tag)) {
        out = cd_tagged(d, v);
    }
    else {
        out = cd_list(d, v);
    }
    Py_LeaveRecursiveCall();
    return out;
}

/* dec(decoder, v) and dec_items(decoder, items): Decoder methods (bound as
 * such by the instancemethod wrappers the module exports). */
static PyObject *
cd_dec_method(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "dec() takes exactly one argument (%zd given)", nargs - 1);
        return NULL;
    }
    Dec d;
    if (cd_load(&d, args[0]) < 0) return NULL;
    PyObject *out = cd_dec(&d, args[1]);
    cd_release(&d);
    return out;
}

static PyObject *
cd_dec_items_method(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "dec_items() takes exactly one argument (%zd given)",
                     nargs - 1);
        return NULL;
    }
    Dec d;
    if (cd_load(&d, args[0]) < 0) return NULL;
    PyObject *out = cd_items_from(&d, args[1], 0);
    cd_release(&d);
    return out;
}

static PyMethodDef cd_dec_def = {
    "dec", (PyCFunction)(void (*)(void))cd_dec_method, METH_FASTCALL,
    "dec(v): the value the msgpack tree v stands for (Decoder.dec, in C)"};
static PyMethodDef cd_dec_items_def = {
    "dec_items", (PyCFunction)(void (*)(void))cd_dec_items_method, METH_FASTCALL,
    "dec_items(items): [dec(x) for x in items] (Decoder.dec_items, in C)"};

/* ------------------------------------------------------------ encoder set-up
 *
 * Encoder.__init__ and Encoder.note_globals of the C engine's Encoder: the
 * Python methods' work, without a Python frame (they run on every dumps).
 * The table below names every slot __init__ sets and how; when the Encoder
 * is first made, it is checked against Encoder.__slots__ (a slot one side
 * does not know is an ImportError naming it), and
 * tests/test_value_encoder_engines.py holds a C-made Encoder to a
 * Python-made one, slot by slot.
 */

/* CI_IDS: a dict that may be replaced by a shared one (global_ids can be a
 * module's cached index): a new empty dict, never emptied in place.
 * CI_NONE: None when made, left as it is by clear() (cstate, the snapshot
 * layer's view of these tables, which clear() empties in place). */
enum { CI_MEMO, CI_DICT, CI_LIST, CI_SET, CI_PID, CI_HOOK, CI_STRICT, CI_CALLBACK, CI_PASSTHROUGH,
       CI_IDS, CI_NONE };
/* One slot an __init__ in C sets: its name, how (the table's own enum),
 * and its offset in the instance, found by cc_slot_offsets. */
typedef struct {
    const char *name;
    int how;
    Py_ssize_t offset;
} SlotSpec;

/* The offsets of the n slots of `slots` in class `cls` (Encoder, Decoder):
 * each must be one of cls.__slots__, an object slot, and the table must name
 * as many as __slots__ has; else an ImportError naming the first one that is
 * not (the C and Python sides were built apart). */
static int
cc_slot_offsets(PyObject *cls, SlotSpec *slots, Py_ssize_t n)
{
    const char *what = ((PyTypeObject *)cls)->tp_name;
    PyObject *declared = PyObject_GetAttrString(cls, "__slots__");
    PyObject *names = declared == NULL ? NULL : PySequence_Tuple(declared);
    Py_XDECREF(declared);
    if (names == NULL) return -1;
    int rc = 0;
    if (PyTuple_GET_SIZE(names) != n) {
        PyErr_Format(PyExc_ImportError, "corosnap.codec._ccodec sets %zd %s slots, "
                     "%s.__slots__ has %zd: rebuild corosnap", n, what, what,
                     PyTuple_GET_SIZE(names));
        rc = -1;
    }
    PyObject *tp_dict = ((PyTypeObject *)cls)->tp_dict;
    for (Py_ssize_t k = 0; rc == 0 && k < n; k++) {
        PyObject *name = PyUnicode_FromString(slots[k].name);
        int in = name == NULL ? -1 : PySequence_Contains(names, name);
        PyObject *d = in > 0 ? PyDict_GetItemWithError(tp_dict, name) : NULL;
        Py_XDECREF(name);
        if (in < 0) {
            rc = -1;
        }
        else if (d == NULL || Py_TYPE(d) != &PyMemberDescr_Type ||
                 ((PyMemberDescrObject *)d)->d_member->type != CV_T_OBJECT_EX) {
            if (!PyErr_Occurred()) {
                PyErr_Format(PyExc_ImportError, "corosnap.codec._ccodec sets %s.%s, "
                             "which is not one of %s.__slots__: rebuild corosnap", what,
                             slots[k].name, what);
            }
            rc = -1;
        }
        else {
            slots[k].offset = ((PyMemberDescrObject *)d)->d_member->offset;
        }
    }
    Py_DECREF(names);
    return rc;
}

/* The arguments of an __init__ in C called as vectorcall: vals[0..n) set
 * from the positional and keyword arguments, by names[] (names[0] is self;
 * vals[] holds the defaults, NULL for a required one).  0, or -1 with a
 * TypeError naming `what`. */
static int
cc_init_args(const char *what, const char *const *names, PyObject **vals, int n,
             PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs < 1 || nargs > n) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments", what, n - 1);
        return -1;
    }
    for (Py_ssize_t k = 0; k < nargs; k++) vals[k] = args[k];
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t k = 0; k < nkw; k++) {
        int j = 1;
        PyObject *name = PyTuple_GET_ITEM(kwnames, k);
        while (j < n && PyUnicode_CompareWithASCIIString(name, names[j]) != 0) j++;
        if (j == n || j < nargs) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected or repeated keyword "
                         "argument %R", what, PyTuple_GET_ITEM(kwnames, k));
            return -1;
        }
        vals[j] = args[nargs + k];
    }
    for (int j = 1; j < n; j++) {
        if (vals[j] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() needs %s", what, names[j]);
            return -1;
        }
    }
    return 0;
}

static SlotSpec ci_slots[] = {
    {"memo", CI_MEMO}, {"keep", CI_LIST}, {"strings", CI_DICT}, {"codes", CI_MEMO},
    {"shapes", CI_DICT}, {"busy", CI_SET}, {"filling", CI_SET}, {"pid", CI_PID},
    {"frame_hook", CI_HOOK}, {"strict", CI_STRICT}, {"passthrough", CI_PASSTHROUGH},
    {"buffer_callback", CI_CALLBACK}, {"offered", CI_LIST}, {"globals_seen", CI_SET},
    {"modules", CI_LIST}, {"pending_globals", CI_LIST}, {"global_values", CI_LIST},
    {"global_ids", CI_IDS}, {"after", CI_LIST}, {"cstate", CI_NONE}};
#define CI_NSLOTS ((Py_ssize_t)(sizeof(ci_slots) / sizeof(ci_slots[0])))
/* _PASS_FAST, _PASS_STRICT, _PASS_FAST_BUFFERS, _PASS_STRICT_BUFFERS; _EVERYTHING */
static PyObject *ci_pass[4];
static Py_ssize_t ci_globals_seen_offset = -1;

static int
ci_ready(void)
{
    if (ci_everything != NULL) return 0;
    if (cv_ready() < 0) return -1;
    int rc = cc_slot_offsets(cv_Encoder, ci_slots, CI_NSLOTS);
    for (Py_ssize_t k = 0; rc == 0 && k < CI_NSLOTS; k++) {
        if (strcmp(ci_slots[k].name, "globals_seen") == 0) {
            ci_globals_seen_offset = ci_slots[k].offset;
        }
    }
    const char *pass_names[4] = {"_PASS_FAST", "_PASS_STRICT", "_PASS_FAST_BUFFERS",
                                 "_PASS_STRICT_BUFFERS"};
    for (int k = 0; rc == 0 && k < 4; k++) {
        PyObject *v = PyDict_GetItemString(cv_encoder_dict, pass_names[k]);
        if (v == NULL || !PyFrozenSet_CheckExact(v)) {
            PyErr_Format(PyExc_ImportError, "corosnap.codec._ccodec: codec/_encoder.py has no "
                         "frozenset %s", pass_names[k]);
            rc = -1;
        }
        else {
            Py_XSETREF(ci_pass[k], Py_NewRef(v));
        }
    }
    if (rc == 0) {
        PyObject *v = PyDict_GetItemWithError(cv_encoder_dict, cv_s_everything);
        if (v == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ImportError, "corosnap.codec._ccodec: codec/_encoder.py "
                                                   "has no _EVERYTHING");
            }
            rc = -1;
        }
        else {
            ci_everything = Py_NewRef(v); /* last: marks the set-up ready */
        }
    }
    return rc;
}

/* Encoder.__init__(self, pid, frame_hook, strict=False, buffer_callback=None) */
static PyObject *
ci_init_method(PyObject *module, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    static const char *const names[5] = {"self", "pid", "frame_hook", "strict",
                                          "buffer_callback"};
    PyObject *vals[5] = {NULL, NULL, NULL, Py_False, Py_None};
    if (cc_init_args("Encoder", names, vals, 5, args, nargsf, kwnames) < 0) return NULL;
    if (ci_ready() < 0) return NULL;
    PyObject *self = vals[0];
    if (!PyObject_TypeCheck(self, (PyTypeObject *)cv_Encoder)) {
        PyErr_Format(PyExc_TypeError, "Encoder.__init__ needs a corosnap Encoder, got %.100s",
                     Py_TYPE(self)->tp_name);
        return NULL;
    }
    int strict = PyObject_IsTrue(vals[3]);
    if (strict < 0) return NULL;
    PyObject *pass = ci_pass[(strict ? 1 : 0) + (vals[4] != Py_None ? 2 : 0)];
    for (Py_ssize_t k = 0; k < CI_NSLOTS; k++) {
        PyObject *v;
        switch (ci_slots[k].how) {
        case CI_MEMO: v = memo_make(&Memo_Type); break;
        case CI_DICT: case CI_IDS: v = PyDict_New(); break;
        case CI_LIST: v = PyList_New(0); break;
        case CI_SET: v = PySet_New(NULL); break;
        case CI_PID: v = Py_NewRef(vals[1]); break;
        case CI_HOOK: v = Py_NewRef(vals[2]); break;
        case CI_STRICT: v = Py_NewRef(vals[3]); break;
        case CI_CALLBACK: v = Py_NewRef(vals[4]); break;
        case CI_PASSTHROUGH: v = Py_NewRef(pass); break;
        default: v = Py_NewRef(Py_None); break;
        }
        if (v == NULL) return NULL;
        PyObject **slot = (PyObject **)((char *)self + ci_slots[k].offset);
        Py_XSETREF(*slot, v);
    }
    Py_RETURN_NONE;
}

/* Encoder.note_globals(self, globals_): a frame's module noted, its index
 * looked up only when a value may need it (resolve_globals). */
static PyObject *
ci_note_globals_method(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "note_globals() takes exactly one argument (%zd given)",
                     nargs - 1);
        return NULL;
    }
    if (ci_ready() < 0) return NULL;
    PyObject *self = args[0];
    if (!PyObject_TypeCheck(self, (PyTypeObject *)cv_Encoder)) {
        PyErr_Format(PyExc_TypeError, "note_globals() needs a corosnap Encoder, got %.100s",
                     Py_TYPE(self)->tp_name);
        return NULL;
    }
    PyObject *seen = *(PyObject **)((char *)self + ci_globals_seen_offset);
    PyObject *pending = cv_slot(self, F_PENDING_GLOBALS);
    if (seen == NULL || pending == NULL || !PySet_CheckExact(seen) ||
        !PyList_CheckExact(pending)) {
        PyErr_SetString(PyExc_TypeError, "Encoder.globals_seen must be a set and "
                                         "Encoder.pending_globals a list");
        return NULL;
    }
    PyObject *key = PyLong_FromVoidPtr(args[1]);
    if (key == NULL) return NULL;
    int in = PySet_Contains(seen, key);
    if (in != 0) {
        Py_DECREF(key);
        if (in < 0) return NULL;
        Py_RETURN_NONE;
    }
    Py_INCREF(seen);
    Py_INCREF(pending);
    int rc = PySet_Add(seen, key);
    if (rc == 0) rc = PyList_Append(pending, args[1]);
    Py_DECREF(key);
    Py_DECREF(seen);
    Py_DECREF(pending);
    if (rc < 0) return NULL;
    PyObject **slot = (PyObject **)((char *)self + cv_offsets[F_GLOBAL_IDS]);
    Py_XSETREF(*slot, Py_NewRef(ci_everything)); /* resolved on first use */
    Py_RETURN_NONE;
}

/* Encoder.clear(self): every table emptied in place (see Encoder.clear). */
static PyObject *
ci_clear_method(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "clear() takes no arguments (%zd given)", nargs - 1);
        return NULL;
    }
    if (ci_ready() < 0) return NULL;
    PyObject *self = args[0];
    if (!PyObject_TypeCheck(self, (PyTypeObject *)cv_Encoder)) {
        PyErr_Format(PyExc_TypeError, "clear() needs a corosnap Encoder, got %.100s",
                     Py_TYPE(self)->tp_name);
        return NULL;
    }
    for (Py_ssize_t k = 0; k < CI_NSLOTS; k++) {
        int how = ci_slots[k].how;
        if (how == CI_MEMO) {
            PyObject *v = *(PyObject **)((char *)self + ci_slots[k].offset);
            if (v == NULL || !Memo_CheckExact(v)) {
                PyErr_Format(PyExc_TypeError, "Encoder.%s holds a %.100s, not the corosnap "
                             "Memo it is made with", ci_slots[k].name,
                             v == NULL ? "nothing" : Py_TYPE(v)->tp_name);
                return NULL;
            }
            if (memo_clear((MemoObject *)v) < 0) return NULL;
            continue;
        }
        if (how != CI_DICT && how != CI_LIST && how != CI_SET && how != CI_IDS) continue;
        PyObject **slot = (PyObject **)((char *)self + ci_slots[k].offset);
        PyObject *v = *slot;
        /* Already empty: left as it is (global_ids: an empty dict nothing
         * else holds is as good as the new one Python's clear makes). */
        if (v != NULL && (how == CI_LIST ? PyList_CheckExact(v) && PyList_GET_SIZE(v) == 0
                          : how == CI_SET ? PySet_CheckExact(v) && PySet_GET_SIZE(v) == 0
                          : how == CI_IDS ? PyDict_CheckExact(v) && PyDict_GET_SIZE(v) == 0 &&
                                                Py_REFCNT(v) == 1
                                          : PyDict_CheckExact(v) && PyDict_GET_SIZE(v) == 0)) {
            continue;
        }
        if (how == CI_IDS || v == NULL) {
            PyObject *fresh = how == CI_LIST ? PyList_New(0) : how == CI_SET ? PySet_New(NULL)
                            : PyDict_New();
            if (fresh == NULL) return NULL;
            Py_XSETREF(*slot, fresh);
            continue;
        }
        /* Emptying may run arbitrary code (a __del__), which may replace the
         * slot: the table is held while it is emptied. */
        Py_INCREF(v);
        int rc = 0;
        if (how == CI_DICT && PyDict_Check(v)) {
            PyDict_Clear(v);
        }
        else if (how == CI_LIST && PyList_CheckExact(v)) {
            corosnap_list_empty(v);
        }
        else if (how == CI_LIST && PyList_Check(v)) {
            rc = PyList_SetSlice(v, 0, PY_SSIZE_T_MAX, NULL);
        }
        else if (how == CI_SET && PySet_Check(v)) {
            rc = PySet_Clear(v);
        }
        else {
            PyErr_Format(PyExc_TypeError, "Encoder.%s holds a %.100s, not the %s it is made "
                         "with", ci_slots[k].name, Py_TYPE(v)->tp_name,
                         how == CI_DICT ? "dict" : how == CI_LIST ? "list" : "set");
            rc = -1;
        }
        Py_DECREF(v);
        if (rc < 0) return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef ci_clear_def = {
    "encoder_clear", (PyCFunction)(void (*)(void))ci_clear_method, METH_FASTCALL,
    "Encoder.clear(), in C"};
static PyMethodDef ci_init_def = {
    "encoder_init", (PyCFunction)(void (*)(void))ci_init_method, METH_FASTCALL | METH_KEYWORDS,
    "Encoder.__init__(pid, frame_hook, strict=False, buffer_callback=None), in C"};
static PyMethodDef ci_note_globals_def = {
    "note_globals", (PyCFunction)(void (*)(void))ci_note_globals_method, METH_FASTCALL,
    "Encoder.note_globals(globals_), in C"};

/* ------------------------------------------------------------ decoder set-up
 *
 * Decoder.__init__ of the C engine's Decoder: the Python method's work
 * without a Python frame (a loads whose frames hold a list or a dict makes
 * one).  As the encoder's: the table names every slot __init__ sets and
 * how; it is checked against Decoder.__slots__ when the first Decoder is
 * made (a slot one side does not know is an ImportError naming it), and
 * tests/test_value_encoder_engines.py holds a C-made Decoder to a
 * Python-made one, slot by slot.
 */

/* DI_BUDGET: MAX_CYCLE_WALK of codec/_decoder.py (read at each __init__);
 * DI_NONE: None (cstate, migration: set later by the snapshot layer). */
enum { DI_MEMO, DI_LIST, DI_SET, DI_DICT, DI_FRAMES, DI_SAFE, DI_ALLOW, DI_BUFFERS, DI_BUDGET, DI_NONE };
static SlotSpec di_slots[] = {
    {"memo", DI_LIST}, {"strings", DI_LIST}, {"codes", DI_LIST}, {"shapes", DI_LIST},
    {"safe", DI_SAFE}, {"allow", DI_ALLOW}, {"frames", DI_FRAMES}, {"active", DI_SET},
    {"depth", DI_MEMO}, {"pinned", DI_LIST}, {"follows", DI_DICT}, {"building", DI_SET},
    {"settled", DI_SET}, {"walk_budget", DI_BUDGET}, {"follower_types", DI_DICT},
    {"exceptions", DI_LIST}, {"cstate", DI_NONE}, {"buffers", DI_BUFFERS},
    {"after", DI_LIST}, {"migration", DI_NONE}};
#define DI_NSLOTS ((Py_ssize_t)(sizeof(di_slots) / sizeof(di_slots[0])))
#define DI_NSLOTS_MAX 32
_Static_assert(sizeof(di_slots) / sizeof(di_slots[0]) <= DI_NSLOTS_MAX, "di_slots grew");
/* codec/_decoder.py's globals, set last: marks the set-up ready */
static PyObject *di_decoder_globals, *di_s_budget;
static void di_find_shared(void);

static int
di_ready(void)
{
    if (di_decoder_globals != NULL) return 0;
    if (cd_ready() < 0) return -1;
    if (di_s_budget == NULL && (di_s_budget = PyUnicode_InternFromString("MAX_CYCLE_WALK")) ==
        NULL) return -1;
    int rc = cc_slot_offsets(cd_Decoder, di_slots, DI_NSLOTS);
    if (rc == 0) di_find_shared();
    if (rc == 0) {
        PyObject *dec_mod = PyImport_ImportModule("corosnap.codec._decoder");
        PyObject *globals = dec_mod == NULL ? NULL : PyModule_GetDict(dec_mod); /* borrowed */
        if (globals != NULL) di_decoder_globals = Py_NewRef(globals);
        Py_XDECREF(dec_mod);
        if (globals == NULL) rc = -1;
    }
    return rc;
}

/* MAX_CYCLE_WALK, read from codec/_decoder.py's globals each time, as
 * Decoder.__init__ reads it (a test may lower it).  New reference. */
static PyObject *
di_budget(void)
{
    PyObject *budget = PyDict_GetItemWithError(di_decoder_globals, di_s_budget);
    if (budget == NULL && !PyErr_Occurred()) {
        PyErr_SetString(PyExc_NameError, "name 'MAX_CYCLE_WALK' is not defined");
    }
    return Py_XNewRef(budget);
}

/* Which of the eight objects adopt_decoder shares (memo, strings, codes,
 * active, exceptions, shapes, depth, cstate) slot k takes, or -1; and
 * whether slot k is one of the Decoder's own tables (a container __init__
 * makes and adopt_decoder does not share).  Found by name once, when the
 * slots are (di_ready). */
enum { DI_NSHARED = 8 };
static signed char di_shared[DI_NSLOTS_MAX], di_own[DI_NSLOTS_MAX];

static void
di_find_shared(void)
{
    static const char *shared_names[DI_NSHARED] = {"memo", "strings", "codes", "active",
                                                   "exceptions", "shapes", "depth", "cstate"};
    for (Py_ssize_t k = 0; k < DI_NSLOTS; k++) {
        di_shared[k] = -1;
        for (int j = 0; j < DI_NSHARED; j++) {
            if (strcmp(di_slots[k].name, shared_names[j]) == 0) di_shared[k] = (signed char)j;
        }
        int how = di_slots[k].how;
        di_own[k] = di_shared[k] < 0 &&
                    (how == DI_MEMO || how == DI_LIST || how == DI_SET || how == DI_DICT);
    }
}

#define di_own_table(k) (di_own[(k)])

/* Every slot of Decoder self as __init__ sets it from vals (self, frames,
 * safe, allow, buffers); with `shared`, memo, strings, codes, active,
 * exceptions, shapes, depth and cstate are those eight objects instead
 * (adopt_decoder). */
static int
di_fill(PyObject *self, PyObject *const *vals, PyObject *const *shared, int keep_own)
{
    const signed char *shared_of = di_shared;
    for (Py_ssize_t k = 0; k < DI_NSLOTS; k++) {
        /* keep_own: a Decoder used again (di_take_spare), whose own tables
         * were checked empty: they stay */
        if (keep_own && di_own_table(k)) continue;
        PyObject *v = shared != NULL && shared_of[k] >= 0 ? Py_NewRef(shared[shared_of[k]]) : NULL;
        if (v == NULL) {
            switch (di_slots[k].how) {
            case DI_MEMO: v = memo_make(&Memo_Type); break;
            case DI_LIST: v = PyList_New(0); break;
            case DI_SET: v = PySet_New(NULL); break;
            case DI_DICT: v = PyDict_New(); break;
            case DI_FRAMES: v = Py_NewRef(vals[1]); break;
            case DI_SAFE: v = Py_NewRef(vals[2]); break;
            case DI_ALLOW: v = Py_NewRef(vals[3]); break;
            case DI_BUFFERS: v = Py_NewRef(vals[4]); break;
            case DI_BUDGET: v = di_budget(); break;
            default: v = Py_NewRef(Py_None); break;
            }
        }
        if (v == NULL) return -1;
        PyObject **slot = (PyObject **)((char *)self + di_slots[k].offset);
        Py_XSETREF(*slot, v);
    }
    return 0;
}

/* Decoder.__init__(self, frames, safe=False, allow=(), buffers=None) */
static PyObject *
di_init_method(PyObject *module, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    static const char *const names[5] = {"self", "frames", "safe", "allow", "buffers"};
    if (di_ready() < 0) return NULL; /* cd_empty_tuple, allow's default */
    PyObject *vals[5] = {NULL, NULL, Py_False, cd_empty_tuple, Py_None};
    if (cc_init_args("Decoder", names, vals, 5, args, nargsf, kwnames) < 0) return NULL;
    PyObject *self = vals[0];
    if (!PyObject_TypeCheck(self, (PyTypeObject *)cd_Decoder)) {
        PyErr_Format(PyExc_TypeError, "Decoder.__init__ needs a corosnap Decoder, got %.100s",
                     Py_TYPE(self)->tp_name);
        return NULL;
    }
    if (di_fill(self, vals, NULL, 0) < 0) return NULL;
    Py_RETURN_NONE;
}

/* The Decoder of the snapshot layer's C engine state, as FrameDecoder.adopt
 * makes it: adopt_decoder(cls, frames, safe, allow, memo, strings, codes,
 * active, exceptions, shapes, depth, cstate) is cls(frames, safe, allow)
 * whose memo, strings, codes, active, exceptions, shapes and depth are the
 * given tables and whose cstate is the given state, made without the seven
 * tables __init__ would make and drop (tests/test_load_root.py holds it to
 * FrameDecoder.adopt, slot by slot). */
static PyObject *di_take_spare(PyTypeObject *cls);

static PyObject *
di_adopt(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 + DI_NSHARED) {
        PyErr_SetString(PyExc_TypeError, "adopt_decoder(cls, frames, safe, allow, memo, "
                                          "strings, codes, active, exceptions, shapes, depth, "
                                          "cstate)");
        return NULL;
    }
    if (di_ready() < 0) return NULL;
    PyObject *cls = args[0];
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls,
                                                (PyTypeObject *)cd_Decoder)) {
        PyErr_Format(PyExc_TypeError, "adopt_decoder needs a corosnap Decoder class, got %R",
                     cls);
        return NULL;
    }
    if (!PyList_CheckExact(args[4]) || !PyList_CheckExact(args[5]) ||
        !PyList_CheckExact(args[6]) || !PySet_CheckExact(args[7]) ||
        !PyList_CheckExact(args[8]) || !PyList_CheckExact(args[9]) ||
        !Memo_CheckExact(args[10])) {
        PyErr_SetString(PyExc_TypeError, "adopt_decoder: memo, strings, codes, exceptions and "
                                         "shapes must be lists, active a set, depth a Memo");
        return NULL;
    }
    PyObject *self = di_take_spare((PyTypeObject *)cls);
    int keep_own = self != NULL; /* its own tables stay (di_fill) */
    if (self == NULL) {
        if (PyErr_Occurred()) return NULL;
        self = ((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, 0);
        if (self == NULL) return NULL;
    }
    PyObject *vals[5] = {NULL, args[1], args[2], args[3], Py_None};
    if (di_fill(self, vals, args + 4, keep_own) < 0) Py_CLEAR(self); /* buffers, migration: None */
    return self;
}

/* release_decoder(dec): the snapshot layer is done with the Decoder
 * adopt_decoder made for one loads.  A loads whose frames hold anything but
 * plain values makes one, and making it (its empty tables) and freeing it
 * again was a fifth of restoring a small frame holding a tuple.  So the last
 * one is kept, emptied, for the next adopt_decoder, on these conditions:
 *  - nothing else holds it (a value restored with it, a reduce that kept
 *    it, gc.get_objects: then it is simply released);
 *  - every slot that refers to the loads is let go of first: the shared
 *    tables, the state, the frame hooks, the options, the buffers;
 *  - its own tables are emptied (which runs the finalizers of what they
 *    held: any code, another loads included), and it is kept only if it is
 *    still alone afterwards and no other Decoder was kept meanwhile;
 *  - adopt_decoder uses it again only for a class of exactly its type, if it
 *    is still alone and every own table is still the empty container
 *    __init__ makes (else it makes a new one), and then sets every other
 *    slot as for a new one.
 * The Python engine has no twin: it makes a Decoder per loads (and this
 * changes no result).  With the GIL only. */
static PyObject *di_spare = NULL;

/* The kept Decoder, taken, if it can serve a class `cls` (new reference),
 * or NULL (no error: make a new one). */
static PyObject *
di_take_spare(PyTypeObject *cls)
{
    PyObject *dec = di_spare;
    if (dec == NULL) return NULL;
    di_spare = NULL;
    int ok = Py_TYPE(dec) == cls && Py_REFCNT(dec) == 1;
    for (Py_ssize_t k = 0; ok && k < DI_NSLOTS; k++) {
        if (!di_own_table(k)) continue;
        PyObject *v = *(PyObject **)((char *)dec + di_slots[k].offset);
        switch (di_slots[k].how) {
        case DI_MEMO: ok = v != NULL && Memo_CheckExact(v) && ((MemoObject *)v)->used == 0; break;
        case DI_LIST: ok = v != NULL && PyList_CheckExact(v) && PyList_GET_SIZE(v) == 0; break;
        case DI_SET: ok = v != NULL && PySet_CheckExact(v) && PySet_GET_SIZE(v) == 0; break;
        default: ok = v != NULL && PyDict_CheckExact(v) && PyDict_GET_SIZE(v) == 0; break;
        }
        ok = ok && Py_REFCNT(v) == 1;
    }
    if (!ok) {
        Py_DECREF(dec);
        return NULL;
    }
    return dec;
}

static PyObject *
di_release(PyObject *module, PyObject *dec)
{
#ifndef Py_GIL_DISABLED
    if (di_ready() < 0) return NULL;
    if (di_spare != NULL || !PyObject_TypeCheck(dec, (PyTypeObject *)cd_Decoder) ||
        Py_REFCNT(dec) != 1) {
        Py_RETURN_NONE; /* the caller's reference goes as usual */
    }
    Py_INCREF(dec); /* held while its slots are let go of (code may run) */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    int ok = 1;
    for (Py_ssize_t k = 0; k < DI_NSLOTS; k++) {
        PyObject **slot = (PyObject **)((char *)dec + di_slots[k].offset);
        PyObject *v = *slot;
        if (!di_own_table(k)) {
            /* what refers to the loads: None until adopt_decoder sets it */
            Py_XSETREF(*slot, Py_NewRef(Py_None));
            continue;
        }
        if (v == NULL) {
            ok = 0;
            continue;
        }
        Py_INCREF(v);
        switch (di_slots[k].how) {
        case DI_MEMO:
            if (Memo_CheckExact(v)) memo_shrink((MemoObject *)v);
            else ok = 0;
            break;
        case DI_LIST:
            if (PyList_CheckExact(v)) corosnap_list_empty(v);
            else ok = 0;
            break;
        case DI_SET:
            if (!PySet_CheckExact(v) || (PySet_GET_SIZE(v) && PySet_Clear(v) < 0)) ok = 0;
            break;
        default:
            if (PyDict_CheckExact(v)) PyDict_Clear(v);
            else ok = 0;
            break;
        }
        Py_DECREF(v);
    }
    PyErr_Clear();
    PyErr_Restore(type, value, tb);
    if (ok && di_spare == NULL && Py_REFCNT(dec) == 2) {
        di_spare = dec; /* the reference taken above */
        Py_RETURN_NONE;
    }
    Py_DECREF(dec);
#endif
    Py_RETURN_NONE;
}

/* dec_plain(memo, strings, shapes, depth, x): what Decoder.dec(x) gives for
 * the values whose decoding needs no Decoder and runs no Python code, or
 * NotImplemented (no error, nothing changed) for anything else.  The
 * snapshot layer asks it first for a frame slot, so a frame holding only
 * such values (and the plain lists it handles itself) makes no Decoder:
 *  - a back-reference within the memo: the object it names; a bytearray or
 *    a list of ints (registered in the memo);
 *  - a tuple whose items are themselves once decoded (no list, dict or
 *    deferred value among them): the tuple of them (Decoder._tuple), when
 *    `depth` has no entry;
 *  - a sequence iterator (a for loop over a list, a tuple, a str or bytes)
 *    over a back-reference within the memo, at an int index: iter(seq) set
 *    to the index, registered in the memo (Decoder._seqiter).  A step that
 *    fails is left to the Decoder, which says what is wrong;
 *  - an instance of a plain class (a dataclass, a class of attributes) with
 *    a dict of plain values as its state: NEWOBJ of a class named by a
 *    global found in an imported module's dict, or by a back-reference,
 *    with no arguments (cd_plain_newobj).
 * The tables are the loads' own, which its Decoder shares once it has one
 * (RestoreState: memo, strings, shapes and depth, a Memo): the same
 * objects, strings, shapes and depths, in the same order, as Decoder.dec.
 * Outside safe mode only (the C restore declines a safe loads first).
 * Making an object can run the collector, and so finalizers: what is read
 * before is held, or read again after. */
static PyObject *
cd_plain_ref(PyObject *memo, PyObject *x)
{
    /* the object back-reference x names in memo (a new reference), or NULL
     * with no error for anything else: cd_deferred_plain's reading of it */
    if (!Py_IS_TYPE(x, (PyTypeObject *)cc_Deferred)) return NULL;
    PyObject *code = *(PyObject **)((char *)x + cc_deferred_code_offset);
    int overflow = 0;
    if (code == NULL || !PyLong_CheckExact(code) ||
        PyLong_AsLongAndOverflow(code, &overflow) != EXT_REF || overflow) {
        return NULL;
    }
    PyObject *out = cd_deferred_plain(memo, x);
    if (out == NULL) PyErr_Clear();
    return out;
}

/* Whether an instance of `cls` is made, and its dict state set, with no
 * Python code run, and with no check of the Decoder's to pass: a class of
 * metaclass type whose tp_new and __new__ are object's (NEWOBJ makes it
 * as _pickle's NEWOBJ does), not abstract, no exception (Decoder.exceptions),
 * no follower (follows_unguarded: no C __call__ or __next__), with the
 * generic getattr, no __setstate__ and a C __dict__ descriptor (_set_state:
 * obj.__dict__.update(state)).  None of NEVER_CALLED is such a class (each
 * has its own tp_new), nor is itertools.chain.  Remembered by the class's
 * address and version tag, as the follower table. */
enum { CD_PLAIN_CLASSES = 64 };
static struct {
    PyTypeObject *cls; /* not held: compared only */
    unsigned int tag;  /* never 0 */
    int plain;
    /* its __dict__ descriptor (on its MRO, held by it while the tag holds) */
    PyGetSetDescrObject *dict_descr;
} cd_plain_classes[CD_PLAIN_CLASSES];

static int
cd_follower_attr(PyTypeObject *t, PyObject *name)
{
    PyObject *attr = _PyType_Lookup(t, name); /* the MRO's dicts, no code run */
    return attr != NULL && !PyFunction_Check(attr);
}

static int
cd_plain_class(PyObject *cls, PyGetSetDescrObject **dict_get)
{
    if (!Py_IS_TYPE(cls, &PyType_Type)) return 0;
    PyTypeObject *t = (PyTypeObject *)cls;
    size_t slot = ((uintptr_t)cls >> 4) & (CD_PLAIN_CLASSES - 1);
    unsigned int tag = t->tp_version_tag;
    if (tag != 0 && cd_plain_classes[slot].cls == t && cd_plain_classes[slot].tag == tag) {
        *dict_get = cd_plain_classes[slot].dict_descr;
        return cd_plain_classes[slot].plain;
    }
    unsigned long flags = t->tp_flags;
    PyObject *dict_descr = NULL;
    /* Every key of every dict on its MRO a str: the lookups below then
     * compare strs only (a key of another type whose hash matches a name
     * would have its __eq__ called).  A static type's dict (not in tp_dict
     * from 3.12 on) has the names its C code defines, and no other. */
    int str_keys = t->tp_mro != NULL && PyTuple_CheckExact(t->tp_mro);
    for (Py_ssize_t m = 0; str_keys && m < PyTuple_GET_SIZE(t->tp_mro); m++) {
        PyObject *base = PyTuple_GET_ITEM(t->tp_mro, m), *key, *value;
        if (!PyType_Check(base)) {
            str_keys = 0;
            break;
        }
        if (!(((PyTypeObject *)base)->tp_flags & Py_TPFLAGS_HEAPTYPE)) continue;
        PyObject *base_dict = ((PyTypeObject *)base)->tp_dict;
        Py_ssize_t at = 0;
        str_keys = base_dict != NULL && PyDict_CheckExact(base_dict);
        while (str_keys && PyDict_Next(base_dict, &at, &key, &value)) {
            str_keys = PyUnicode_CheckExact(key);
        }
    }
    int plain = str_keys && (flags & Py_TPFLAGS_HEAPTYPE) && !(flags & Py_TPFLAGS_IS_ABSTRACT) &&
                !(flags & Py_TPFLAGS_BASE_EXC_SUBCLASS) &&
                t->tp_new == PyBaseObject_Type.tp_new &&
                _PyType_Lookup(t, cd_s_new) == cd_object_new &&
                t->tp_getattro == PyObject_GenericGetAttr &&
                _PyType_Lookup(t, cd_s_setstate) == NULL &&
                !cd_follower_attr(t, cd_s_call) && !cd_follower_attr(t, cd_s_next) &&
                (dict_descr = _PyType_Lookup(t, cd_s_dict)) != NULL &&
                Py_IS_TYPE(dict_descr, &PyGetSetDescr_Type) &&
                ((PyGetSetDescrObject *)dict_descr)->d_getset->get != NULL &&
                PyType_IsSubtype(t, PyDescr_TYPE(dict_descr));
    *dict_get = plain ? (PyGetSetDescrObject *)dict_descr : NULL;
    tag = t->tp_version_tag; /* as it is after the lookups */
    if (tag != 0) {
        cd_plain_classes[slot].cls = t;
        cd_plain_classes[slot].tag = tag;
        cd_plain_classes[slot].plain = plain;
        cd_plain_classes[slot].dict_descr = *dict_get;
    }
    return plain;
}

/* A string field of a global as Decoder.string reads it, without appending:
 * a str (*fresh set: to append at commit) or the index of one in `strings`,
 * or of `pending` (a str read before it in the same reference, at the index
 * it will have).  Borrowed; NULL (no error) for anything else. */
static PyObject *
cd_plain_string(PyObject *field, PyObject *strings, PyObject *pending, int *fresh)
{
    *fresh = 0;
    if (PyUnicode_CheckExact(field)) {
        *fresh = 1;
        return field;
    }
    if (!PyLong_CheckExact(field)) return NULL;
    Py_ssize_t k = PyLong_AsSsize_t(field);
    if (k == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return NULL;
    }
    Py_ssize_t len = PyList_GET_SIZE(strings);
    PyObject *out = k >= 0 && k < len ? PyList_GET_ITEM(strings, k)
                    : pending != NULL && k == len ? pending : NULL;
    /* the table's entries are the blob's strs, unless code reached it */
    return out != NULL && PyUnicode_CheckExact(out) ? out : NULL;
}

/* The most state entries cd_plain_newobj answers (a larger state is the
 * Decoder's). */
enum { CD_PLAIN_STATE_MAX = 32 };

/* Decoder._reduce for [T_NEWOBJ, cls, [], state] (or no state) of a plain
 * class (cd_plain_class) named by a global (found in an imported module's
 * dict, as cd_global finds it) or by a back-reference.  The state is a dict
 * of str keys (the tree's own, as Decoder.dec keeps it) or a dict of a shape
 * read before ([T_SHAPED, index, *values]: a new dict, as Decoder._shaped
 * makes it), whose values are plain (no list, dict or deferred value) or
 * back-references within the memo (replaced by what they name, in place, as
 * Decoder.dec replaces them).  The instance, with every side effect
 * Decoder.dec has, in its order: the strings of the name, the class, the
 * instance and the state dict in the memo, a new shape, the instance's
 * depth.  NotImplemented, nothing changed, for anything else, or for what
 * the Decoder would refuse (a bad reference, too deep a nesting). */
static PyObject *
cd_plain_newobj(PyObject *memo, PyObject *strings, PyObject *shapes, MemoObject *depth,
                PyObject *x)
{
    Py_ssize_t n = PyList_GET_SIZE(x);
    if (n != 3 && n != 4) Py_RETURN_NOTIMPLEMENTED;
    PyObject *func_f = PyList_GET_ITEM(x, 1), *args_f = PyList_GET_ITEM(x, 2);
    PyObject *state_f = n == 4 ? PyList_GET_ITEM(x, 3) : Py_None;
    if (!PyList_CheckExact(args_f) || PyList_GET_SIZE(args_f) != 0) Py_RETURN_NOTIMPLEMENTED;
    /* the state's keys (a shape's tuple, or NULL: the tree dict's own) */
    PyObject *keys = NULL;
    Py_ssize_t size = 0;
    if (PyDict_CheckExact(state_f)) {
        size = PyDict_GET_SIZE(state_f);
    }
    else if (PyList_CheckExact(state_f) && PyList_GET_SIZE(state_f) >= 2 &&
             Py_IS_TYPE(PyList_GET_ITEM(state_f, 0), (PyTypeObject *)cd_Tag)) {
        PyObject *kind_obj = *(PyObject **)((char *)PyList_GET_ITEM(state_f, 0) +
                                            cd_tag_kind_offset);
        PyObject *index_obj = PyList_GET_ITEM(state_f, 1);
        int overflow = 0;
        long kind = kind_obj != NULL && PyLong_CheckExact(kind_obj)
                        ? PyLong_AsLongAndOverflow(kind_obj, &overflow) : -1;
        long index = kind == T_SHAPED && PyLong_CheckExact(index_obj)
                         ? PyLong_AsLongAndOverflow(index_obj, &overflow) : -1;
        if (overflow || index < 0 || index >= PyList_GET_SIZE(shapes)) {
            PyErr_Clear();
            Py_RETURN_NOTIMPLEMENTED;
        }
        keys = PyList_GET_ITEM(shapes, index);
        size = PyList_GET_SIZE(state_f) - 2;
        if (!PyTuple_CheckExact(keys) || PyTuple_GET_SIZE(keys) != size) {
            Py_RETURN_NOTIMPLEMENTED;
        }
    }
    else if (state_f != Py_None) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    if (size > CD_PLAIN_STATE_MAX) Py_RETURN_NOTIMPLEMENTED;
    /* Held from here: the class; the strings naming it, to append; the
     * state field and the shape's keys (making an object can run the
     * collector, and so finalizers); each state value as decoded. */
    PyObject *cls = NULL, *module = NULL, *name = NULL, *obj = NULL, *state = NULL;
    PyObject *shape = NULL, *values[CD_PLAIN_STATE_MAX], *names[CD_PLAIN_STATE_MAX];
    PyGetSetDescrObject *dict_get = NULL; /* the class's __dict__ descriptor */
    Py_ssize_t nvalues = 0, refs = 0, pos = 0;
    Py_INCREF(state_f);
    Py_XINCREF(keys);
    int fresh_module = 0, fresh_name = 0;
    if (Py_IS_TYPE(func_f, (PyTypeObject *)cc_Deferred)) {
        cls = cd_plain_ref(memo, func_f);
    }
    else if (PyList_CheckExact(func_f) && PyList_GET_SIZE(func_f) == 3 &&
             Py_IS_TYPE(PyList_GET_ITEM(func_f, 0), (PyTypeObject *)cd_Tag)) {
        PyObject *kind_obj = *(PyObject **)((char *)PyList_GET_ITEM(func_f, 0) +
                                            cd_tag_kind_offset);
        if (kind_obj == NULL || !PyLong_CheckExact(kind_obj) ||
            PyLong_AsLong(kind_obj) != T_GLOBAL) {
            goto decline;
        }
        module = cd_plain_string(PyList_GET_ITEM(func_f, 1), strings, NULL, &fresh_module);
        name = module == NULL ? NULL
                              : cd_plain_string(PyList_GET_ITEM(func_f, 2), strings,
                                                fresh_module ? module : NULL, &fresh_name);
        if (name == NULL || !PyUnicode_IS_ASCII(name) ||
            memchr(PyUnicode_1BYTE_DATA(name), '.', (size_t)PyUnicode_GET_LENGTH(name))) {
            module = name = NULL; /* borrowed until here; a dotted name: load_global's */
            goto decline;
        }
        Py_INCREF(module);
        Py_INCREF(name);
        PyObject *modules = PyImport_GetModuleDict();
        PyObject *mod = PyDict_CheckExact(modules) ? PyDict_GetItemWithError(modules, module)
                                                    : NULL;
        Py_XINCREF(mod);
        cls = mod == NULL || mod == Py_None ? NULL : cd_module_entry(mod, name);
        Py_XDECREF(mod);
    }
    if (cls == NULL || !cd_plain_class(cls, &dict_get)) goto decline;
    /* Finding the class compared the blob's names with the keys of
     * sys.modules and of the module's dict: a key that is no str, whose hash
     * is a name's, had its __eq__ called, which could change the shaped
     * state's list (held, but not its items): its length is read again. */
    if (keys != NULL && PyList_GET_SIZE(state_f) != size + 2) goto decline;
    /* the state's keys and values, decoded (nothing changed yet): plain
     * values as they are, back-references as what they name; str keys only */
    PyObject *k, *v;
    for (Py_ssize_t j = 0; j < size; j++) {
        if (keys != NULL) {
            k = PyTuple_GET_ITEM(keys, j);
            v = PyList_GET_ITEM(state_f, j + 2);
        }
        else if (!PyDict_Next(state_f, &pos, &k, &v)) {
            goto decline;
        }
        if (!PyUnicode_CheckExact(k)) goto decline;
        PyObject *named = !cd_walks(v) ? Py_NewRef(v) : cd_plain_ref(memo, v);
        if (named == NULL) goto decline; /* a list, a dict, another deferred: the Decoder's */
        refs += named != v;
        names[nvalues] = Py_NewRef(k);
        values[nvalues++] = named;
    }
    /* Decoder._nest: of the arguments [cls], then of the state's values */
    Py_ssize_t nest = cd_nest_in(depth, &cls, 1, 0);
    Py_ssize_t nest2 = cd_nest_in(depth, values, nvalues, 0);
    if (nest >= cd_max_nesting || nest2 >= cd_max_nesting) goto decline; /* LimitExceeded */
    nest = (nest2 > nest ? nest2 : nest) + 1; /* max(self.depth[id(obj)], _nest(values)) */
    /* Commit: what the Decoder does, in its order.  Nothing is declined
     * from here; an error (no memory) is the loads'. */
    if ((fresh_module && PyList_Append(strings, module) < 0) ||
        (fresh_name && PyList_Append(strings, name) < 0) ||
        (module != NULL && PyList_Append(memo, cls) < 0)) {
        goto error;
    }
    obj = PyBaseObject_Type.tp_new((PyTypeObject *)cls, cd_empty_tuple, NULL);
    if (obj == NULL) {
        /* _reduce_with: RestoreError(f"rebuilding a {qualname!r} failed: ...") */
        if (!PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
            PyObject *qualname = PyType_GetQualName((PyTypeObject *)cls);
            if (qualname != NULL) {
                cd_wrap_restore_error("rebuilding a %R failed: %R", qualname);
                Py_DECREF(qualname);
            }
        }
        goto error;
    }
    if (PyList_Append(memo, obj) < 0 || memo_put(depth, obj, nest, 1, NULL) < 0) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto error;
    }
    /* from here, what fails is _reduce_state's: a RestoreError (wrap) */
    if (state_f != Py_None) {
        /* Decoder.dec(state_f): the tree's dict (its shape recorded, its
         * references replaced in place), or a new dict of the shape's keys */
        state = keys == NULL ? Py_NewRef(state_f) : PyDict_New();
        if (state == NULL || PyList_Append(memo, state) < 0) goto wrap;
        if (keys == NULL && size >= cd_shape_min) {
            /* tuple(state), as the keys are now */
            if ((shape = PyTuple_New(size)) == NULL) goto wrap;
            Py_ssize_t j = 0;
            for (pos = 0; j < size && PyDict_Next(state, &pos, &k, &v); j++) {
                PyTuple_SET_ITEM(shape, j, Py_NewRef(k));
            }
            if (j != size || PyDict_GET_SIZE(state) != size) goto changed;
            if (PyList_Append(shapes, shape) < 0) goto wrap;
        }
        /* out[k] = value for each key read (for the tree's dict, only where
         * a reference was replaced: the other values are in it already) */
        for (Py_ssize_t j = 0; j < nvalues && (keys != NULL || refs != 0); j++) {
            if (keys == NULL && PyDict_GetItemWithError(state, names[j]) == values[j]) continue;
            if (PyErr_Occurred() || PyDict_SetItem(state, names[j], values[j]) < 0) goto wrap;
        }
        if (size != 0) {
            /* _set_state: obj.__dict__.update(state), the dict the class's C
             * descriptor gives (what getattr calls: a data descriptor of an
             * instance's type comes first; checked to be of its class).  The
             * class as it is now, and its descriptor then, held for the call:
             * code run by the collector during an allocation above may have
             * changed the class (its bases) since it was looked at. */
            if (!cd_plain_class(cls, &dict_get)) goto changed;
            Py_INCREF(dict_get);
            PyObject *dict = dict_get->d_getset->get(obj, dict_get->d_getset->closure);
            Py_DECREF(dict_get);
            int rc = dict == NULL ? -1 : PyDict_CheckExact(dict) ? PyDict_Update(dict, state) : 1;
            Py_XDECREF(dict);
            if (rc > 0) {
                PyErr_SetString(PyExc_TypeError, "an instance __dict__ that is not a dict");
            }
            if (rc != 0) goto wrap;
        }
    }
    goto done;
changed:
    /* code run by the collector (a finalizer) changed the state or the class
     * while the instance was made: as _reduce_state says of what fails */
    PyErr_SetString(PyExc_RuntimeError, "the state or the class changed while the instance "
                                        "was made");
wrap:
    if (!cd_passes()) {
        PyObject *qualname = PyType_GetQualName((PyTypeObject *)cls);
        if (qualname != NULL) {
            cd_wrap_restore_error("restoring the state of a %U failed: %R", qualname);
            Py_DECREF(qualname);
        }
    }
error:
    Py_CLEAR(obj);
    goto done;
decline:
    /* before the commit: nothing changed */
    PyErr_Clear();
    obj = Py_NewRef(Py_NotImplemented);
done:
    for (Py_ssize_t j = 0; j < nvalues; j++) {
        Py_DECREF(values[j]);
        Py_DECREF(names[j]);
    }
    Py_XDECREF(shape);
    Py_XDECREF(state);
    Py_DECREF(state_f);
    Py_XDECREF(keys);
    Py_XDECREF(cls);
    Py_XDECREF(module);
    Py_XDECREF(name);
    return obj;
}

static PyObject *
cd_dec_plain(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 || !PyList_CheckExact(args[0]) || !PyList_CheckExact(args[1]) ||
        !PyList_CheckExact(args[2]) || !Memo_CheckExact(args[3])) {
        PyErr_SetString(PyExc_TypeError, "dec_plain(memo, strings, shapes, depth, x): memo, "
                                         "strings and shapes must be lists, depth a Memo");
        return NULL;
    }
    if (cd_ready() < 0) return NULL;
    PyObject *memo = args[0], *x = args[4];
    MemoObject *depth = (MemoObject *)args[3];
    if (Py_IS_TYPE(x, (PyTypeObject *)cc_Deferred)) {
        PyObject *out = cd_deferred_plain(memo, x);
        if (out != NULL) return out;
        PyErr_Clear(); /* the Decoder does it again and says what is wrong */
        Py_RETURN_NOTIMPLEMENTED;
    }
    Py_ssize_t n = PyList_CheckExact(x) ? PyList_GET_SIZE(x) : 0;
    if (n == 0 || !Py_IS_TYPE(PyList_GET_ITEM(x, 0), (PyTypeObject *)cd_Tag)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    PyObject *kind_obj = *(PyObject **)((char *)PyList_GET_ITEM(x, 0) + cd_tag_kind_offset);
    long kind = kind_obj != NULL && PyLong_CheckExact(kind_obj) ? PyLong_AsLong(kind_obj) : -1;
    if (kind == -1 && PyErr_Occurred()) PyErr_Clear();
    if (kind == T_TUPLE) {
        /* Decoder._tuple also counts the items' nesting when the Decoder's
         * depth table has entries (a rebuilt object can be a shared one, True
         * or a small int, with an entry): only with no Decoder, or one whose
         * table is empty, is the tuple all there is to it */
        if (depth->used != 0) Py_RETURN_NOTIMPLEMENTED;
        PyObject *out = cd_plain_tuple(x);
        if (out != NULL) return out;
        PyErr_Clear();
        Py_RETURN_NOTIMPLEMENTED;
    }
    if (kind == T_SEQITER && n == 3 && PyLong_CheckExact(PyList_GET_ITEM(x, 2))) {
        /* held, as the index: making the iterator can run the collector */
        PyObject *seq = cd_plain_ref(memo, PyList_GET_ITEM(x, 1));
        PyTypeObject *t = seq == NULL ? NULL : Py_TYPE(seq);
        if (t != &PyList_Type && t != &PyTuple_Type && t != &PyUnicode_Type && t != &PyBytes_Type) {
            Py_XDECREF(seq);
            Py_RETURN_NOTIMPLEMENTED;
        }
        PyObject *index = Py_NewRef(PyList_GET_ITEM(x, 2));
        PyObject *it = PyObject_GetIter(seq); /* the builtin iterator: C code only */
        PyObject *r = it == NULL ? NULL : PyObject_CallMethodOneArg(it, cd_s_setstate, index);
        Py_DECREF(index);
        Py_DECREF(seq);
        if (r == NULL || PyList_Append(memo, it) < 0) {
            Py_XDECREF(r);
            Py_XDECREF(it);
            PyErr_Clear(); /* the Decoder does it again and says what is wrong */
            Py_RETURN_NOTIMPLEMENTED;
        }
        Py_DECREF(r);
        return it;
    }
    if (kind == T_NEWOBJ) return cd_plain_newobj(memo, args[1], args[2], depth, x);
    Py_RETURN_NOTIMPLEMENTED;
}

static PyMethodDef cd_dec_plain_def = {
    "dec_plain", (PyCFunction)(void (*)(void))cd_dec_plain, METH_FASTCALL,
    "dec_plain(memo, strings, shapes, depth, x): Decoder.dec(x) with the loads' tables for a "
    "back-reference, a bytearray, an int list, a tuple of plain items, a sequence iterator over "
    "a back-reference or a plain class's instance with a dict of plain values, with no Decoder; "
    "NotImplemented otherwise"};

static PyMethodDef di_release_def = {
    "release_decoder", (PyCFunction)di_release, METH_O,
    "release_decoder(dec): the snapshot layer is done with a Decoder adopt_decoder made "
    "(kept, emptied, for the next one when nothing else holds it)"};

static PyMethodDef di_adopt_def = {
    "adopt_decoder", (PyCFunction)(void (*)(void))di_adopt, METH_FASTCALL,
    "adopt_decoder(cls, frames, safe, allow, memo, strings, codes, active, exceptions, "
    "cstate): FrameDecoder.adopt's Decoder, in C"};

static PyMethodDef di_init_def = {
    "decoder_init", (PyCFunction)(void (*)(void))di_init_method, METH_FASTCALL | METH_KEYWORDS,
    "Decoder.__init__(frames, safe=False, allow=(), buffers=None), in C"};

/* Adds enc, enc_items, dec, dec_items, encoder_init, encoder_clear,
 * note_globals and decoder_init to the module as instance methods. */
static int
cv_add_methods(PyObject *m)
{
    PyMethodDef *defs[8] = {&cv_enc_def, &cv_enc_items_def, &cd_dec_def, &cd_dec_items_def,
                            &ci_init_def, &ci_clear_def, &ci_note_globals_def, &di_init_def};
    for (int k = 0; k < 8; k++) {
        PyObject *f = PyCFunction_NewEx(defs[k], NULL, NULL);
        PyObject *method = f == NULL ? NULL : PyInstanceMethod_New(f);
        Py_XDECREF(f);
        if (method == NULL || PyModule_AddObject(m, defs[k]->ml_name, method) < 0) {
            Py_XDECREF(method);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ module */

static int
cc_import_names(void)
{
    for (size_t k = 0; k < sizeof(cc_imports) / sizeof(cc_imports[0]); k++) {
        PyObject *module = PyImport_ImportModule(cc_imports[k].module);
        if (module == NULL) return -1;
        PyObject *v = PyObject_GetAttrString(module, cc_imports[k].name);
        Py_DECREF(module);
        if (v == NULL) return -1;
        Py_XSETREF(*cc_imports[k].target, v);
    }
    if (!PyDict_CheckExact(cc_TAG_BY_DATA) || !PyDict_CheckExact(cc_HEADERS) ||
        !PyTuple_CheckExact(cc_WELLKNOWN) || !PyType_Check(cc_Deferred)) {
        PyErr_SetString(PyExc_ImportError, "corosnap.codec._ccodec: the codec's markers are "
                                           "not what this module was built for");
        return -1;
    }
    if ((cc_deferred_code_offset = cd_slot_offset(cc_Deferred, "code")) < 0 ||
        (cc_deferred_data_offset = cd_slot_offset(cc_Deferred, "data")) < 0) return -1;
    PyObject *tags = PyImport_ImportModule("corosnap.codec._tags");
    if (tags == NULL) return -1;
    int rc = 0;
    for (size_t k = 0; rc == 0 && k < sizeof(cc_ext_codes) / sizeof(cc_ext_codes[0]); k++) {
        PyObject *v = PyObject_GetAttrString(tags, cc_ext_codes[k].name);
        long x = v == NULL ? -1 : PyLong_AsLong(v);
        Py_XDECREF(v);
        if (x != cc_ext_codes[k].value) {
            if (!PyErr_Occurred()) {
                PyErr_Format(PyExc_ImportError, "corosnap.codec._ccodec knows %s as %ld, "
                             "codec/_tags.py says %ld: rebuild corosnap",
                             cc_ext_codes[k].name, cc_ext_codes[k].value, x);
            }
            rc = -1;
        }
    }
    if (rc == 0) {
        PyObject *v = PyObject_GetAttrString(tags, "MAX_EQUAL_HASHES");
        cc_max_equal_hashes = v == NULL ? -1 : PyLong_AsSsize_t(v);
        Py_XDECREF(v);
        if (cc_max_equal_hashes < 0) rc = -1;
    }
    Py_DECREF(tags);
    return rc;
}

static PyMethodDef cc_methods[] = {
    {"is_flat", (PyCFunction)cc_is_flat, METH_O,
     "is_flat(list) -> bool: only exact scalar items"},
    {"pack_ints", (PyCFunction)cc_pack_ints, METH_O,
     "pack_ints(list) -> bytes | None: an all-int list, packed"},
    {"pack", (PyCFunction)(void (*)(void))cw_pack, METH_FASTCALL | METH_KEYWORDS,
     "pack(tree, default=None) -> bytes: msgpack.Packer(use_bin_type=True, "
     "default=default).pack(tree), Packed nodes included"},
    {"unpack", (PyCFunction)cu_unpack, METH_O,
     "unpack(data) -> the tree msgpack.unpackb(data, strict_map_key=False, "
     "ext_hook=ExtHook()) returns, or None (then msgpack must parse it)"},
    {"str_keys", (PyCFunction)cc_str_keys, METH_O,
     "str_keys(dict) -> tuple | None: the keys, if all exactly str"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef cc_module = {
    PyModuleDef_HEAD_INIT, "corosnap.codec._ccodec",
    "The codec's C engine (see corosnap.codec._speedups).", -1, cc_methods};

PyMODINIT_FUNC
PyInit__ccodec(void)
{
    if (cc_import_names() < 0) return NULL;
    if (PyType_Ready(&ExtHook_Type) < 0 || PyType_Ready(&Packed_Type) < 0 ||
        PyType_Ready(&Memo_Type) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&cc_module);
    if (m == NULL) return NULL;
    PyObject *adopt = PyCFunction_NewEx(&di_adopt_def, NULL, NULL);
    if (adopt == NULL || PyModule_AddObject(m, "adopt_decoder", adopt) < 0) {
        Py_XDECREF(adopt);
        Py_DECREF(m);
        return NULL;
    }
    PyObject *release = PyCFunction_NewEx(&di_release_def, NULL, NULL);
    if (release == NULL || PyModule_AddObject(m, "release_decoder", release) < 0) {
        Py_XDECREF(release);
        Py_DECREF(m);
        return NULL;
    }
    PyObject *plain = PyCFunction_NewEx(&cd_dec_plain_def, NULL, NULL);
    if (plain == NULL || PyModule_AddObject(m, "dec_plain", plain) < 0) {
        Py_XDECREF(plain);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "ExtHook", (PyObject *)&ExtHook_Type) < 0 ||
        PyModule_AddObjectRef(m, "Memo", (PyObject *)&Memo_Type) < 0 ||
        PyModule_AddObjectRef(m, "Packed", (PyObject *)&Packed_Type) < 0 ||
        cv_add_methods(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
