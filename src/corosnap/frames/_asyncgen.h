/* Async generators and their awaitables: the layouts corosnap reads and writes.
 *
 * What lives here: the async-generator state beside the frame (read and
 * restored by ag_flags / ag_set_flags) and the three small objects that
 * stand between an async generator and whoever awaits it, restated from
 * CPython's Objects/genobject.c, where they are private:
 *
 *   async_generator_asend   what __anext__() / asend(v) return
 *   async_generator_athrow  what athrow(...) / aclose() return
 *   coroutine_wrapper       what coro.__await__() returns
 *   anext_awaitable         what anext(it, default) returns
 *                           (Objects/iterobject.c, private too)
 *
 * What must never live here: anything about frames themselves (the frame of
 * an async generator is read and written by the version's read()/write(),
 * exactly like a generator's: its fields are the common generator head) and
 * any decision about what a snapshot holds (snapshot/_asyncgen.py).
 *
 * Included by every _cpython3XX.c after its frame code (it uses cs_state()).
 *
 * The async generator itself (PyAsyncGenObject) comes from CPython's own
 * headers: on 3.11-3.15 its ag_origin_or_finalizer, ag_hooks_inited,
 * ag_closed and ag_running_async fields are part of _PyGenObject_HEAD
 * (cpython/genobject.h up to 3.13, internal/pycore_interpframe_structs.h
 * from 3.14), so their offsets are right by construction.
 *   - ag_running_async: an asend/athrow is in flight (set when one starts
 *     the generator, cleared when the generator yields a value or ends).
 *     While it is set the generator is suspended inside an `await`, and the
 *     state of that operation lives in the awaitable, held by its awaiter.
 *   - ag_closed: aclose() started, or the generator ended by
 *     StopAsyncIteration / GeneratorExit.
 *   - ag_hooks_inited / ag_origin_or_finalizer: the event loop's
 *     sys.set_asyncgen_hooks() hooks, taken from the running thread by the
 *     first asend/athrow/aclose/__anext__ (async_gen_init_hooks: the
 *     finalizer is kept, then firstiter is called).  Never captured: a
 *     restored async generator starts with them unset, so the restoring
 *     thread's hooks apply at its next operation, as for a fresh one, or
 *     through ag_take_hooks (snapshot/_asyncgen.py says when).
 *
 * The restated structs (read from genobject.c of each version):
 *
 *   typedef enum { INIT, ITER, CLOSED } AwaitableState;     (3.11-3.15)
 *
 *   async_generator_asend (3.11-3.15):
 *       PyObject_HEAD
 *       PyAsyncGenObject *ags_gen;
 *       PyObject *ags_sendval;        NULL for __anext__(), else asend's v
 *       AwaitableState ags_state;
 *
 *   async_generator_athrow, 3.11-3.14:
 *       PyObject_HEAD
 *       PyAsyncGenObject *agt_gen;
 *       PyObject *agt_args;           NULL for aclose(), else athrow's args tuple
 *       AwaitableState agt_state;
 *   3.15 unpacks the arguments when the object is made:
 *       PyObject_HEAD
 *       PyAsyncGenObject *agt_gen;
 *       PyObject *agt_typ;            NULL for aclose()
 *       PyObject *agt_tb;
 *       PyObject *agt_val;
 *       AwaitableState agt_state;
 *
 *   coroutine_wrapper (3.11-3.15):
 *       PyObject_HEAD
 *       PyCoroObject *cw_coroutine;
 *
 *   anext_awaitable (3.11-3.15; Objects/iterobject.c):
 *       PyObject_HEAD
 *       PyObject *wrapped;            what it.__anext__() returned
 *       PyObject *default_value;
 *     Stateless beyond these: every send/throw/close asks `wrapped` for its
 *     awaitable iterator again (type-checked there) and passes the call on,
 *     turning StopAsyncIteration into StopIteration(default_value).
 *
 * How they behave (the same on every version where it matters here): an
 * awaitable in state INIT has not been iterated; its first send() checks
 * ag_running_async ("already running"), moves to ITER and starts the
 * generator (athrow: throws into it; aclose also sets ag_closed); in ITER
 * every send()/throw() goes straight to the generator; the generator's next
 * plain `yield` (a wrapped value) or its end moves the awaitable to CLOSED
 * and clears ag_running_async.  In ITER, athrow's arguments are only read
 * for being NULL or not (aclose mode).  3.13 added tp_finalize to asend and
 * athrow: one dropped while still INIT warns "never awaited".
 *
 * How the restatement is trusted: the first use runs a probe against the
 * running interpreter (cs_ag_probe): the awaitable types are taken from
 * live objects (3.13+ no longer exports them), their tp_basicsize must be
 * the restated struct's size, and every field must hold what a known
 * sequence of operations puts there (the generator, the sent value, NULL
 * for __anext__ and aclose, the arguments of athrow, INIT then ITER).  If
 * anything differs, every function here refuses with SystemError naming
 * what differed; nothing is read or written through a layout that failed.
 *
 * Making an awaitable (aw_new) goes through the generator's own methods
 * (__anext__, asend, aclose), so allocation, free lists and GC tracking
 * are CPython's; those methods would run the event loop's firstiter hook
 * and take its finalizer, so ag_hooks_inited is set to 1 around the call
 * (async_gen_init_hooks then does nothing) and put back.  Only then are
 * the fields the method cannot set written: athrow's arguments and the
 * state, each checked first.
 */
