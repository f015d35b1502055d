/* The position of builtin iterators: itertools, map, filter, reversed and
 * iter(callable, sentinel).
 *
 * What lives here: the struct layouts of these iterators that are the same on
 * every supported CPython (3.11-3.15), and the code that reads an iterator's
 * state out of its struct and writes a validated state into a fresh one.  The
 * layouts that differ between versions live in one small header per version
 * (_itertools311.h, _itertools312.h, _itertools313.h, _itertools314.h; 3.15
 * uses 3.14's), which defines them and the CS_IT_* switches below and then
 * includes this file.
 * What must never leak out: struct offsets and the interpreter's own
 * encodings of a state (3.14's index -1 for a cycle still on its first pass,
 * its batch_size -1 for an exhausted batched).  Callers see one abstract
 * state per iterator, the same on every version (the "fields" below).
 *
 * Why the structs are restated here: CPython keeps these objects private to
 * Modules/itertoolsmodule.c, Python/bltinmodule.c, Objects/enumobject.c and
 * Objects/iterobject.c; no header, internal or not, declares them.  Each one
 * below is copied field for field from that version's source (3.11-3.13 also
 * checked against the DWARF types of the pyenv builds); tests/test_iter_layouts.py
 * checks on every version that sizeof() of each equals the type's
 * __basicsize__, and that reading known objects gives the expected state
 * (on 3.11 also: the same state as the type's own __reduce__).
 *
 * How a restore works (see corosnap/codec/_iterators.py): the codec makes a
 * fresh object through the type's public constructor with inert arguments
 * (itertools.chain(), itertools.islice((), 0), ...), registers it so that
 * cycles through it work, decodes the fields, then calls write(obj, fields).
 * write() checks the type of every field and every index against the rest of
 * the state *before* it changes anything, so a hostile blob can at worst get
 * a TypeError/ValueError; it then stores new references and releases the old
 * ones last (their destructors see a consistent object).
 *
 * The abstract state ("fields") of each kind, as a tuple; an empty tuple is an
 * exhausted iterator, NULL is the frames NULL sentinel:
 *   count          (cnt)  fast mode, an int | (start, step)  slow mode
 *   repeat         (element)  forever | (element, times_left)
 *   cycle          (saved, index)  cycling over saved | (saved, 0, it) on the
 *                  first pass | (saved, 0, it, True) 3.11-3.13 after __setstate__
 *   islice         () | (it, next, stop, step, cnt)
 *   chain          () | (source) | (source, active)
 *   zip_longest    (fillvalue, it_or_NULL, ...)  all NULL once exhausted
 *   accumulate     (it, initial, func_or_None) | (..., total)
 *   pairwise       () | (it) | (it, old)
 *   batched        () | (it, n) | (it, n, True)  3.13+: strict
 *   compress       (data, selectors)
 *   dropwhile      (func, it) | (func, it, True)  dropping has stopped
 *   takewhile      (func, it) | (func, it, True)  taking has stopped
 *   filterfalse    (func, it)        starmap (func, it)        filter (func, it)
 *   _tee           (dataobj, index)
 *   _tee_dataobject  read: (*values, nextlink_or_NULL, it); written in three
 *                  stages, (0, values), (1, nextlink_or_NULL), (2, it), so that
 *                  a tee met while decoding the source iterator already sees
 *                  the values (the source of m235-style tees holds its tees)
 *   groupby        (it, keyfunc) | (it, keyfunc, tgtkey)
 *                  | (it, keyfunc, tgtkey, currkey, currvalue)
 *   _grouper       (parent, tgtkey) | (parent, tgtkey, True)  the current group
 *   product        () | (pools) not started | (pools, *indices)
 *   combinations, combinations_with_replacement
 *                  () | (pool, r) not started | (pool, r, *indices)
 *   permutations   () | (pool, r) | (pool, r, *indices, *cycles)
 *   map            (func, *iters) | (func, True, *iters)  3.14+: strict
 *   reversed       () | (seq, index)
 *   callable_iterator  () | (callable, sentinel)
 */
#ifndef COROSNAP_ITERTOOLS_H
#define COROSNAP_ITERTOOLS_H

#if !defined(CS_IT_CYCLE_FIRSTPASS) || !defined(CS_IT_BATCHED) || \
    !defined(CS_IT_BATCHED_STRICT) || !defined(CS_IT_BATCHED_DONE_SIZE) || \
    !defined(CS_IT_MAP_STRICT)
#error "include a per-version _itertools3XX.h, not _itertools.h"
#endif

/* ---- layouts shared by 3.11-3.15 ----------------------------------------
 * Field names are CPython's.  Modules/itertoolsmodule.c: */

typedef struct {
    PyObject_HEAD
    Py_ssize_t cnt;
    PyObject *long_cnt;
    PyObject *long_step;
} cs_count;

typedef struct {
    PyObject_HEAD
    PyObject *element;
    Py_ssize_t cnt;
} cs_repeat;

typedef struct {
    PyObject_HEAD
    PyObject *it;
    Py_ssize_t next;
    Py_ssize_t stop;
    Py_ssize_t step;
    Py_ssize_t cnt;
} cs_islice;

typedef struct {
    PyObject_HEAD
    PyObject *source;
    PyObject *active;
} cs_chain;

typedef struct {
    PyObject_HEAD
    Py_ssize_t tuplesize;
    Py_ssize_t numactive;
    PyObject *ittuple;
    PyObject *result;
    PyObject *fillvalue;
} cs_ziplongest;

typedef struct {
    PyObject_HEAD
    PyObject *data;
    PyObject *selectors;
} cs_compress;

typedef struct {
    PyObject_HEAD
    PyObject *func;
    PyObject *it;
    long start;
} cs_dropwhile;

typedef struct {
    PyObject_HEAD
    PyObject *func;
    PyObject *it;
    long stop;
} cs_takewhile;

/* filterfalse and starmap; filter (Python/bltinmodule.c) is the same. */
typedef struct {
    PyObject_HEAD
    PyObject *func;
    PyObject *it;
} cs_funcit;

#define CS_LINKCELLS 57

typedef struct {
    PyObject_HEAD
    PyObject *it;
    int numread;                /* 0 <= numread <= LINKCELLS */
    int running;
    PyObject *nextlink;
    PyObject *(values[CS_LINKCELLS]);   /* only [0, numread) are initialized */
} cs_teedata;

typedef struct {
    PyObject_HEAD
    PyObject *parent;
    PyObject *tgtkey;
} cs_grouper;

typedef struct {
    PyObject_HEAD
    PyObject *pools;
    Py_ssize_t *indices;
    PyObject *result;
    int stopped;
} cs_product;

/* combinations and combinations_with_replacement (cwrobject) */
typedef struct {
    PyObject_HEAD
    PyObject *pool;
    Py_ssize_t *indices;
    PyObject *result;
    Py_ssize_t r;
    int stopped;
} cs_combinations;

typedef struct {
    PyObject_HEAD
    PyObject *pool;
    Py_ssize_t *indices;
    Py_ssize_t *cycles;
    PyObject *result;
    Py_ssize_t r;
    int stopped;
} cs_permutations;

/* Objects/enumobject.c */
typedef struct {
    PyObject_HEAD
    Py_ssize_t index;
    PyObject *seq;
} cs_reversed;

/* Objects/iterobject.c */
typedef struct {
    PyObject_HEAD
    PyObject *it_callable;
    PyObject *it_sentinel;
} cs_calliter;

/* ---- kinds ----------------------------------------------------------------*/

enum {
    CS_IT_COUNT, CS_IT_REPEAT, CS_IT_CYCLE, CS_IT_ISLICE, CS_IT_CHAIN,
    CS_IT_ZIPLONGEST, CS_IT_ACCUMULATE, CS_IT_PAIRWISE, CS_IT_BATCHED_KIND,
    CS_IT_COMPRESS, CS_IT_DROPWHILE, CS_IT_TAKEWHILE, CS_IT_FILTERFALSE,
    CS_IT_STARMAP, CS_IT_TEE, CS_IT_TEEDATA, CS_IT_GROUPBY, CS_IT_GROUPER,
    CS_IT_PRODUCT, CS_IT_PERMUTATIONS, CS_IT_COMBINATIONS, CS_IT_CWR,
    CS_IT_MAP, CS_IT_FILTER, CS_IT_REVERSED, CS_IT_CALLITER, CS_IT_NKINDS
};

/* The name each kind has in its module (itertools, or builtins), and the
 * size of the struct restated for it (0: no such type on this version). */
