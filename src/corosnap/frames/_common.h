/* Shared, layout-free parts of the per-version frame modules.
 *
 * What lives here: the NULL-slot sentinel and the TaggedInt type, the checks
 * that do not depend on struct layouts (target type, the YIELD_VALUE/RESUME
 * pair in the canonical bytecode), and a small scanner used by the codec's
 * fast path.
 * What must never live here: anything that touches _PyInterpreterFrame or a
 * generator's fields.  Those belong to the one _cpython3XX.c file that is
 * compiled against that interpreter's own internal headers.
 *
 * Each _cpython3XX.c defines frames_read() and frames_write() and then
 * expands this file's COROSNAP_FRAMES_MODULE(name, init, tagged) macro at its
 * end; `tagged` says whether that interpreter keeps tagged integers in frame
 * slots (exported as TAGGED_INTS).
 */
#ifndef COROSNAP_FRAMES_COMMON_H
#define COROSNAP_FRAMES_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* A unique, immortal-for-our-purposes object standing for an empty (NULL)
 * frame slot: an unbound local or a NULL pushed on the value stack.  It is
 * kept distinct from None everywhere above this layer. */
static PyObject *corosnap_NULL = NULL;

/* The type of a *tagged integer* slot (CPython 3.14+): a value-stack slot that
 * holds a raw integer instead of an object reference, such as the "lasti" an
 * exception handler pushes or (3.15+) the index of a for loop or yield from
 * walking a sequence without an iterator object.  read() reports such a slot
 * as an instance of this int subclass, so it stays distinct from an int
 * object; write() turns an instance back into a tagged slot, and only on a
 * version that has them (CS_TAGGED_INTS). */
static PyTypeObject *corosnap_TaggedInt = NULL;

/* Largest value write() accepts in a tagged slot: code offsets and sequence
 * indexes are non-negative and far below this; it leaves the 2 tag bits free
 * on every platform. */
#define CS_TAGGED_MAX (PY_SSIZE_T_MAX >> 3)

static int
cs_is_tagged(PyObject *v)
{
    return Py_TYPE(v) == corosnap_TaggedInt;
}

/* The value of a TaggedInt, or -1 with ValueError when out of range. */
static Py_ssize_t
cs_tagged_value(PyObject *v)
{
    Py_ssize_t x = PyLong_AsSsize_t(v);
    if (x == -1 && PyErr_Occurred()) return -1;
    if (x < 0 || x > CS_TAGGED_MAX) {
        PyErr_Format(PyExc_ValueError, "tagged slot value %zd out of range", x);
        return -1;
    }
    return x;
}

/* Frame states as the Python layer sees them, independent of the
 * interpreter's own (changing) enum values. */
#define CS_CREATED 0
#define CS_SUSPENDED 1
#define CS_RUNNING 2
#define CS_FINISHED 3

static int
cs_check_target(PyObject *gen)
{
    if (!PyGen_CheckExact(gen) && !PyCoro_CheckExact(gen)) {
        PyErr_Format(PyExc_TypeError,
                     "expected a generator or coroutine, got %.100s",
                     Py_TYPE(gen)->tp_name);
        return -1;
    }
    return 0;
}

/* read()'s answer for a generator that is neither created nor suspended:
 * only its state. */
static inline PyObject *
cs_read_nothing(int state)
{
    return Py_BuildValue("(iOOOOO)", state, Py_None, Py_None, Py_None, Py_None, Py_None);
}

/* A list of frame slots (PyObject pointers, NULL for empty) for read(), for
 * the layouts whose slots are plain object pointers (3.11-3.13). */
static inline PyObject *
cs_objects_to_list(PyObject **slots, int n)
{
    PyObject *list = PyList_New(n);
    if (list == NULL) return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *v = slots[i];
        PyList_SET_ITEM(list, i, Py_NewRef(v != NULL ? v : corosnap_NULL));
    }
    return list;
}

/* The oparg of the YIELD_VALUE at code unit `lasti`, or -1 with ValueError
 * when `lasti` is not a YIELD_VALUE immediately followed by RESUME.
 *
 * Reads the *canonical* bytecode (PyCode_GetCode, i.e. co_code), never the
 * adaptive copy the interpreter executes: that copy may hold specialized or
 * quickened forms (3.11 RESUME_QUICK, 3.13+ RESUME_CHECK) and, from 3.12 on,
 * INSTRUMENTED_* opcodes while sys.monitoring or a tracer is active.
 * PyCode_GetCode deoptimizes all of them and caches the result on the code
 * object, so this costs one lookup after the first call.  Public API on every
 * supported version; the opcode numbers come from the caller, which is
 * compiled against its own version's opcode tables. */
