/* Frame access for CPython 3.14.
 *
 * Compiled with Py_BUILD_CORE against the 3.14 internal headers, so every
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

/* 3.14: CREATED < SUSPENDED < SUSPENDED_YIELD_FROM < EXECUTING (0) <
 * COMPLETED < CLEARED. */
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

#include "_stackref_frames.h"

#include "_itertools314.h"
#include "_asyncgen.h"

COROSNAP_FRAMES_MODULE("corosnap.frames._cpython314", PyInit__cpython314, 1)