static const struct {
    const char *name;
    Py_ssize_t size;
} cs_it_kinds[CS_IT_NKINDS] = {
    {"count", sizeof(cs_count)},
    {"repeat", sizeof(cs_repeat)},
    {"cycle", sizeof(cs_cycle)},
    {"islice", sizeof(cs_islice)},
    {"chain", sizeof(cs_chain)},
    {"zip_longest", sizeof(cs_ziplongest)},
    {"accumulate", sizeof(cs_accumulate)},
    {"pairwise", sizeof(cs_pairwise)},
#if CS_IT_BATCHED
    {"batched", sizeof(cs_batched)},
#else
    {"batched", 0},
#endif
    {"compress", sizeof(cs_compress)},
    {"dropwhile", sizeof(cs_dropwhile)},
    {"takewhile", sizeof(cs_takewhile)},
    {"filterfalse", sizeof(cs_funcit)},
    {"starmap", sizeof(cs_funcit)},
    {"_tee", sizeof(cs_tee)},
    {"_tee_dataobject", sizeof(cs_teedata)},
    {"groupby", sizeof(cs_groupby)},
    {"_grouper", sizeof(cs_grouper)},
    {"product", sizeof(cs_product)},
    {"permutations", sizeof(cs_permutations)},
    {"combinations", sizeof(cs_combinations)},
    {"combinations_with_replacement", sizeof(cs_combinations)},
    {"map", sizeof(cs_map)},
    {"filter", sizeof(cs_funcit)},
    {"reversed", sizeof(cs_reversed)},
    {"callable_iterator", sizeof(cs_calliter)},
};

#define CS_IT_FIRST_BUILTIN CS_IT_MAP

/* The type of each kind, looked up once: itertools' types by name, the
 * builtins from the C API's exported type objects. */
static PyTypeObject *cs_it_types[CS_IT_NKINDS];
static int cs_it_ready = 0;

static int
cs_it_init(void)
{
    if (cs_it_ready) return 0;
    PyObject *mod = PyImport_ImportModule("itertools");
    if (mod == NULL) return -1;
    for (int k = 0; k < CS_IT_FIRST_BUILTIN; k++) {
        if (cs_it_kinds[k].size == 0) {
            cs_it_types[k] = NULL;
            continue;
        }
        PyObject *t = PyObject_GetAttrString(mod, cs_it_kinds[k].name);
        if (t == NULL || !PyType_Check(t)) {
            Py_XDECREF(t);
            Py_DECREF(mod);
            if (!PyErr_Occurred()) {
                PyErr_Format(PyExc_SystemError, "itertools.%s is not a type",
                             cs_it_kinds[k].name);
            }
            return -1;
        }
        cs_it_types[k] = (PyTypeObject *)t;   /* kept for the process's life */
    }
    Py_DECREF(mod);
    cs_it_types[CS_IT_MAP] = &PyMap_Type;
    cs_it_types[CS_IT_FILTER] = &PyFilter_Type;
    cs_it_types[CS_IT_REVERSED] = &PyReversed_Type;
    cs_it_types[CS_IT_CALLITER] = &PyCallIter_Type;
    cs_it_ready = 1;
    return 0;
}

/* The kind of obj (exact type only: a subclass may add fields and
 * behaviour), or -1 with TypeError. */
static int
cs_it_kind(PyObject *obj)
{
    if (cs_it_init() < 0) return -1;
    PyTypeObject *t = Py_TYPE(obj);
    for (int k = 0; k < CS_IT_NKINDS; k++) {
        if (cs_it_types[k] != NULL && cs_it_types[k] == t) return k;
    }
    PyErr_Format(PyExc_TypeError, "not a builtin iterator corosnap knows: %.100s",
                 t->tp_name);
    return -1;
}

/* ---- checks (before anything is written) ----------------------------------*/

static int
cs_nfields(Py_ssize_t n, int ok, int kind)
{
    if (!ok) {
        PyErr_Format(PyExc_ValueError, "%s: %zd fields is not a state it can be in",
                     cs_it_kinds[kind].name, n);
        return -1;
    }
    return 0;
}

static int
cs_want_iter(PyObject *v, int kind, const char *what)
{
    if (!PyIter_Check(v)) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be an iterator, not %.100s",
                     cs_it_kinds[kind].name, what, Py_TYPE(v)->tp_name);
        return -1;
    }
    return 0;
}

/* An iterator or the NULL sentinel (stored as NULL). */
static int
cs_want_iter_or_null(PyObject *v, int kind, const char *what)
{
    return v == corosnap_NULL ? 0 : cs_want_iter(v, kind, what);
}

/* An exact int in [lo, hi]. */
static int
cs_want_ssize(PyObject *v, Py_ssize_t lo, Py_ssize_t hi, int kind, const char *what,
              Py_ssize_t *out)
{
    if (!PyLong_CheckExact(v)) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be an int, not %.100s",
                     cs_it_kinds[kind].name, what, Py_TYPE(v)->tp_name);
        return -1;
    }
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (x == -1 && PyErr_Occurred()) return -1;
    if (overflow || x < lo || x > hi) {
        PyErr_Format(PyExc_ValueError, "%s: %s %R is out of range [%zd, %zd]",
                     cs_it_kinds[kind].name, what, v, lo, hi);
        return -1;
    }
    *out = (Py_ssize_t)x;
    return 0;
}

/* A flag field: present only when set, and then exactly True. */
static int
cs_want_true(PyObject *v, int kind, const char *what)
{
    if (v != Py_True) {
        PyErr_Format(PyExc_ValueError, "%s: %s must be True when present, not %R",
                     cs_it_kinds[kind].name, what, v);
        return -1;
    }
    return 0;
}

static int
cs_want_type(PyObject *v, PyTypeObject *t, int kind, const char *what)
{
    if (Py_TYPE(v) != t) {
        PyErr_Format(PyExc_TypeError, "%s: %s must be a %.100s, not %.100s",
                     cs_it_kinds[kind].name, what, t->tp_name, Py_TYPE(v)->tp_name);
        return -1;
    }
    return 0;
}

/* read() found a state CPython never leaves such an object in (or one only
 * another build, such as the free-threaded one, does). */
static PyObject *
cs_unexpected(int kind, const char *why)
{
    PyErr_Format(PyExc_ValueError, "%s in a state corosnap does not know how to "
                 "capture: %s", cs_it_kinds[kind].name, why);
    return NULL;
}

/* ---- writing: swap in new references, release the old ones last ----------*/

#define CS_TRASH_MAX 8

typedef struct {
    PyObject *items[CS_TRASH_MAX];
    int n;
} cs_trash;

/* *slot = value (a borrowed reference, or NULL); the old value is kept in
 * `t` until cs_empty().  The NULL sentinel is an ordinary object here: only
 * the fields documented as NULL-able translate it (a blob can name the
 * sentinel as a global, so it must never become NULL where CPython does not
 * expect one). */
static void
cs_put(PyObject **slot, PyObject *value, cs_trash *t)
{
    PyObject *old = *slot;
    *slot = Py_XNewRef(value);
    assert(t->n < CS_TRASH_MAX);
    t->items[t->n++] = old;
}

/* The same, taking over a new reference. */
static void
cs_put_new(PyObject **slot, PyObject *value, cs_trash *t)
{
    PyObject *old = *slot;
    *slot = value;
    assert(t->n < CS_TRASH_MAX);
    t->items[t->n++] = old;
}

static void
cs_empty(cs_trash *t)
{
    for (int i = 0; i < t->n; i++) {
        Py_XDECREF(t->items[i]);
    }
    t->n = 0;
}

/* A reference for a tuple: NULL becomes the NULL sentinel. */
static PyObject *
cs_ref(PyObject *v)
{
    return Py_NewRef(v != NULL ? v : corosnap_NULL);
}

/* ---- the kinds whose struct is shared by every version ---------------------*/

static PyObject *
cs_count_read(PyObject *obj)
{
    cs_count *c = (cs_count *)obj;
    if (c->long_cnt == NULL) {
        /* Fast mode: counts in cnt, and the step is always the int 1. */
        if (c->long_step == NULL || !PyLong_CheckExact(c->long_step) ||
            PyLong_AsLong(c->long_step) != 1) {
            PyErr_Clear();
            return cs_unexpected(CS_IT_COUNT, "fast mode with a step other than 1");
        }
        return Py_BuildValue("(n)", c->cnt);
    }
    if (c->cnt != PY_SSIZE_T_MAX || c->long_step == NULL) {
        return cs_unexpected(CS_IT_COUNT, "slow mode without its marker");
    }
    return PyTuple_Pack(2, c->long_cnt, c->long_step);
}

static int
cs_count_write(PyObject *obj, PyObject *const *f, Py_ssize_t n)
{
    cs_count *c = (cs_count *)obj;
    cs_trash t = {.n = 0};
    if (cs_nfields(n, n == 1 || n == 2, CS_IT_COUNT) < 0) return -1;
    if (n == 1) {
        Py_ssize_t cnt;
        if (cs_want_ssize(f[0], PY_SSIZE_T_MIN, PY_SSIZE_T_MAX, CS_IT_COUNT, "count",
                          &cnt) < 0) {
            return -1;
        }
        PyObject *one = PyLong_FromLong(1);
        if (one == NULL) return -1;
        c->cnt = cnt;
        cs_put(&c->long_cnt, NULL, &t);
        cs_put_new(&c->long_step, one, &t);
    }
    else {
        /* Slow mode: PyNumber_Add(long_cnt, long_step) on every step; the
         * constructor only takes numbers. */
        if (!PyNumber_Check(f[0]) || !PyNumber_Check(f[1])) {
            PyErr_Format(PyExc_TypeError, "count: start and step must be numbers, not "
                         "%.100s and %.100s", Py_TYPE(f[0])->tp_name,
                         Py_TYPE(f[1])->tp_name);
            return -1;
        }
        c->cnt = PY_SSIZE_T_MAX;
        cs_put(&c->long_cnt, f[0], &t);
        cs_put(&c->long_step, f[1], &t);
    }
    cs_empty(&t);
    return 0;
}

