/* Records: the named structures corosnap's C engines share with Python.
 *
 * What lives here: one small generic type, the *record*, from which every
 * structure that crosses the boundary between a C engine and Python is made
 * (the snapshot layer's per-code caches, restore plans and per-call states,
 * see snapshot/_csnapshot.c).  A record is a fixed set of named fields,
 * declared once in C as an X-macro; from that one declaration come the C
 * struct (read by the engine directly, no lookups), the member descriptors
 * (read by Python by name), the constructor, and the class attribute
 * `__fields__` (the names, in order).
 *
 * The rules a record enforces, so that a mismatch between the two sides
 * fails loudly instead of sending work down a slow path:
 *  - it is built from keyword arguments only, every field exactly once: a
 *    field missing from the Python side, or one C does not know, is a
 *    TypeError at construction;
 *  - every field has a kind checked at construction (an exact tuple, dict,
 *    list, set, str, weakref, the codec's C memo table, a C-sized int or
 *    bool, or any object), so the
 *    engine may use the value without checking its type again;
 *  - fields are read-only from Python unless declared RW, and an RW field
 *    must be of kind ANY (the engine checks what it reads from one);
 *  - the Python side declares the same names (snapshot/_contract.py), checks
 *    them against `__fields__` at import, and a test compares them too.
 * Records take part in garbage collection: they may hold the Python engine's
 * objects, which may hold them back.
 *
 * Usage, in a C file:
 *     #define PLAN_FIELDS(F, R) F(R, depth, SSIZE, RO) F(R, checks, TUPLE, RO)
 *     CS_RECORD(Plan, PLAN_FIELDS, "corosnap.snapshot._csnapshot.Plan", "doc")
 *     ... cs_record_ready(&Plan_Type, module) in the module's init ...
 *     Plan_Check(obj), ((Plan *)obj)->depth
 */
#ifndef COROSNAP_RECORDS_H
#define COROSNAP_RECORDS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

/* Field kinds. */
enum {
    CS_K_ANY, CS_K_SSIZE, CS_K_INT, CS_K_BOOL, CS_K_TUPLE, CS_K_DICT, CS_K_LIST, CS_K_SET,
    CS_K_ANYSET, CS_K_STR, CS_K_STR_OR_NONE, CS_K_WEAKREF, CS_K_MEMO,
};

/* CS_K_MEMO: the codec's C memo table (codec/_memo.h), whose type the
 * including module sets here when it imports the codec's C engine. */
static PyTypeObject *cs_record_memo_type = NULL;

#define CS_CTYPE_ANY PyObject *
#define CS_CTYPE_SSIZE Py_ssize_t
#define CS_CTYPE_INT int
#define CS_CTYPE_BOOL char
#define CS_CTYPE_TUPLE PyObject *
#define CS_CTYPE_DICT PyObject *
#define CS_CTYPE_LIST PyObject *
#define CS_CTYPE_SET PyObject *
#define CS_CTYPE_ANYSET PyObject *
#define CS_CTYPE_STR PyObject *
#define CS_CTYPE_STR_OR_NONE PyObject *
#define CS_CTYPE_WEAKREF PyObject *
#define CS_CTYPE_MEMO PyObject *

#define CS_MTYPE_ANY T_OBJECT_EX
#define CS_MTYPE_SSIZE T_PYSSIZET
#define CS_MTYPE_INT T_INT
#define CS_MTYPE_BOOL T_BOOL
#define CS_MTYPE_TUPLE T_OBJECT_EX
#define CS_MTYPE_DICT T_OBJECT_EX
#define CS_MTYPE_LIST T_OBJECT_EX
#define CS_MTYPE_SET T_OBJECT_EX
#define CS_MTYPE_ANYSET T_OBJECT_EX
#define CS_MTYPE_STR T_OBJECT_EX
#define CS_MTYPE_STR_OR_NONE T_OBJECT_EX
#define CS_MTYPE_WEAKREF T_OBJECT_EX
#define CS_MTYPE_MEMO T_OBJECT_EX

#define CS_FLAGS_RO READONLY
#define CS_FLAGS_RW 0

