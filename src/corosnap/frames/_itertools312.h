/* Builtin-iterator layouts that CPython 3.12 (checked: 3.12.1) lays out its
 * own way; the rest, and the code, are in _itertools.h.
 *
 * Restated field for field from 3.12's Modules/itertoolsmodule.c and
 * Python/bltinmodule.c.  What changed from 3.11: itertools became a
 * multi-phase module, and accumulate, tee and groupby keep a pointer to the
 * module state at their end; batched is new.
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
    void *state;                /* itertools_state * */
} cs_accumulate;

typedef struct {
    PyObject_HEAD
    PyObject *it;
    PyObject *old;
} cs_pairwise;

typedef struct {
    PyObject_HEAD
    PyObject *it;
    Py_ssize_t batch_size;
} cs_batched;

typedef struct {
    PyObject_HEAD
    PyObject *dataobj;          /* teedataobject * */
    int index;                  /* 0 <= index <= LINKCELLS */
    PyObject *weakreflist;
    void *state;                /* itertools_state * */
} cs_tee;

typedef struct {
    PyObject_HEAD
    PyObject *it;
    PyObject *keyfunc;
    PyObject *tgtkey;
    PyObject *currkey;
    PyObject *currvalue;
    const void *currgrouper;    /* borrowed reference */
    void *state;                /* itertools_state * */
} cs_groupby;

typedef struct {
    PyObject_HEAD
    PyObject *iters;
    PyObject *func;
} cs_map;

/* The range iterator: 3.12+ declare it, in internal/pycore_range.h (the
 * remaining range(start, start + len * step, step); nothing consumed is kept). */
#include "internal/pycore_range.h"
typedef _PyRangeIterObject cs_rangeiter;
#define CS_RANGEITER_INDEX 0
#include "internal/pycore_list.h"
#include "internal/pycore_tuple.h"
typedef _PyListIterObject cs_listiter;
typedef _PyTupleIterObject cs_tupleiter;

#define CS_IT_CYCLE_FIRSTPASS 1
#define CS_IT_BATCHED 1
#define CS_IT_BATCHED_STRICT 0    /* batched(..., strict=) is 3.13+ */
#define CS_IT_BATCHED_DONE_SIZE 0 /* exhausted: it cleared */
#define CS_IT_MAP_STRICT 0

#include "_itertools.h"

#endif