static PyObject *
cs_repeat_read(PyObject *obj)
{
    cs_repeat *r = (cs_repeat *)obj;
    if (r->cnt < -1) return cs_unexpected(CS_IT_REPEAT, "a negative count");
    if (r->cnt == -1) return PyTuple_Pack(1, r->element);
    return Py_BuildValue("(On)", r->element, r->cnt);
}

static int
cs_repeat_write(PyObject *obj, PyObject *const *f, Py_ssize_t n)
{
    cs_repeat *r = (cs_repeat *)obj;
    cs_trash t = {.n = 0};
    Py_ssize_t cnt = -1;
    if (cs_nfields(n, n == 1 || n == 2, CS_IT_REPEAT) < 0) return -1;
    if (n == 2 && cs_want_ssize(f[1], 0, PY_SSIZE_T_MAX, CS_IT_REPEAT, "times", &cnt) < 0) {
        return -1;
    }
    cs_put(&r->element, f[0], &t);
    r->cnt = cnt;
    cs_empty(&t);
    return 0;
}

static PyObject *
cs_islice_read(PyObject *obj)
{
    cs_islice *s = (cs_islice *)obj;
    if (s->it == NULL) return PyTuple_New(0);
    return Py_BuildValue("(Onnnn)", s->it, s->next, s->stop, s->step, s->cnt);
}

static int
cs_islice_write(PyObject *obj, PyObject *const *f, Py_ssize_t n)
{
    cs_islice *s = (cs_islice *)obj;
    cs_trash t = {.n = 0};
    Py_ssize_t next = 0, stop = 0, step = 1, cnt = 0;
    if (cs_nfields(n, n == 0 || n == 5, CS_IT_ISLICE) < 0) return -1;
    if (n == 5) {
        /* The constructor's ranges; islice_next is safe for any of them. */
        if (cs_want_iter(f[0], CS_IT_ISLICE, "the iterator") < 0 ||
            cs_want_ssize(f[1], 0, PY_SSIZE_T_MAX, CS_IT_ISLICE, "next", &next) < 0 ||
            cs_want_ssize(f[2], -1, PY_SSIZE_T_MAX, CS_IT_ISLICE, "stop", &stop) < 0 ||
            cs_want_ssize(f[3], 1, PY_SSIZE_T_MAX, CS_IT_ISLICE, "step", &step) < 0 ||
            cs_want_ssize(f[4], 0, PY_SSIZE_T_MAX, CS_IT_ISLICE, "count", &cnt) < 0) {
            return -1;
        }
    }
    cs_put(&s->it, n == 5 ? f[0] : NULL, &t);
    s->next = next;
    s->stop = stop;
    s->step = step;
    s->cnt = cnt;
    cs_empty(&t);
    return 0;
}

static PyObject *
cs_chain_read(PyObject *obj)
{
    cs_chain *c = (cs_chain *)obj;
    /* Without a source the chain is done, whatever active holds. */
    if (c->source == NULL) return PyTuple_New(0);
    if (c->active == NULL) return PyTuple_Pack(1, c->source);
    return PyTuple_Pack(2, c->source, c->active);
}

static int
cs_chain_write(PyObject *obj, PyObject *const *f, Py_ssize_t n)
{
    cs_chain *c = (cs_chain *)obj;
    cs_trash t = {.n = 0};
    if (cs_nfields(n, n >= 0 && n <= 2, CS_IT_CHAIN) < 0) return -1;
    /* chain_next calls tp_iternext of both without checking: iterators only. */
    if ((n >= 1 && cs_want_iter(f[0], CS_IT_CHAIN, "the source") < 0) ||
        (n == 2 && cs_want_iter(f[1], CS_IT_CHAIN, "the active iterator") < 0)) {
        return -1;
    }
    cs_put(&c->source, n >= 1 ? f[0] : NULL, &t);
    cs_put(&c->active, n == 2 ? f[1] : NULL, &t);
    cs_empty(&t);
    return 0;
}

static PyObject *
cs_ziplongest_read(PyObject *obj)
{
    cs_ziplongest *z = (cs_ziplongest *)obj;
    /* The tuple of iterators holds NULL for each one already exhausted (it
     * must never reach Python code as it is). */
    if (z->ittuple == NULL || !PyTuple_CheckExact(z->ittuple) ||
        PyTuple_GET_SIZE(z->ittuple) != z->tuplesize || z->fillvalue == NULL) {
        return cs_unexpected(CS_IT_ZIPLONGEST, "its iterators do not match its size");
    }
    Py_ssize_t n = z->tuplesize, active = 0;
    PyObject *out = PyTuple_New(1 + n);
    if (out == NULL) return NULL;
    PyTuple_SET_ITEM(out, 0, Py_NewRef(z->fillvalue));
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *it = PyTuple_GET_ITEM(z->ittuple, i);
        if (it != NULL) active++;
        /* numactive 0: exhausted (the last iterator, or one that raised,
         * is still in the tuple). */
        PyTuple_SET_ITEM(out, 1 + i, cs_ref(z->numactive ? it : NULL));
    }
    if (z->numactive != 0 && z->numactive != active) {
        Py_DECREF(out);
        return cs_unexpected(CS_IT_ZIPLONGEST, "its count of active iterators is off");
    }
    return out;
}

static int
cs_ziplongest_write(PyObject *obj, PyObject *const *f, Py_ssize_t n)
{
    cs_ziplongest *z = (cs_ziplongest *)obj;
    cs_trash t = {.n = 0};
    if (cs_nfields(n, n >= 1, CS_IT_ZIPLONGEST) < 0) return -1;
    Py_ssize_t size = n - 1, active = 0;
    for (Py_ssize_t i = 0; i < size; i++) {
        if (cs_want_iter_or_null(f[1 + i], CS_IT_ZIPLONGEST, "each input") < 0) return -1;
        active += f[1 + i] != corosnap_NULL;
    }
    PyObject *ittuple = PyTuple_New(size);
    PyObject *result = PyTuple_New(size);
    if (ittuple == NULL || result == NULL) {
        Py_XDECREF(ittuple);
        Py_XDECREF(result);
        return -1;
    }
    for (Py_ssize_t i = 0; i < size; i++) {
        PyObject *it = f[1 + i];
        /* An exhausted input stays NULL, as zip_longest_next leaves it. */
        if (it != corosnap_NULL) PyTuple_SET_ITEM(ittuple, i, Py_NewRef(it));
        PyTuple_SET_ITEM(result, i, Py_NewRef(Py_None));
    }
    z->tuplesize = size;
    z->numactive = active;
    cs_put_new(&z->ittuple, ittuple, &t);
    cs_put_new(&z->result, result, &t);
    cs_put(&z->fillvalue, f[0], &t);
    cs_empty(&t);
    return 0;
}

static PyObject *
cs_compress_read(PyObject *obj)
{
    cs_compress *c = (cs_compress *)obj;
    if (c->data == NULL || c->selectors == NULL) {
        return cs_unexpected(CS_IT_COMPRESS, "without its inputs");
    }
    return PyTuple_Pack(2, c->data, c->selectors);
}

static int
cs_compress_write(PyObject *obj, PyObject *const *f, Py_ssize_t n)
{
    cs_compress *c = (cs_compress *)obj;
    cs_trash t = {.n = 0};
    if (cs_nfields(n, n == 2, CS_IT_COMPRESS) < 0 ||
        cs_want_iter(f[0], CS_IT_COMPRESS, "data") < 0 ||
        cs_want_iter(f[1], CS_IT_COMPRESS, "selectors") < 0) {
        return -1;
    }
    cs_put(&c->data, f[0], &t);
    cs_put(&c->selectors, f[1], &t);
    cs_empty(&t);
    return 0;
}

/* dropwhile and takewhile: (func, it) and a flag that only ever goes 0 -> 1. */
static PyObject *
cs_while_read(PyObject *obj, int kind)
{
    PyObject *func, *it;
    long flag;
    if (kind == CS_IT_DROPWHILE) {
        cs_dropwhile *d = (cs_dropwhile *)obj;
        func = d->func, it = d->it, flag = d->start;
    }
    else {
        cs_takewhile *d = (cs_takewhile *)obj;
        func = d->func, it = d->it, flag = d->stop;
    }
    if (func == NULL || it == NULL || (flag != 0 && flag != 1)) {
        return cs_unexpected(kind, "its flag is neither 0 nor 1");
    }
    return flag ? PyTuple_Pack(3, func, it, Py_True) : PyTuple_Pack(2, func, it);
}

static int
cs_while_write(PyObject *obj, PyObject *const *f, Py_ssize_t n, int kind)
{
    cs_trash t = {.n = 0};
    if (cs_nfields(n, n == 2 || n == 3, kind) < 0 ||
        cs_want_iter(f[1], kind, "the iterator") < 0 ||
        (n == 3 && cs_want_true(f[2], kind, "the flag") < 0)) {
        return -1;
    }
    if (kind == CS_IT_DROPWHILE) {
        cs_dropwhile *d = (cs_dropwhile *)obj;
        cs_put(&d->func, f[0], &t);
        cs_put(&d->it, f[1], &t);
        d->start = n == 3;
    }
    else {
        cs_takewhile *d = (cs_takewhile *)obj;
        cs_put(&d->func, f[0], &t);
        cs_put(&d->it, f[1], &t);
        d->stop = n == 3;
    }
    cs_empty(&t);
    return 0;
}

