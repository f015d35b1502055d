/* Frame access for CPython 3.12.
 *
 * The only files that know how a generator and its _PyInterpreterFrame are
 * laid out are this one, its siblings for other versions, and the layout
 * headers they include.  Each is compiled with Py_BUILD_CORE against its own
 * interpreter's internal headers, so every field offset comes from CPython.
 *
 * 3.11 and 3.12 lay out and use the parts we touch identically: the shared
 * code and its theory of operation live in _prev_instr_frames.h.
 */
#include "_common.h"
#include "internal/pycore_frame.h"
#include "opcode.h"

#include "_prev_instr_frames.h"

#include "_itertools312.h"
#include "_asyncgen.h"

COROSNAP_FRAMES_MODULE("corosnap.frames._cpython312", PyInit__cpython312, 0)