#ifndef COROSNAP_FRAMES_ASYNCGEN_H
#define COROSNAP_FRAMES_ASYNCGEN_H

/* 3.15 stores athrow's (typ, val, tb) unpacked instead of the args tuple. */
#if PY_VERSION_HEX >= 0x030F0000
#define CS_ATHROW_UNPACKED 1
#else
#define CS_ATHROW_UNPACKED 0
#endif

typedef enum {
    CS_AW_INIT,
    CS_AW_ITER,
    CS_AW_CLOSED,
} cs_aw_state;

typedef struct {
    PyObject_HEAD
    PyAsyncGenObject *ags_gen;
    PyObject *ags_sendval;
    cs_aw_state ags_state;
} cs_asend;

#if CS_ATHROW_UNPACKED
typedef struct {
    PyObject_HEAD
    PyAsyncGenObject *agt_gen;
    PyObject *agt_typ;
    PyObject *agt_tb;
    PyObject *agt_val;
    cs_aw_state agt_state;
} cs_athrow;
#else
typedef struct {
    PyObject_HEAD
    PyAsyncGenObject *agt_gen;
    PyObject *agt_args;
    cs_aw_state agt_state;
} cs_athrow;
#endif

typedef struct {
    PyObject_HEAD
    PyCoroObject *cw_coroutine;
} cs_coro_wrapper;

typedef struct {
    PyObject_HEAD
    PyObject *wrapped;
    PyObject *default_value;
} cs_anext;

/* Kinds of aw_read()/aw_new(), shared with snapshot/_asyncgen.py. */
#define CS_AW_ASEND 0
#define CS_AW_ATHROW 1
#define CS_AW_WRAPPER 2
#define CS_AW_ANEXT 3

/* The probe's results: the types (NULL until probed), and what differed
 * from the restatement (empty when the layouts were confirmed). */
static PyTypeObject *cs_asend_type = NULL;
static PyTypeObject *cs_athrow_type = NULL;
static PyTypeObject *cs_wrapper_type = NULL;
static PyTypeObject *cs_anext_type = NULL;
/* An async iterator whose __anext__ returns None: anext(it, default) with it
 * makes an anext_awaitable without any async generator (aw_new). */
static PyObject *cs_anext_source = NULL;
static int cs_ag_probed = 0;
static char cs_ag_problem[256] = "";

/* builtins.anext (a new reference). */
static PyObject *
cs_builtin_anext(void)
{
    PyObject *builtins = PyImport_ImportModule("builtins");
    if (builtins == NULL) return NULL;
    PyObject *fn = PyObject_GetAttrString(builtins, "anext");
    Py_DECREF(builtins);
    return fn;
}

