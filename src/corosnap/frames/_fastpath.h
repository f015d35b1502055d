/* Capture and restore of one frame in C: the snapshot layer's fast paths.
 *
 * Layout-free, like the rest of _common.h (which includes this file): built
 * only on this version's frames_read(), frames_write() and cs_code_of(), and on
 * Python objects the snapshot layer hands over once (configure()) and per call
 * (its per-code caches and the codec's callbacks).
 *
 * Why in C: a small frame costs a few microseconds of Python glue per frame
 * (code lookup, plan lookup, slot loops, checks), many times the pickle floor
 * of its locals.  These functions do that glue in one call and call back into
 * Python only for what needs it: encoding or decoding a non-trivial value,
 * naming a code the first time, a sub-frame.
 *
 * Both are optional accelerators of corosnap/snapshot/_capture.py and
 * _restore.py and make the same checks, from the same per-(code, offset)
 * plans those modules build.  Whenever a frame needs anything they do not
 * implement (a code seen for the first time, safe mode, a frame suspended
 * inside an except block, a 3.14+ handler's tagged lasti, a plan with rules
 * only Python applies) they return None *before any side effect*, and the
 * Python path does the whole frame.
 */
#ifndef COROSNAP_FRAMES_FASTPATH_H
#define COROSNAP_FRAMES_FASTPATH_H

static PyCodeObject *cs_code_of(PyObject *gen);

/* Set once by configure(). */
static PyObject *fp_CorruptSnapshot = NULL;  /* exception class */
static PyObject *fp_Tag = NULL;              /* codec Tag type (first item of a tagged array) */
static PyObject *fp_Deferred = NULL;         /* codec Deferred type (walked by dec.dec) */
static PyObject *fp_NONE_MARK = NULL;        /* decoded frame-slot None */
static PyObject *fp_NONE_EXT = NULL;         /* encoded frame-slot None */
static PyObject *fp_decode_frame = NULL;     /* decode_frame(dec, v, i, root, fast) */
static PyObject *fp_cycle_check = NULL;      /* _check_no_delegation_cycle(dec, entry, gen, sub) */
static PyObject *fp_virtual_iterable = NULL; /* 3.15: frames.virtual_iterable, else None */
static PyObject *fp_ext_tables = NULL;       /* {ext code: {payload: decoded object}} */
static PyObject *fp_py_ext_hook = NULL;      /* codec ext_hook, for everything else */
static PyObject *fp_tag_rangeiter = NULL;    /* the decoded Tag of T_RANGEITER */
static PyObject *fp_adopt = NULL;            /* adopt(ctx): the Decoder of a restore context */
static PyObject *fp_s_next, *fp_s_name, *fp_s_safe, *fp_s_strings, *fp_s_codes, *fp_s_memo,
    *fp_s_active, *fp_s_dec, *fp_s_enc, *fp_s_note_globals, *fp_s_coderef, *fp_s_delegated,
    *fp_s_frame_hook, *fp_s_setstate;

/* hasattr() semantics: 1, 0, or -1 with an error other than AttributeError. */
static int
fp_hasattr(PyObject *obj, PyObject *name)
{
    PyObject *found = NULL;
#if PY_VERSION_HEX >= 0x030D0000
    int rc = PyObject_GetOptionalAttr(obj, name, &found);
#else
    int rc = _PyObject_LookupAttr(obj, name, &found);
#endif
    Py_XDECREF(found);
    return rc;
}

/* Kind codes of the restore plans' checks (translated by _restore.Plan). */
enum { FP_ANY = 0, FP_ITER, FP_LIST, FP_SET, FP_DICT, FP_EXC, FP_EXC_OR_NONE, FP_LASTI,
       FP_INDEX /* 3.15: NULL, or the index of the sequence in the slot below */ };

static PyObject *
frames_configure(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 12) {
        PyErr_SetString(PyExc_TypeError, "configure() takes 12 arguments");
        return NULL;
    }
    Py_XSETREF(fp_tag_rangeiter, Py_NewRef(args[10]));
    Py_XSETREF(fp_adopt, Py_NewRef(args[11]));
    if (!PyDict_CheckExact(args[8]) || !PyCallable_Check(args[9])) {
        PyErr_SetString(PyExc_TypeError, "configure(): bad ext tables or hook");
        return NULL;
    }
    Py_XSETREF(fp_ext_tables, Py_NewRef(args[8]));
    Py_XSETREF(fp_py_ext_hook, Py_NewRef(args[9]));
    if (!PyType_Check(args[0]) || !PyType_Check(args[1]) || !PyType_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "configure(): bad types");
        return NULL;
    }
    PyObject **slots[] = {&fp_CorruptSnapshot, &fp_Tag, &fp_Deferred, &fp_NONE_MARK,
                          &fp_NONE_EXT, &fp_decode_frame, &fp_cycle_check,
                          &fp_virtual_iterable};
    for (int k = 0; k < 8; k++) {
        Py_XSETREF(*slots[k], Py_NewRef(args[k]));
    }
#define FP_INTERN(var, text) \
    if (var == NULL && (var = PyUnicode_InternFromString(text)) == NULL) return NULL;
    FP_INTERN(fp_s_next, "__next__")
    FP_INTERN(fp_s_name, "__name__")
    FP_INTERN(fp_s_safe, "safe")
    FP_INTERN(fp_s_strings, "strings")
    FP_INTERN(fp_s_codes, "codes")
    FP_INTERN(fp_s_memo, "memo")
    FP_INTERN(fp_s_active, "active")
    FP_INTERN(fp_s_dec, "dec")
    FP_INTERN(fp_s_enc, "enc")
    FP_INTERN(fp_s_note_globals, "note_globals")
    FP_INTERN(fp_s_coderef, "coderef")
    FP_INTERN(fp_s_delegated, "delegated_frame")
    FP_INTERN(fp_s_frame_hook, "frame_hook")
    FP_INTERN(fp_s_setstate, "__setstate__")
#undef FP_INTERN
    Py_RETURN_NONE;
}

