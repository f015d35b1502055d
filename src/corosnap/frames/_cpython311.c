/* Frame access for CPython 3.11.
 *
 * The only file (with its siblings for other versions) that knows how a
 * 3.11 generator and its _PyInterpreterFrame are laid out.  It is compiled
 * with Py_BUILD_CORE against this interpreter's internal headers, so every
 * field offset comes from CPython itself.
 *
 * Theory of operation (3.11):
 *  - A generator embeds its frame (gi_iframe).  localsplus[0:co_nlocalsplus]
 *    holds arguments, locals, cells and free variables; the value stack
 *    follows it, up to localsplus[stacktop].
 *  - A suspended generator's prev_instr points at the YIELD_VALUE it yielded
 *    from; gen_send_ex() pushes the sent value and resumes at prev_instr + 1
 *    (a RESUME).  A created generator sits at RETURN_GENERATOR with an empty
 *    stack.  "lasti" crossing this boundary is the code-unit index of that
 *    YIELD_VALUE, so the Python layer never sees pointers.
 *  - gi_exc_state.exc_value is the exception being handled when the frame
 *    is suspended inside an except block (NULL otherwise).
 *
 * write() only ever targets a freshly created generator (FRAME_CREATED,
 * empty stack) and checks every argument before touching the frame, so a
 * rejected write leaves the generator untouched.  The Python layer
 * additionally validates the offset and stack depth against the bytecode.
 */
#include "_common.h"
#include "internal/pycore_frame.h"
#include "opcode.h"

static int
cs_state(PyGenObject *g)
{
    switch (g->gi_frame_state) {
    case FRAME_CREATED: return CS_CREATED;
    case FRAME_SUSPENDED: return CS_SUSPENDED;
    case FRAME_EXECUTING: return CS_RUNNING;
    default: return CS_FINISHED;
    }
}

static PyObject *
cs_slots_to_list(PyObject **slots, int n)
{
    PyObject *list = PyList_New(n);
    if (list == NULL) return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *v = slots[i];
        PyList_SET_ITEM(list, i, Py_NewRef(v != NULL ? v : corosnap_NULL));
    }
    return list;
}

static PyObject *
frames_read(PyObject *module, PyObject *gen)
{
    if (cs_check_target(gen) < 0) return NULL;
    PyGenObject *g = (PyGenObject *)gen;
    int state = cs_state(g);
    if (state != CS_CREATED && state != CS_SUSPENDED) {
        return Py_BuildValue("(iOOOOO)", state, Py_None, Py_None, Py_None, Py_None,
                             Py_None);
    }
    _PyInterpreterFrame *f = (_PyInterpreterFrame *)g->gi_iframe;
    PyCodeObject *co = f->f_code;
    int n = co->co_nlocalsplus;
    int depth = f->stacktop - n;
    if (depth < 0 || depth > co->co_stacksize) {
        PyErr_Format(PyExc_SystemError, "corosnap: inconsistent stack depth %d in %R",
                     depth, co);
        return NULL;
    }
    PyObject *locals = cs_slots_to_list(f->localsplus, n);
    if (locals == NULL) return NULL;
    PyObject *stack = cs_slots_to_list(f->localsplus + n, depth);
    if (stack == NULL) { Py_DECREF(locals); return NULL; }
    PyObject *exc = g->gi_exc_state.exc_value;
    return Py_BuildValue("(iiNNOO)", state, _PyInterpreterFrame_LASTI(f), locals, stack,
                         exc != NULL ? exc : Py_None, f->f_globals);
}

static PyObject *
frames_write(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "write() takes exactly 5 arguments");
        return NULL;
    }
    PyObject *gen = args[0], *locals = args[2], *stack = args[3], *exc = args[4];
    if (cs_check_target(gen) < 0) return NULL;
    long lasti = PyLong_AsLong(args[1]);
    if (lasti == -1 && PyErr_Occurred()) return NULL;
    if (!PyList_CheckExact(locals) || !PyList_CheckExact(stack)) {
        PyErr_SetString(PyExc_TypeError, "localsplus and stack must be lists");
        return NULL;
    }
    if (exc != Py_None && !PyExceptionInstance_Check(exc)) {
        PyErr_SetString(PyExc_TypeError, "exc_value must be an exception or None");
        return NULL;
    }
    PyGenObject *g = (PyGenObject *)gen;
    _PyInterpreterFrame *f = (_PyInterpreterFrame *)g->gi_iframe;
    PyCodeObject *co = f->f_code;
    int n = co->co_nlocalsplus;
    if (g->gi_frame_state != FRAME_CREATED || f->stacktop != n) {
        PyErr_SetString(PyExc_ValueError, "write() needs a freshly created generator");
        return NULL;
    }
    if (PyList_GET_SIZE(locals) != n) {
        PyErr_Format(PyExc_ValueError, "%R has %d local slots, got %zd", co, n,
                     PyList_GET_SIZE(locals));
        return NULL;
    }
    Py_ssize_t depth = PyList_GET_SIZE(stack);
    if (depth > co->co_stacksize) {
        PyErr_Format(PyExc_ValueError, "%R has a stack of %d, got %zd values", co,
                     co->co_stacksize, depth);
        return NULL;
    }
    if (lasti < 0) {
        if (lasti != -1 || depth != 0) {
            PyErr_SetString(PyExc_ValueError, "a created generator has no stack");
            return NULL;
        }
    }
    else {
        /* co_code_adaptive may hold quickened forms: 3.11 rewrites RESUME
         * into RESUME_QUICK once the code is warm (YIELD_VALUE is never
         * specialized). */
        int next_op = lasti + 1 < Py_SIZE(co) ? _Py_OPCODE(_PyCode_CODE(co)[lasti + 1]) : -1;
        if (lasti + 1 >= Py_SIZE(co) ||
            _Py_OPCODE(_PyCode_CODE(co)[lasti]) != YIELD_VALUE ||
            (next_op != RESUME && next_op != RESUME_QUICK)) {
            PyErr_Format(PyExc_ValueError, "offset %ld is not a resume point of %R",
                         lasti, co);
            return NULL;
        }
    }
    /* Everything is checked: commit.  Old values are released only after
     * the frame is fully written, so a destructor that runs during the
     * release sees a consistent frame. */
    PyObject **old = PyMem_Malloc(sizeof(PyObject *) * (n > 0 ? n : 1));
    if (old == NULL) return PyErr_NoMemory();
    for (int i = 0; i < n; i++) {
        PyObject *v = PyList_GET_ITEM(locals, i);
        old[i] = f->localsplus[i];
        f->localsplus[i] = (v == corosnap_NULL) ? NULL : Py_NewRef(v);
    }
    for (Py_ssize_t i = 0; i < depth; i++) {
        PyObject *v = PyList_GET_ITEM(stack, i);
        f->localsplus[n + i] = (v == corosnap_NULL) ? NULL : Py_NewRef(v);
    }
    f->stacktop = n + (int)depth;
    PyObject *old_exc = g->gi_exc_state.exc_value;
    g->gi_exc_state.exc_value = (exc == Py_None) ? NULL : Py_NewRef(exc);
    if (lasti >= 0) {
        f->prev_instr = _PyCode_CODE(co) + lasti;
        g->gi_frame_state = FRAME_SUSPENDED;
    }
    for (int i = 0; i < n; i++) {
        Py_XDECREF(old[i]);
    }
    PyMem_Free(old);
    Py_XDECREF(old_exc);
    Py_RETURN_NONE;
}

COROSNAP_FRAMES_MODULE("corosnap.frames._cpython311", PyInit__cpython311)