static const char cs_ag_probe_source[] =
    "class Step:\n"
    "    __slots__ = ()\n"
    "    def __await__(self):\n"
    "        return (yield 'corosnap-probe')\n"
    "async def agen():\n"
    "    await Step()\n"
    "    yield 1\n"
    "async def coro():\n"
    "    pass\n"
    "class AIter:\n"
    "    __slots__ = ()\n"
    "    def __aiter__(self):\n"
    "        return self\n"
    "    def __anext__(self):\n"
    "        return None\n";

static void
cs_ag_fail(const char *what)
{
    if (cs_ag_problem[0] == '\0') {
        PyOS_snprintf(cs_ag_problem, sizeof(cs_ag_problem), "%s", what);
    }
}

/* One awaitable made by the probe: its type must be `*type` (taken from the
 * first one) and its size the restated struct's.  Returns 1 when its fields
 * may be read. */
static int
cs_ag_probe_type(PyObject *obj, PyTypeObject **type, Py_ssize_t size, const char *name)
{
    if (*type == NULL) {
        *type = (PyTypeObject *)Py_NewRef((PyObject *)Py_TYPE(obj));
    }
    if (Py_TYPE(obj) != *type || strcmp(Py_TYPE(obj)->tp_name, name) != 0) {
        cs_ag_fail("an awaitable of an unexpected type");
        return 0;
    }
    if (Py_TYPE(obj)->tp_basicsize != size || Py_TYPE(obj)->tp_itemsize != 0) {
        char buf[160];
        PyOS_snprintf(buf, sizeof(buf), "%s is %zd bytes, corosnap restates %zd", name,
                      Py_TYPE(obj)->tp_basicsize, size);
        cs_ag_fail(buf);
        return 0;
    }
    return 1;
}

/* Run the probe once (see the top comment).  Returns 0 when the types are
 * known (the layouts may still have been refused: cs_ag_ready says), -1
 * with an exception when the probe could not run at all. */
