/* read() and write() for the frame layout of CPython 3.14 and 3.15, whose
 * frame slots are tagged stack references (_PyStackRef) instead of PyObject
 * pointers.
 *
 * Included by _cpython314.c and _cpython315.c only, after _common.h, that
 * version's internal headers, and its own cs_state() (the FRAME_* enum was
 * renumbered in 3.15 and gained FRAME_SUSPENDED_YIELD_FROM_LOCKED, so the
 * state mapping is per version).  Everything else below is resolved against
 * the including interpreter's headers; the two versions share this file
 * because, in the parts used here, they agree field by field and in meaning:
 *  - the generator embeds its frame as a `_PyInterpreterFrame gi_iframe`
 *    member (no longer a PyObject * array), with gi_frame_state and
 *    gi_exc_state beside it;
 *  - the frame's code is the stack reference `f_executable`
 *    (_PyFrame_GetCode()), its slots are `_PyStackRef localsplus[]`, and the
 *    top of the value stack is the *pointer* `stackpointer`;
 *  - instr_ptr is the next instruction to run: YIELD_VALUE advances it to the
 *    RESUME after itself and sets gi_frame_state to FRAME_SUSPENDED + oparg
 *    (oparg 1 inside yield from / await, which is
 *    FRAME_SUSPENDED_YIELD_FROM), exactly as on 3.13 (see _cpython313.c);
 *  - a slot is one of: NULL (PyStackRef_NULL, whose bits are *not* zero with
 *    the GIL: the "refcount" tag bit alone), a tagged integer
 *    (PyStackRef_IsTaggedInt: the exception handler's lasti, and on 3.15 the
 *    index of a for loop or yield from walking a sequence in place), or an
 *    object reference that either owns a reference (tag 0) or does not
 *    (Py_TAG_REFCNT: immortal objects and borrowed/deferred references).
 *
 * Reading turns each slot into a new strong PyObject reference (the NULL
 * sentinel, a TaggedInt, or the object, whatever its tag).  Writing stores
 * PyStackRef_FromPyObjectNew(obj): an owned reference, or the refcount tag
 * for an immortal object, exactly what the interpreter itself creates, so
 * whoever later closes the slot (PyStackRef_CLOSE checks the tag) releases
 * what was taken.  Old slots are closed only after the whole frame is
 * written.  Free-threaded builds (Py_GIL_DISABLED) tag differently and are
 * refused before this file is ever compiled (setup.py, frames/__init__.py).
 */
#ifdef Py_GIL_DISABLED
#error "corosnap does not support free-threaded CPython builds"
#endif

static PyCodeObject *
cs_code_of(PyObject *gen)
{
    return _PyFrame_GetCode(&((PyGenObject *)gen)->gi_iframe);
}

/* One slot as a new strong reference, or NULL with SystemError for a bit
 * pattern no suspended frame may hold (3.15 names it Py_TAG_INVALID). */
static PyObject *
cs_slot_to_object(_PyStackRef ref)
{
    if (PyStackRef_IsNull(ref)) {
        return Py_NewRef(corosnap_NULL);
    }
    if (PyStackRef_IsTaggedInt(ref)) {
        return PyObject_CallFunction((PyObject *)corosnap_TaggedInt, "n",
                                     (Py_ssize_t)PyStackRef_UntagInt(ref));
    }
    if ((ref.bits & 3) == 2) {
        PyErr_SetString(PyExc_SystemError, "corosnap: malformed stack reference in frame");
        return NULL;
    }
    return Py_NewRef(PyStackRef_AsPyObjectBorrow(ref));
}

static PyObject *
cs_slots_to_list(_PyStackRef *slots, Py_ssize_t n)
{
    PyObject *list = PyList_New(n);
    if (list == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = cs_slot_to_object(slots[i]);
        if (v == NULL) { Py_DECREF(list); return NULL; }
        PyList_SET_ITEM(list, i, v);
    }
    return list;
}

/* The stack reference write() stores for a value the checks accepted. */
static _PyStackRef
cs_object_to_slot(PyObject *v)
{
    if (v == corosnap_NULL) {
        return PyStackRef_NULL;
    }
    if (cs_is_tagged(v)) {
        /* Range already checked by cs_check_slots(). */
        return PyStackRef_TagInt((intptr_t)PyLong_AsSsize_t(v));
    }
    return PyStackRef_FromPyObjectNew(v);
}

