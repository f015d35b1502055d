/* Shared, layout-free parts of the per-version frame modules.
 *
 * What lives here: the NULL-slot sentinel, the argument checks that do not
 * depend on struct layouts, and a small scanner used by the codec's fast path.
 * What must never live here: anything that touches _PyInterpreterFrame or a
 * generator's fields.  Those belong to the one _cpython3XX.c file that is
 * compiled against that interpreter's own internal headers.
 *
 * Each _cpython3XX.c defines frames_read() and frames_write() and then
 * includes this file's COROSNAP_FRAMES_MODULE(...) macro at its end.
 */
#ifndef COROSNAP_FRAMES_COMMON_H
#define COROSNAP_FRAMES_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* A unique, immortal-for-our-purposes object standing for an empty (NULL)
 * frame slot: an unbound local or a NULL pushed on the value stack.  It is
 * kept distinct from None everywhere above this layer. */
static PyObject *corosnap_NULL = NULL;

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
        if (t != &PyUnicode_Type && t != &PyFloat_Type &&
            t != &PyBool_Type && t != &_PyNone_Type && t != &PyBytes_Type) {
            Py_RETURN_FALSE;
        }
    }
    Py_RETURN_TRUE;
}

static PyObject *frames_read(PyObject *module, PyObject *gen);
static PyObject *frames_write(PyObject *module, PyObject *const *args,
                              Py_ssize_t nargs);

#define COROSNAP_FRAMES_MODULE(NAME, INITFUNC)                                 \
    static PyMethodDef frames_methods[] = {                                    \
        {"read", (PyCFunction)frames_read, METH_O,                            \
         "read(gen) -> (state, lasti, localsplus, stack, exc_value, globals)"},        \
        {"write", (PyCFunction)(void (*)(void))frames_write, METH_FASTCALL,   \
         "write(gen, lasti, localsplus, stack, exc_value) -> None"},          \
        {"is_flat", (PyCFunction)frames_is_flat, METH_O,                      \
         "is_flat(list) -> bool: only exact scalar items"},                   \
        {NULL, NULL, 0, NULL}};                                                \
    static struct PyModuleDef frames_module = {                                \
        PyModuleDef_HEAD_INIT, NAME,                                           \
        "Frame access for one CPython version (see corosnap.frames).", -1,     \
        frames_methods};                                                       \
    PyMODINIT_FUNC INITFUNC(void)                                              \
    {                                                                          \
        PyObject *m = PyModule_Create(&frames_module);                         \
        if (m == NULL) return NULL;                                            \
        if (corosnap_NULL == NULL) {                                           \
            PyObject *ns = PyDict_New();                                       \
            if (ns == NULL) { Py_DECREF(m); return NULL; }                     \
            PyObject *r = PyRun_String(                                        \
                "class NULLType:\n"                                            \
                "    '''An empty frame slot (unbound local / NULL).'''\n"     \
                "    __slots__ = ()\n"                                         \
                "    def __repr__(self): return 'NULL'\n"                      \
                "    def __reduce__(self): return 'NULL'\n"                    \
                "NULL = NULLType()\n",                                         \
                Py_file_input, ns, ns);                                        \
            if (r == NULL) { Py_DECREF(ns); Py_DECREF(m); return NULL; }       \
            Py_DECREF(r);                                                      \
            corosnap_NULL = PyDict_GetItemString(ns, "NULL");                  \
            Py_XINCREF(corosnap_NULL);                                         \
            Py_DECREF(ns);                                                     \
            if (corosnap_NULL == NULL) { Py_DECREF(m); return NULL; }         \
        }                                                                      \
        Py_INCREF(corosnap_NULL);                                              \
        if (PyModule_AddObject(m, "NULL", corosnap_NULL) < 0) {                \
            Py_DECREF(corosnap_NULL); Py_DECREF(m); return NULL;               \
        }                                                                      \
        if (PyModule_AddIntConstant(m, "CREATED", CS_CREATED) < 0 ||           \
            PyModule_AddIntConstant(m, "SUSPENDED", CS_SUSPENDED) < 0 ||       \
            PyModule_AddIntConstant(m, "RUNNING", CS_RUNNING) < 0 ||           \
            PyModule_AddIntConstant(m, "FINISHED", CS_FINISHED) < 0) {         \
            Py_DECREF(m); return NULL;                                         \
        }                                                                      \
        return m;                                                              \
    }

#endif