static int
cs_yield_oparg(PyCodeObject *co, long lasti, int yield_op, int resume_op)
{
    PyObject *code = PyCode_GetCode(co);
    if (code == NULL) return -1;
    Py_ssize_t units = PyBytes_GET_SIZE(code) / 2;
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(code);
    int oparg = -1;
    if (lasti >= 0 && lasti + 1 < units && b[2 * lasti] == yield_op &&
        b[2 * (lasti + 1)] == resume_op) {
        oparg = b[2 * lasti + 1];
    }
    Py_DECREF(code);
    if (oparg < 0) {
        PyErr_Format(PyExc_ValueError, "offset %ld is not a resume point of %R", lasti,
                     co);
    }
    return oparg;
}

/* Check every item of a localsplus/stack list before anything is written:
 * no TaggedInt in localsplus, and none on the stack unless the interpreter
 * has tagged slots (`tagged`), each in range. */
static int
cs_check_slots(PyObject *list, int tagged, const char *what)
{
    Py_ssize_t n = PyList_GET_SIZE(list);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyList_GET_ITEM(list, i);
        if (!cs_is_tagged(v)) continue;
        if (!tagged) {
            PyErr_Format(PyExc_ValueError,
                         "%s slot %zd: this interpreter has no tagged integer slots",
                         what, i);
            return -1;
        }
        if (cs_tagged_value(v) < 0) return -1;
    }
    return 0;
}

/* The arguments of write(gen, lasti, localsplus, stack, exc_value), parsed
 * and checked against the code object (but not yet against the frame).
 * Layout-free: it reads only the target's type and public code-object fields. */
typedef struct {
    PyObject *gen;
    long lasti;
    PyObject *locals;
    PyObject *stack;
    PyObject *exc;
} cs_write_args;

static int
cs_parse_write(PyObject *const *args, Py_ssize_t nargs, PyCodeObject *(*code_of)(PyObject *),
               int tagged, cs_write_args *w)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "write() takes exactly 5 arguments");
        return -1;
    }
    w->gen = args[0];
    w->locals = args[2];
    w->stack = args[3];
    w->exc = args[4];
    if (cs_check_target(w->gen) < 0) return -1;
    w->lasti = PyLong_AsLong(args[1]);
    if (w->lasti == -1 && PyErr_Occurred()) return -1;
    if (!PyList_CheckExact(w->locals) || !PyList_CheckExact(w->stack)) {
        PyErr_SetString(PyExc_TypeError, "localsplus and stack must be lists");
        return -1;
    }
    if (w->exc != Py_None && !PyExceptionInstance_Check(w->exc)) {
        PyErr_SetString(PyExc_TypeError, "exc_value must be an exception or None");
        return -1;
    }
    PyCodeObject *co = code_of(w->gen);
    int n = co->co_nlocalsplus;
    if (PyList_GET_SIZE(w->locals) != n) {
        PyErr_Format(PyExc_ValueError, "%R has %d local slots, got %zd", co, n,
                     PyList_GET_SIZE(w->locals));
        return -1;
    }
    Py_ssize_t depth = PyList_GET_SIZE(w->stack);
    if (depth > co->co_stacksize) {
        PyErr_Format(PyExc_ValueError, "%R has a stack of %d, got %zd values", co,
                     co->co_stacksize, depth);
        return -1;
    }
    if (w->lasti < -1) {
        PyErr_Format(PyExc_ValueError, "offset %ld is not a resume point of %R", w->lasti, co);
        return -1;
    }
    if (cs_check_slots(w->locals, 0, "local") < 0 ||
        cs_check_slots(w->stack, tagged, "stack") < 0) {
        return -1;
    }
    return 0;
}

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

static PyObject *frames_read(PyObject *module, PyObject *gen);
static PyObject *frames_write(PyObject *module, PyObject *const *args,
                              Py_ssize_t nargs);

#include "_fastpath.h"

/* Python-level helper types, created once per process (only one version
 * module is ever loaded): NULLType with its single instance, and TaggedInt. */
static const char cs_helpers_source[] =
    "class NULLType:\n"
    "    '''An empty frame slot (unbound local / NULL).'''\n"
    "    __slots__ = ()\n"
    "    def __repr__(self): return 'NULL'\n"
    "    def __reduce__(self): return 'NULL'\n"
    "NULL = NULLType()\n"
    "class TaggedInt(int):\n"
    "    '''A tagged-integer frame slot (CPython 3.14+), not an int object.'''\n"
    "    __slots__ = ()\n"
    "    def __repr__(self): return f'TaggedInt({int(self)})'\n";