#define CS_FIELD_DECL(R, name, kind, flags) CS_CTYPE_##kind name;
#define CS_FIELD_MEMBER(R, name, kind, flags) \
    {#name, CS_MTYPE_##kind, offsetof(R, name), CS_FLAGS_##flags, NULL},
#define CS_FIELD_KIND(R, name, kind, flags) CS_K_##kind,

#define CS_MAX_FIELDS 32

typedef struct {
    PyTypeObject type;        /* first: a record's type is a cs_record_type */
    const signed char *kinds; /* per field, in member order */
    Py_ssize_t nfields;       /* set by cs_record_ready */
    PyObject *names[CS_MAX_FIELDS]; /* interned field names, set by cs_record_ready */
} cs_record_type;

static PyObject *cs_record_vectorcall(PyObject *type, PyObject *const *args, size_t nargsf,
                                      PyObject *kwnames);
static PyObject *cs_record_new(PyTypeObject *type, PyObject *args, PyObject *kwds);
static void cs_record_dealloc(PyObject *self);
static int cs_record_traverse(PyObject *self, visitproc visit, void *arg);
static int cs_record_clear(PyObject *self);
static PyObject *cs_record_repr(PyObject *self);

#define CS_RECORD(R, FIELDS, NAME, DOC)                                                   \
    typedef struct {                                                                      \
        PyObject_HEAD                                                                     \
        FIELDS(CS_FIELD_DECL, R)                                                          \
    } R;                                                                                  \
    static PyMemberDef R##_members[] = {FIELDS(CS_FIELD_MEMBER, R){NULL, 0, 0, 0, NULL}}; \
    static const signed char R##_kinds[] = {FIELDS(CS_FIELD_KIND, R) - 1};                \
    static cs_record_type R##_Type = {                                                    \
        .type = {                                                                         \
            PyVarObject_HEAD_INIT(NULL, 0)                                                \
            .tp_name = NAME,                                                              \
            .tp_basicsize = sizeof(R),                                                    \
            .tp_dealloc = cs_record_dealloc,                                              \
            .tp_repr = cs_record_repr,                                                    \
            .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,                          \
            .tp_doc = DOC,                                                                \
            .tp_traverse = cs_record_traverse,                                            \
            .tp_clear = cs_record_clear,                                                  \
            .tp_members = R##_members,                                                    \
            .tp_new = cs_record_new,                                                      \
            .tp_vectorcall = cs_record_vectorcall,                                        \
        },                                                                                \
        .kinds = R##_kinds,                                                               \
    };                                                                                    \
    static inline int R##_Check(PyObject *o) { return Py_IS_TYPE(o, &R##_Type.type); }

#define CS_RECORD_SPEC(o) ((cs_record_type *)Py_TYPE(o))
#define CS_RECORD_MEMBER(o, i) (&Py_TYPE(o)->tp_members[i])
#define CS_RECORD_SLOT(o, i) ((char *)(o) + CS_RECORD_MEMBER(o, i)->offset)

static const char *
cs_kind_name(int kind)
{
    switch (kind) {
    case CS_K_SSIZE: return "an int (Py_ssize_t)";
    case CS_K_INT: return "an int (C int)";
    case CS_K_BOOL: return "a bool";
    case CS_K_TUPLE: return "a tuple";
    case CS_K_DICT: return "a dict";
    case CS_K_LIST: return "a list";
    case CS_K_SET: return "a set";
    case CS_K_ANYSET: return "a set or frozenset";
    case CS_K_STR: return "a str";
    case CS_K_STR_OR_NONE: return "a str or None";
    case CS_K_WEAKREF: return "a weak reference";
    case CS_K_MEMO: return "a corosnap Memo (corosnap.codec._ccodec.Memo)";
    default: return "an object";
    }
}

