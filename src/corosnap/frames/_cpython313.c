/* Frame access for CPython 3.13.
 *
 * Compiled with Py_BUILD_CORE against the 3.13 internal headers, so every
 * field offset comes from CPython (see _cpython311.c for the family).
 *
 * Theory of operation (3.13), and how it differs from 3.11/3.12:
 *  - The generator still embeds its frame as `PyObject *gi_iframe[]`, and
 *    frame slots are still plain PyObject pointers with an int `stacktop`.
 *  - The frame names its code through `f_executable` (a strong reference to
 *    the code object; _PyFrame_GetCode() casts it).
 *  - `instr_ptr` replaced `prev_instr` and means something else: the
 *    instruction to run next.  YIELD_VALUE advances it past itself before
 *    suspending, so a suspended frame's instr_ptr points at the RESUME that
 *    follows the YIELD_VALUE, and gen_send_ex2() resumes exactly there after
 *    pushing the sent value.  The "lasti" crossing this module's boundary stays
 *    the YIELD_VALUE's index (instr_ptr - 1), like on every other version.
 *  - Delegation is a frame state: YIELD_VALUE sets gi_frame_state to
 *    FRAME_SUSPENDED + oparg, where the compiler gives oparg 1 to the
 *    YIELD_VALUE inside a yield from / await and 0 elsewhere, i.e.
 *    FRAME_SUSPENDED_YIELD_FROM for a delegating frame.  _PyGen_yf() (and so
 *    gi_yieldfrom, throw() and close() delegation) trusts that state alone,
 *    and gen_close() reads the RESUME's oparg at instr_ptr, so write() sets
 *    both exactly as YIELD_VALUE would.
 */
#include "_common.h"
#include "internal/pycore_frame.h"
#include "opcode.h"

static int
cs_state(PyGenObject *g)
{
    switch (g->gi_frame_state) {
    case FRAME_CREATED: return CS_CREATED;
    case FRAME_SUSPENDED:
    case FRAME_SUSPENDED_YIELD_FROM: return CS_SUSPENDED;
    case FRAME_EXECUTING: return CS_RUNNING;
    default: return CS_FINISHED;
    }
}

static _PyInterpreterFrame *
cs_frame(PyObject *gen)
{
    return (_PyInterpreterFrame *)((PyGenObject *)gen)->gi_iframe;
}

static PyCodeObject *
cs_code_of(PyObject *gen)
{
    return _PyFrame_GetCode(cs_frame(gen));
}

static int
cs_read(PyObject *gen, CorosnapFrameState *out)
{
    if (cs_check_target(gen) < 0) return -1;
    PyGenObject *g = (PyGenObject *)gen;
    out->state = cs_state(g);
    if (out->state != CS_CREATED && out->state != CS_SUSPENDED) return 0;
    _PyInterpreterFrame *f = cs_frame(gen);
    PyCodeObject *co = _PyFrame_GetCode(f);
    int n = co->co_nlocalsplus;
    int depth = f->stacktop - n;
    if (depth < 0 || depth > co->co_stacksize) {
        PyErr_Format(PyExc_SystemError, "corosnap: inconsistent stack depth %d in %R",
                     depth, co);
        return -1;
    }
    /* Suspended: instr_ptr is the RESUME after the YIELD_VALUE.  Created: it
     * is just past RETURN_GENERATOR (the Python layer ignores lasti then). */
    out->slots = cs_objects_to_list(f->localsplus, n + depth); /* the stack follows the locals */
    if (out->slots == NULL) return -1;
    out->nlocals = n;
    out->lasti = _PyInterpreterFrame_LASTI(f) - 1;
    PyObject *exc = g->gi_exc_state.exc_value;
    out->exc_value = Py_NewRef(exc != NULL ? exc : Py_None);
    out->globals = Py_NewRef(f->f_globals);
    return 0;
}

static int
cs_write(PyObject *gen, long lasti, PyObject *slots, Py_ssize_t nlocals, PyObject *exc)
{
    if (cs_check_write(gen, lasti, slots, nlocals, exc, cs_code_of, 0) < 0) return -1;
    PyGenObject *g = (PyGenObject *)gen;
    _PyInterpreterFrame *f = cs_frame(gen);
    PyCodeObject *co = _PyFrame_GetCode(f);
    int n = co->co_nlocalsplus;
    if (g->gi_frame_state != FRAME_CREATED || f->stacktop != n) {
        PyErr_SetString(PyExc_ValueError, "write() needs a freshly created generator");
        return -1;
    }
    if (lasti == -1 && PyList_GET_SIZE(slots) != n) {
        /* A created frame keeps the (empty) stack its prologue left. */
        PyErr_SetString(PyExc_ValueError, "a created generator has no stack");
        return -1;
    }
    int yield_oparg = 0;
    if (lasti >= 0) {
        yield_oparg = cs_yield_oparg(co, lasti, YIELD_VALUE, RESUME);
        if (yield_oparg < 0) return -1;
        if (yield_oparg > 1) {  /* 3.13 compiles only 0 and 1 */
            PyErr_Format(PyExc_ValueError, "unexpected YIELD_VALUE oparg %d in %R",
                         yield_oparg, co);
            return -1;
        }
    }
    Py_ssize_t depth = PyList_GET_SIZE(slots) - n;
    /* Everything is checked: commit.  Old values are released only after
     * the frame is fully written, so a destructor that runs during the
     * release sees a consistent frame. */
    PyObject *small[16];
    PyObject **old = n <= 16 ? small : PyMem_Malloc(sizeof(PyObject *) * n);
    if (old == NULL) { PyErr_NoMemory(); return -1; }
    for (int i = 0; i < n; i++) {
        PyObject *v = PyList_GET_ITEM(slots, i);
        old[i] = f->localsplus[i];
        f->localsplus[i] = (v == corosnap_NULL) ? NULL : Py_NewRef(v);
    }
    for (Py_ssize_t i = 0; i < depth; i++) {
        PyObject *v = PyList_GET_ITEM(slots, n + i);
        f->localsplus[n + i] = (v == corosnap_NULL) ? NULL : Py_NewRef(v);
    }
    f->stacktop = n + (int)depth;
    PyObject *old_exc = g->gi_exc_state.exc_value;
    g->gi_exc_state.exc_value = (exc == Py_None) ? NULL : Py_NewRef(exc);
    if (lasti >= 0) {
        /* Exactly what YIELD_VALUE leaves behind (see the top comment). */
        f->instr_ptr = _PyCode_CODE(co) + lasti + 1;
        g->gi_frame_state = yield_oparg ? FRAME_SUSPENDED_YIELD_FROM : FRAME_SUSPENDED;
    }
    for (int i = 0; i < n; i++) {
        Py_XDECREF(old[i]);
    }
    if (old != small) PyMem_Free(old);
    Py_XDECREF(old_exc);
    return 0;
}

#include "_itertools313.h"
#include "_asyncgen.h"

COROSNAP_FRAMES_MODULE("corosnap.frames._cpython313", PyInit__cpython313, 0)
