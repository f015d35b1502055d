/* Builtin-iterator layouts that CPython 3.14 (checked: 3.14.10) and 3.15
 * (checked: 3.15.2) lay out their own way; the rest, and the code, are in
 * _itertools.h.
 *
 * Restated field for field from 3.14's Modules/itertoolsmodule.c and
 * Python/bltinmodule.c.  What changed from 3.13 (made for the free-threaded
 * build, and the same in the default build):
 * - cycle lost firstpass; index is -1 while the input is read the first
 *   time, then the position in saved;
 * - batched_next tests batch_size, which exhaustion sets to -1 (it also
 *   clears `it`), instead of testing `it`;
 * - map gained strict.
 * 3.15.2 has the same layouts and meanings (tests/test_iter_layouts.py
 * checks both).
 */
#ifndef COROSNAP_ITERTOOLS_VERSION_H
#define COROSNAP_ITERTOOLS_VERSION_H

#include <stdbool.h>

typedef struct {
    PyObject_HEAD
    PyObject *it;
    PyObject *saved;
    Py_ssize_t index;
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
    PyObject *result;
} cs_pairwise;

typedef struct {
    PyObject_HEAD
    PyObject *it;
    Py_ssize_t batch_size;
    bool strict;
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
    int strict;
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

#define CS_IT_CYCLE_FIRSTPASS 0   /* no firstpass; index -1 on the first pass */
#define CS_IT_BATCHED 1
#define CS_IT_BATCHED_STRICT 1
#define CS_IT_BATCHED_DONE_SIZE 1 /* exhausted: it cleared and batch_size -1 */
#define CS_IT_MAP_STRICT 1

#include "_itertools.h"

#endif