/* filterfalse, starmap, filter: (func, it). */
static PyObject *
cs_funcit_read(PyObject *obj, int kind)
{
    cs_funcit *d = (cs_funcit *)obj;
    if (d->func == NULL || d->it == NULL) return cs_unexpected(kind, "without its parts");
    return PyTuple_Pack(2, d->func, d->it);
}

static int
cs_funcit_write(PyObject *obj, PyObject *const *f, Py_ssize_t n, int kind)
{
    cs_funcit *d = (cs_funcit *)obj;
    cs_trash t = {.n = 0};
    if (cs_nfields(n, n == 2, kind) < 0 || cs_want_iter(f[1], kind, "the iterator") < 0) {
        return -1;
    }
    cs_put(&d->func, f[0], &t);
    cs_put(&d->it, f[1], &t);
    cs_empty(&t);
    return 0;
}

/* ---- the kinds whose layout or meaning changed between versions ----------*/

static PyObject *
cs_cycle_read(PyObject *obj)
{
    cs_cycle *c = (cs_cycle *)obj;
    if (c->saved == NULL || !PyList_CheckExact(c->saved)) {
        return cs_unexpected(CS_IT_CYCLE, "without its saved items");
    }
    if (c->it == NULL) {
        /* Cycling over saved; index is the next item's position. */
        if (c->index < 0 || (c->index > 0 && c->index >= PyList_GET_SIZE(c->saved))) {
            return cs_unexpected(CS_IT_CYCLE, "its position is past its items");
        }
        return Py_BuildValue("(On)", c->saved, c->index);
    }
#if CS_IT_CYCLE_FIRSTPASS
    /* 3.11-3.13: index stays 0 during the first pass; firstpass is only
     * ever set by __setstate__ (items saved already: do not save again). */
    if (c->index != 0) return cs_unexpected(CS_IT_CYCLE, "a position on its first pass");
    if (c->firstpass) return Py_BuildValue("(OiOO)", c->saved, 0, c->it, Py_True);
#else
    /* 3.14+: index is -1 until the input is exhausted. */
    if (c->index != -1) return cs_unexpected(CS_IT_CYCLE, "a position on its first pass");
#endif
    return Py_BuildValue("(OiO)", c->saved, 0, c->it);
}

static int
cs_cycle_write(PyObject *obj, PyObject *const *f, Py_ssize_t n)
{
    cs_cycle *c = (cs_cycle *)obj;
    cs_trash t = {.n = 0};
    Py_ssize_t index;
    if (cs_nfields(n, n >= 2 && n <= 2 + 1 + CS_IT_CYCLE_FIRSTPASS, CS_IT_CYCLE) < 0) {
        return -1;
    }
    if (!PyList_CheckExact(f[0])) {
        PyErr_Format(PyExc_TypeError, "cycle: the saved items must be a list, not %.100s",
                     Py_TYPE(f[0])->tp_name);
        return -1;
    }
    /* cycle_next indexes saved without a bounds check: the index must be
     * inside it, and nothing but the cycle may ever change the list, so the
     * cycle gets its own copy. */
    Py_ssize_t size = PyList_GET_SIZE(f[0]);
    if (cs_want_ssize(f[1], 0, n == 2 ? (size > 0 ? size - 1 : 0) : 0, CS_IT_CYCLE,
                      "the position", &index) < 0 ||
        (n >= 3 && cs_want_iter(f[2], CS_IT_CYCLE, "the iterator") < 0) ||
        (n == 4 && cs_want_true(f[3], CS_IT_CYCLE, "the first-pass flag") < 0)) {
        return -1;
    }
    PyObject *saved = PyList_GetSlice(f[0], 0, size);
    if (saved == NULL) return -1;
    cs_put_new(&c->saved, saved, &t);
    cs_put(&c->it, n >= 3 ? f[2] : NULL, &t);
#if CS_IT_CYCLE_FIRSTPASS
    c->index = index;
    c->firstpass = n == 4;
#else
    c->index = n >= 3 ? -1 : index;
#endif
    cs_empty(&t);
    return 0;
}

static PyObject *
cs_accumulate_read(PyObject *obj)
{
    cs_accumulate *a = (cs_accumulate *)obj;
    if (a->it == NULL || a->initial == NULL) {
        return cs_unexpected(CS_IT_ACCUMULATE, "without its input");
    }
    /* binop NULL means +; initial is None once used (or never given). */
    PyObject *binop = a->binop != NULL ? a->binop : Py_None;
    if (a->total == NULL) return PyTuple_Pack(3, a->it, a->initial, binop);
    return PyTuple_Pack(4, a->it, a->initial, binop, a->total);
}

static int
cs_accumulate_write(PyObject *obj, PyObject *const *f, Py_ssize_t n)
{
    cs_accumulate *a = (cs_accumulate *)obj;
    cs_trash t = {.n = 0};
    if (cs_nfields(n, n == 3 || n == 4, CS_IT_ACCUMULATE) < 0 ||
        cs_want_iter(f[0], CS_IT_ACCUMULATE, "the iterator") < 0) {
        return -1;
    }
    if (n == 4 && f[1] != Py_None) {
        /* accumulate_next overwrites total with initial without releasing
         * it: an unused initial only comes before any total. */
        PyErr_SetString(PyExc_ValueError, "accumulate: a total and an unused initial");
        return -1;
    }
    cs_put(&a->it, f[0], &t);
    cs_put(&a->initial, f[1], &t);
    cs_put(&a->binop, f[2] == Py_None ? NULL : f[2], &t);
    cs_put(&a->total, n == 4 ? f[3] : NULL, &t);
    cs_empty(&t);
    return 0;
}

static PyObject *
cs_pairwise_read(PyObject *obj)
{
    cs_pairwise *p = (cs_pairwise *)obj;
    if (p->it == NULL) return PyTuple_New(0);
    if (p->old == NULL) return PyTuple_Pack(1, p->it);
    return PyTuple_Pack(2, p->it, p->old);
}

static int
cs_pairwise_write(PyObject *obj, PyObject *const *f, Py_ssize_t n)
{
    cs_pairwise *p = (cs_pairwise *)obj;
    cs_trash t = {.n = 0};
    if (cs_nfields(n, n >= 0 && n <= 2, CS_IT_PAIRWISE) < 0 ||
        (n >= 1 && cs_want_iter(f[0], CS_IT_PAIRWISE, "the iterator") < 0)) {
        return -1;
    }
    cs_put(&p->it, n >= 1 ? f[0] : NULL, &t);
    cs_put(&p->old, n == 2 ? f[1] : NULL, &t);
    /* 3.13+'s reusable result tuple is the constructor's fresh (None, None). */
    cs_empty(&t);
    return 0;
}

#if CS_IT_BATCHED
static PyObject *
cs_batched_read(PyObject *obj)
{
    cs_batched *b = (cs_batched *)obj;
    /* Exhausted: it is cleared (3.14+ also sets batch_size to -1). */
    if (b->it == NULL || b->batch_size < 1) return PyTuple_New(0);
#if CS_IT_BATCHED_STRICT
    if (b->strict) return Py_BuildValue("(OnO)", b->it, b->batch_size, Py_True);
#endif
    return Py_BuildValue("(On)", b->it, b->batch_size);
}

static int
cs_batched_write(PyObject *obj, PyObject *const *f, Py_ssize_t n)
{
    cs_batched *b = (cs_batched *)obj;
    cs_trash t = {.n = 0};
    Py_ssize_t size = 1;
    if (cs_nfields(n, n == 0 || n == 2 || (CS_IT_BATCHED_STRICT && n == 3),
                   CS_IT_BATCHED_KIND) < 0) {
        return -1;
    }
    if (n >= 2 && (cs_want_iter(f[0], CS_IT_BATCHED_KIND, "the iterator") < 0 ||
                   cs_want_ssize(f[1], 1, PY_SSIZE_T_MAX, CS_IT_BATCHED_KIND, "n",
                                 &size) < 0 ||
                   (n == 3 && cs_want_true(f[2], CS_IT_BATCHED_KIND, "strict") < 0))) {
        return -1;
    }
    cs_put(&b->it, n >= 2 ? f[0] : NULL, &t);
#if CS_IT_BATCHED_DONE_SIZE
    /* 3.14+ batched_next tests batch_size, not it: an exhausted one has
     * both cleared. */
    b->batch_size = n == 0 ? -1 : size;
#else
    b->batch_size = size;
#endif
#if CS_IT_BATCHED_STRICT
    b->strict = n == 3;
#endif
    cs_empty(&t);
    return 0;
}
#endif

/* ---- tee ------------------------------------------------------------------*/

static PyObject *
cs_tee_read(PyObject *obj)
{
    cs_tee *to = (cs_tee *)obj;
    if (to->dataobj == NULL || to->index < 0 || to->index > CS_LINKCELLS) {
        return cs_unexpected(CS_IT_TEE, "without its buffer");
    }
    return Py_BuildValue("(Oi)", (PyObject *)to->dataobj, to->index);
}

