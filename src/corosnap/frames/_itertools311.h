/* Builtin-iterator layouts that CPython 3.11 (checked: 3.11.7) lays out its
 * own way; the rest, and the code, are in _itertools.h.
 *
 * Restated field for field from 3.11's Modules/itertoolsmodule.c and
 * Python/bltinmodule.c (the types are static there; no module state yet).
 */
#ifndef COROSNAP_ITERTOOLS_VERSION_H
#define COROSNAP_ITERTOOLS_VERSION_H

typedef struct {
    PyObject_HEAD
    PyObject *it;
    PyObject *saved;
    Py_ssize_t index;
    int firstpass;
} cs_cycle;

typedef struct {
    PyObject_HEAD
    PyObject *total;
    PyObject *it;
    PyObject *binop;
    PyObject *initial;
} cs_accumulate;

typedef struct {
    PyObject_HEAD
    PyObject *it;
    PyObject *old;
} cs_pairwise;

typedef struct {
    PyObject_HEAD
    PyObject *dataobj;          /* teedataobject * */
    int index;                  /* 0 <= index <= LINKCELLS */
    PyObject *weakreflist;
} cs_tee;

typedef struct {
    PyObject_HEAD
    PyObject *it;
    PyObject *keyfunc;
    PyObject *tgtkey;
    PyObject *currkey;
    PyObject *currvalue;
    const void *currgrouper;    /* borrowed reference */
} cs_groupby;

typedef struct {
    PyObject_HEAD
    PyObject *iters;
    PyObject *func;
} cs_map;

/* Objects/rangeobject.c (also checked against 3.11.7's DWARF type):
 * range(start, start + len * step, step) with `index` items consumed. */
typedef struct {
    PyObject_HEAD
    long index;
    long start;
    long step;
    long len;
} cs_rangeiter;
#define CS_RANGEITER_INDEX 1

/* Objects/listobject.c and Objects/tupleobject.c (static there in 3.11; the
 * same fields as 3.12+'s _PyListIterObject and _PyTupleIterObject). */
typedef struct {
    PyObject_HEAD
    Py_ssize_t it_index;
    PyObject *it_seq;           /* NULL once exhausted */
} cs_listiter;
typedef cs_listiter cs_tupleiter;

#define CS_IT_CYCLE_FIRSTPASS 1   /* cycle has firstpass; index 0 on the first pass */
#define CS_IT_BATCHED 0           /* no itertools.batched before 3.12 */
#define CS_IT_BATCHED_STRICT 0
#define CS_IT_BATCHED_DONE_SIZE 0
#define CS_IT_MAP_STRICT 0        /* map(..., strict=) is 3.14+ */

#include "_itertools.h"

#endif
