/* read() and write() for the frame layout of CPython 3.11 and 3.12.
 *
 * Included by _cpython311.c and _cpython312.c only, after _common.h and that
 * version's own internal/pycore_frame.h and opcode header: every field below
 * is resolved against the including interpreter's headers.  The two versions
 * share this file because, in the parts used here, they agree field by field
 * and in meaning:
 *  - a generator embeds its frame as `PyObject *gi_iframe[]`, with
 *    gi_frame_state (enum names FRAME_CREATED / FRAME_SUSPENDED /
 *    FRAME_EXECUTING; the numeric values differ, 3.11: -2.., 3.12: -2..) and
 *    gi_exc_state beside it;
 *  - the frame has `PyCodeObject *f_code`, `PyObject *localsplus[]`, an int
 *    `stacktop` (index of the first free slot, counted from localsplus) and
 *    `_Py_CODEUNIT *prev_instr`;
 *  - a suspended generator's prev_instr points at the YIELD_VALUE it yielded
 *    from (ceval records each instruction in prev_instr before running it);
 *    gen_send_ex() pushes the sent value and the eval loop resumes at
 *    prev_instr + 1, the RESUME the compiler always puts after a YIELD_VALUE.
 *    A created generator sits at RETURN_GENERATOR with an empty stack.
 *  - Whether the frame delegates (yield from / await) is not stored in the
 *    generator: _PyGen_yf() derives it from the oparg of the RESUME after
 *    prev_instr (>= 2), so setting prev_instr is all it takes.
 * 3.13 changed all of this (instr_ptr points *past* the YIELD_VALUE, a
 * separate FRAME_SUSPENDED_YIELD_FROM state), so it has its own file.
 *
 * write() only ever targets a freshly created generator (FRAME_CREATED,
 * empty stack) and checks every argument before touching the frame, so a
 * rejected write leaves the generator untouched.  The Python layer has
 * already validated the offset, the stack depth and the slot kinds against
 * the bytecode.
 */

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

static PyCodeObject *
cs_code_of(PyObject *gen)
{
    return ((_PyInterpreterFrame *)((PyGenObject *)gen)->gi_iframe)->f_code;
}

static int
cs_read(PyObject *gen, CorosnapFrameState *out)
{
    if (cs_check_target(gen) < 0) return -1;
    PyGenObject *g = (PyGenObject *)gen;
    out->state = cs_state(g);
    if (out->state != CS_CREATED && out->state != CS_SUSPENDED) return 0;
    _PyInterpreterFrame *f = (_PyInterpreterFrame *)g->gi_iframe;
    PyCodeObject *co = f->f_code;
    int n = co->co_nlocalsplus;
    int depth = f->stacktop - n;
    if (depth < 0 || depth > co->co_stacksize) {
        PyErr_Format(PyExc_SystemError, "corosnap: inconsistent stack depth %d in %R",
                     depth, co);
        return -1;
    }
    out->slots = cs_objects_to_list(f->localsplus, n + depth); /* the stack follows the locals */
    if (out->slots == NULL) return -1;
    out->nlocals = n;
    out->lasti = _PyInterpreterFrame_LASTI(f);
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
    _PyInterpreterFrame *f = (_PyInterpreterFrame *)g->gi_iframe;
    PyCodeObject *co = f->f_code;
    int n = co->co_nlocalsplus;
    if (g->gi_frame_state != FRAME_CREATED || f->stacktop != n) {
        PyErr_SetString(PyExc_ValueError, "write() needs a freshly created generator");
        return -1;
    }
    Py_ssize_t depth = PyList_GET_SIZE(slots) - n;
    if (lasti == -1 && depth != 0) {
        /* A created frame keeps the (empty) stack its prologue left. */
        PyErr_SetString(PyExc_ValueError, "a created generator has no stack");
        return -1;
    }
    if (lasti >= 0 && cs_yield_oparg(co, lasti, YIELD_VALUE, RESUME) < 0) {
        return -1;
    }
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
        f->prev_instr = _PyCode_CODE(co) + lasti;
        g->gi_frame_state = FRAME_SUSPENDED;
    }
    for (int i = 0; i < n; i++) {
        Py_XDECREF(old[i]);
    }
    if (old != small) PyMem_Free(old);
    Py_XDECREF(old_exc);
    return 0;
}