static int
cs_tee_write(PyObject *obj, PyObject *const *f, Py_ssize_t n)
{
    cs_tee *to = (cs_tee *)obj;
    cs_trash t = {.n = 0};
    Py_ssize_t index;
    if (cs_nfields(n, n == 2, CS_IT_TEE) < 0 ||
        cs_want_type(f[0], cs_it_types[CS_IT_TEEDATA], CS_IT_TEE, "the buffer") < 0) {
        return -1;
    }
    /* tee_next reads values[index] when index < numread and otherwise
     * stores the next value *at* index: a position past what was read would
     * leave uninitialized cells behind it. */
    int numread = ((cs_teedata *)f[0])->numread;
    if (cs_want_ssize(f[1], 0, numread, CS_IT_TEE, "the position in its buffer",
                      &index) < 0) {
        return -1;
    }
    cs_put(&to->dataobj, f[0], &t);
    to->index = (int)index;
    cs_empty(&t);
    return 0;
}

static PyObject *
cs_teedata_read(PyObject *obj)
{
    cs_teedata *d = (cs_teedata *)obj;
    if (d->running) {
        /* Its source is running right now (a tee advanced from inside the
         * iterator it copies); its state is mid-change. */
        return cs_unexpected(CS_IT_TEEDATA, "its source iterator is running");
    }
    if (d->numread < 0 || d->numread > CS_LINKCELLS || d->it == NULL ||
        (d->nextlink != NULL && d->numread != CS_LINKCELLS)) {
        return cs_unexpected(CS_IT_TEEDATA, "its buffer is inconsistent");
    }
    PyObject *out = PyTuple_New(d->numread + 2);
    if (out == NULL) return NULL;
    for (int i = 0; i < d->numread; i++) {
        PyTuple_SET_ITEM(out, i, Py_NewRef(d->values[i]));
    }
    PyTuple_SET_ITEM(out, d->numread, cs_ref(d->nextlink));
    PyTuple_SET_ITEM(out, d->numread + 1, Py_NewRef(d->it));
    return out;
}

/* (stage, payload); see the top of this file. */
static int
cs_teedata_write(PyObject *obj, PyObject *const *f, Py_ssize_t n)
{
    cs_teedata *d = (cs_teedata *)obj;
    cs_trash t = {.n = 0};
    Py_ssize_t stage;
    if (cs_nfields(n, n == 2, CS_IT_TEEDATA) < 0 ||
        cs_want_ssize(f[0], 0, 2, CS_IT_TEEDATA, "the stage", &stage) < 0) {
        return -1;
    }
    if (d->running) {
        PyErr_SetString(PyExc_ValueError, "_tee_dataobject: its source is running");
        return -1;
    }
    if (stage == 0) {
        PyObject *values = f[1];
        if (!PyTuple_CheckExact(values) || PyTuple_GET_SIZE(values) > CS_LINKCELLS) {
            PyErr_Format(PyExc_ValueError, "_tee_dataobject: at most %d values",
                         CS_LINKCELLS);
            return -1;
        }
        if (d->numread != 0 || d->nextlink != NULL) {
            /* Only a fresh buffer is filled (the cells past numread are
             * uninitialized memory, not NULL). */
            PyErr_SetString(PyExc_ValueError, "_tee_dataobject: buffer already filled");
            return -1;
        }
        Py_ssize_t k = PyTuple_GET_SIZE(values);
        for (Py_ssize_t i = 0; i < k; i++) {
            d->values[i] = Py_NewRef(PyTuple_GET_ITEM(values, i));
        }
        d->numread = (int)k;
        return 0;
    }
    if (stage == 1) {
        PyObject *link = f[1];
        if (link != corosnap_NULL) {
            if (cs_want_type(link, cs_it_types[CS_IT_TEEDATA], CS_IT_TEEDATA,
                             "the next buffer") < 0) {
                return -1;
            }
            if (d->numread != CS_LINKCELLS || link == obj) {
                PyErr_SetString(PyExc_ValueError, "_tee_dataobject: a next buffer "
                                "only follows a full one");
                return -1;
            }
        }
        cs_put(&d->nextlink, link == corosnap_NULL ? NULL : link, &t);
        cs_empty(&t);
        return 0;
    }
    if (cs_want_iter(f[1], CS_IT_TEEDATA, "the source") < 0) return -1;
    cs_put(&d->it, f[1], &t);
    cs_empty(&t);
    return 0;
}

/* ---- groupby --------------------------------------------------------------*/

static PyObject *
cs_groupby_read(PyObject *obj)
{
    cs_groupby *g = (cs_groupby *)obj;
    if (g->it == NULL || g->keyfunc == NULL ||
        (g->currkey == NULL) != (g->currvalue == NULL) ||
        (g->tgtkey == NULL && g->currkey != NULL)) {
        return cs_unexpected(CS_IT_GROUPBY, "its keys are inconsistent");
    }
    if (g->tgtkey == NULL) return PyTuple_Pack(2, g->it, g->keyfunc);
    if (g->currkey == NULL) return PyTuple_Pack(3, g->it, g->keyfunc, g->tgtkey);
    return PyTuple_Pack(5, g->it, g->keyfunc, g->tgtkey, g->currkey, g->currvalue);
}

static int
cs_groupby_write(PyObject *obj, PyObject *const *f, Py_ssize_t n)
{
    cs_groupby *g = (cs_groupby *)obj;
    cs_trash t = {.n = 0};
    /* _grouper_next compares against currkey whenever currvalue is set: the
     * two are set and cleared together. */
    if (cs_nfields(n, n == 2 || n == 3 || n == 5, CS_IT_GROUPBY) < 0 ||
        cs_want_iter(f[0], CS_IT_GROUPBY, "the iterator") < 0) {
        return -1;
    }
    cs_put(&g->it, f[0], &t);
    cs_put(&g->keyfunc, f[1], &t);
    cs_put(&g->tgtkey, n >= 3 ? f[2] : NULL, &t);
    cs_put(&g->currkey, n == 5 ? f[3] : NULL, &t);
    cs_put(&g->currvalue, n == 5 ? f[4] : NULL, &t);
    /* currgrouper (a borrowed pointer) is left alone: the current _grouper
     * sets it when it is written, before or after its parent. */
    cs_empty(&t);
    return 0;
}

static PyObject *
cs_grouper_read(PyObject *obj)
{
    cs_grouper *g = (cs_grouper *)obj;
    if (g->parent == NULL || g->tgtkey == NULL ||
        !PyObject_TypeCheck(g->parent, cs_it_types[CS_IT_GROUPBY])) {
        return cs_unexpected(CS_IT_GROUPER, "without its groupby");
    }
    if (((cs_groupby *)g->parent)->currgrouper == (const void *)obj) {
        return PyTuple_Pack(3, g->parent, g->tgtkey, Py_True);
    }
    return PyTuple_Pack(2, g->parent, g->tgtkey);
}

static int
cs_grouper_write(PyObject *obj, PyObject *const *f, Py_ssize_t n)
{
    cs_grouper *g = (cs_grouper *)obj;
    cs_trash t = {.n = 0};
    if (cs_nfields(n, n == 2 || n == 3, CS_IT_GROUPER) < 0) return -1;
    if (!PyObject_TypeCheck(f[0], cs_it_types[CS_IT_GROUPBY])) {
        PyErr_Format(PyExc_TypeError, "_grouper: the parent must be a groupby, not %.100s",
                     Py_TYPE(f[0])->tp_name);
        return -1;
    }
    if (n == 3 && cs_want_true(f[2], CS_IT_GROUPER, "the current-group flag") < 0) {
        return -1;
    }
    cs_put(&g->parent, f[0], &t);
    cs_put(&g->tgtkey, f[1], &t);
    if (n == 3) {
        ((cs_groupby *)f[0])->currgrouper = obj;  /* borrowed, as CPython keeps it */
    }
    cs_empty(&t);
    return 0;
}

/* ---- combinatorics --------------------------------------------------------
 * Each keeps a malloc'ed index array (or two) and the last result tuple,
 * which it updates in place.  Not started: result is NULL and the indices
 * are the constructor's.  A restore builds the result from the pool and the
 * indices, exactly what the iterator's own next() keeps in it. */

static PyObject *
cs_pack_indices(PyObject *head, Py_ssize_t nhead, const Py_ssize_t *a, Py_ssize_t na,
                const Py_ssize_t *b, Py_ssize_t nb)
{
    PyObject *out = PyTuple_New(nhead + na + nb);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < nhead; i++) {
        PyTuple_SET_ITEM(out, i, Py_NewRef(PyTuple_GET_ITEM(head, i)));
    }
    for (Py_ssize_t i = 0; i < na + nb; i++) {
        PyObject *v = PyLong_FromSsize_t(i < na ? a[i] : b[i - na]);
        if (v == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, nhead + i, v);
    }
    return out;
}

/* n ints from f into a new PyMem array, each in [0, hi_i) where hi_i is
 * bound(i). */
