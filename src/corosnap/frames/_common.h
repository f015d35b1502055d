/* Shared, layout-free parts of the per-version frame modules.
 *
 * What lives here: the NULL-slot sentinel and the TaggedInt type, the checks
 * that do not depend on struct layouts (target type, the YIELD_VALUE/RESUME
 * pair in the canonical bytecode, the shapes write() accepts), the Python
 * wrappers of read() and write(), and the module scaffolding, which exports
 * the C API of _capi.h as the capsule `_C_API`.
 * What must never live here: anything that touches _PyInterpreterFrame or a
 * generator's fields.  Those belong to the one _cpython3XX.c file that is
 * compiled against that interpreter's own internal headers.  Nor anything
 * that is not about frame layouts: the codec's and the snapshot layer's C
 * engines are modules of their own (codec/_ccodec.c, snapshot/_csnapshot.c)
 * and reach frames through the C API only.
 *
 * Each _cpython3XX.c defines cs_state(), cs_code_of(), cs_read() and
 * cs_write() (the C API's read, code_of and write) and then expands this
 * file's COROSNAP_FRAMES_MODULE(name, init, tagged) macro at its end;
 * `tagged` says whether that interpreter keeps tagged integers in frame
 * slots (exported as TAGGED_INTS).
 */
#ifndef COROSNAP_FRAMES_COMMON_H
#define COROSNAP_FRAMES_COMMON_H

#include "_capi.h"

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