static int
cs_ag_probe(void)
{
    if (cs_ag_probed) return 0;
    PyObject *ns = PyDict_New();
    if (ns == NULL) return -1;
    PyObject *r = PyRun_String(cs_ag_probe_source, Py_file_input, ns, ns);
    if (r == NULL) {
        Py_DECREF(ns);
        return -1;
    }
    Py_DECREF(r);
    PyObject *agen = NULL, *asend = NULL, *anext = NULL, *athrow = NULL, *aclose = NULL;
    PyObject *sent = NULL, *coro = NULL, *wrapper = NULL, *anext_aw = NULL, *anext_fn = NULL;
    int rc = -1;
    PyObject *agen_fn = PyDict_GetItemString(ns, "agen");
    PyObject *coro_fn = PyDict_GetItemString(ns, "coro");
    if (agen_fn == NULL || coro_fn == NULL) {
        PyErr_SetString(PyExc_SystemError, "corosnap: async generator probe incomplete");
        goto done;
    }
    agen = PyObject_CallNoArgs(agen_fn);
    if (agen == NULL) goto done;
    if (!PyAsyncGen_CheckExact(agen)) {
        PyErr_SetString(PyExc_SystemError, "corosnap: probe did not make an async generator");
        goto done;
    }
    PyAsyncGenObject *ag = (PyAsyncGenObject *)agen;
    ag->ag_hooks_inited = 1;  /* no event-loop hooks for the probe's objects */

    /* asend(None): INIT, the generator and the value it sends. */
    asend = PyObject_CallMethod(agen, "asend", "O", Py_None);
    if (asend == NULL) goto done;
    if (cs_ag_probe_type(asend, &cs_asend_type, sizeof(cs_asend), "async_generator_asend")) {
        cs_asend *s = (cs_asend *)asend;
        if (s->ags_gen != ag || s->ags_sendval != Py_None || s->ags_state != CS_AW_INIT) {
            cs_ag_fail("async_generator_asend fields differ from asend(v)'s");
        }
        else {
            /* Its first send starts the generator, which awaits Step:
             * ITER, with the generator running asynchronously. */
            sent = PyObject_CallMethod(asend, "send", "O", Py_None);
            if (sent == NULL) goto done;
            if (!PyUnicode_Check(sent) ||
                PyUnicode_CompareWithASCIIString(sent, "corosnap-probe") != 0 ||
                s->ags_state != CS_AW_ITER || !ag->ag_running_async) {
                cs_ag_fail("async_generator_asend is not ITER after its first send");
            }
        }
    }
    /* __anext__(): the same type, no value to send. */
    anext = Py_TYPE(agen)->tp_as_async->am_anext(agen);
    if (anext == NULL) goto done;
    if (cs_ag_probe_type(anext, &cs_asend_type, sizeof(cs_asend), "async_generator_asend")) {
        cs_asend *s = (cs_asend *)anext;
        if (s->ags_gen != ag || s->ags_sendval != NULL || s->ags_state != CS_AW_INIT) {
            cs_ag_fail("async_generator_asend fields differ from __anext__()'s");
        }
        s->ags_state = CS_AW_CLOSED;  /* 3.13+: no "never awaited" warning */
    }
    /* athrow(ValueError) and aclose(). */
    athrow = PyObject_CallMethod(agen, "athrow", "O", PyExc_ValueError);
    if (athrow == NULL) goto done;
    if (cs_ag_probe_type(athrow, &cs_athrow_type, sizeof(cs_athrow), "async_generator_athrow")) {
        cs_athrow *t = (cs_athrow *)athrow;
#if CS_ATHROW_UNPACKED
        int args_ok = t->agt_typ == PyExc_ValueError && t->agt_val == NULL && t->agt_tb == NULL;
#else
        int args_ok = t->agt_args != NULL && PyTuple_CheckExact(t->agt_args) &&
                      PyTuple_GET_SIZE(t->agt_args) == 1 &&
                      PyTuple_GET_ITEM(t->agt_args, 0) == PyExc_ValueError;
#endif
        if (t->agt_gen != ag || !args_ok || t->agt_state != CS_AW_INIT) {
            cs_ag_fail("async_generator_athrow fields differ from athrow(ValueError)'s");
        }
        t->agt_state = CS_AW_CLOSED;
    }
    aclose = PyObject_CallMethod(agen, "aclose", NULL);
    if (aclose == NULL) goto done;
    if (cs_ag_probe_type(aclose, &cs_athrow_type, sizeof(cs_athrow), "async_generator_athrow")) {
        cs_athrow *t = (cs_athrow *)aclose;
#if CS_ATHROW_UNPACKED
        int args_ok = t->agt_typ == NULL && t->agt_val == NULL && t->agt_tb == NULL;
#else
        int args_ok = t->agt_args == NULL;
#endif
        if (t->agt_gen != ag || !args_ok || t->agt_state != CS_AW_INIT) {
            cs_ag_fail("async_generator_athrow fields differ from aclose()'s");
        }
        t->agt_state = CS_AW_CLOSED;
    }
    /* coro.__await__(). */
    coro = PyObject_CallNoArgs(coro_fn);
    if (coro == NULL) goto done;
    wrapper = PyObject_CallMethod(coro, "__await__", NULL);
    if (wrapper == NULL) goto done;
    if (cs_ag_probe_type(wrapper, &cs_wrapper_type, sizeof(cs_coro_wrapper),
                         "coroutine_wrapper")) {
        if ((PyObject *)((cs_coro_wrapper *)wrapper)->cw_coroutine != coro) {
            cs_ag_fail("coroutine_wrapper does not hold its coroutine where restated");
        }
    }
    /* anext(agen, default): an anext_awaitable wrapping agen's __anext__(). */
    anext_fn = cs_builtin_anext();
    if (anext_fn == NULL) goto done;
    anext_aw = PyObject_CallFunctionObjArgs(anext_fn, agen, Py_Ellipsis, NULL);
    if (anext_aw == NULL) goto done;
    if (cs_ag_probe_type(anext_aw, &cs_anext_type, sizeof(cs_anext), "anext_awaitable")) {
        cs_anext *x = (cs_anext *)anext_aw;
        if (x->default_value != Py_Ellipsis || x->wrapped == NULL ||
            Py_TYPE(x->wrapped) != cs_asend_type ||
            ((cs_asend *)x->wrapped)->ags_gen != ag) {
            cs_ag_fail("anext_awaitable fields differ from anext(agen, default)'s");
        }
        else {
            ((cs_asend *)x->wrapped)->ags_state = CS_AW_CLOSED;
        }
    }
    PyObject *source_cls = PyDict_GetItemString(ns, "AIter");
    if (source_cls == NULL) {
        PyErr_SetString(PyExc_SystemError, "corosnap: async generator probe incomplete");
        goto done;
    }
    cs_anext_source = PyObject_CallNoArgs(source_cls);
    if (cs_anext_source == NULL) goto done;
    rc = 0;
done:
    Py_XDECREF(anext_aw);
    Py_XDECREF(anext_fn);
    Py_XDECREF(sent);
    Py_XDECREF(anext);
    Py_XDECREF(athrow);
    Py_XDECREF(aclose);
    Py_XDECREF(asend);   /* ITER: no warning; the generator is closed when dropped */
    Py_XDECREF(agen);
    Py_XDECREF(wrapper);
    if (coro != NULL) {
        PyObject *c = PyObject_CallMethod(coro, "close", NULL);  /* never awaited: quietly */
        if (c == NULL) {
            if (rc == 0) rc = -1;
        }
        Py_XDECREF(c);
        Py_DECREF(coro);
    }
    Py_DECREF(ns);
    if (rc == 0) {
        if (cs_asend_type == NULL || cs_athrow_type == NULL || cs_wrapper_type == NULL ||
            cs_anext_type == NULL) {
            PyErr_SetString(PyExc_SystemError, "corosnap: async generator probe incomplete");
            return -1;
        }
        cs_ag_probed = 1;
    }
    return rc;
}