static Py_ssize_t *
cs_read_indices(PyObject *const *f, Py_ssize_t n, int kind, const char *what,
                Py_ssize_t (*bound)(void *, Py_ssize_t), void *ctx)
{
    Py_ssize_t *out = PyMem_New(Py_ssize_t, n > 0 ? n : 1);
    if (out == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (cs_want_ssize(f[i], 0, bound(ctx, i) - 1, kind, what, &out[i]) < 0) {
            PyMem_Free(out);
            return NULL;
        }
    }
    return out;
}

static int
cs_want_pool(PyObject *v, int kind)
{
    if (!PyTuple_CheckExact(v)) {
        PyErr_Format(PyExc_TypeError, "%s: the pool must be a tuple, not %.100s",
                     cs_it_kinds[kind].name, Py_TYPE(v)->tp_name);
        return -1;
    }
    return 0;
}

static Py_ssize_t
cs_bound_pool(void *pools, Py_ssize_t i)
{
    return PyTuple_GET_SIZE(PyTuple_GET_ITEM((PyObject *)pools, i));
}

static Py_ssize_t
cs_bound_n(void *n, Py_ssize_t i)
{
    return *(Py_ssize_t *)n;
}

static PyObject *
cs_product_read(PyObject *obj)
{
    cs_product *p = (cs_product *)obj;
    if (p->pools == NULL || !PyTuple_CheckExact(p->pools)) {
        return cs_unexpected(CS_IT_PRODUCT, "without its pools");
    }
    Py_ssize_t npools = PyTuple_GET_SIZE(p->pools);
    /* Started with no pools, it has nothing left either. */
    if (p->stopped || (p->result != NULL && npools == 0)) return PyTuple_New(0);
    if (p->result == NULL) {
        for (Py_ssize_t i = 0; i < npools; i++) {
            if (p->indices[i] != 0) {
                return cs_unexpected(CS_IT_PRODUCT, "moved indices but no result");
            }
        }
        return PyTuple_Pack(1, p->pools);
    }
    PyObject *head = PyTuple_Pack(1, p->pools);
    if (head == NULL) return NULL;
    PyObject *out = cs_pack_indices(head, 1, p->indices, npools, NULL, 0);
    Py_DECREF(head);
    return out;
}

static int
cs_product_write(PyObject *obj, PyObject *const *f, Py_ssize_t n)
{
    cs_product *p = (cs_product *)obj;
    cs_trash t = {.n = 0};
    if (n == 0) {
        p->stopped = 1;
        return 0;
    }
    PyObject *pools = f[0];
    if (!PyTuple_CheckExact(pools)) {
        PyErr_Format(PyExc_TypeError, "product: the pools must be a tuple, not %.100s",
                     Py_TYPE(pools)->tp_name);
        return -1;
    }
    Py_ssize_t npools = PyTuple_GET_SIZE(pools);
    for (Py_ssize_t i = 0; i < npools; i++) {
        if (cs_want_pool(PyTuple_GET_ITEM(pools, i), CS_IT_PRODUCT) < 0) return -1;
    }
    int started = n > 1;
    if (cs_nfields(n, n == 1 || (npools > 0 && n == 1 + npools), CS_IT_PRODUCT) < 0) {
        return -1;
    }
    /* Started: every index within its (so non-empty) pool. */
    Py_ssize_t *indices = started
        ? cs_read_indices(f + 1, npools, CS_IT_PRODUCT, "an index", cs_bound_pool, pools)
        : PyMem_New(Py_ssize_t, npools > 0 ? npools : 1);
    if (indices == NULL) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        return -1;
    }
    PyObject *result = NULL;
    if (started) {
        result = PyTuple_New(npools);
        if (result == NULL) {
            PyMem_Free(indices);
            return -1;
        }
        for (Py_ssize_t i = 0; i < npools; i++) {
            PyObject *pool = PyTuple_GET_ITEM(pools, i);
            PyTuple_SET_ITEM(result, i, Py_NewRef(PyTuple_GET_ITEM(pool, indices[i])));
        }
    }
    else {
        for (Py_ssize_t i = 0; i < npools; i++) indices[i] = 0;
    }
    Py_ssize_t *old = p->indices;
    p->indices = indices;
    cs_put(&p->pools, pools, &t);
    cs_put_new(&p->result, result, &t);
    p->stopped = 0;
    PyMem_Free(old);
    cs_empty(&t);
    return 0;
}

/* combinations (kind CS_IT_COMBINATIONS) and combinations_with_replacement. */
static PyObject *
cs_combinations_read(PyObject *obj, int kind)
{
    cs_combinations *c = (cs_combinations *)obj;
    if (c->pool == NULL || !PyTuple_CheckExact(c->pool) || c->r < 0) {
        return cs_unexpected(kind, "without its pool");
    }
    /* Started with r == 0, it has nothing left. */
    if (c->stopped || (c->result != NULL && c->r == 0)) return PyTuple_New(0);
    PyObject *head = Py_BuildValue("(On)", c->pool, c->r);
    if (head == NULL || c->result != NULL) {
        PyObject *out = head ? cs_pack_indices(head, 2, c->indices, c->r, NULL, 0) : NULL;
        Py_XDECREF(head);
        return out;
    }
    for (Py_ssize_t i = 0; i < c->r; i++) {
        if (c->indices[i] != (kind == CS_IT_COMBINATIONS ? i : 0)) {
            Py_DECREF(head);
            return cs_unexpected(kind, "moved indices but no result");
        }
    }
    return head;
}

static int
cs_combinations_write(PyObject *obj, PyObject *const *f, Py_ssize_t n, int kind)
{
    cs_combinations *c = (cs_combinations *)obj;
    cs_trash t = {.n = 0};
    Py_ssize_t r;
    if (n == 0) {
        c->stopped = 1;
        return 0;
    }
    if (cs_nfields(n, n >= 2, kind) < 0 || cs_want_pool(f[0], kind) < 0 ||
        cs_want_ssize(f[1], 0, PY_SSIZE_T_MAX, kind, "r", &r) < 0) {
        return -1;
    }
    Py_ssize_t size = PyTuple_GET_SIZE(f[0]);
    int started = n > 2;
    int cwr = kind == CS_IT_CWR;
    /* A state the constructor would have marked stopped is not a live one;
     * started with r == 0 is the same as stopped (written as such). */
    int ok = cwr ? !(size == 0 && r > 0) : r <= size;
    if (cs_nfields(n, ok && (n == 2 || (r > 0 && n == 2 + r)), kind) < 0) return -1;
    Py_ssize_t *indices = started
        ? cs_read_indices(f + 2, r, kind, "an index", cs_bound_n, &size)
        : PyMem_New(Py_ssize_t, r > 0 ? r : 1);
    if (indices == NULL) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        return -1;
    }
    if (started) {
        /* The order every reachable state keeps, which next() relies on:
         * strictly increasing (combinations: index i is at most i + n - r,
         * so incrementing it never passes the pool), or non-decreasing. */
        for (Py_ssize_t i = 1; i < r; i++) {
            if (cwr ? indices[i] < indices[i - 1] : indices[i] <= indices[i - 1]) {
                PyMem_Free(indices);
                PyErr_Format(PyExc_ValueError, "%s: the indices are out of order",
                             cs_it_kinds[kind].name);
                return -1;
            }
        }
    }
    else {
        for (Py_ssize_t i = 0; i < r; i++) indices[i] = cwr ? 0 : i;
    }
    PyObject *result = NULL;
    if (started) {
        result = PyTuple_New(r);
        if (result == NULL) {
            PyMem_Free(indices);
            return -1;
        }
        for (Py_ssize_t i = 0; i < r; i++) {
            PyTuple_SET_ITEM(result, i, Py_NewRef(PyTuple_GET_ITEM(f[0], indices[i])));
        }
    }
    Py_ssize_t *old = c->indices;
    c->indices = indices;
    c->r = r;
    cs_put(&c->pool, f[0], &t);
    cs_put_new(&c->result, result, &t);
    c->stopped = 0;
    PyMem_Free(old);
    cs_empty(&t);
    return 0;
}

static PyObject *
cs_permutations_read(PyObject *obj)
{
    cs_permutations *p = (cs_permutations *)obj;
    if (p->pool == NULL || !PyTuple_CheckExact(p->pool) || p->r < 0) {
        return cs_unexpected(CS_IT_PERMUTATIONS, "without its pool");
    }
    Py_ssize_t size = PyTuple_GET_SIZE(p->pool);
    /* Started with an empty pool or r == 0, it has nothing left. */
    if (p->stopped || (p->result != NULL && (size == 0 || p->r == 0))) {
        return PyTuple_New(0);
    }
    PyObject *head = Py_BuildValue("(On)", p->pool, p->r);
    if (head == NULL) return NULL;
    if (p->result != NULL) {
        PyObject *out = cs_pack_indices(head, 2, p->indices, size, p->cycles, p->r);
        Py_DECREF(head);
        return out;
    }
    for (Py_ssize_t i = 0; i < size; i++) {
        if (p->indices[i] != i || (i < p->r && p->cycles[i] != size - i)) {
            Py_DECREF(head);
            return cs_unexpected(CS_IT_PERMUTATIONS, "moved indices but no result");
        }
    }
    return head;
}