/* ext_hook(state, code, data), bound to one blob's state with
 * functools.partial and handed to msgpack: the exts every blob is full of
 * (its header, the tags of tagged arrays) are constants, looked up in the
 * tables configure() gave; anything else goes to the codec's Python
 * ext_hook_for(state, code, data). */
static PyObject *
frames_ext_hook(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (fp_py_ext_hook == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ext_hook() before configure()");
        return NULL;
    }
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "ext_hook() takes (state, code, data)");
        return NULL;
    }
    if (PyBytes_CheckExact(args[2])) {
        PyObject *table = PyDict_GetItemWithError(fp_ext_tables, args[1]);
        if (table != NULL && PyDict_CheckExact(table)) {
            PyObject *hit = PyDict_GetItemWithError(table, args[2]);
            if (hit != NULL) return Py_NewRef(hit);
        }
        if (PyErr_Occurred()) return NULL;
    }
    return PyObject_Vectorcall(fp_py_ext_hook, args, (size_t)nargs, NULL);
}

/* ------------------------------------------------------------------ capture */

static PyObject *fp_call_method(PyObject *encoder, PyObject *name, PyObject *arg);

/* One frame slot, encoded: NULL -> nil, None -> NONE_EXT, a passthrough type
 * as itself, anything else through encoder.enc() (whose None is NONE_EXT too). */
static PyObject *
fp_encode_slot(PyObject *x, PyObject *pass, PyObject *encoder)
{
    if (x == corosnap_NULL) return Py_NewRef(Py_None);
    if (x == Py_None) return Py_NewRef(fp_NONE_EXT);
    int in = PySet_Contains(pass, (PyObject *)Py_TYPE(x));
    if (in < 0) return NULL;
    if (in) return Py_NewRef(x);
    PyObject *out = fp_call_method(encoder, fp_s_enc, x);
    if (out == Py_None) {
        Py_DECREF(out);
        return Py_NewRef(fp_NONE_EXT);
    }
    return out;
}

static int
fp_append_new(PyObject *list, PyObject *item)
{
    if (item == NULL) return -1;
    int rc = PyList_Append(list, item);
    Py_DECREF(item);
    return rc;
}

/* The code-reference fields of Encoder.coderef, for a code without a nested
 * path: [module, qualname, fingerprint] with each string replaced by its index
 * when the blob has it already, or [-1 - k] for the k-th code seen. */
static PyObject *
fp_coderef(PyCodeObject *co, PyObject *meta, PyObject *codes, PyObject *strings)
{
    PyObject *key = PyLong_FromVoidPtr(co);
    if (key == NULL) return NULL;
    PyObject *k = PyDict_GetItemWithError(codes, key);
    if (k != NULL) {
        Py_DECREF(key);
        PyObject *neg = PyNumber_Negative(k);
        if (neg == NULL) return NULL;
        PyObject *one = PyLong_FromLong(1);
        PyObject *ref = one == NULL ? NULL : PyNumber_Subtract(neg, one);
        Py_XDECREF(one);
        Py_DECREF(neg);
        if (ref == NULL) return NULL;
        PyObject *out = PyList_New(1);
        if (out == NULL) {
            Py_DECREF(ref);
            return NULL;
        }
        PyList_SET_ITEM(out, 0, ref);
        return out;
    }
    if (PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    }
    PyObject *count = PyLong_FromSsize_t(PyDict_GET_SIZE(codes));
    int rc = count == NULL ? -1 : PyDict_SetItem(codes, key, count);
    Py_XDECREF(count);
    Py_DECREF(key);
    if (rc < 0) return NULL;
    PyObject *out = PyList_New(3);
    if (out == NULL) return NULL;
    for (int f = 0; f < 2; f++) {
        PyObject *text = PyTuple_GET_ITEM(meta, 4 + f);  /* module, qualname */
        PyObject *index = PyDict_GetItemWithError(strings, text);
        if (index != NULL) {
            PyList_SET_ITEM(out, f, Py_NewRef(index));
            continue;
        }
        if (PyErr_Occurred()) goto error;
        PyObject *next = PyLong_FromSsize_t(PyDict_GET_SIZE(strings));
        rc = next == NULL ? -1 : PyDict_SetItem(strings, text, next);
        Py_XDECREF(next);
        if (rc < 0) goto error;
        PyList_SET_ITEM(out, f, Py_NewRef(text));
    }
    PyList_SET_ITEM(out, 2, Py_NewRef(PyTuple_GET_ITEM(meta, 6)));
    return out;
error:
    for (int f = 0; f < 2; f++) {
        if (PyList_GET_ITEM(out, f) == NULL) PyList_SET_ITEM(out, f, Py_NewRef(Py_None));
    }
    PyList_SET_ITEM(out, 2, Py_NewRef(Py_None));
    Py_DECREF(out);
    return NULL;
}

enum { CTX_SEEN, CTX_PASS, CTX_CODES, CTX_STRINGS, CTX_MEMO, CTX_KEEP, CTX_ENCODER, CTX_SIZE };