/* 0 when the restated layouts were confirmed, else -1 with SystemError. */
static int
cs_ag_ready(void)
{
    if (cs_ag_probe() < 0) return -1;
    if (cs_ag_problem[0] != '\0') {
        PyErr_Format(PyExc_SystemError,
                     "corosnap: this CPython's async generator awaitables do not match the "
                     "layout corosnap restates for CPython %d.%d (%s)",
                     PY_MAJOR_VERSION, PY_MINOR_VERSION, cs_ag_problem);
        return -1;
    }
    return 0;
}

static int
cs_check_agen(PyObject *agen)
{
    if (!PyAsyncGen_CheckExact(agen)) {
        PyErr_Format(PyExc_TypeError, "expected an async generator, got %.100s",
                     Py_TYPE(agen)->tp_name);
        return -1;
    }
    return 0;
}

/* aw_types() -> (async_generator_asend, async_generator_athrow,
 * coroutine_wrapper, anext_awaitable): the types, even when their layouts
 * were refused (so the caller can still recognise them and say why they
 * cannot be stored). */
static PyObject *
frames_aw_types(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    if (cs_ag_probe() < 0) return NULL;
    return PyTuple_Pack(4, (PyObject *)cs_asend_type, (PyObject *)cs_athrow_type,
                        (PyObject *)cs_wrapper_type, (PyObject *)cs_anext_type);
}

/* ag_flags(agen) -> int: bit 0 ag_closed, bit 1 ag_running_async, bit 2
 * ag_hooks_inited (informative: never restored). */
static PyObject *
frames_ag_flags(PyObject *module, PyObject *agen)
{
    if (cs_check_agen(agen) < 0) return NULL;
    PyAsyncGenObject *ag = (PyAsyncGenObject *)agen;
    return PyLong_FromLong((ag->ag_closed ? 1 : 0) | (ag->ag_running_async ? 2 : 0) |
                           (ag->ag_hooks_inited ? 4 : 0));
}

/* ag_set_flags(agen, flags): give a freshly restored async generator its
 * ag_closed (bit 0) and ag_running_async (bit 1).  Refused unless the
 * generator is created or suspended and has never met an event loop's hooks
 * (which a restored one has not: see the top comment). */