static int
cs_permutations_write(PyObject *obj, PyObject *const *f, Py_ssize_t n)
{
    cs_permutations *p = (cs_permutations *)obj;
    cs_trash t = {.n = 0};
    Py_ssize_t r;
    if (n == 0) {
        p->stopped = 1;
        return 0;
    }
    if (cs_nfields(n, n >= 2, CS_IT_PERMUTATIONS) < 0 ||
        cs_want_pool(f[0], CS_IT_PERMUTATIONS) < 0 ||
        cs_want_ssize(f[1], 0, PY_SSIZE_T_MAX, CS_IT_PERMUTATIONS, "r", &r) < 0) {
        return -1;
    }
    Py_ssize_t size = PyTuple_GET_SIZE(f[0]);
    int started = n > 2;
    if (cs_nfields(n, r <= size &&
                   (n == 2 || (size > 0 && r > 0 && n - 2 == size + r)),
                   CS_IT_PERMUTATIONS) < 0) {
        return -1;
    }
    Py_ssize_t *indices = NULL, *cycles = NULL;
    PyObject *result = NULL;
    char *seen = NULL;
    indices = PyMem_New(Py_ssize_t, size > 0 ? size : 1);
    cycles = PyMem_New(Py_ssize_t, r > 0 ? r : 1);
    if (indices == NULL || cycles == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    if (started) {
        /* indices: a permutation of range(n); cycles[i] in [1, n - i], so
         * the swap with indices[n - cycles[i]] stays inside the array. */
        seen = PyMem_Calloc(size, 1);
        if (seen == NULL) {
            PyErr_NoMemory();
            goto fail;
        }
        for (Py_ssize_t i = 0; i < size; i++) {
            if (cs_want_ssize(f[2 + i], 0, size - 1, CS_IT_PERMUTATIONS, "an index",
                              &indices[i]) < 0) {
                goto fail;
            }
            if (seen[indices[i]]++) {
                PyErr_SetString(PyExc_ValueError,
                                "permutations: the indices are not a permutation");
                goto fail;
            }
        }
        for (Py_ssize_t i = 0; i < r; i++) {
            if (cs_want_ssize(f[2 + size + i], 1, size - i, CS_IT_PERMUTATIONS,
                              "a cycle count", &cycles[i]) < 0) {
                goto fail;
            }
        }
        result = PyTuple_New(r);
        if (result == NULL) goto fail;
        for (Py_ssize_t i = 0; i < r; i++) {
            PyTuple_SET_ITEM(result, i, Py_NewRef(PyTuple_GET_ITEM(f[0], indices[i])));
        }
    }
    else {
        for (Py_ssize_t i = 0; i < size; i++) indices[i] = i;
        for (Py_ssize_t i = 0; i < r; i++) cycles[i] = size - i;
    }
    PyMem_Free(seen);
    Py_ssize_t *old_indices = p->indices, *old_cycles = p->cycles;
    p->indices = indices;
    p->cycles = cycles;
    p->r = r;
    cs_put(&p->pool, f[0], &t);
    cs_put_new(&p->result, result, &t);
    p->stopped = 0;
    PyMem_Free(old_indices);
    PyMem_Free(old_cycles);
    cs_empty(&t);
    return 0;
fail:
    PyMem_Free(seen);
    PyMem_Free(indices);
    PyMem_Free(cycles);
    Py_XDECREF(result);
    return -1;
}

/* ---- builtins -------------------------------------------------------------*/

static PyObject *
cs_reversed_read(PyObject *obj)
{
    cs_reversed *r = (cs_reversed *)obj;
    if (r->seq == NULL) return PyTuple_New(0);
    return Py_BuildValue("(On)", r->seq, r->index);
}

static int
cs_reversed_write(PyObject *obj, PyObject *const *f, Py_ssize_t n)
{
    cs_reversed *r = (cs_reversed *)obj;
    cs_trash t = {.n = 0};
    Py_ssize_t index = -1;
    if (cs_nfields(n, n == 0 || n == 2, CS_IT_REVERSED) < 0) return -1;
    if (n == 2) {
        /* reversed_next goes through PySequence_GetItem, which checks. */
        if (!PySequence_Check(f[0])) {
            PyErr_Format(PyExc_TypeError, "reversed: %.100s is not a sequence",
                         Py_TYPE(f[0])->tp_name);
            return -1;
        }
        if (cs_want_ssize(f[1], -1, PY_SSIZE_T_MAX - 1, CS_IT_REVERSED, "the index",
                          &index) < 0) {
            return -1;
        }
    }
    cs_put(&r->seq, n == 2 ? f[0] : NULL, &t);
    r->index = index;
    cs_empty(&t);
    return 0;
}

static PyObject *
cs_calliter_read(PyObject *obj)
{
    cs_calliter *c = (cs_calliter *)obj;
    if (c->it_callable == NULL) return PyTuple_New(0);
    if (c->it_sentinel == NULL) return cs_unexpected(CS_IT_CALLITER, "no sentinel");
    return PyTuple_Pack(2, c->it_callable, c->it_sentinel);
}

static int
cs_calliter_write(PyObject *obj, PyObject *const *f, Py_ssize_t n)
{
    cs_calliter *c = (cs_calliter *)obj;
    cs_trash t = {.n = 0};
    if (cs_nfields(n, n == 0 || n == 2, CS_IT_CALLITER) < 0) return -1;
    if (n == 2 && !PyCallable_Check(f[0])) {
        PyErr_Format(PyExc_TypeError, "callable_iterator: %.100s is not callable",
                     Py_TYPE(f[0])->tp_name);
        return -1;
    }
    cs_put(&c->it_callable, n == 2 ? f[0] : NULL, &t);
    cs_put(&c->it_sentinel, n == 2 ? f[1] : NULL, &t);
    cs_empty(&t);
    return 0;
}

/* map: (func, *iters), 3.14+ (func, True, *iters) when strict. */
static PyObject *
cs_map_read(PyObject *obj)
{
    cs_map *m = (cs_map *)obj;
    if (m->iters == NULL || !PyTuple_CheckExact(m->iters) || m->func == NULL) {
        return cs_unexpected(CS_IT_MAP, "without its iterators");
    }
    Py_ssize_t k = PyTuple_GET_SIZE(m->iters);
#if CS_IT_MAP_STRICT
    int strict = m->strict != 0;
#else
    int strict = 0;
#endif
    PyObject *out = PyTuple_New(1 + strict + k);
    if (out == NULL) return NULL;
    PyTuple_SET_ITEM(out, 0, Py_NewRef(m->func));
    if (strict) PyTuple_SET_ITEM(out, 1, Py_NewRef(Py_True));
    for (Py_ssize_t i = 0; i < k; i++) {
        PyTuple_SET_ITEM(out, 1 + strict + i, Py_NewRef(PyTuple_GET_ITEM(m->iters, i)));
    }
    return out;
}

static int
cs_map_write(PyObject *obj, PyObject *const *f, Py_ssize_t n)
{
    cs_map *m = (cs_map *)obj;
    cs_trash t = {.n = 0};
    int strict = n >= 2 && f[1] == Py_True;
#if !CS_IT_MAP_STRICT
    if (strict) {
        PyErr_SetString(PyExc_ValueError, "map: strict=True needs CPython 3.14");
        return -1;
    }
#endif
    Py_ssize_t k = n - 1 - strict;
    if (cs_nfields(n, k >= 1, CS_IT_MAP) < 0) return -1;
    for (Py_ssize_t i = 0; i < k; i++) {
        if (cs_want_iter(f[1 + strict + i], CS_IT_MAP, "each input") < 0) return -1;
    }
    PyObject *iters = PyTuple_New(k);
    if (iters == NULL) return -1;
    for (Py_ssize_t i = 0; i < k; i++) {
        PyTuple_SET_ITEM(iters, i, Py_NewRef(f[1 + strict + i]));
    }
    cs_put_new(&m->iters, iters, &t);
    cs_put(&m->func, f[0], &t);
#if CS_IT_MAP_STRICT
    m->strict = strict;
#endif
    cs_empty(&t);
    return 0;
}

/* ---- dispatch -------------------------------------------------------------*/

static PyObject *
cs_it_read(int kind, PyObject *obj)
{
    switch (kind) {
    case CS_IT_COUNT: return cs_count_read(obj);
    case CS_IT_REPEAT: return cs_repeat_read(obj);
    case CS_IT_CYCLE: return cs_cycle_read(obj);
    case CS_IT_ISLICE: return cs_islice_read(obj);
    case CS_IT_CHAIN: return cs_chain_read(obj);
    case CS_IT_ZIPLONGEST: return cs_ziplongest_read(obj);
    case CS_IT_ACCUMULATE: return cs_accumulate_read(obj);
    case CS_IT_PAIRWISE: return cs_pairwise_read(obj);
#if CS_IT_BATCHED
    case CS_IT_BATCHED_KIND: return cs_batched_read(obj);
#endif
    case CS_IT_COMPRESS: return cs_compress_read(obj);
    case CS_IT_DROPWHILE:
    case CS_IT_TAKEWHILE: return cs_while_read(obj, kind);
    case CS_IT_FILTERFALSE:
    case CS_IT_STARMAP:
    case CS_IT_FILTER: return cs_funcit_read(obj, kind);
    case CS_IT_TEE: return cs_tee_read(obj);
    case CS_IT_TEEDATA: return cs_teedata_read(obj);
    case CS_IT_GROUPBY: return cs_groupby_read(obj);
    case CS_IT_GROUPER: return cs_grouper_read(obj);
    case CS_IT_PRODUCT: return cs_product_read(obj);
    case CS_IT_PERMUTATIONS: return cs_permutations_read(obj);
    case CS_IT_COMBINATIONS:
    case CS_IT_CWR: return cs_combinations_read(obj, kind);
    case CS_IT_MAP: return cs_map_read(obj);
    case CS_IT_REVERSED: return cs_reversed_read(obj);
    case CS_IT_CALLITER: return cs_calliter_read(obj);
    }
    PyErr_SetString(PyExc_SystemError, "corosnap: unknown iterator kind");
    return NULL;
}

static int
cs_it_write(int kind, PyObject *obj, PyObject *const *f, Py_ssize_t n)
{
    switch (kind) {
    case CS_IT_COUNT: return cs_count_write(obj, f, n);
    case CS_IT_REPEAT: return cs_repeat_write(obj, f, n);
    case CS_IT_CYCLE: return cs_cycle_write(obj, f, n);
    case CS_IT_ISLICE: return cs_islice_write(obj, f, n);
    case CS_IT_CHAIN: return cs_chain_write(obj, f, n);
    case CS_IT_ZIPLONGEST: return cs_ziplongest_write(obj, f, n);
    case CS_IT_ACCUMULATE: return cs_accumulate_write(obj, f, n);
    case CS_IT_PAIRWISE: return cs_pairwise_write(obj, f, n);
#if CS_IT_BATCHED
    case CS_IT_BATCHED_KIND: return cs_batched_write(obj, f, n);
#endif
    case CS_IT_COMPRESS: return cs_compress_write(obj, f, n);
    case CS_IT_DROPWHILE:
    case CS_IT_TAKEWHILE: return cs_while_write(obj, f, n, kind);
    case CS_IT_FILTERFALSE:
    case CS_IT_STARMAP:
    case CS_IT_FILTER: return cs_funcit_write(obj, f, n, kind);
    case CS_IT_TEE: return cs_tee_write(obj, f, n);
    case CS_IT_TEEDATA: return cs_teedata_write(obj, f, n);
    case CS_IT_GROUPBY: return cs_groupby_write(obj, f, n);
    case CS_IT_GROUPER: return cs_grouper_write(obj, f, n);
    case CS_IT_PRODUCT: return cs_product_write(obj, f, n);
    case CS_IT_PERMUTATIONS: return cs_permutations_write(obj, f, n);
    case CS_IT_COMBINATIONS:
    case CS_IT_CWR: return cs_combinations_write(obj, f, n, kind);
    case CS_IT_MAP: return cs_map_write(obj, f, n);
    case CS_IT_REVERSED: return cs_reversed_write(obj, f, n);
    case CS_IT_CALLITER: return cs_calliter_write(obj, f, n);
    }
    PyErr_SetString(PyExc_SystemError, "corosnap: unknown iterator kind");
    return -1;
}

/* ---- module functions -----------------------------------------------------*/

/* iter_read(obj) -> tuple: the fields of a builtin iterator (see the top). */
static PyObject *
frames_iter_read(PyObject *module, PyObject *obj)
{
    int kind = cs_it_kind(obj);
    if (kind < 0) return NULL;
    return cs_it_read(kind, obj);
}

/* iter_write(obj, fields) -> None: overwrite a fresh builtin iterator. */
static PyObject *
frames_iter_write(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyTuple_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "iter_write(obj, fields: tuple)");
        return NULL;
    }
    int kind = cs_it_kind(args[0]);
    if (kind < 0) return NULL;
    PyObject *fields = args[1];
    /* The tuple keeps every field alive while it is checked and written. */
    Py_INCREF(fields);
    int rc = cs_it_write(kind, args[0], &PyTuple_GET_ITEM(fields, 0),
                         PyTuple_GET_SIZE(fields));
    Py_DECREF(fields);
    if (rc < 0) return NULL;
    Py_RETURN_NONE;
}