/* Store `v` in field i of a record under construction, checking its kind. */
static int
cs_record_set(PyObject *self, Py_ssize_t i, PyObject *v)
{
    cs_record_type *rt = CS_RECORD_SPEC(self);
    int kind = rt->kinds[i];
    char *slot = CS_RECORD_SLOT(self, i);
    int ok;
    switch (kind) {
    case CS_K_SSIZE: {
        if (!PyLong_Check(v) || PyBool_Check(v)) { ok = 0; break; }
        Py_ssize_t x = PyLong_AsSsize_t(v);
        if (x == -1 && PyErr_Occurred()) return -1;
        *(Py_ssize_t *)slot = x;
        return 0;
    }
    case CS_K_INT: {
        if (!PyLong_Check(v) || PyBool_Check(v)) { ok = 0; break; }
        long x = PyLong_AsLong(v);
        if (x == -1 && PyErr_Occurred()) return -1;
        if (x < INT_MIN || x > INT_MAX) {
            PyErr_Format(PyExc_OverflowError, "%s.%U out of range", rt->type.tp_name,
                         rt->names[i]);
            return -1;
        }
        *(int *)slot = (int)x;
        return 0;
    }
    case CS_K_BOOL:
        if (!PyBool_Check(v)) { ok = 0; break; }
        *(char *)slot = (char)(v == Py_True);
        return 0;
    case CS_K_TUPLE: ok = PyTuple_CheckExact(v); break;
    case CS_K_DICT: ok = PyDict_CheckExact(v); break;
    case CS_K_LIST: ok = PyList_CheckExact(v); break;
    case CS_K_SET: ok = PySet_CheckExact(v); break;
    case CS_K_ANYSET: ok = PyAnySet_CheckExact(v); break;
    case CS_K_STR: ok = PyUnicode_CheckExact(v); break;
    case CS_K_STR_OR_NONE: ok = v == Py_None || PyUnicode_CheckExact(v); break;
    case CS_K_WEAKREF: ok = PyWeakref_CheckRef(v); break;
    case CS_K_MEMO: ok = cs_record_memo_type != NULL && Py_IS_TYPE(v, cs_record_memo_type); break;
    default: ok = 1;
    }
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%s field %U must be %s, got %.100s", rt->type.tp_name,
                     rt->names[i], cs_kind_name(kind), Py_TYPE(v)->tp_name);
        return -1;
    }
    Py_XSETREF(*(PyObject **)slot, Py_NewRef(v));
    return 0;
}

/* The index of the field named `name`, or -1 with TypeError.  `hint` is where
 * to look first: callers usually pass fields in their declared order. */
static Py_ssize_t
cs_record_field(cs_record_type *rt, PyObject *name, Py_ssize_t hint)
{
    if (hint < rt->nfields && rt->names[hint] == name) return hint;
    for (Py_ssize_t i = 0; i < rt->nfields; i++) {
        if (rt->names[i] == name) return i;
    }
    for (Py_ssize_t i = 0; i < rt->nfields; i++) {
        int eq = PyUnicode_Check(name) ? PyUnicode_Compare(rt->names[i], name) : -1;
        if (eq == -1 && PyErr_Occurred()) return -1;
        if (eq == 0) return i;
    }
    PyErr_Format(PyExc_TypeError, "%s() has no field %R (its fields: %S)", rt->type.tp_name,
                 name, PyDict_GetItemString(rt->type.tp_dict, "__fields__"));
    return -1;
}

static PyObject *
cs_record_build(cs_record_type *rt, PyObject *const *values, PyObject *names, Py_ssize_t n,
                PyObject *dict)
{
    PyObject *self = PyType_GenericAlloc(&rt->type, 0);
    if (self == NULL) return NULL;
    unsigned char seen[CS_MAX_FIELDS] = {0};
    Py_ssize_t pos = 0, k = 0;
    PyObject *key, *value;
    while (dict != NULL ? PyDict_Next(dict, &pos, &key, &value) : k < n) {
        if (dict == NULL) {
            key = PyTuple_GET_ITEM(names, k);
            value = values[k];
        }
        Py_ssize_t i = cs_record_field(rt, key, k);
        k++;
        if (i < 0) goto error;
        if (seen[i]) {
            PyErr_Format(PyExc_TypeError, "%s() got field %U twice", rt->type.tp_name, key);
            goto error;
        }
        seen[i] = 1;
        if (cs_record_set(self, i, value) < 0) goto error;
    }
    for (Py_ssize_t i = 0; i < rt->nfields; i++) {
        if (!seen[i]) {
            PyErr_Format(PyExc_TypeError, "%s() is missing field %U", rt->type.tp_name,
                         rt->names[i]);
            goto error;
        }
    }
    return self;
error:
    Py_DECREF(self);
    return NULL;
}

static PyObject *
cs_record_vectorcall(PyObject *type, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    cs_record_type *rt = (cs_record_type *)type;
    if (PyVectorcall_NARGS(nargsf) != 0) {
        PyErr_Format(PyExc_TypeError, "%s() takes keyword arguments only", rt->type.tp_name);
        return NULL;
    }
    Py_ssize_t n = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    return cs_record_build(rt, args, kwnames, n, NULL);
}

static PyObject *
cs_record_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_Format(PyExc_TypeError, "%s() takes keyword arguments only", type->tp_name);
        return NULL;
    }
    PyObject *empty = NULL;
    if (kwds == NULL) {
        kwds = empty = PyDict_New();
        if (kwds == NULL) return NULL;
    }
    PyObject *self = cs_record_build((cs_record_type *)type, NULL, NULL, 0, kwds);
    Py_XDECREF(empty);
    return self;
}

static int
cs_record_is_object(int kind)
{
    return kind != CS_K_SSIZE && kind != CS_K_INT && kind != CS_K_BOOL;
}

