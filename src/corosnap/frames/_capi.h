/* The frames layer's C API: struct layouts for corosnap's other C code.
 *
 * What lives here: the declaration of what each per-version frame module
 * (_cpython3XX) offers to the rest of corosnap's C code, the way the datetime
 * module offers PyDateTime_CAPI: read a generator's frame, write a fresh
 * one, name its code object, and the few constants that go with them.  The
 * frame module exports a pointer to one CorosnapFramesCAPI struct as the
 * capsule `_C_API`, which corosnap/frames/__init__.py re-exports as
 * corosnap.frames._C_API; CorosnapFrames_Import() fetches and checks it.
 *
 * What must never live here: any struct layout.  Users of this header (the
 * snapshot layer's C engine, snapshot/_csnapshot.c, and the C value codec,
 * codec/_ccodec.c, for range, list and tuple iterators) are compiled without
 * Py_BUILD_CORE and see frames only through these functions.
 *
 * The functions behave exactly as their Python twins (frames.read and
 * frames.write, documented in corosnap/frames/__init__.py), which are thin
 * wrappers around them.  A change to this struct bumps
 * COROSNAP_FRAMES_CAPI_VERSION; an importer built against another version
 * refuses to load (ImportError), never guesses.
 */
#ifndef COROSNAP_FRAMES_CAPI_H
#define COROSNAP_FRAMES_CAPI_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define COROSNAP_FRAMES_CAPI_VERSION 5
#define COROSNAP_FRAMES_CAPI_MODULE "corosnap.frames"
#define COROSNAP_FRAMES_CAPI_NAME "corosnap.frames._C_API"

/* Frame states as corosnap sees them, independent of the interpreter's own
 * (changing) enum values; frames.CREATED etc. in Python. */
#define CS_CREATED 0
#define CS_SUSPENDED 1
#define CS_RUNNING 2
#define CS_FINISHED 3

/* What read() reports about one generator's frame.  For CREATED and
 * SUSPENDED frames every object field is a new reference; for the other
 * states only `state` is set and the object fields are NULL. */
typedef struct {
    int state;
    int lasti;             /* the YIELD_VALUE's code unit (meaningless when CREATED) */
    int nlocals;           /* how many of `slots` are localsplus; the rest is the stack */
    PyObject *slots;       /* list: localsplus, then the value stack (one list, as the
                            * frame lays them out); the NULL sentinel for empty slots,
                            * TaggedInt for 3.14+ tagged stack slots */
    PyObject *exc_value;   /* the exception being handled, or None */
    PyObject *globals;     /* the frame's globals */
} CorosnapFrameState;

static inline void
CorosnapFrameState_Clear(CorosnapFrameState *s)
{
    Py_CLEAR(s->slots);
    Py_CLEAR(s->exc_value);
    Py_CLEAR(s->globals);
}

typedef struct {
    unsigned int version;          /* COROSNAP_FRAMES_CAPI_VERSION */
    size_t size;                   /* sizeof(CorosnapFramesCAPI) */
    PyObject *null;                /* the empty-slot sentinel (frames.NULL) */
    PyTypeObject *tagged_int;      /* frames.TaggedInt */
    int tagged_ints;               /* frames.TAGGED_INTS */
    /* read(gen, out): 0, or -1 with an exception (TypeError: not an exact
     * generator, coroutine or async generator: all three share the frame
     * head; the snapshot engine itself takes only the first two). */
    int (*read)(PyObject *gen, CorosnapFrameState *out);
    /* write(gen, lasti, slots, nlocals, exc_value): 0, or -1 with
     * TypeError/ValueError and the generator untouched.  `slots` is one
     * list, the localsplus (its first `nlocals` items) and then the stack,
     * as read() gives them; frames.write(gen, lasti, localsplus, stack,
     * exc_value) is the same with two lists. */
    int (*write)(PyObject *gen, long lasti, PyObject *slots, Py_ssize_t nlocals,
                 PyObject *exc_value);
    /* The code object of an exact generator, coroutine or async generator
     * (borrowed). */
    PyCodeObject *(*code_of)(PyObject *gen);
    /* 3.15: whether the interpreter walks obj by index (frames.virtual_iterable);
     * NULL on versions that walk every sequence through an iterator object. */
    int (*virtual_iterable)(PyObject *obj);
    /* range_reduce(it, out): 1 with out = {start, stop, step, consumed} as
     * it.__reduce__() gives them ((iter, (range(start, stop, step),),
     * consumed); consumed -1 for 3.12+'s None) when it is an exact range
     * iterator, else 0.  Reads only. */
    int (*range_reduce)(PyObject *it, long out[4]);
    /* seqiter_reduce(it, &seq, &index): 1 with seq (borrowed) and index as
     * it.__reduce__() gives them ((iter, (seq,), index)) when it is an exact
     * list or tuple iterator that is not exhausted, else 0.  Reads only. */
    int (*seqiter_reduce)(PyObject *it, PyObject **seq, Py_ssize_t *index);
} CorosnapFramesCAPI;

/* The frame module's API, or NULL with ImportError.  Imports
 * corosnap.frames, which loads this interpreter's frame module. */
static inline CorosnapFramesCAPI *
CorosnapFrames_Import(void)
{
    PyObject *module = PyImport_ImportModule(COROSNAP_FRAMES_CAPI_MODULE);
    if (module == NULL) return NULL;
    PyObject *capsule = PyObject_GetAttrString(module, "_C_API");
    Py_DECREF(module);
    if (capsule == NULL) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ImportError,
                        "corosnap: the frame module for this interpreter is not loaded "
                        "(corosnap.frames._C_API is missing)");
        return NULL;
    }
    CorosnapFramesCAPI *api =
        (CorosnapFramesCAPI *)PyCapsule_GetPointer(capsule, COROSNAP_FRAMES_CAPI_NAME);
    Py_DECREF(capsule);
    if (api == NULL) return NULL;
    if (api->version != COROSNAP_FRAMES_CAPI_VERSION || api->size != sizeof(CorosnapFramesCAPI)) {
        PyErr_Format(PyExc_ImportError,
                     "corosnap: the frame module offers C API version %u (%zu bytes), this "
                     "module was built for version %u (%zu bytes): rebuild corosnap",
                     api->version, api->size, (unsigned int)COROSNAP_FRAMES_CAPI_VERSION,
                     sizeof(CorosnapFramesCAPI));
        return NULL;
    }
    return api;
}

#endif /* COROSNAP_FRAMES_CAPI_H */