static PyObject *
frames_ag_set_flags(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "ag_set_flags() takes exactly 2 arguments");
        return NULL;
    }
    PyObject *agen = args[0];
    if (cs_check_agen(agen) < 0) return NULL;
    long flags = PyLong_AsLong(args[1]);
    if (flags == -1 && PyErr_Occurred()) return NULL;
    if (flags < 0 || flags > 3) {
        PyErr_Format(PyExc_ValueError, "async generator flags %ld out of range", flags);
        return NULL;
    }
    PyAsyncGenObject *ag = (PyAsyncGenObject *)agen;
    int state = cs_state((PyGenObject *)agen);
    if ((state != CS_CREATED && state != CS_SUSPENDED) || ag->ag_hooks_inited ||
        ag->ag_origin_or_finalizer != NULL) {
        PyErr_SetString(PyExc_ValueError,
                        "ag_set_flags() needs a freshly restored async generator");
        return NULL;
    }
    ag->ag_closed = (flags & 1) ? 1 : 0;
    ag->ag_running_async = (flags & 2) ? 1 : 0;
    Py_RETURN_NONE;
}

/* ag_take_hooks(agen, finalizer) -> bool: what async_gen_init_hooks() does
 * before it calls firstiter (the caller calls it next): mark the hooks taken
 * and keep `finalizer` (None: none).  False, and nothing changed, when the
 * generator took hooks already. */
static PyObject *
frames_ag_take_hooks(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "ag_take_hooks() takes exactly 2 arguments");
        return NULL;
    }
    if (cs_check_agen(args[0]) < 0) return NULL;
    PyAsyncGenObject *ag = (PyAsyncGenObject *)args[0];
    if (ag->ag_hooks_inited) Py_RETURN_FALSE;
    if (ag->ag_origin_or_finalizer != NULL) {
        PyErr_SetString(PyExc_ValueError, "async generator has a finalizer but no hooks");
        return NULL;
    }
    ag->ag_hooks_inited = 1;
    if (args[1] != Py_None) {
        ag->ag_origin_or_finalizer = Py_NewRef(args[1]);
    }
    Py_RETURN_TRUE;
}

/* aw_read(obj) -> (kind, target, state, payload):
 *   asend:   (0, agen, state, ()) for __anext__(), (0, agen, state, (v,)) for asend(v)
 *   athrow:  (1, agen, state, ()) for aclose(), (1, agen, state, (typ[, val[, tb]]))
 *   wrapper: (2, coroutine, 0, ())
 *   anext:   (3, wrapped, 0, (default,))
 * state: 0 INIT, 1 ITER, 2 CLOSED.  TypeError for any other object. */
static PyObject *
frames_aw_read(PyObject *module, PyObject *obj)
{
    if (cs_ag_ready() < 0) return NULL;
    PyTypeObject *t = Py_TYPE(obj);
    if (t == cs_wrapper_type) {
        PyObject *coro = (PyObject *)((cs_coro_wrapper *)obj)->cw_coroutine;
        if (coro == NULL || !PyCoro_CheckExact(coro)) {
            PyErr_SetString(PyExc_SystemError, "corosnap: coroutine_wrapper without a coroutine");
            return NULL;
        }
        return Py_BuildValue("(iOi())", CS_AW_WRAPPER, coro, 0);
    }
    if (t == cs_anext_type) {
        cs_anext *x = (cs_anext *)obj;
        if (x->wrapped == NULL || x->default_value == NULL) {
            PyErr_SetString(PyExc_SystemError, "corosnap: anext_awaitable with a NULL field");
            return NULL;
        }
        return Py_BuildValue("(iOi(O))", CS_AW_ANEXT, x->wrapped, 0, x->default_value);
    }
    int kind, state;
    PyAsyncGenObject *gen;
    PyObject *payload;
    if (t == cs_asend_type) {
        cs_asend *s = (cs_asend *)obj;
        kind = CS_AW_ASEND;
        gen = s->ags_gen;
        state = (int)s->ags_state;
        payload = s->ags_sendval == NULL ? PyTuple_New(0) : PyTuple_Pack(1, s->ags_sendval);
    }
    else if (t == cs_athrow_type) {
        cs_athrow *a = (cs_athrow *)obj;
        kind = CS_AW_ATHROW;
        gen = a->agt_gen;
        state = (int)a->agt_state;
#if CS_ATHROW_UNPACKED
        if (a->agt_typ == NULL) {
            payload = (a->agt_val == NULL && a->agt_tb == NULL) ? PyTuple_New(0) : NULL;
        }
        else if (a->agt_val == NULL) {
            payload = a->agt_tb == NULL ? PyTuple_Pack(1, a->agt_typ) : NULL;
        }
        else {
            payload = a->agt_tb == NULL ? PyTuple_Pack(2, a->agt_typ, a->agt_val)
                                        : PyTuple_Pack(3, a->agt_typ, a->agt_val, a->agt_tb);
        }
        if (payload == NULL && !PyErr_Occurred()) {
            PyErr_SetString(PyExc_SystemError, "corosnap: athrow arguments in no known shape");
        }
#else
        if (a->agt_args == NULL) {
            payload = PyTuple_New(0);
        }
        else if (PyTuple_CheckExact(a->agt_args) && PyTuple_GET_SIZE(a->agt_args) >= 1 &&
                 PyTuple_GET_SIZE(a->agt_args) <= 3) {
            payload = Py_NewRef(a->agt_args);
        }
        else {
            PyErr_SetString(PyExc_SystemError, "corosnap: athrow arguments in no known shape");
            payload = NULL;
        }
#endif
    }
    else {
        PyErr_Format(PyExc_TypeError, "expected an async generator awaitable, got %.100s",
                     t->tp_name);
        return NULL;
    }
    if (payload == NULL) return NULL;
    if (gen == NULL || !PyAsyncGen_CheckExact((PyObject *)gen) || state < CS_AW_INIT ||
        state > CS_AW_CLOSED) {
        Py_DECREF(payload);
        PyErr_SetString(PyExc_SystemError, "corosnap: async generator awaitable in no known state");
        return NULL;
    }
    return Py_BuildValue("(iOiN)", kind, (PyObject *)gen, state, payload);
}