static int
cs_record_traverse(PyObject *self, visitproc visit, void *arg)
{
    cs_record_type *rt = CS_RECORD_SPEC(self);
    for (Py_ssize_t i = 0; i < rt->nfields; i++) {
        if (cs_record_is_object(rt->kinds[i])) Py_VISIT(*(PyObject **)CS_RECORD_SLOT(self, i));
    }
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static int
cs_record_clear(PyObject *self)
{
    cs_record_type *rt = CS_RECORD_SPEC(self);
    for (Py_ssize_t i = 0; i < rt->nfields; i++) {
        if (cs_record_is_object(rt->kinds[i])) Py_CLEAR(*(PyObject **)CS_RECORD_SLOT(self, i));
    }
    return 0;
}

static void
cs_record_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    cs_record_clear(self);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *
cs_record_repr(PyObject *self)
{
    cs_record_type *rt = CS_RECORD_SPEC(self);
    int rc = Py_ReprEnter(self);
    if (rc != 0) return rc > 0 ? PyUnicode_FromFormat("%s(...)", rt->type.tp_name) : NULL;
    PyObject *parts = PyList_New(0), *out = NULL;
    if (parts == NULL) goto done;
    for (Py_ssize_t i = 0; i < rt->nfields; i++) {
        PyObject *v = PyMember_GetOne((const char *)self, CS_RECORD_MEMBER(self, i));
        PyObject *part = v == NULL ? NULL : PyUnicode_FromFormat("%U=%R", rt->names[i], v);
        Py_XDECREF(v);
        if (part == NULL || PyList_Append(parts, part) < 0) {
            Py_XDECREF(part);
            goto done;
        }
        Py_DECREF(part);
    }
    PyObject *sep = PyUnicode_FromString(", ");
    PyObject *body = sep == NULL ? NULL : PyUnicode_Join(sep, parts);
    Py_XDECREF(sep);
    if (body != NULL) {
        const char *dot = strrchr(rt->type.tp_name, '.');
        out = PyUnicode_FromFormat("%s(%U)", dot != NULL ? dot + 1 : rt->type.tp_name, body);
        Py_DECREF(body);
    }
done:
    Py_XDECREF(parts);
    Py_ReprLeave(self);
    return out;
}

/* Type `t` readied with `fields` (a tuple of its field names, stolen) as its
 * __fields__, and added to `module` under the last part of its name: what a
 * record or an entry point shows Python (_contract.py checks __fields__). */
static int
cs_ready_with_fields(PyObject *module, PyTypeObject *t, PyObject *fields)
{
    /* __fields__ goes into the type's dict before PyType_Ready, which keeps
     * a dict it finds there. */
    if (t->tp_dict == NULL && (t->tp_dict = PyDict_New()) == NULL) {
        Py_DECREF(fields);
        return -1;
    }
    int rc = PyDict_SetItemString(t->tp_dict, "__fields__", fields);
    Py_DECREF(fields);
    if (rc < 0 || PyType_Ready(t) < 0) return -1;
    const char *dot = strrchr(t->tp_name, '.');
    return PyModule_AddObjectRef(module, dot != NULL ? dot + 1 : t->tp_name, (PyObject *)t);
}

/* Make a record type ready and add it to `module` under its short name. */
static int
cs_record_ready(cs_record_type *rt, PyObject *module)
{
    PyTypeObject *t = &rt->type;
    Py_ssize_t n = 0;
    while (t->tp_members[n].name != NULL) n++;
    if (n > CS_MAX_FIELDS) {
        PyErr_Format(PyExc_SystemError, "%s has more than %d fields", t->tp_name, CS_MAX_FIELDS);
        return -1;
    }
    rt->nfields = n;
    PyObject *fields = PyTuple_New(n);
    if (fields == NULL) return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyMemberDef *m = &t->tp_members[i];
        if (m->flags == 0 && rt->kinds[i] != CS_K_ANY) {
            Py_DECREF(fields);
            PyErr_Format(PyExc_SystemError, "%s.%s: a writable field must be of kind ANY",
                         t->tp_name, m->name);
            return -1;
        }
        PyObject *name = PyUnicode_InternFromString(m->name);
        if (name == NULL) {
            Py_DECREF(fields);
            return -1;
        }
        rt->names[i] = Py_NewRef(name);
        PyTuple_SET_ITEM(fields, i, name);
    }
    return cs_ready_with_fields(module, t, fields);
}

#endif /* COROSNAP_RECORDS_H */
