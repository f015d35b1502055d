/* Codec fast path: True when every item of the list is exactly one of
 * int, float, str, bytes, bool or None, so msgpack can pack it without any
 * identity bookkeeping.  A pure C loop: ~1 ns per item. */
static PyObject *
frames_is_flat(PyObject *module, PyObject *obj)
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
frames_pack_ints(PyObject *module, PyObject *obj)
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
frames_str_keys(PyObject *module, PyObject *obj)
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