/* An anext_awaitable wrapping `wrapped` (any object: it is asked for its
 * awaitable iterator, type-checked, at each use) with `default`: made by
 * anext() on an inert async iterator, then pointed at `wrapped`. */
static PyObject *
cs_anext_new(PyObject *wrapped, PyObject *payload)
{
    if (!PyTuple_CheckExact(payload) || PyTuple_GET_SIZE(payload) != 1) {
        PyErr_SetString(PyExc_ValueError, "anext_awaitable takes exactly one default value");
        return NULL;
    }
    if (cs_ag_ready() < 0) return NULL;
    PyObject *anext_fn = cs_builtin_anext();
    if (anext_fn == NULL) return NULL;
    PyObject *obj = PyObject_CallFunctionObjArgs(anext_fn, cs_anext_source,
                                                 PyTuple_GET_ITEM(payload, 0), NULL);
    Py_DECREF(anext_fn);
    if (obj == NULL) return NULL;
    if (Py_TYPE(obj) != cs_anext_type || ((cs_anext *)obj)->wrapped != Py_None) {
        Py_DECREF(obj);
        PyErr_SetString(PyExc_SystemError, "corosnap: anext() made an unexpected awaitable");
        return NULL;
    }
    cs_anext *x = (cs_anext *)obj;
    PyObject *old = x->wrapped;
    x->wrapped = Py_NewRef(wrapped);
    Py_DECREF(old);
    return obj;
}

/* aw_new(kind, agen, state, payload) -> a new asend (kind 0) or athrow
 * (kind 1) of `agen`, in `state`, with the payload aw_read() describes; or
 * (kind 3) an anext_awaitable wrapping `agen` (then any object; state 0).
 * Everything is checked before the object is made; the generator's hooks
 * are left as they were (see the top comment). */
