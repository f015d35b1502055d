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

static PyObject *
frames_read(PyObject *module, PyObject *gen)
{
    if (cs_check_target(gen) < 0) return NULL;
    PyGenObject *g = (PyGenObject *)gen;
    int state = cs_state(g);
    if (state != CS_CREATED && state != CS_SUSPENDED) {
        return cs_read_nothing(state);
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
    PyObject *locals = cs_objects_to_list(f->localsplus, n);
    if (locals == NULL) return NULL;
    PyObject *stack = cs_objects_to_list(f->localsplus + n, depth);
    if (stack == NULL) { Py_DECREF(locals); return NULL; }
    PyObject *exc = g->gi_exc_state.exc_value;
    return Py_BuildValue("(iiNNOO)", state, _PyInterpreterFrame_LASTI(f), locals, stack,
                         exc != NULL ? exc : Py_None, f->f_globals);
}

static PyObject *
frames_write(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    cs_write_args w;
    if (cs_parse_write(args, nargs, cs_code_of, 0, &w) < 0) return NULL;
    PyGenObject *g = (PyGenObject *)w.gen;
    _PyInterpreterFrame *f = (_PyInterpreterFrame *)g->gi_iframe;
    PyCodeObject *co = f->f_code;
    int n = co->co_nlocalsplus;
    if (g->gi_frame_state != FRAME_CREATED || f->stacktop != n) {
        PyErr_SetString(PyExc_ValueError, "write() needs a freshly created generator");
        return NULL;
    }
    Py_ssize_t depth = PyList_GET_SIZE(w.stack);
    if (w.lasti == -1 && depth != 0) {
        /* A created frame keeps the (empty) stack its prologue left. */
        PyErr_SetString(PyExc_ValueError, "a created generator has no stack");
        return NULL;
    }
    if (w.lasti >= 0 && cs_yield_oparg(co, w.lasti, YIELD_VALUE, RESUME) < 0) {
        return NULL;
    }
    /* Everything is checked: commit.  Old values are released only after
     * the frame is fully written, so a destructor that runs during the
     * release sees a consistent frame. */
    PyObject **old = PyMem_Malloc(sizeof(PyObject *) * (n > 0 ? n : 1));
    if (old == NULL) return PyErr_NoMemory();
    for (int i = 0; i < n; i++) {
        PyObject *v = PyList_GET_ITEM(w.locals, i);
        old[i] = f->localsplus[i];
        f->localsplus[i] = (v == corosnap_NULL) ? NULL : Py_NewRef(v);
    }
    for (Py_ssize_t i = 0; i < depth; i++) {
        PyObject *v = PyList_GET_ITEM(w.stack, i);
        f->localsplus[n + i] = (v == corosnap_NULL) ? NULL : Py_NewRef(v);
    }
    f->stacktop = n + (int)depth;
    PyObject *old_exc = g->gi_exc_state.exc_value;
    g->gi_exc_state.exc_value = (w.exc == Py_None) ? NULL : Py_NewRef(w.exc);
    if (w.lasti >= 0) {
        f->prev_instr = _PyCode_CODE(co) + w.lasti;
        g->gi_frame_state = FRAME_SUSPENDED;
    }
    for (int i = 0; i < n; i++) {
        Py_XDECREF(old[i]);
    }
    PyMem_Free(old);
    Py_XDECREF(old_exc);
    Py_RETURN_NONE;
}