static int
cs_check_target(PyObject *gen)
{
    /* An async generator's frame and state beside it are a generator's (the
     * common _PyGenObject_HEAD); its own fields are _asyncgen.h's. */
    if (!PyGen_CheckExact(gen) && !PyCoro_CheckExact(gen) && !PyAsyncGen_CheckExact(gen)) {
        PyErr_Format(PyExc_TypeError,
                     "expected a generator, coroutine or async generator, got %.100s",
                     Py_TYPE(gen)->tp_name);
        return -1;
    }
    return 0;
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

/* Check items [start, end) of a frame's slot list before anything is
 * written: no TaggedInt among the locals, and none on the stack unless the
 * interpreter has tagged slots (`tagged`), each in range.  Items are
 * numbered from `start` in messages. */
static int
cs_check_slots(PyObject *list, Py_ssize_t start, Py_ssize_t end, int tagged, const char *what)
{
    for (Py_ssize_t i = start; i < end; i++) {
        PyObject *v = PyList_GET_ITEM(list, i);
        if (!cs_is_tagged(v)) continue;
        if (!tagged) {
            PyErr_Format(PyExc_ValueError,
                         "%s slot %zd: this interpreter has no tagged integer slots",
                         what, i - start);
            return -1;
        }
        if (cs_tagged_value(v) < 0) return -1;
    }
    return 0;
}

/* The checks of write(gen, lasti, slots, nlocals, exc_value) that need
 * only the code object, not the frame: argument types, shapes, slot values.
 * Layout-free: it reads only the target's type and public code-object fields
 * (through the caller's code_of).  0, or -1 with TypeError/ValueError. */
static int
cs_check_write(PyObject *gen, long lasti, PyObject *slots, Py_ssize_t nlocals, PyObject *exc,
               PyCodeObject *(*code_of)(PyObject *), int tagged)
{
    if (cs_check_target(gen) < 0) return -1;
    if (!PyList_CheckExact(slots)) {
        PyErr_SetString(PyExc_TypeError, "the frame's slots must be a list");
        return -1;
    }
    if (exc != Py_None && !PyExceptionInstance_Check(exc)) {
        PyErr_SetString(PyExc_TypeError, "exc_value must be an exception or None");
        return -1;
    }
    PyCodeObject *co = code_of(gen);
    int n = co->co_nlocalsplus;
    if (nlocals != n || PyList_GET_SIZE(slots) < n) {
        PyErr_Format(PyExc_ValueError, "%R has %d local slots, got %zd", co, n,
                     nlocals < PyList_GET_SIZE(slots) ? nlocals : PyList_GET_SIZE(slots));
        return -1;
    }
    Py_ssize_t depth = PyList_GET_SIZE(slots) - n;
    if (depth > co->co_stacksize) {
        PyErr_Format(PyExc_ValueError, "%R has a stack of %d, got %zd values", co,
                     co->co_stacksize, depth);
        return -1;
    }
    if (lasti < -1) {
        PyErr_Format(PyExc_ValueError, "offset %ld is not a resume point of %R", lasti, co);
        return -1;
    }
    if (cs_check_slots(slots, 0, n, 0, "local") < 0 ||
        cs_check_slots(slots, n, n + depth, tagged, "stack") < 0) {
        return -1;
    }
    return 0;
}

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

/* frames.read(gen)'s result type: a named tuple of CorosnapFrameState. */
static PyTypeObject *cs_FrameState = NULL;

static PyStructSequence_Field cs_frame_state_fields[] = {
    {"state", "CREATED, SUSPENDED, RUNNING or FINISHED"},
    {"lasti", "the code unit of the YIELD_VALUE the frame is suspended on"},
    {"localsplus", "the frame's local slots (a list; NULL for an empty slot)"},
    {"stack", "the live value stack (a list; NULL, TaggedInt on 3.14+)"},
    {"exc_value", "the exception being handled, or None"},
    {"globals", "the frame's globals"},
    {NULL, NULL}};

static PyStructSequence_Desc cs_frame_state_desc = {
    "corosnap.frames.FrameState",
    "What frames.read() reports about a generator's frame (None for every field but "
    "state when it is neither created nor suspended).",
    cs_frame_state_fields, 6};

/* The layout-specific functions each _cpython3XX.c defines. */
static int cs_read(PyObject *gen, CorosnapFrameState *out);
static int cs_write(PyObject *gen, long lasti, PyObject *slots, Py_ssize_t nlocals,
                    PyObject *exc);
static PyCodeObject *cs_code_of(PyObject *gen);

static PyObject *
frames_read(PyObject *module, PyObject *gen)
{
    CorosnapFrameState st = {0};
    if (cs_read(gen, &st) < 0) return NULL;
    PyObject *out = PyStructSequence_New(cs_FrameState);
    if (out == NULL) {
        CorosnapFrameState_Clear(&st);
        return NULL;
    }
    PyObject *state = PyLong_FromLong(st.state);
    PyObject *lasti = st.slots != NULL ? PyLong_FromLong(st.lasti) : Py_NewRef(Py_None);
    PyObject *localsplus = NULL, *stack = NULL;
    if (st.slots != NULL) {
        localsplus = PyList_GetSlice(st.slots, 0, st.nlocals);
        stack = PyList_GetSlice(st.slots, st.nlocals, PyList_GET_SIZE(st.slots));
    }
    if (state == NULL || lasti == NULL ||
        (st.slots != NULL && (localsplus == NULL || stack == NULL))) {
        Py_XDECREF(state);
        Py_XDECREF(lasti);
        Py_XDECREF(localsplus);
        Py_XDECREF(stack);
        CorosnapFrameState_Clear(&st);
        Py_DECREF(out);
        return NULL;
    }
    Py_CLEAR(st.slots);
    PyObject *items[6] = {state, lasti, localsplus, stack, st.exc_value, st.globals};
    for (int i = 0; i < 6; i++) {  /* steals: the struct's references move into `out` */
        PyStructSequence_SET_ITEM(out, i, items[i] != NULL ? items[i] : Py_NewRef(Py_None));
    }
    return out;
}

static PyObject *
frames_write(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "write() takes exactly 5 arguments");
        return NULL;
    }
    long lasti = PyLong_AsLong(args[1]);
    if (lasti == -1 && PyErr_Occurred()) return NULL;
    if (cs_check_target(args[0]) < 0) return NULL; /* first, as write() checks */
    PyObject *loc = args[2], *stk = args[3];
    if (!(PyList_CheckExact(loc) || PyTuple_CheckExact(loc)) ||
        !(PyList_CheckExact(stk) || PyTuple_CheckExact(stk))) {
        PyErr_SetString(PyExc_TypeError, "localsplus and stack must be lists or tuples");
        return NULL;
    }
    /* The C API takes one list, locals then stack, as the frame lays them
     * out: a new one, which no other code sees. */
    Py_ssize_t nl = PySequence_Fast_GET_SIZE(loc), ns = PySequence_Fast_GET_SIZE(stk);
    PyObject *slots = PyList_New(nl + ns);
    if (slots == NULL) return NULL;
    for (Py_ssize_t i = 0; i < nl; i++) {
        PyList_SET_ITEM(slots, i, Py_NewRef(PySequence_Fast_GET_ITEM(loc, i)));
    }
    for (Py_ssize_t i = 0; i < ns; i++) {
        PyList_SET_ITEM(slots, nl + i, Py_NewRef(PySequence_Fast_GET_ITEM(stk, i)));
    }
    int rc = cs_write(args[0], lasti, slots, nl, args[4]);
    Py_DECREF(slots);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

