/* Frame access for CPython 3.15.
 *
 * Compiled with Py_BUILD_CORE against the 3.15 internal headers, so every
 * field offset comes from CPython (see _cpython311.c for the family).  3.14
 * and 3.15 share the stack-reference frame code in _stackref_frames.h; only
 * the frame-state enum differs, mapped here.
 */
#include "_common.h"
#include "internal/pycore_frame.h"
#include "internal/pycore_genobject.h"
#include "internal/pycore_interpframe.h"
#include "internal/pycore_stackref.h"
#include "opcode.h"

/* 3.15 renumbered the states from 0 (CREATED) up, dropped FRAME_COMPLETED
 * (a finished generator is CLEARED) and added FRAME_SUSPENDED_YIELD_FROM_LOCKED:
 * a delegating generator whose yield-from target another operation (send,
 * throw, close, gi_yieldfrom) is using right now.  It is in use, so it
 * counts as running: capturing it then would race that operation. */
static int
cs_state(PyGenObject *g)
{
    switch (g->gi_frame_state) {
    case FRAME_CREATED: return CS_CREATED;
    case FRAME_SUSPENDED:
    case FRAME_SUSPENDED_YIELD_FROM: return CS_SUSPENDED;
    case FRAME_SUSPENDED_YIELD_FROM_LOCKED:
    case FRAME_EXECUTING: return CS_RUNNING;
    default: return CS_FINISHED;
    }
}

#include "_stackref_frames.h"

/* 3.15 iterates some sequences "virtually": GET_ITER leaves the sequence
 * itself and a tagged index on the stack instead of an iterator object, and
 * FOR_ITER / SEND then call the type's _tp_iteritem slot directly, without
 * checking it is set.  The restore path asks this before it writes a
 * (sequence, index) pair: only types with the slot may sit there. */
static int
cs_virtual_iterable(PyObject *obj)
{
    return Py_TYPE(obj)->_tp_iteritem != NULL;
}

static PyObject *
frames_virtual_iterable(PyObject *module, PyObject *obj)
{
    return PyBool_FromLong(cs_virtual_iterable(obj));
}

#undef CS_VIRTUAL_ITERABLE
#define CS_VIRTUAL_ITERABLE cs_virtual_iterable

#undef CS_EXTRA_METHODS
#define CS_EXTRA_METHODS                                                       \
    {"virtual_iterable", (PyCFunction)frames_virtual_iterable, METH_O,         \
     "virtual_iterable(obj) -> bool: 3.15 can walk obj with a tagged index"},

#include "_itertools314.h"  /* 3.15 lays these out as 3.14 does */
#include "_asyncgen.h"

COROSNAP_FRAMES_MODULE("corosnap.frames._cpython315", PyInit__cpython315, 1)