static int
cs_read(PyObject *gen, CorosnapFrameState *out)
{
    if (cs_check_target(gen) < 0) return -1;
    PyGenObject *g = (PyGenObject *)gen;
    out->state = cs_state(g);
    if (out->state != CS_CREATED && out->state != CS_SUSPENDED) return 0;
    _PyInterpreterFrame *f = &g->gi_iframe;
    PyCodeObject *co = _PyFrame_GetCode(f);
    int n = co->co_nlocalsplus;
    Py_ssize_t depth = f->stackpointer - (f->localsplus + n);
    if (depth < 0 || depth > co->co_stacksize) {
        PyErr_Format(PyExc_SystemError, "corosnap: inconsistent stack depth %zd in %R",
                     depth, co);
        return -1;
    }
    /* Suspended: instr_ptr is the RESUME after the YIELD_VALUE.  Created: it
     * is just past RETURN_GENERATOR (the Python layer ignores lasti then). */
    out->slots = cs_slots_to_list(f->localsplus, n + depth); /* the stack follows the locals */
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
    if (cs_check_write(gen, lasti, slots, nlocals, exc, cs_code_of, 1) < 0) return -1;
    PyGenObject *g = (PyGenObject *)gen;
    _PyInterpreterFrame *f = &g->gi_iframe;
    PyCodeObject *co = _PyFrame_GetCode(f);
    int n = co->co_nlocalsplus;
    /* A fresh generator's stack holds whatever its prologue pushed before
     * RETURN_GENERATOR: nothing, except in 3.15's generator expressions,
     * which evaluate iter(.0) first and so start with an iterator pair. */
    Py_ssize_t fresh = f->stackpointer - (f->localsplus + n);
    if (g->gi_frame_state != FRAME_CREATED || fresh < 0 || fresh > co->co_stacksize) {
        PyErr_SetString(PyExc_ValueError, "write() needs a freshly created generator");
        return -1;
    }
    Py_ssize_t depth = PyList_GET_SIZE(slots) - n;
    if (lasti == -1 && depth != fresh) {
        /* A created frame keeps the shape its prologue gave it. */
        PyErr_Format(PyExc_ValueError, "a created %R has %zd stack values, got %zd", co,
                     fresh, depth);
        return -1;
    }
    int yield_oparg = 0;
    if (lasti >= 0) {
        yield_oparg = cs_yield_oparg(co, lasti, YIELD_VALUE, RESUME);
        if (yield_oparg < 0) return -1;
        if (yield_oparg > 1) {  /* 3.14 and 3.15 compile only 0 and 1 */
            PyErr_Format(PyExc_ValueError, "unexpected YIELD_VALUE oparg %d in %R",
                         yield_oparg, co);
            return -1;
        }
    }
    /* Everything is checked: commit.  Old values (locals and the prologue's
     * stack) are released only after the frame is fully written, so a
     * destructor that runs during the release sees a consistent frame. */
    Py_ssize_t nold = n + fresh;
    _PyStackRef small[16];
    _PyStackRef *old = nold <= 16 ? small : PyMem_Malloc(sizeof(_PyStackRef) * nold);
    if (old == NULL) { PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < nold; i++) {
        old[i] = f->localsplus[i];
    }
    for (int i = 0; i < n; i++) {
        f->localsplus[i] = cs_object_to_slot(PyList_GET_ITEM(slots, i));
    }
    for (Py_ssize_t i = 0; i < depth; i++) {
        f->localsplus[n + i] = cs_object_to_slot(PyList_GET_ITEM(slots, n + i));
    }
    f->stackpointer = f->localsplus + n + depth;
    PyObject *old_exc = g->gi_exc_state.exc_value;
    g->gi_exc_state.exc_value = (exc == Py_None) ? NULL : Py_NewRef(exc);
    if (lasti >= 0) {
        /* Exactly what YIELD_VALUE leaves behind (see the top comment). */
        f->instr_ptr = _PyCode_CODE(co) + lasti + 1;
        g->gi_frame_state = yield_oparg ? FRAME_SUSPENDED_YIELD_FROM : FRAME_SUSPENDED;
    }
    for (Py_ssize_t i = 0; i < nold; i++) {
        PyStackRef_XCLOSE(old[i]);
    }
    if (old != small) PyMem_Free(old);
    Py_XDECREF(old_exc);
    return 0;
}