#ifndef CS_VIRTUAL_ITERABLE
#define CS_VIRTUAL_ITERABLE NULL
#endif

static CorosnapFramesCAPI cs_capi;
static int cs_range_reduce(PyObject *it, long out[4]); /* _itertools.h */
static int cs_seqiter_reduce(PyObject *it, PyObject **seq, Py_ssize_t *index); /* _itertools.h */

static int
cs_module_init(PyObject *m, int tagged_ints, int (*virtual_iterable)(PyObject *))
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
        cs_FrameState = PyStructSequence_NewType(&cs_frame_state_desc);
        if (cs_FrameState == NULL) return -1;
    }
    cs_capi = (CorosnapFramesCAPI){
        .version = COROSNAP_FRAMES_CAPI_VERSION,
        .size = sizeof(CorosnapFramesCAPI),
        .null = corosnap_NULL,
        .tagged_int = corosnap_TaggedInt,
        .tagged_ints = tagged_ints,
        .read = cs_read,
        .write = cs_write,
        .code_of = cs_code_of,
        .virtual_iterable = virtual_iterable,
        .range_reduce = cs_range_reduce,
        .seqiter_reduce = cs_seqiter_reduce,
    };
    PyObject *capsule = PyCapsule_New(&cs_capi, COROSNAP_FRAMES_CAPI_NAME, NULL);
    if (capsule == NULL) return -1;
    int rc = PyModule_AddObjectRef(m, "_C_API", capsule);
    Py_DECREF(capsule);
    if (rc < 0 ||
        PyModule_AddObjectRef(m, "NULL", corosnap_NULL) < 0 ||
        PyModule_AddObjectRef(m, "TaggedInt", (PyObject *)corosnap_TaggedInt) < 0 ||
        PyModule_AddObjectRef(m, "FrameState", (PyObject *)cs_FrameState) < 0 ||
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

/* The async generator functions (ag_flags, aw_read, ...): _asyncgen.h. */
#ifndef CS_ASYNCGEN_METHODS
#define CS_ASYNCGEN_METHODS
#endif

/* TAGGED: 1 when this interpreter keeps tagged integers in frame slots. */
#define COROSNAP_FRAMES_MODULE(NAME, INITFUNC, TAGGED)                         \
    static PyMethodDef frames_methods[] = {                                    \
        CS_EXTRA_METHODS                                                       \
        CS_ITER_METHODS                                                        \
        CS_ASYNCGEN_METHODS                                                    \
        {"read", (PyCFunction)frames_read, METH_O,                            \
         "read(gen) -> FrameState(state, lasti, localsplus, stack, exc_value, globals)"},\
        {"write", (PyCFunction)(void (*)(void))frames_write, METH_FASTCALL,   \
         "write(gen, lasti, localsplus, stack, exc_value) -> None"},          \
        {NULL, NULL, 0, NULL}};                                                \
    static struct PyModuleDef frames_module = {                                \
        PyModuleDef_HEAD_INIT, NAME,                                           \
        "Frame access for one CPython version (see corosnap.frames).", -1,     \
        frames_methods};                                                       \
    PyMODINIT_FUNC INITFUNC(void)                                              \
    {                                                                          \
        PyObject *m = PyModule_Create(&frames_module);                         \
        if (m == NULL) return NULL;                                            \
        if (cs_module_init(m, (TAGGED), CS_VIRTUAL_ITERABLE) < 0) {            \
            Py_DECREF(m);                                                      \
            return NULL;                                                       \
        }                                                                      \
        return m;                                                              \
    }

#endif