static int
cs_module_init(PyObject *m, int tagged_ints)
{
    if (corosnap_NULL == NULL) {
        PyObject *ns = PyDict_New();
        if (ns == NULL) return -1;
        PyObject *r = PyRun_String(cs_helpers_source, Py_file_input, ns, ns);
        if (r == NULL) { Py_DECREF(ns); return -1; }
        Py_DECREF(r);
        PyObject *null = PyDict_GetItemString(ns, "NULL");
        PyObject *tagged = PyDict_GetItemString(ns, "TaggedInt");
        if (null == NULL || tagged == NULL || !PyType_Check(tagged)) {
            Py_DECREF(ns);
            PyErr_SetString(PyExc_SystemError, "corosnap: helper types missing");
            return -1;
        }
        corosnap_NULL = Py_NewRef(null);
        corosnap_TaggedInt = (PyTypeObject *)Py_NewRef(tagged);
        Py_DECREF(ns);
    }
    if (PyModule_AddObjectRef(m, "NULL", corosnap_NULL) < 0 ||
        PyModule_AddObjectRef(m, "TaggedInt", (PyObject *)corosnap_TaggedInt) < 0 ||
        PyModule_AddIntConstant(m, "TAGGED_INTS", tagged_ints) < 0 ||
        PyModule_AddIntConstant(m, "CREATED", CS_CREATED) < 0 ||
        PyModule_AddIntConstant(m, "SUSPENDED", CS_SUSPENDED) < 0 ||
        PyModule_AddIntConstant(m, "RUNNING", CS_RUNNING) < 0 ||
        PyModule_AddIntConstant(m, "FINISHED", CS_FINISHED) < 0) {
        return -1;
    }
    return 0;
}

/* Version-specific helpers a module adds to its method table (3.15:
 * virtual_iterable): it #undefs and redefines this before expanding
 * COROSNAP_FRAMES_MODULE, which expands it lazily. */
#ifndef CS_EXTRA_METHODS
#define CS_EXTRA_METHODS
#endif

/* The builtin-iterator functions (iter_read, iter_write, iter_layouts):
 * defined by _itertools.h, which each module includes through its version's
 * _itertools3XX.h. */
#ifndef CS_ITER_METHODS
#define CS_ITER_METHODS
#endif

/* TAGGED: 1 when this interpreter keeps tagged integers in frame slots. */
#define COROSNAP_FRAMES_MODULE(NAME, INITFUNC, TAGGED)                         \
    static PyMethodDef frames_methods[] = {                                    \
        CS_EXTRA_METHODS                                                       \
        CS_ITER_METHODS                                                        \
        {"read", (PyCFunction)frames_read, METH_O,                            \
         "read(gen) -> (state, lasti, localsplus, stack, exc_value, globals)"},\
        {"write", (PyCFunction)(void (*)(void))frames_write, METH_FASTCALL,   \
         "write(gen, lasti, localsplus, stack, exc_value) -> None"},          \
        {"is_flat", (PyCFunction)frames_is_flat, METH_O,                      \
         "is_flat(list) -> bool: only exact scalar items"},                   \
        {"configure", (PyCFunction)(void (*)(void))frames_configure,         \
         METH_FASTCALL, "configure(...): the fast paths' Python objects"},    \
        {"ext_hook", (PyCFunction)(void (*)(void))frames_ext_hook, METH_FASTCALL,\
         "ext_hook(state, code, data): msgpack ext_hook, constants first"},  \
        {"capture", (PyCFunction)(void (*)(void))frames_capture, METH_FASTCALL,\
         "capture(gen, metas, ctx) -> fields | None"},                        \
        {"restore", (PyCFunction)(void (*)(void))frames_restore, METH_FASTCALL,\
         "restore(ctx, v, i, fast_entries, sys_modules, root)"},              \
        {"str_keys", (PyCFunction)frames_str_keys, METH_O,                    \
         "str_keys(dict) -> tuple | None: the keys, if all exactly str"},     \
        {"pack_ints", (PyCFunction)frames_pack_ints, METH_O,                  \
         "pack_ints(list) -> bytes | None: an all-int list, packed"},         \
        {NULL, NULL, 0, NULL}};                                                \
    static struct PyModuleDef frames_module = {                                \
        PyModuleDef_HEAD_INIT, NAME,                                           \
        "Frame access for one CPython version (see corosnap.frames).", -1,     \
        frames_methods};                                                       \
    PyMODINIT_FUNC INITFUNC(void)                                              \
    {                                                                          \
        PyObject *m = PyModule_Create(&frames_module);                         \
        if (m == NULL) return NULL;                                            \
        if (cs_module_init(m, (TAGGED)) < 0) { Py_DECREF(m); return NULL; }    \
        return m;                                                              \
    }

#endif