static PyObject *
frames_aw_new(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "aw_new() takes exactly 4 arguments");
        return NULL;
    }
    long kind = PyLong_AsLong(args[0]);
    if (kind == -1 && PyErr_Occurred()) return NULL;
    if (kind == CS_AW_ANEXT) {
        long state = PyLong_AsLong(args[2]);
        if (state == -1 && PyErr_Occurred()) return NULL;
        if (state != 0) {
            PyErr_Format(PyExc_ValueError, "anext_awaitable state %ld out of range", state);
            return NULL;
        }
        return cs_anext_new(args[1], args[3]);
    }
    PyObject *agen = args[1];
    long state = PyLong_AsLong(args[2]);
    if (state == -1 && PyErr_Occurred()) return NULL;
    PyObject *payload = args[3];
    if (kind != CS_AW_ASEND && kind != CS_AW_ATHROW) {
        PyErr_Format(PyExc_ValueError, "unknown awaitable kind %ld", kind);
        return NULL;
    }
    if (cs_check_agen(agen) < 0) return NULL;
    if (state < CS_AW_INIT || state > CS_AW_CLOSED) {
        PyErr_Format(PyExc_ValueError, "awaitable state %ld out of range", state);
        return NULL;
    }
    if (!PyTuple_CheckExact(payload)) {
        PyErr_SetString(PyExc_TypeError, "the payload must be a tuple");
        return NULL;
    }
    Py_ssize_t np = PyTuple_GET_SIZE(payload);
    if ((kind == CS_AW_ASEND && np > 1) || (kind == CS_AW_ATHROW && np > 3)) {
        PyErr_Format(PyExc_ValueError, "%s takes at most %d values, got %zd",
                     kind == CS_AW_ASEND ? "asend" : "athrow", kind == CS_AW_ASEND ? 1 : 3,
                     np);
        return NULL;
    }
    if (cs_ag_ready() < 0) return NULL;
    PyAsyncGenObject *ag = (PyAsyncGenObject *)agen;
    char saved = ag->ag_hooks_inited;
    ag->ag_hooks_inited = 1;
    PyObject *obj;
    if (kind == CS_AW_ASEND) {
        obj = np == 0 ? Py_TYPE(agen)->tp_as_async->am_anext(agen)
                      : PyObject_CallMethod(agen, "asend", "O", PyTuple_GET_ITEM(payload, 0));
    }
    else {
        obj = PyObject_CallMethod(agen, "aclose", NULL);
    }
    ag->ag_hooks_inited = saved;
    if (obj == NULL) return NULL;
    PyTypeObject *want = kind == CS_AW_ASEND ? cs_asend_type : cs_athrow_type;
    if (Py_TYPE(obj) != want) {
        Py_DECREF(obj);
        PyErr_SetString(PyExc_SystemError, "corosnap: the generator made an unexpected awaitable");
        return NULL;
    }
    if (kind == CS_AW_ASEND) {
        ((cs_asend *)obj)->ags_state = (cs_aw_state)state;
        return obj;
    }
    cs_athrow *t = (cs_athrow *)obj;
    if (np > 0) {
#if CS_ATHROW_UNPACKED
        /* aclose() left all three NULL. */
        t->agt_typ = Py_NewRef(PyTuple_GET_ITEM(payload, 0));
        t->agt_val = np > 1 ? Py_NewRef(PyTuple_GET_ITEM(payload, 1)) : NULL;
        t->agt_tb = np > 2 ? Py_NewRef(PyTuple_GET_ITEM(payload, 2)) : NULL;
#else
        t->agt_args = Py_NewRef(payload);  /* aclose() left it NULL */
#endif
    }
    t->agt_state = (cs_aw_state)state;
    return obj;
}

#undef CS_ASYNCGEN_METHODS /* _common.h's empty default */
#define CS_ASYNCGEN_METHODS                                                    \
    {"aw_types", (PyCFunction)frames_aw_types, METH_NOARGS,                   \
     "aw_types() -> (asend, athrow, coroutine_wrapper, anext_awaitable types)"},\
    {"aw_read", (PyCFunction)frames_aw_read, METH_O,                          \
     "aw_read(awaitable) -> (kind, target, state, payload)"},                 \
    {"aw_new", (PyCFunction)(void (*)(void))frames_aw_new, METH_FASTCALL,     \
     "aw_new(kind, agen, state, payload) -> a new asend/athrow"},             \
    {"ag_flags", (PyCFunction)frames_ag_flags, METH_O,                        \
     "ag_flags(agen) -> closed | running_async << 1 | hooks_inited << 2"},    \
    {"ag_set_flags", (PyCFunction)(void (*)(void))frames_ag_set_flags,        \
     METH_FASTCALL, "ag_set_flags(agen, flags): a restored generator's flags"},\
    {"ag_take_hooks", (PyCFunction)(void (*)(void))frames_ag_take_hooks,      \
     METH_FASTCALL, "ag_take_hooks(agen, finalizer) -> bool"},

#endif /* COROSNAP_FRAMES_ASYNCGEN_H */