/* encoder.<name>(arg) without making a bound method. */
static PyObject *
fp_call_method(PyObject *encoder, PyObject *name, PyObject *arg)
{
    PyObject *margs[2] = {encoder, arg};
    return PyObject_VectorcallMethod(name, margs, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

static PyObject *frames_capture(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* The sub-generator a delegating frame sends to (Encoder.delegated_frame):
 * a back-reference if the snapshot holds it already, else registered in the
 * memo and encoded here, or by the encoder's frame hook if declined. */
static PyObject *
fp_delegated(PyObject *module, PyObject *x, PyObject *metas, PyObject *ctx)
{
    PyObject *memo = PyTuple_GET_ITEM(ctx, CTX_MEMO), *keep = PyTuple_GET_ITEM(ctx, CTX_KEEP);
    PyObject *key = PyLong_FromVoidPtr(x);
    if (key == NULL) return NULL;
    int known = PyDict_Contains(memo, key);
    if (known != 0) {
        Py_DECREF(key);
        if (known < 0) return NULL;
        return fp_call_method(PyTuple_GET_ITEM(ctx, CTX_ENCODER), fp_s_delegated, x);
    }
    PyObject *index = PyLong_FromSsize_t(PyList_GET_SIZE(keep));
    int rc = index == NULL ? -1 : PyDict_SetItem(memo, key, index);
    Py_XDECREF(index);
    Py_DECREF(key);
    if (rc < 0 || PyList_Append(keep, x) < 0) return NULL;
    PyObject *sub_args[3] = {x, metas, ctx};
    if (Py_EnterRecursiveCall(" while capturing a yield from / await chain") < 0) return NULL;
    PyObject *out = frames_capture(module, sub_args, 3);
    Py_LeaveRecursiveCall();
    if (out != Py_None) return out;
    Py_DECREF(out);
    PyObject *hook = PyObject_GetAttr(PyTuple_GET_ITEM(ctx, CTX_ENCODER), fp_s_frame_hook);
    if (hook == NULL) return NULL;
    /* encode_frame(enc, gen, fast=False): this function just declined it. */
    out = PyObject_CallFunctionObjArgs(hook, PyTuple_GET_ITEM(ctx, CTX_ENCODER), x, Py_False,
                                       NULL);
    Py_DECREF(hook);
    return out;
}

/* capture(gen, metas, ctx) -> the frame's fields (see _capture.encode_frame),
 * or None.
 * metas: {id(code): (code, module name, {offset: (depth, sub_at)}, nlocalsplus,
 *                    module, qualname, fingerprint, CodeRef)}
 * ctx:   the encoder's tables and callbacks, in CTX_* order (see
 *        _capture._context). */
static PyObject *
frames_capture(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "capture() takes 3 arguments");
        return NULL;
    }
    PyObject *gen = args[0], *metas = args[1], *ctx = args[2];
    if (fp_NONE_EXT == NULL || (!PyGen_CheckExact(gen) && !PyCoro_CheckExact(gen)) ||
        !PyDict_CheckExact(metas) || !PyTuple_CheckExact(ctx) ||
        PyTuple_GET_SIZE(ctx) != CTX_SIZE || !PyAnySet_Check(PyTuple_GET_ITEM(ctx, CTX_SEEN)) ||
        !PyAnySet_Check(PyTuple_GET_ITEM(ctx, CTX_PASS)) ||
        !PyDict_CheckExact(PyTuple_GET_ITEM(ctx, CTX_CODES)) ||
        !PyDict_CheckExact(PyTuple_GET_ITEM(ctx, CTX_STRINGS)) ||
        !PyDict_CheckExact(PyTuple_GET_ITEM(ctx, CTX_MEMO)) ||
        !PyList_CheckExact(PyTuple_GET_ITEM(ctx, CTX_KEEP))) {
        Py_RETURN_NONE;
    }
    PyObject *seen = PyTuple_GET_ITEM(ctx, CTX_SEEN), *pass = PyTuple_GET_ITEM(ctx, CTX_PASS);
    PyObject *encoder = PyTuple_GET_ITEM(ctx, CTX_ENCODER);
    PyObject *r = frames_read(module, gen);
    if (r == NULL) return NULL;
    PyObject *fields = NULL, *key = NULL, *meta = NULL, *lasti = NULL;
    long state = PyLong_AsLong(PyTuple_GET_ITEM(r, 0));
    if (state != CS_SUSPENDED && state != CS_CREATED) goto slow;
    PyObject *locals = PyTuple_GET_ITEM(r, 2), *stack = PyTuple_GET_ITEM(r, 3);
    PyObject *exc = PyTuple_GET_ITEM(r, 4), *globals = PyTuple_GET_ITEM(r, 5);
    if (!PyDict_Check(globals)) goto slow;
    key = PyLong_FromVoidPtr(globals);
    if (key == NULL) goto error;
    int has = PySet_Contains(seen, key);
    Py_CLEAR(key);
    if (has < 0) goto error;
    PyCodeObject *co = cs_code_of(gen);
    key = PyLong_FromVoidPtr(co);
    if (key == NULL) goto error;
    meta = Py_XNewRef(PyDict_GetItemWithError(metas, key));
    Py_CLEAR(key);
    if (meta == NULL) {
        if (PyErr_Occurred()) goto error;
        goto slow;
    }
    if (!PyTuple_CheckExact(meta) || PyTuple_GET_SIZE(meta) != 8 ||
        PyTuple_GET_ITEM(meta, 0) != (PyObject *)co) {
        goto slow;
    }
    PyObject *name = PyDict_GetItemWithError(globals, fp_s_name);
    if (name == NULL) {
        if (PyErr_Occurred()) goto error;
        goto slow;
    }
    if (name != PyTuple_GET_ITEM(meta, 1)) {
        int eq = PyObject_RichCompareBool(name, PyTuple_GET_ITEM(meta, 1), Py_EQ);
        if (eq < 0) goto error;
        if (!eq) goto slow;
    }
    lasti = state == CS_CREATED ? PyLong_FromLong(-1) : Py_NewRef(PyTuple_GET_ITEM(r, 1));
    if (lasti == NULL) goto error;
    PyObject *where_map = PyTuple_GET_ITEM(meta, 2);
    if (!PyDict_CheckExact(where_map)) goto slow;
    PyObject *where = PyDict_GetItemWithError(where_map, lasti);
    if (where == NULL) {
        if (PyErr_Occurred()) goto error;
        goto slow;
    }
    if (!PyTuple_CheckExact(where) || PyTuple_GET_SIZE(where) != 3 ||
        !PyTuple_CheckExact(PyTuple_GET_ITEM(where, 2))) {
        goto slow;
    }
    PyObject *tagged_ok = PyTuple_GET_ITEM(where, 2);
    Py_ssize_t depth = PyLong_AsSsize_t(PyTuple_GET_ITEM(where, 0));
    Py_ssize_t sub_at = PyLong_AsSsize_t(PyTuple_GET_ITEM(where, 1));
    Py_ssize_t n = PyLong_AsSsize_t(PyTuple_GET_ITEM(meta, 3));
    if (PyErr_Occurred()) goto error;
    if (PyList_GET_SIZE(locals) != n || PyList_GET_SIZE(stack) != depth) goto slow;
    for (Py_ssize_t j = 0; j < depth; j++) {
        /* 3.14+ tagged integers only where the bytecode analysis expects
         * them (a handler's lasti, a 3.15 sequence index); anywhere else the
         * Python path says what is wrong. */
        if (cs_is_tagged(PyList_GET_ITEM(stack, j))) {
            PyObject *jj = PyLong_FromSsize_t(j);
            int ok = jj == NULL ? -1 : PySequence_Contains(tagged_ok, jj);
            Py_XDECREF(jj);
            if (ok < 0) goto error;
            if (!ok) goto slow;
        }
    }

    /* Committed: from here on this frame is encoded here. */
    if (!has) {
        PyObject *rc = fp_call_method(encoder, fp_s_note_globals, globals);
        if (rc == NULL) goto error;
        Py_DECREF(rc);
    }
    if (PyTuple_GET_ITEM(meta, 5) == Py_None) {  /* a nested code: Encoder.coderef */
        PyObject *margs[4] = {encoder, (PyObject *)co, PyTuple_GET_ITEM(meta, 7),
                              PyTuple_GET_ITEM(meta, 6)};
        fields = PyObject_VectorcallMethod(fp_s_coderef, margs,
                                           4 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        if (fields != NULL && !PyList_CheckExact(fields)) {
            PyErr_SetString(PyExc_TypeError, "coderef() must return a list");
            goto error;
        }
    }
    else {
        fields = fp_coderef(co, meta, PyTuple_GET_ITEM(ctx, CTX_CODES),
                            PyTuple_GET_ITEM(ctx, CTX_STRINGS));
    }
    if (fields == NULL) goto error;
    if (exc == Py_None) {
        if (PyList_Append(fields, lasti) < 0) goto error;
    }
    else {
        PyObject *e = fp_call_method(encoder, fp_s_enc, exc);
        if (e == NULL) goto error;
        PyObject *pair = PyList_New(2);
        if (pair == NULL) {
            Py_DECREF(e);
            goto error;
        }
        PyList_SET_ITEM(pair, 0, Py_NewRef(lasti));
        PyList_SET_ITEM(pair, 1, e);
        if (fp_append_new(fields, pair) < 0) goto error;
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        if (fp_append_new(fields, fp_encode_slot(PyList_GET_ITEM(locals, j), pass, encoder)) < 0)
            goto error;
    }
    for (Py_ssize_t j = 0; j < depth; j++) {
        PyObject *x = PyList_GET_ITEM(stack, j);
        PyObject *out;
        if (cs_is_tagged(x)) {
            out = PyNumber_Long(x);  /* stored as a plain int, re-tagged on restore */
        }
        else if (j == sub_at && (PyGen_CheckExact(x) || PyCoro_CheckExact(x))) {
            out = fp_delegated(module, x, metas, ctx);
        }
        else {
            out = fp_encode_slot(x, pass, encoder);
        }
        if (fp_append_new(fields, out) < 0) goto error;
    }
    Py_DECREF(lasti);
    Py_DECREF(meta);
    Py_DECREF(r);
    return fields;
slow:
    Py_XDECREF(lasti);
    Py_XDECREF(meta);
    Py_DECREF(r);
    Py_RETURN_NONE;
error:
    Py_XDECREF(key);
    Py_XDECREF(fields);
    Py_XDECREF(lasti);
    Py_XDECREF(meta);
    Py_DECREF(r);
    return NULL;
}

/* ------------------------------------------------------------------ restore */

static PyObject *frames_restore(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* The local slot of a plan's (slot, name) pair, or -1 with an error (the
 * plans come from _restore.Plan: a malformed one is a bug, not bad input). */
static Py_ssize_t
fp_pair_slot(PyObject *pair, Py_ssize_t n)
{
    if (PyTuple_CheckExact(pair) && PyTuple_GET_SIZE(pair) == 2) {
        Py_ssize_t index = PyLong_AsSsize_t(PyTuple_GET_ITEM(pair, 0));
        if (index == -1 && PyErr_Occurred()) return -1;
        if (index >= 0 && index < n) return index;
    }
    PyErr_SetString(PyExc_SystemError, "restore(): bad plan");
    return -1;
}

static PyObject *
fp_corrupt(PyObject *label, const char *format, ...)
{
    va_list va;
    va_start(va, format);
    PyObject *detail = PyUnicode_FromFormatV(format, va);
    va_end(va);
    if (detail == NULL) return NULL;
    PyObject *msg = PyUnicode_FromFormat("%U: %U", label, detail);
    Py_DECREF(detail);
    if (msg != NULL) {
        PyErr_SetObject(fp_CorruptSnapshot, msg);
        Py_DECREF(msg);
    }
    return NULL;
}

/* A CorruptSnapshot naming a value's type as type(x).__name__ does. */
static PyObject *
fp_corrupt_type(PyObject *label, const char *format, PyObject *extra, PyObject *x)
{
    PyObject *name = PyType_GetName(Py_TYPE(x));
    if (name == NULL) return NULL;
    if (extra != NULL) {
        fp_corrupt(label, format, extra, name);
    }
    else {
        fp_corrupt(label, format, name);
    }
    Py_DECREF(name);
    return NULL;
}

/* iter(range(stop)) advanced to `index` and registered in the memo, or
 * CorruptSnapshot (as Decoder._rangeiter). */
static PyObject *
fp_range_iter(PyObject *label, PyObject *stop, PyObject *index, PyObject *memo)
{
    PyObject *r = PyObject_CallOneArg((PyObject *)&PyRange_Type, stop);
    PyObject *it = r == NULL ? NULL : PyObject_GetIter(r);
    Py_XDECREF(r);
    if (it != NULL) {
        PyObject *margs[2] = {it, index};
        PyObject *rc = PyObject_VectorcallMethod(fp_s_setstate, margs,
                                                 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        if (rc == NULL) Py_CLEAR(it);
        Py_XDECREF(rc);
    }
    if (it == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_ValueError)
            || PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            PyObject *msg = PyUnicode_FromFormat("malformed range iterator: %S", value);
            if (msg != NULL) {
                PyErr_SetObject(fp_CorruptSnapshot, msg);
                Py_DECREF(msg);
            }
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
        }
        return NULL;
    }
    if (PyList_Append(memo, it) < 0) {
        Py_DECREF(it);
        return NULL;
    }
    return it;
}

static int
fp_kind_ok(PyObject *x, long kind, Py_ssize_t ncodeunits)
{
    switch (kind) {
    case FP_ITER: return fp_hasattr((PyObject *)Py_TYPE(x), fp_s_next);
    case FP_LIST: return PyList_CheckExact(x);
    case FP_SET: return PySet_CheckExact(x);
    case FP_DICT: return PyDict_CheckExact(x);
    case FP_EXC: return PyExceptionInstance_Check(x);
    case FP_EXC_OR_NONE: return x == Py_None || PyExceptionInstance_Check(x);
    case FP_LASTI: {
        if (!PyLong_CheckExact(x)) return 0;
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(x, &overflow);
        if (v == -1 && PyErr_Occurred()) return -1;
        return !overflow && v >= 0 && v < ncodeunits;
    }
    default: return 1;
    }
}

/* The string-table entry a code-reference field names: a str (new), or the
 * index of an earlier one.  Borrowed; NULL (no error) when malformed. */
static PyObject *
fp_string(PyObject *field, PyObject *strings)
{
    if (PyUnicode_CheckExact(field)) return field;
    if (!PyLong_CheckExact(field)) return NULL;
    Py_ssize_t k = PyLong_AsSsize_t(field);
    if (k == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return NULL;
    }
    if (k < 0 || k >= PyList_GET_SIZE(strings)) return NULL;
    return PyList_GET_ITEM(strings, k);
}

enum { DCTX_DEC, DCTX_MEMO, DCTX_STRINGS, DCTX_CODES, DCTX_ACTIVE, DCTX_DECODE, DCTX_SAFE,
       DCTX_EXCEPTIONS, DCTX_ALLOW, DCTX_SIZE };

/* The restore context's Decoder and its dec method (new references), made
 * by adopt(ctx) the first time a frame needs one: a snapshot whose values
 * are all handled here never builds it. */
static int
fp_decoder(PyObject *ctx, PyObject **dec, PyObject **decode)
{
    if (PyList_GET_ITEM(ctx, DCTX_DEC) == Py_None) {
        PyObject *rc = PyObject_CallOneArg(fp_adopt, ctx);
        if (rc == NULL) return -1;
        Py_DECREF(rc);
    }
    PyObject *d = PyList_GET_ITEM(ctx, DCTX_DEC), *m = PyList_GET_ITEM(ctx, DCTX_DECODE);
    if (d == Py_None || m == Py_None) {
        PyErr_SetString(PyExc_SystemError, "restore(): adopt() made no decoder");
        return -1;
    }
    *dec = Py_NewRef(d);
    *decode = Py_NewRef(m);
    return 0;
}

/* The error raised while decoding slot j, renamed by the code entry so it
 * says which local or value stack slot held the value, as decode_frame's
 * errors do (CodeEntry.slot_error; it keeps anything but a RestoreError). */
static void
fp_name_slot(PyObject *entry, Py_ssize_t j)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value == NULL) {
        PyErr_Restore(type, value, tb);
        return;
    }
    if (tb != NULL) PyException_SetTraceback(value, tb);
    PyObject *named = PyObject_CallMethod(entry, "slot_error", "nO", j, value);
    if (named != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(named), named);
        Py_DECREF(named);
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

