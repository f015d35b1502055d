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
 * A later C value codec (encoder and decoder of the value graph) belongs in
 * this module, beside these scans.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

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
            (void)PyLong_AsLongLongAndOverflow(item, &overflow);
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
        long long v = PyLong_AsLongLongAndOverflow(item, &overflow);
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
        unsigned long long u = (unsigned long long)PyLong_AsLongLong(PyList_GET_ITEM(obj, i));
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
    Py_ssize_t n = PyDict_GET_SIZE(obj);
    PyObject *keys = PyTuple_New(n);
    if (keys == NULL) return NULL;
    Py_ssize_t pos = 0, i = 0;
    PyObject *k, *v;
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
} ExtHook;

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

/* int.from_bytes(data, "little", signed=True).  _PyLong_FromByteArray is
 * exported (cpython/longobject.h) on every supported version, 3.11-3.15. */
static PyObject *
cc_bigint(PyObject *data)
{
    return _PyLong_FromByteArray((const unsigned char *)PyBytes_AS_STRING(data),
                                 (size_t)PyBytes_GET_SIZE(data), 1, 1);
}

/* ExtHook(code, data): as _markers.ext_hook_for(by_hash, code, data). */
static PyObject *
ExtHook_call(ExtHook *self, PyObject *args, PyObject *kwds)
{
    PyObject *code_obj, *data;
    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError, "ext hook takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "ext_hook", 2, 2, &code_obj, &data)) return NULL;
    long code = PyLong_AsLong(code_obj);
    if (code == -1 && PyErr_Occurred()) return NULL;
    if (!PyBytes_Check(data)) {
        PyErr_Format(PyExc_TypeError, "ext hook data must be bytes, got %.100s",
                     Py_TYPE(data)->tp_name);
        return NULL;
    }
    Py_ssize_t len = PyBytes_GET_SIZE(data);
    const char *p = PyBytes_AS_STRING(data);
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
    case EXT_BUFFER: {
        PyObject *cargs[2] = {code_obj, data};
        return PyObject_Vectorcall(cc_Deferred, cargs, 2, NULL);
    }
    case EXT_NONE:
        return Py_NewRef(cc_NONE_MARK);
    case EXT_BIGINT:
        return cc_counted(self, cc_bigint(data));
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
        if (header != NULL) return Py_NewRef(header);
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
    return type->tp_alloc(type, 0);
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
    .tp_call = (ternaryfunc)ExtHook_call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "ExtHook(): msgpack's ext_hook for one blob (the C twin of "
              "_markers.ext_hook_for with a fresh by_hash)",
    .tp_traverse = (traverseproc)ExtHook_traverse,
    .tp_clear = (inquiry)ExtHook_clear,
    .tp_new = ExtHook_new,
};

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
    if (PyType_Ready(&ExtHook_Type) < 0) return NULL;
    PyObject *m = PyModule_Create(&cc_module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "ExtHook", (PyObject *)&ExtHook_Type) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