/* ---- the range iterator ---------------------------------------------------
 * Read only, for the value encoder's commonest iterator (a for loop over
 * range(n)): what its __reduce__ would say, without building the tuple and
 * the range.  out = {start, stop, step, consumed} of (iter, (range(start,
 * stop, step),), consumed); consumed is -1 where the reduce says None
 * (3.12+, whose iterator keeps only the remaining range).  1 for an exact
 * range iterator (a range too big for C longs has another type), else 0. */
static int
cs_range_reduce(PyObject *it, long out[4])
{
    if (!Py_IS_TYPE(it, &PyRangeIter_Type)) return 0;
    cs_rangeiter *r = (cs_rangeiter *)it;
    out[0] = r->start;
    /* CPython's own reduce computes the stop so, in C longs: the iterator's
     * constructor checked that it fits. */
    out[1] = r->start + r->len * r->step;
    out[2] = r->step;
#if CS_RANGEITER_INDEX
    out[3] = r->index;
#else
    out[3] = -1;
#endif
    return 1;
}

/* ---- list and tuple iterators ----------------------------------------------
 * Read only, for the value encoder's next commonest iterator (a for loop over
 * a list or tuple, or an explicit iter() of one): what __reduce__ would say,
 * (iter, (seq,), index), without building it.  1 with *seq (borrowed) and
 * *index for an exact list or tuple iterator that is not exhausted, else 0
 * (an exhausted one reduces to a fresh empty sequence: the caller asks
 * __reduce__ itself). */
static int
cs_seqiter_reduce(PyObject *it, PyObject **seq, Py_ssize_t *index)
{
    PyObject *s;
    Py_ssize_t i;
    if (Py_IS_TYPE(it, &PyListIter_Type)) {
        s = (PyObject *)((cs_listiter *)it)->it_seq;
        i = ((cs_listiter *)it)->it_index;
    }
    else if (Py_IS_TYPE(it, &PyTupleIter_Type)) {
        s = (PyObject *)((cs_tupleiter *)it)->it_seq;
        i = ((cs_tupleiter *)it)->it_index;
    }
    else {
        return 0;
    }
    if (s == NULL || i < 0) return 0;
    *seq = s;
    *index = i;
    return 1;
}

/* seqiter_reduce(it) -> (seq, index), or None: cs_seqiter_reduce, for the
 * tests. */
static PyObject *
frames_seqiter_reduce(PyObject *module, PyObject *it)
{
    PyObject *seq;
    Py_ssize_t index;
    if (!cs_seqiter_reduce(it, &seq, &index)) Py_RETURN_NONE;
    return Py_BuildValue("(On)", seq, index);
}

/* range_reduce(it) -> (start, stop, step, consumed or None), or None when it
 * is not a range iterator: cs_range_reduce, for the tests. */
static PyObject *
frames_range_reduce(PyObject *module, PyObject *it)
{
    long out[4];
    if (!cs_range_reduce(it, out)) Py_RETURN_NONE;
    if (out[3] < 0) return Py_BuildValue("(lllO)", out[0], out[1], out[2], Py_None);
    return Py_BuildValue("(llll)", out[0], out[1], out[2], out[3]);
}

/* iter_layouts() -> {name: sizeof(restated struct)} for the kinds this
 * version has, and the range iterator's (the layout probe compares them
 * with __basicsize__). */
static PyObject *
frames_iter_layouts(PyObject *module, PyObject *unused)
{
    PyObject *out = PyDict_New();
    if (out == NULL) return NULL;
    for (int k = 0; k < CS_IT_NKINDS; k++) {
        if (cs_it_kinds[k].size == 0) continue;
        PyObject *v = PyLong_FromSsize_t(cs_it_kinds[k].size);
        if (v == NULL || PyDict_SetItemString(out, cs_it_kinds[k].name, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(v);
    }
    struct {
        const char *name;
        size_t size;
    } more[] = {{"range_iterator", sizeof(cs_rangeiter)},
                {"list_iterator", sizeof(cs_listiter)},
                {"tuple_iterator", sizeof(cs_tupleiter)}};
    for (size_t k = 0; k < sizeof(more) / sizeof(more[0]); k++) {
        PyObject *v = PyLong_FromSsize_t((Py_ssize_t)more[k].size);
        if (v == NULL || PyDict_SetItemString(out, more[k].name, v) < 0) {
            Py_XDECREF(v);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(v);
    }
    return out;
}

#undef CS_ITER_METHODS
#define CS_ITER_METHODS                                                         \
    {"iter_read", (PyCFunction)frames_iter_read, METH_O,                        \
     "iter_read(it) -> tuple: a builtin iterator's state (see _itertools.h)"},  \
    {"iter_write", (PyCFunction)(void (*)(void))frames_iter_write, METH_FASTCALL,\
     "iter_write(it, fields): write a checked state into a fresh iterator"},    \
    {"iter_layouts", (PyCFunction)frames_iter_layouts, METH_NOARGS,             \
     "iter_layouts() -> {name: sizeof}: the restated iterator structs"},        \
    {"range_reduce", (PyCFunction)frames_range_reduce, METH_O,                  \
     "range_reduce(it) -> (start, stop, step, consumed or None) or None"},      \
    {"seqiter_reduce", (PyCFunction)frames_seqiter_reduce, METH_O,              \
     "seqiter_reduce(it) -> (seq, index) or None"},

#endif