/* restore(ctx, v, i, fast_entries, sys_modules, root) -> generator | None
 * ctx: a list, the decoding state in DCTX_* order (Decoder.make_ctx): the
 *   Decoder or None (made on demand by adopt(ctx), see fp_decoder), the memo,
 *   strings, codes and active lists/sets, the Decoder's dec method or None,
 *   the safe flag, the exceptions reduces built (root: if any, dec.finish()
 *   checks their chains before the root frame is written), the allow tuple.
 * fast_entries: {(module, qualname, fingerprint): fast}; a code back-reference
 *   (a negative int) finds its entry in dec.codes and uses entry.fast.
 * fast: (entry, module object, fn, args, plans, nlocalsplus, label)
 * plans: {offset: (depth, sub_at, checks, bound, cells, delegate_at, ncodeunits)}
 *   checks: ((slot, kind code, nullable, kind name), ...) for the stack slots;
 *   bound, cells: ((slot, name), ...); sub_at: index in the slots of an
 *   untagged sub-frame or -1; delegate_at: slot index of the delegated-to
 *   iterator or -1. */
static PyObject *
frames_restore(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "restore() takes 6 arguments");
        return NULL;
    }
    int root = PyObject_IsTrue(args[5]);
    if (root < 0) return NULL;
    PyObject *ctx = args[0], *v = args[1], *fast_entries = args[3], *sysmods = args[4];
    if (fp_Tag == NULL || !PyList_CheckExact(ctx) || PyList_GET_SIZE(ctx) != DCTX_SIZE ||
        !PyList_CheckExact(v) || !PyLong_CheckExact(args[2]) ||
        !PyDict_CheckExact(fast_entries) || !PyDict_Check(sysmods)) {
        Py_RETURN_NONE;
    }
    if (PyList_GET_ITEM(ctx, DCTX_SAFE) != Py_False) {
        Py_RETURN_NONE;  /* safe mode checks every name: Python path */
    }
    Py_ssize_t i = PyLong_AsSsize_t(args[2]);
    if (i == -1 && PyErr_Occurred()) return NULL;
    Py_ssize_t len = PyList_GET_SIZE(v);
    if (i < 0 || i + 2 > len) Py_RETURN_NONE;

    /* Borrowed from ctx, which holds them for the whole loads (only its
     * decoder slots are ever set, by adopt). */
    PyObject *strings = PyList_GET_ITEM(ctx, DCTX_STRINGS);
    PyObject *codes = PyList_GET_ITEM(ctx, DCTX_CODES);
    PyObject *memo = PyList_GET_ITEM(ctx, DCTX_MEMO);
    PyObject *active = PyList_GET_ITEM(ctx, DCTX_ACTIVE);
    if (!PyList_CheckExact(strings) || !PyList_CheckExact(codes) || !PyList_CheckExact(memo) ||
        !PySet_CheckExact(active) || !PyList_CheckExact(PyList_GET_ITEM(ctx, DCTX_EXCEPTIONS))) {
        Py_RETURN_NONE;
    }
    PyObject *dec = NULL, *decode = NULL;  /* fp_decoder(), when needed */
    PyObject *fast = NULL, *key = NULL, *gen = NULL;
    PyObject *gen_id = NULL, *raw = NULL, *slots = NULL, *result = NULL;

    /* Pre-phase: find everything, change nothing. */
    PyObject *first = PyList_GET_ITEM(v, i);
    PyObject *new_module = NULL, *new_qual = NULL;  /* strings to append on commit */
    Py_ssize_t at;                                 /* index of the position field */
    Py_ssize_t k = -1;
    if (PyLong_CheckExact(first)) {
        k = PyLong_AsSsize_t(first);
        if (k == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            goto slow;
        }
    }
    if (k < -1 || (k == -1 && PyLong_CheckExact(first))) {
        k = -1 - k;
        if (k >= PyList_GET_SIZE(codes)) goto slow;
        fast = PyObject_GetAttrString(PyList_GET_ITEM(codes, k), "fast");
        if (fast == NULL) goto error;
        at = i + 1;
    }
    else {
        if (i + 4 > len) goto slow;
        PyObject *qual_f = PyList_GET_ITEM(v, i + 1), *fp = PyList_GET_ITEM(v, i + 2);
        if (!PyLong_CheckExact(fp)) goto slow;
        PyObject *mod_s = fp_string(first, strings), *qual_s = fp_string(qual_f, strings);
        if (mod_s == NULL || qual_s == NULL || !PyUnicode_CheckExact(mod_s) ||
            !PyUnicode_CheckExact(qual_s)) {
            goto slow;
        }
        key = PyTuple_Pack(3, mod_s, qual_s, fp);
        if (key == NULL) goto error;
        fast = Py_XNewRef(PyDict_GetItemWithError(fast_entries, key));
        Py_CLEAR(key);
        if (fast == NULL) {
            if (PyErr_Occurred()) goto error;
            goto slow;
        }
        if (!PyTuple_CheckExact(fast) || PyTuple_GET_SIZE(fast) != 7) goto slow;
        PyObject *now = PyDict_GetItemWithError(sysmods, mod_s);
        if (now == NULL && PyErr_Occurred()) goto error;
        if (now != PyTuple_GET_ITEM(fast, 1)) goto slow;  /* module reloaded or gone */
        new_module = PyUnicode_CheckExact(first) ? first : NULL;
        new_qual = PyUnicode_CheckExact(qual_f) ? qual_f : NULL;
        at = i + 3;
    }
    if (!PyTuple_CheckExact(fast) || PyTuple_GET_SIZE(fast) != 7) goto slow;
    PyObject *entry = PyTuple_GET_ITEM(fast, 0), *fn = PyTuple_GET_ITEM(fast, 2);
    PyObject *fn_args = PyTuple_GET_ITEM(fast, 3), *plans = PyTuple_GET_ITEM(fast, 4);
    PyObject *label = PyTuple_GET_ITEM(fast, 6);
    Py_ssize_t n = PyLong_AsSsize_t(PyTuple_GET_ITEM(fast, 5));
    if (n == -1 && PyErr_Occurred()) goto error;
    if (at >= len || !PyTuple_CheckExact(fn_args) || !PyDict_CheckExact(plans) ||
        !PyUnicode_Check(label)) {
        goto slow;
    }
    PyObject *pos = PyList_GET_ITEM(v, at);
    if (!PyLong_CheckExact(pos)) goto slow;  /* an except-block position, or corrupt */
    PyObject *plan = PyDict_GetItemWithError(plans, pos);
    if (plan == NULL) {
        if (PyErr_Occurred()) goto error;
        goto slow;
    }
    if (!PyTuple_CheckExact(plan) || PyTuple_GET_SIZE(plan) != 7) goto slow;
    Py_ssize_t depth = PyLong_AsSsize_t(PyTuple_GET_ITEM(plan, 0));
    Py_ssize_t sub_at = PyLong_AsSsize_t(PyTuple_GET_ITEM(plan, 1));
    Py_ssize_t delegate_at = PyLong_AsSsize_t(PyTuple_GET_ITEM(plan, 5));
    Py_ssize_t ncodeunits = PyLong_AsSsize_t(PyTuple_GET_ITEM(plan, 6));
    if (PyErr_Occurred()) goto error;
    PyObject *checks = PyTuple_GET_ITEM(plan, 2), *bound = PyTuple_GET_ITEM(plan, 3);
    PyObject *cells = PyTuple_GET_ITEM(plan, 4);
    Py_ssize_t total = len - at - 1;
    if (total != n + depth) goto slow;  /* Python names the mismatch */
    if (!PyTuple_CheckExact(checks) || !PyTuple_CheckExact(bound) || !PyTuple_CheckExact(cells))
        goto slow;

    /* Commit: the same steps, in the same order, as _restore.decode_frame. */
    if ((new_module != NULL && PyList_Append(strings, new_module) < 0) ||
        (new_qual != NULL && PyList_Append(strings, new_qual) < 0)) {
        goto error;
    }
    if (at == i + 3 && PyList_Append(codes, entry) < 0) goto error;
    gen = PyObject_Call(fn, fn_args, NULL);
    if (gen == NULL) goto error;
    if (PyList_Append(memo, gen) < 0) goto error;
    gen_id = PyLong_FromVoidPtr(gen);
    if (gen_id == NULL || PySet_Add(active, gen_id) < 0) {
        Py_CLEAR(gen_id);
        goto error;
    }
    /* From here on, leave through `done` so the frame leaves dec.active. */
    raw = PyList_GetSlice(v, at + 1, len);  /* callbacks may touch v; walk a copy */
    slots = raw == NULL ? NULL : PyList_New(total);
    if (slots == NULL) goto done;
    int fresh_sub = 0;
    for (Py_ssize_t j = 0; j < total; j++) {
        PyObject *x = PyList_GET_ITEM(raw, j), *y;
        if (j == sub_at && PyList_CheckExact(x) && PyList_GET_SIZE(x) > 0 &&
            (PyObject *)Py_TYPE(PyList_GET_ITEM(x, 0)) != fp_Tag) {
            PyObject *zero = PyLong_FromLong(0);
            y = NULL;
            if (zero != NULL) {
                /* This function first; decode_frame when it declines. */
                PyObject *sub_args[6] = {ctx, x, zero, fast_entries, sysmods, Py_False};
                y = NULL;
                if (Py_EnterRecursiveCall(" while restoring a yield from / await chain") == 0) {
                    y = frames_restore(module, sub_args, 6);
                    Py_LeaveRecursiveCall();
                }
                if (y != NULL && y == Py_None) {
                    Py_DECREF(y);
                    y = NULL;
                    if (dec != NULL || fp_decoder(ctx, &dec, &decode) == 0) {
                        /* decode_frame(dec, x, 0, root=False, fast=False): declined above */
                        y = PyObject_CallFunctionObjArgs(fp_decode_frame, dec, x, zero,
                                                         Py_False, Py_False, NULL);
                    }
                }
                Py_DECREF(zero);
            }
            fresh_sub = 1;
        }
        else if (x == Py_None) {
            y = Py_NewRef(corosnap_NULL);
        }
        else if (x == fp_NONE_MARK) {
            y = Py_NewRef(Py_None);
        }
        else if (PyList_CheckExact(x) && PyList_GET_SIZE(x) == 3 &&
                 PyList_GET_ITEM(x, 0) == fp_tag_rangeiter &&
                 PyLong_CheckExact(PyList_GET_ITEM(x, 1)) &&
                 PyLong_CheckExact(PyList_GET_ITEM(x, 2))) {
            /* A for loop over range(stop), the commonest stack value: what
             * Decoder._rangeiter does for this shape, without the round trip
             * through Python (the same errors become CorruptSnapshot). */
            y = fp_range_iter(label, PyList_GET_ITEM(x, 1), PyList_GET_ITEM(x, 2), memo);
        }
        else if (PyList_CheckExact(x) || PyDict_CheckExact(x) ||
                 (PyObject *)Py_TYPE(x) == fp_Deferred) {
            y = NULL;
            if (dec != NULL || fp_decoder(ctx, &dec, &decode) == 0) {
                y = PyObject_CallOneArg(decode, x);
            }
        }
        else {
            y = Py_NewRef(x);
        }
        if (y == NULL) {
            fp_name_slot(entry, j);
            goto done;
        }
        PyList_SET_ITEM(slots, j, y);
    }
    /* The kinds the interpreter relies on without checking. */
    for (Py_ssize_t c = 0; c < PyTuple_GET_SIZE(checks); c++) {
        PyObject *check = PyTuple_GET_ITEM(checks, c);
        if (!PyTuple_CheckExact(check) || PyTuple_GET_SIZE(check) != 4 ||
            !PyUnicode_Check(PyTuple_GET_ITEM(check, 3))) {
            PyErr_SetString(PyExc_SystemError, "restore(): bad plan");
            goto done;
        }
        Py_ssize_t index = PyLong_AsSsize_t(PyTuple_GET_ITEM(check, 0));
        long kind = PyLong_AsLong(PyTuple_GET_ITEM(check, 1));
        int nullable = PyObject_IsTrue(PyTuple_GET_ITEM(check, 2));
        if (PyErr_Occurred() || nullable < 0) goto done;
        if (index < n || index >= total) {
            PyErr_SetString(PyExc_SystemError, "restore(): bad plan");
            goto done;
        }
        PyObject *x = PyList_GET_ITEM(slots, index);
        if (c + 1 < PyTuple_GET_SIZE(checks)) {
            /* The sequence below a filled 3.15 index is checked with it. */
            PyObject *next = PyTuple_GET_ITEM(checks, c + 1);
            if (PyTuple_CheckExact(next) && PyTuple_GET_SIZE(next) == 4 &&
                PyLong_AsLong(PyTuple_GET_ITEM(next, 1)) == FP_INDEX &&
                PyLong_AsSsize_t(PyTuple_GET_ITEM(next, 0)) == index + 1 &&
                PyList_GET_ITEM(slots, index + 1) != corosnap_NULL) {
                continue;
            }
            if (PyErr_Occurred()) goto done;
        }
        if (kind == FP_INDEX && x != corosnap_NULL) {
            /* As _check_slots: FOR_ITER / SEND call the type's _tp_iteritem
             * on the sequence below without checking it has one. */
            PyObject *seq = index > n ? PyList_GET_ITEM(slots, index - 1) : NULL;
            int ok = 0;
            if (PyLong_CheckExact(x) && seq != NULL && fp_virtual_iterable != Py_None) {
                Py_ssize_t iv = PyLong_AsSsize_t(x);
                if (iv == -1 && PyErr_Occurred()) PyErr_Clear();  /* huge: refused below */
                ok = iv >= 0;
            }
            if (ok) {
                PyObject *vi = PyObject_CallOneArg(fp_virtual_iterable, seq);
                if (vi == NULL) goto done;
                ok = PyObject_IsTrue(vi);
                Py_DECREF(vi);
                if (ok < 0) goto done;
            }
            if (!ok) {
                PyObject *prev = index > n ? PyList_GET_ITEM(slots, index - 1) : Py_None;
                PyObject *pname = PyType_GetName(Py_TYPE(prev));
                if (pname != NULL) {
                    fp_corrupt(label, "value stack slots %zd, %zd must be a sequence CPython "
                               "walks by index and its index, got %S, %R", index - n - 1,
                               index - n, pname, x);
                    Py_DECREF(pname);
                }
                goto done;
            }
            PyObject *tagged = PyObject_CallOneArg((PyObject *)corosnap_TaggedInt, x);
            if (tagged == NULL) goto done;
            PyList_SetItem(slots, index, tagged);  /* steals; releases the int */
            continue;
        }
        if (x == corosnap_NULL) {
            if (!nullable) {
                fp_corrupt(label, "value stack slot %zd is empty where the bytecode always "
                                  "has a value", index - n);
                goto done;
            }
            continue;
        }
        if (kind == FP_ANY) continue;
        int ok = fp_kind_ok(x, kind, ncodeunits);
        if (ok < 0) goto done;
        if (!ok) {
            PyObject *where = PyUnicode_FromFormat("value stack slot %zd must be %U", index - n,
                                                   PyTuple_GET_ITEM(check, 3));
            if (where != NULL) {
                fp_corrupt_type(label, "%U, got %S", where, x);
                Py_DECREF(where);
            }
            goto done;
        }
    }
    for (Py_ssize_t c = 0; c < PyTuple_GET_SIZE(bound); c++) {
        PyObject *pair = PyTuple_GET_ITEM(bound, c);
        Py_ssize_t index = fp_pair_slot(pair, n);
        if (index < 0) goto done;
        if (PyList_GET_ITEM(slots, index) == corosnap_NULL) {
            fp_corrupt(label, "local %R is read without a check after this point, so it "
                              "cannot be unbound", PyTuple_GET_ITEM(pair, 1));
            goto done;
        }
    }
    for (Py_ssize_t c = 0; c < PyTuple_GET_SIZE(cells); c++) {
        PyObject *pair = PyTuple_GET_ITEM(cells, c);
        Py_ssize_t index = fp_pair_slot(pair, n);
        if (index < 0) goto done;
        PyObject *x = PyList_GET_ITEM(slots, index);
        if (!PyCell_Check(x)) {
            fp_corrupt_type(label, "slot %R must hold a cell, got %S", PyTuple_GET_ITEM(pair, 1),
                            x);
            goto done;
        }
    }
    if (delegate_at >= 0) {
        if (delegate_at >= total) {
            PyErr_SetString(PyExc_SystemError, "restore(): bad plan");
            goto done;
        }
        PyObject *sub = PyList_GET_ITEM(slots, delegate_at);
        int ok = PyGen_CheckExact(sub) || PyCoro_CheckExact(sub);
        if (!ok) {
            ok = fp_hasattr((PyObject *)Py_TYPE(sub), fp_s_next);
            if (ok < 0) goto done;
        }
        if (!ok && fp_virtual_iterable != Py_None) {
            PyObject *vi = PyObject_CallOneArg(fp_virtual_iterable, sub);
            if (vi == NULL) goto done;
            ok = PyObject_IsTrue(vi);
            Py_DECREF(vi);
            if (ok < 0) goto done;
        }
        if (!ok) {
            fp_corrupt_type(label, "delegates to a %S, which is not an iterator", NULL, sub);
            goto done;
        }
        if (!fresh_sub) {
            /* A sub-frame decoded just above is new: its own chain was checked
             * against this frame (active then) when it was written. */
            if (dec == NULL && fp_decoder(ctx, &dec, &decode) < 0) goto done;
            PyObject *rc = PyObject_CallFunctionObjArgs(fp_cycle_check, dec, entry, gen, sub,
                                                        NULL);
            if (rc == NULL) goto done;
            Py_DECREF(rc);
        }
    }
    if (root) {
        PyObject *exceptions = PyList_GET_ITEM(ctx, DCTX_EXCEPTIONS);
        if (PyList_GET_SIZE(exceptions) > 0) {
            if (dec == NULL && fp_decoder(ctx, &dec, &decode) < 0) goto done;
            PyObject *rc = PyObject_CallMethod(dec, "finish", NULL);
            if (rc == NULL) goto done;
            Py_DECREF(rc);
        }
    }
    {
        PyObject *loc = PyList_GetSlice(slots, 0, n);
        PyObject *stk = loc == NULL ? NULL : PyList_GetSlice(slots, n, total);
        if (stk == NULL) {
            Py_XDECREF(loc);
            goto done;
        }
        PyObject *wargs[5] = {gen, pos, loc, stk, Py_None};
        PyObject *w = frames_write(module, wargs, 5);
        Py_DECREF(loc);
        Py_DECREF(stk);
        if (w == NULL) {
            if (PyErr_ExceptionMatches(PyExc_TypeError) ||
                PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyObject *type, *value, *tb;
                PyErr_Fetch(&type, &value, &tb);
                PyErr_NormalizeException(&type, &value, &tb);
                fp_corrupt(label, "%S", value);
                if (PyErr_Occurred()) {
                    PyObject *t2, *v2, *tb2;
                    PyErr_Fetch(&t2, &v2, &tb2);
                    PyErr_NormalizeException(&t2, &v2, &tb2);
                    if (v2 != NULL && value != NULL) {
                        PyException_SetCause(v2, Py_NewRef(value));
                    }
                    PyErr_Restore(t2, v2, tb2);
                }
                Py_XDECREF(type);
                Py_XDECREF(value);
                Py_XDECREF(tb);
            }
            goto done;
        }
        Py_DECREF(w);
    }
    result = Py_NewRef(gen);
done:
    {
        /* dec.active.discard(id(gen)), keeping any error being raised; a
         * refused frame's fresh generator (still in its created state: nothing
         * was written) is closed, so it goes without a "never awaited"
         * warning and runs no code. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (PySet_Discard(active, gen_id) < 0) PyErr_Clear();
        if (result == NULL) {
            PyObject *rc = PyObject_CallMethod(gen, "close", NULL);
            if (rc == NULL) PyErr_Clear();
            Py_XDECREF(rc);
        }
        PyErr_Restore(type, value, tb);
    }
    Py_XDECREF(raw);
    Py_XDECREF(slots);
    Py_XDECREF(gen_id);
    Py_XDECREF(gen);
    Py_XDECREF(fast);
    Py_XDECREF(dec);
    Py_XDECREF(decode);
    return result;
slow:
    Py_XDECREF(fast);
    Py_RETURN_NONE;
error:
    Py_XDECREF(key);
    Py_XDECREF(gen);
    Py_XDECREF(fast);
    return NULL;
}

#endif /* COROSNAP_FRAMES_FASTPATH_H */
