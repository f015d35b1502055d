/* The snapshot layer's C engine: capture and restore of a known frame.
 *
 * What lives here: the C twin of the per-frame work of snapshot/_capture.py
 * (capture) and snapshot/_restore.py (restore), for frames whose code the
 * Python engine has already looked up, checked and planned.  A small frame
 * costs a few microseconds of Python glue (code lookup, plan lookup, slot
 * loops, checks), many times the pickle floor of its locals; here that glue
 * is one call.  Python is called back only for what needs it: encoding or
 * decoding a non-trivial value, naming a nested code, a sub-frame this
 * engine declines.
 *
 * What must never live here: a struct layout (frames are read and written
 * through the frames layer's C API, frames/_capi.h), a decision the Python
 * engine did not make first, or a check of its own: the checks here are the
 * Python engine's, one for one, with the same messages
 * (tests/test_engines.py holds the two against each other).
 *
 * The contract with Python, defined once, here:
 *  - Records (see _records.h) built by Python through snapshot/_contract.py,
 *    read here by field: CaptureCode and Where (per code and offset,
 *    capture), RestoreCode, Plan and Check (restore), and one CaptureState
 *    or RestoreState per dumps/loads, which names every table this engine
 *    reads or fills.  A field missing or unknown on either side is a
 *    TypeError at construction and an ImportError when _contract.py loads.
 *  - Python objects this engine hands out or compares with (CorruptSnapshot,
 *    the decoder's markers, the slot kinds of bytecode/_kinds.py) are
 *    imported by name when this module is imported; the kind numbers are
 *    checked against Python's then (KINDS must equal _kinds.KIND_NAMES).
 *  - Callbacks are methods, by name, of the objects a state names (as
 *    _pickle calls persistent_id): the encoder's enc / note_globals /
 *    coderef / delegated_frame, the decoder's dec / finish, and the snapshot
 *    layer's frames.encode / frames.decode (the Python engine, for a frame
 *    declined here), frames.done and frames.check_chain.  The Decoder a
 *    value needs is made on demand by the codec's C adopt_decoder, as
 *    FrameDecoder.adopt makes it.  Nothing is registered at start-up.
 *
 * The common cases in one call: capture_root (a whole dumps of a generator
 * or coroutine: an encoder taken from the caches' spare list, the root
 * captured, the blob packed) and load_root (a whole loads of an unsigned
 * blob in the default mode: the bytes parsed, the header checked, the root
 * restored with a RestoreState kept emptied between calls).
 *
 * Declining: capture() and restore() return None, *before any side effect*,
 * for whatever only the Python engine does: a code seen for the first time
 * (its record is not in the cache yet), safe mode, a frame suspended inside
 * an except block, a nested code named by a path, anything malformed (so
 * that Python names the problem).  The Python engine then does the whole
 * frame.  Once committed, these functions finish the frame or raise.
 */
#include "../_records.h"
#include "../frames/_capi.h"
#include "../codec/_memo.h"
#include "../_lists.h"

static CorosnapFramesCAPI *frames_api = NULL;
#define NULL_SLOT (frames_api->null)

/* ------------------------------------------------------------------ records */

#define WHERE_FIELDS(F, R)  \
    F(R, depth, SSIZE, RO)  \
    F(R, sub_at, SSIZE, RO) \
    F(R, tagged, TUPLE, RO)
CS_RECORD(Where, WHERE_FIELDS, "corosnap.snapshot._csnapshot.Where",
          "Capture, one code at one suspension offset: the stack depth, the stack index of "
          "the sub-generator a delegating frame sends to (or -1), and the stack indexes that "
          "may hold a 3.14+ tagged integer.")

#define CAPTURE_CODE_FIELDS(F, R)      \
    F(R, code, WEAKREF, RO)            \
    F(R, module, ANY, RO)              \
    F(R, nlocals, SSIZE, RO)           \
    F(R, where, DICT, RO)              \
    F(R, ref, ANY, RO)                 \
    F(R, name_module, STR, RO)         \
    F(R, name_qualname, STR_OR_NONE, RO) \
    F(R, fingerprint, ANY, RO)         \
    F(R, slot_names, TUPLE, RO)
CS_RECORD(CaptureCode, CAPTURE_CODE_FIELDS, "corosnap.snapshot._csnapshot.CaptureCode",
          "Capture, one code object: a weak reference to it, the __name__ of the globals it "
          "was described with, its number of local slots, {offset: Where}, its CodeRef, the "
          "module and qualname that name it (qualname None for a nested code), its "
          "fingerprint and its slot names.")

#define CHECK_FIELDS(F, R)      \
    F(R, slot, SSIZE, RO)       \
    F(R, kind, INT, RO)         \
    F(R, nullable, BOOL, RO)    \
    F(R, index_above, BOOL, RO) \
    F(R, name, STR, RO)
CS_RECORD(Check, CHECK_FIELDS, "corosnap.snapshot._csnapshot.Check",
          "Restore, one stack slot: its index among the frame's slots, the kind it must "
          "hold (bytecode._kinds, without NULLABLE), whether it may be empty, whether the "
          "slot above is a 3.15 sequence index (which checks this one when filled), and the "
          "kind's name for messages.")

#define PLAN_FIELDS(F, R)        \
    F(R, depth, SSIZE, RO)       \
    F(R, sub_at, SSIZE, RO)      \
    F(R, delegate_at, SSIZE, RO) \
    F(R, checks, TUPLE, RO)      \
    F(R, bound, TUPLE, RO)       \
    F(R, dot0, BOOL, RO)
CS_RECORD(Plan, PLAN_FIELDS, "corosnap.snapshot._csnapshot.Plan",
          "Restore, one code at one resume offset: the stack depth, the slot index of an "
          "untagged sub-frame (or -1), of the iterator a delegating frame sends to (or -1), "
          "the Checks of the stack slots, the locals that must be bound, and whether the "
          "'.0' argument of a created comprehension must be an iterator.")

#define RESTORE_CODE_FIELDS(F, R) \
    F(R, module, WEAKREF, RO)     \
    F(R, code, ANY, RO)           \
    F(R, globals, DICT, RO)       \
    F(R, label, STR, RO)          \
    F(R, nlocals, SSIZE, RO)      \
    F(R, ncodeunits, SSIZE, RO)   \
    F(R, slot_names, TUPLE, RO)   \
    F(R, cells, TUPLE, RO)        \
    F(R, plans, DICT, RO)         \
    F(R, fn, ANY, RO)             \
    F(R, args, TUPLE, RO)         \
    F(R, kwargs, DICT, RO)        \
    F(R, dot0_iter, BOOL, RO)     \
    F(R, info, ANY, RO)           \
    F(R, rules, ANY, RO)
CS_RECORD(RestoreCode, RESTORE_CODE_FIELDS, "corosnap.snapshot._csnapshot.RestoreCode",
          "Restore, one code object, found by name and checked: a weak reference to its "
          "module, the code, its globals, its label for messages, its numbers of local "
          "slots and code units, its slot names and cell slots, {offset: Plan}, the function "
          "that makes a fresh generator (None if the code makes none) with its placeholder "
          "arguments, whether '.0' is iterated first, and its bytecode analyses.")

#define CAPTURE_STATE_FIELDS(F, R) \
    F(R, encoder, ANY, RO)         \
    F(R, memo, MEMO, RO)           \
    F(R, keep, LIST, RO)           \
    F(R, strings, DICT, RO)        \
    F(R, codes, MEMO, RO)          \
    F(R, globals_seen, SET, RO)    \
    F(R, passthrough, ANYSET, RO)  \
    F(R, code_cache, DICT, RO)     \
    F(R, frames, ANY, RO)
CS_RECORD(CaptureState, CAPTURE_STATE_FIELDS, "corosnap.snapshot._csnapshot.CaptureState",
          "One dumps, as the C engine sees it: the codec Encoder and its tables (memo, keep, "
          "strings, codes, globals_seen, passthrough), {id(code): CaptureCode}, and the "
          "snapshot layer's FrameEncoder (frames.encode: the Python engine).")

#define CAPTURE_ROOT_FIELDS(F, R) \
    F(R, spare, LIST, RO)          \
    F(R, frames, ANY, RO)          \
    F(R, code_cache, DICT, RO)     \
    F(R, encoder_class, ANY, RO)   \
    F(R, hook, ANY, RO)
CS_RECORD(CaptureRoot, CAPTURE_ROOT_FIELDS, "corosnap.snapshot._csnapshot.CaptureRoot",
          "What capture_root needs of a Snapshotter's caches: its spare encoders, the "
          "snapshot layer's FrameEncoder, {id(code): CaptureCode}, the Encoder class and "
          "the frame hook a new encoder is made with.")

#define RESTORE_STATE_FIELDS(F, R) \
    F(R, decoder, ANY, RW)         \
    F(R, memo, LIST, RO)           \
    F(R, strings, LIST, RO)        \
    F(R, codes, LIST, RO)          \
    F(R, active, SET, RO)          \
    F(R, exceptions, LIST, RO)     \
    F(R, shapes, LIST, RO)         \
    F(R, depth, MEMO, RO)          \
    F(R, safe, BOOL, RO)           \
    F(R, allow, TUPLE, RO)         \
    F(R, code_cache, DICT, RO)     \
    F(R, frames, ANY, RO)
CS_RECORD(RestoreState, RESTORE_STATE_FIELDS, "corosnap.snapshot._csnapshot.RestoreState",
          "One loads, as the C engine sees it: the codec Decoder (None until a value needs "
          "one: frames.adopt(state) makes it, sharing these tables), the tables (memo, "
          "strings, codes, active, exceptions, shapes, depth), the options (safe, allow), "
          "{(module, qualname, path, fingerprint): RestoreCode}, and the snapshot layer's "
          "FrameDecoder.")

/* ------------------------------------------------ names imported from Python */

static PyObject *cs_CorruptSnapshot, *cs_RestoreError, *cs_Tag, *cs_Deferred, *cs_NONE_MARK, *cs_NONE_EXT,
    *cs_TAG_OF_KIND, *cs_T_RANGEITER, *cs_TAGGED, *cs_KIND_NAMES, *cs_SHAPE_MIN, *cs_Memo;
static PyObject *cs_tag_rangeiter = NULL;  /* cs_TAG_OF_KIND[T_RANGEITER] */
static Py_ssize_t cs_shape_min = 0;        /* SHAPE_MIN, as a C integer */

static struct {
    const char *module, *name;
    PyObject **target;
} cs_imports[] = {
    {"corosnap._errors", "CorruptSnapshot", &cs_CorruptSnapshot},
    {"corosnap._errors", "RestoreError", &cs_RestoreError},
    {"corosnap.codec._markers", "Tag", &cs_Tag},
    {"corosnap.codec._markers", "Deferred", &cs_Deferred},
    {"corosnap.codec._markers", "NONE_MARK", &cs_NONE_MARK},
    {"corosnap.codec._markers", "TAG_OF_KIND", &cs_TAG_OF_KIND},
    {"corosnap.codec._tags", "NONE_EXT", &cs_NONE_EXT},
    {"corosnap.codec._tags", "T_RANGEITER", &cs_T_RANGEITER},
    {"corosnap.codec._tags", "SHAPE_MIN", &cs_SHAPE_MIN},
    {"corosnap.codec._ccodec", "Memo", &cs_Memo},
    {"corosnap.bytecode._kinds", "TAGGED", &cs_TAGGED},
    {"corosnap.bytecode._kinds", "KIND_NAMES", &cs_KIND_NAMES},
};

/* The slot kinds of bytecode/_kinds.py, as this engine numbers them (checked
 * against Python's numbers at import). */
enum { K_ANY = 0, K_ITER = 1, K_LIST = 2, K_SET = 3, K_EXC = 4, K_EXC_OR_NONE = 5,
       K_LASTI = 6, K_INDEX = 7, K_DICT = 8, K_EXC_LIST = 9, K_CALL1_SELF = 10, K_COUNT = 11 };
static const char *cs_kind_names[K_COUNT] = {"ANY", "ITER", "LIST", "SET", "EXC", "EXC_OR_NONE",
                                             "LASTI", "INDEX", "DICT", "EXC_LIST",
                                             "CALL1_SELF"};
/* list.append (K_CALL1_SELF, CPython 3.13). */
static PyObject *cs_list_append = NULL;
static unsigned int cs_tagged_kinds = 0; /* bit k: kind k is a tagged integer (3.14+) */

/* Method and attribute names, interned once. */
static PyObject *s_next, *s_name, *s_enc, *s_note_globals, *s_coderef, *s_delegated_frame,
    *s_encode, *s_decode, *s_decoder, *s_check_chain, *s_dec, *s_finish, *s_setstate, *s_close,
    *s_done, *s_after;

/* ------------------------------------------------------------------ helpers */

/* The error being raised, if any, set aside while cleanup code runs and
 * raised again after it (the cleanup leaves no error of its own: what it
 * raised is cleared).  PyErr_Fetch/PyErr_Restore do the same, but cost a
 * few dozen instructions even with no error, and every frame restored has
 * such a cleanup on its success path. */
typedef struct {
    PyObject *type, *value, *tb;
    int pending;
} CsSavedError;

static inline void
cs_error_save(CsSavedError *s)
{
    s->type = s->value = s->tb = NULL;
    s->pending = PyErr_Occurred() != NULL;
    if (s->pending) PyErr_Fetch(&s->type, &s->value, &s->tb);
}

static inline void
cs_error_restore(CsSavedError *s)
{
    if (s->pending) {
        PyErr_Restore(s->type, s->value, s->tb);
    }
    else if (PyErr_Occurred()) {
        PyErr_Clear();
    }
}

/* hasattr() semantics: 1, 0, or -1 with an error other than AttributeError. */
static int
cs_hasattr(PyObject *obj, PyObject *name)
{
    PyObject *found = NULL;
#if PY_VERSION_HEX >= 0x030D0000
    int rc = PyObject_GetOptionalAttr(obj, name, &found);
#else
    int rc = _PyObject_LookupAttr(obj, name, &found);
#endif
    Py_XDECREF(found);
    return rc;
}

/* obj.<name>(*args) without making a bound method. */
static PyObject *
cs_call_method(PyObject *obj, PyObject *name, PyObject *a, PyObject *b, PyObject *c,
               PyObject *d)
{
    PyObject *margs[5] = {obj, a, b, c, d};
    size_t n = 1 + (a != NULL) + (b != NULL) + (c != NULL) + (d != NULL);
    return PyObject_VectorcallMethod(name, margs, n | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* Slots of the C engine's Encoder that capture_root reads and sets: their
 * offsets, from the class's member descriptors (each checked to be an
 * object slot) by cs_codec_ready.  Only for an encoder of that very class. */
enum { CS_ENC_PID, CS_ENC_CSTATE, CS_ENC_AFTER, CS_ENC_OFFERED, CS_ENC_NSLOTS };
static const char *cs_enc_slot_names[CS_ENC_NSLOTS] = {"pid", "cstate", "after", "offered"};
static Py_ssize_t cs_enc_offsets[CS_ENC_NSLOTS];

/* The C engine's Encoder class and its enc and note_globals, the C value
 * codec's functions (codec/_engines.py binds them on it), fetched on first
 * use.  An encoder of that class has them called as plain functions, with no
 * method lookup; any other encoder has its methods looked up. */
static PyObject *cs_c_encoder = NULL, *cs_c_enc = NULL, *cs_c_note_globals = NULL,
    *cs_c_clear = NULL;
/* The same for the C engine's Decoder and its dec: a decoder of that very
 * class has dec called as a plain function while the class's dec is that C
 * function.  Checked by the class's version tag (CPython renews it whenever
 * the class or a base changes, and never reuses one), and by looking dec up
 * again when the tag moved: a dec replaced later (a spy), or one that is not
 * the C function, is looked up and called as a method. */
static PyObject *cs_c_decoder = NULL, *cs_c_dec = NULL;
static unsigned int cs_c_decoder_tag = 0;
/* capture_root's: the C engine's pack (codec/_speedups.py's Helpers.pack)
 * and the blob header (snapshot/_blob.py). */
static PyObject *cs_c_pack = NULL, *cs_HEADER = NULL;
/* load_root's: the C engine's unpack and the migratable blob's header. */
static PyObject *cs_c_unpack = NULL, *cs_HEADER2 = NULL;

static int
cs_codec_ready(void)
{
    if (cs_c_note_globals != NULL) return 0;
    if (cs_c_pack == NULL) {
        PyObject *codec = PyImport_ImportModule("corosnap.codec._ccodec");
        PyObject *pack = codec == NULL ? NULL : PyObject_GetAttrString(codec, "pack");
        PyObject *unpack = pack == NULL ? NULL : PyObject_GetAttrString(codec, "unpack");
        Py_XDECREF(codec);
        PyObject *blob = unpack == NULL ? NULL : PyImport_ImportModule("corosnap.snapshot._blob");
        PyObject *header = blob == NULL ? NULL : PyObject_GetAttrString(blob, "HEADER");
        PyObject *header2 = header == NULL ? NULL : PyObject_GetAttrString(blob, "HEADER2");
        Py_XDECREF(blob);
        if (header2 == NULL || !PyCFunction_Check(pack) || !PyCFunction_Check(unpack)) {
            if (!PyErr_Occurred()) {
                PyErr_SetString(PyExc_ImportError, "corosnap.snapshot._csnapshot: "
                                                   "corosnap.codec._ccodec has no C pack "
                                                   "and unpack");
            }
            Py_XDECREF(pack);
            Py_XDECREF(unpack);
            Py_XDECREF(header);
            Py_XDECREF(header2);
            return -1;
        }
        cs_HEADER = header;
        cs_HEADER2 = header2;
        cs_c_pack = pack;
        cs_c_unpack = unpack;
    }
    PyObject *engines = PyImport_ImportModule("corosnap.codec._engines");
    PyObject *table = engines == NULL ? NULL : PyObject_GetAttrString(engines, "ENGINES");
    Py_XDECREF(engines);
    PyObject *c = table == NULL ? NULL : PyMapping_GetItemString(table, "c");
    Py_XDECREF(table);
    PyObject *cls = c == NULL ? NULL : PyObject_GetAttrString(c, "Encoder");
    Py_XDECREF(c);
    PyObject *enc = cls == NULL ? NULL : PyObject_GetAttr(cls, s_enc);
    PyObject *note = enc == NULL ? NULL : PyObject_GetAttr(cls, s_note_globals);
    PyObject *clear = note == NULL ? NULL : PyObject_GetAttrString(cls, "clear");
    if (clear == NULL || !PyType_Check(cls) || !PyCFunction_Check(enc) ||
        !PyCFunction_Check(note) || !PyCFunction_Check(clear)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ImportError, "corosnap.snapshot._csnapshot: the C engine's "
                                               "Encoder has no C enc, note_globals and "
                                               "clear");
        }
        Py_XDECREF(cls);
        Py_XDECREF(enc);
        Py_XDECREF(note);
        Py_XDECREF(clear);
        return -1;
    }
    for (int k = 0; k < CS_ENC_NSLOTS; k++) {
        PyObject *d = PyObject_GetAttrString(cls, cs_enc_slot_names[k]);
        int ok = d != NULL && Py_IS_TYPE(d, &PyMemberDescr_Type) &&
                 ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
        if (ok) cs_enc_offsets[k] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_XDECREF(d);
        if (!ok) {
            if (!PyErr_Occurred()) {
                PyErr_Format(PyExc_ImportError, "corosnap.snapshot._csnapshot: Encoder.%s is "
                             "not one of Encoder.__slots__", cs_enc_slot_names[k]);
            }
            Py_DECREF(cls);
            Py_DECREF(enc);
            Py_DECREF(note);
            Py_DECREF(clear);
            return -1;
        }
    }
    cs_c_clear = clear;
    cs_c_encoder = cls;
    cs_c_enc = enc;
    cs_c_note_globals = note; /* last: marks them ready */
    return 0;
}

/* cs_c_decoder (the C engine's Decoder class) and cs_c_dec (the codec's C
 * dec function, which codec/_engines.py sets on that class), read once: the
 * restore needs nothing of the encoder's.  Whether the class's dec is that
 * function is cs_dec_direct's question, asked again whenever the class
 * changes. */
static int
cs_decoder_ready(void)
{
    if (cs_c_decoder != NULL) return 0;
    PyObject *codec = PyImport_ImportModule("corosnap.codec._ccodec");
    PyObject *method = codec == NULL ? NULL : PyObject_GetAttr(codec, s_dec);
    Py_XDECREF(codec);
    PyObject *engines = method == NULL ? NULL : PyImport_ImportModule("corosnap.codec._engines");
    PyObject *table = engines == NULL ? NULL : PyObject_GetAttrString(engines, "ENGINES");
    Py_XDECREF(engines);
    PyObject *c = table == NULL ? NULL : PyMapping_GetItemString(table, "c");
    Py_XDECREF(table);
    PyObject *cls = c == NULL ? NULL : PyObject_GetAttrString(c, "Decoder");
    Py_XDECREF(c);
    if (cls != NULL && (!PyType_Check(cls) || !PyInstanceMethod_Check(method) ||
                        !PyCFunction_Check(PyInstanceMethod_GET_FUNCTION(method)))) {
        PyErr_SetString(PyExc_ImportError, "corosnap.snapshot._csnapshot: the C engine's "
                                           "Decoder is not a class, or the codec has no C dec");
        Py_CLEAR(cls);
    }
    if (cls == NULL) {
        Py_XDECREF(method);
        return -1;
    }
    cs_c_dec = Py_NewRef(PyInstanceMethod_GET_FUNCTION(method));
    Py_DECREF(method);
    cs_c_decoder_tag = 0; /* cs_dec_direct looks dec up the first time */
    cs_c_decoder = cls;   /* last: marks them ready */
    return 0;
}

/* encoder.<slot k> (borrowed): AttributeError when unset; TypeError for
 * after/offered when not lists. */
static PyObject *
cs_encoder_slot(PyObject *encoder, int k)
{
    if ((PyObject *)Py_TYPE(encoder) != cs_c_encoder) {
        PyErr_SetString(PyExc_TypeError, "capture_root needs the C engine's Encoder");
        return NULL;
    }
    PyObject *v = *(PyObject **)((char *)encoder + cs_enc_offsets[k]);
    if (v == NULL) {
        PyErr_Format(PyExc_AttributeError, "Encoder.%s is not set", cs_enc_slot_names[k]);
        return NULL;
    }
    if ((k == CS_ENC_AFTER || k == CS_ENC_OFFERED) && !PyList_CheckExact(v)) {
        PyErr_Format(PyExc_TypeError, "Encoder.%s must be a list", cs_enc_slot_names[k]);
        return NULL;
    }
    return v;
}

static int
cs_encoder_slot_set(PyObject *encoder, int k, PyObject *v)
{
    if ((PyObject *)Py_TYPE(encoder) != cs_c_encoder) {
        PyErr_SetString(PyExc_TypeError, "capture_root needs the C engine's Encoder");
        return -1;
    }
    PyObject **slot = (PyObject **)((char *)encoder + cs_enc_offsets[k]);
    Py_XSETREF(*slot, Py_NewRef(v));
    return 0;
}

/* encoder.enc(x) (note: 0) or encoder.note_globals(x) (note: 1). */
static PyObject *
cs_encoder_call(PyObject *encoder, int note, PyObject *x)
{
    if (cs_codec_ready() < 0) return NULL;
    if ((PyObject *)Py_TYPE(encoder) == cs_c_encoder) {
        PyObject *args[2] = {encoder, x};
        return PyObject_Vectorcall(note ? cs_c_note_globals : cs_c_enc, args, 2, NULL);
    }
    return cs_call_method(encoder, note ? s_note_globals : s_enc, x, NULL, NULL, NULL);
}

/* Whether weak reference `ref` refers to `obj` (which the caller holds). */
static int
cs_refers_to(PyObject *ref, PyObject *obj)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *x = NULL;
    int rc = PyWeakref_GetRef(ref, &x);
    if (rc < 0) {
        PyErr_Clear();
        return 0;
    }
    int same = x == obj;
    Py_XDECREF(x); /* alive before the call, so not the last reference */
    return same;
#else
    return PyWeakref_GET_OBJECT(ref) == obj;
#endif
}

static int
cs_is_generator(PyObject *x)
{
    return PyGen_CheckExact(x) || PyCoro_CheckExact(x);
}

static PyObject *
cs_bad_record(const char *what)
{
    PyErr_Format(PyExc_SystemError, "corosnap C engine: %s is not the record it should be "
                 "(a bug: the Python engine built something else)", what);
    return NULL;
}

/* ------------------------------------------------------------------ capture */

static PyObject *cs_capture_frame(PyObject *state, PyObject *gen, PyObject *noted);

/* `type(x) in passthrough`, the check of every frame slot.  The codec's
 * passthrough sets are frozensets of some of six builtin types (str, int,
 * float, bool, NoneType, bytes), so a frozenset met before that holds
 * nothing else is answered by comparing the type with those six: a set
 * lookup was a twentieth of capturing a small chain.  A frozenset cannot
 * change, and one kept here (held, so its address is not reused) keeps its
 * answer; only a frozenset of those types is kept (releasing it runs no
 * code).  A type whose metaclass is not `type` may compare equal to one of
 * them (its own __eq__ and __hash__), so it is looked up as before; so is
 * anything in any other set (Encoder.passthrough can be set from Python). */
enum { CS_PASS_SETS = 4 };
static struct {
    PyObject *set; /* held */
    unsigned bits; /* which of the six it holds (cs_pass_bit) */
} cs_pass_sets[CS_PASS_SETS];

static unsigned
cs_pass_bit(PyObject *t)
{
    return t == (PyObject *)&PyUnicode_Type ? 1u : t == (PyObject *)&PyLong_Type ? 2u
         : t == (PyObject *)&PyFloat_Type ? 4u : t == (PyObject *)&PyBool_Type ? 8u
         : t == (PyObject *)Py_TYPE(Py_None) ? 16u : t == (PyObject *)&PyBytes_Type ? 32u : 0u;
}

/* The bits of frozenset `set` (1 << 31 when it holds anything else), or
 * (unsigned)-1 on an error.  Iterating a frozenset of types runs no code. */
static unsigned
cs_pass_learn(PyObject *set)
{
    PyObject *it = PyObject_GetIter(set), *t;
    if (it == NULL) return (unsigned)-1;
    unsigned bits = 0;
    while ((t = PyIter_Next(it)) != NULL) {
        unsigned b = cs_pass_bit(t);
        bits |= b != 0 ? b : 1u << 31;
        Py_DECREF(t);
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? (unsigned)-1 : bits;
}

static int
cs_passes(PyObject *pass, PyTypeObject *t)
{
    if (PyFrozenSet_CheckExact(pass) && Py_IS_TYPE(t, &PyType_Type) &&
        PySet_GET_SIZE(pass) <= 6) {
        int k = 0;
        while (k < CS_PASS_SETS && cs_pass_sets[k].set != pass) k++;
        if (k < CS_PASS_SETS) return (cs_pass_sets[k].bits & cs_pass_bit((PyObject *)t)) != 0;
        unsigned bits = cs_pass_learn(pass);
        if (bits == (unsigned)-1) return -1;
        if (!(bits & (1u << 31))) {
            /* Kept, the newest first, the oldest dropped: detached before
             * it is released (a frozenset of the six types: releasing it
             * runs no code).  A set holding anything else is not kept. */
            PyObject *oldest = cs_pass_sets[CS_PASS_SETS - 1].set;
            memmove(&cs_pass_sets[1], &cs_pass_sets[0],
                    (CS_PASS_SETS - 1) * sizeof(cs_pass_sets[0]));
            cs_pass_sets[0].set = Py_NewRef(pass);
            cs_pass_sets[0].bits = bits;
            Py_XDECREF(oldest);
            return (bits & cs_pass_bit((PyObject *)t)) != 0;
        }
    }
    return PySet_Contains(pass, (PyObject *)t);
}

/* One frame slot, encoded: NULL -> nil, None -> NONE_EXT, a passthrough type
 * as itself, anything else through encoder.enc() (whose None is NONE_EXT too). */
static PyObject *
cs_encode_slot(CaptureState *st, PyObject *x)
{
    if (x == NULL_SLOT) return Py_NewRef(Py_None);
    if (x == Py_None) return Py_NewRef(cs_NONE_EXT);
    int in = cs_passes(st->passthrough, Py_TYPE(x));
    if (in < 0) return NULL;
    if (in) return Py_NewRef(x);
    PyObject *out = cs_encoder_call(st->encoder, 0, x);
    if (out == Py_None) {
        Py_DECREF(out);
        return Py_NewRef(cs_NONE_EXT);
    }
    return out;
}

/* A string stored once per blob (Encoder.string): the text the first time,
 * its index later; new reference. */
static PyObject *
cs_string(PyObject *strings, PyObject *text)
{
    PyObject *index = PyDict_GetItemWithError(strings, text);
    if (index != NULL) return Py_NewRef(index);
    if (PyErr_Occurred()) return NULL;
    PyObject *next = PyLong_FromSsize_t(PyDict_GET_SIZE(strings));
    int rc = next == NULL ? -1 : PyDict_SetItem(strings, text, next);
    Py_XDECREF(next);
    return rc < 0 ? NULL : Py_NewRef(text);
}

/* Encoder.coderef for a code without a nested path: [module, qualname,
 * fingerprint] with each string replaced by its index when the blob has it
 * already, or [-1 - k] for the k-th code seen (code: the code object).  The list has
 * room for `extra` more items after these (NULL until set); *at: how many
 * are set. */
static PyObject *
cs_coderef(CaptureState *st, PyObject *code, CaptureCode *cc, Py_ssize_t extra, Py_ssize_t *at)
{
    MemoObject *codes = (MemoObject *)st->codes;
    Py_ssize_t kk = memo_get(codes, code);
    PyObject *out;
    if (kk >= 0) {
        PyObject *ref = PyLong_FromSsize_t(-1 - kk);
        out = ref == NULL ? NULL : PyList_New(1 + extra);
        if (out == NULL) {
            Py_XDECREF(ref);
            return NULL;
        }
        PyObject_GC_UnTrack(out); /* tracked again once filled (cs_capture_frame) */
        PyList_SET_ITEM(out, 0, ref);
        *at = 1;
        return out;
    }
    if (memo_put(codes, code, codes->used, 0, NULL) < 0) return NULL;
    PyObject *module = cs_string(st->strings, cc->name_module);
    PyObject *qual = module == NULL ? NULL : cs_string(st->strings, cc->name_qualname);
    out = qual == NULL ? NULL : PyList_New(3 + extra);
    if (out == NULL) {
        Py_XDECREF(module);
        Py_XDECREF(qual);
        return NULL;
    }
    PyObject_GC_UnTrack(out); /* tracked again once filled (cs_capture_frame) */
    PyList_SET_ITEM(out, 0, module);
    PyList_SET_ITEM(out, 1, qual);
    PyList_SET_ITEM(out, 2, Py_NewRef(cc->fingerprint));
    *at = 3;
    return out;
}

/* A list of len(ref) + extra items, ref's first (a Python coderef). */
static PyObject *
cs_widen(PyObject *ref, Py_ssize_t extra, Py_ssize_t *at)
{
    Py_ssize_t n = PyList_GET_SIZE(ref);
    PyObject *out = PyList_New(n + extra);
    if (out == NULL) return NULL;
    PyObject_GC_UnTrack(out); /* tracked again once filled (cs_capture_frame) */
    for (Py_ssize_t j = 0; j < n; j++) PyList_SET_ITEM(out, j, Py_NewRef(PyList_GET_ITEM(ref, j)));
    *at = n;
    return out;
}

/* The sub-generator a delegating frame sends to (Encoder.delegated_frame):
 * a back-reference if the snapshot holds it already, else registered in the
 * memo and encoded here, or by the Python engine if declined. */
static PyObject *
cs_delegated(CaptureState *st, PyObject *x, PyObject *noted)
{
    /* registered, unless the memo has it already (one probe) */
    int r = memo_put((MemoObject *)st->memo, x, PyList_GET_SIZE(st->keep), 0, NULL);
    if (r < 0) return NULL;
    if (r == 0) return cs_call_method(st->encoder, s_delegated_frame, x, NULL, NULL, NULL);
    if (PyList_Append(st->keep, x) < 0) return NULL;
    if (Py_EnterRecursiveCall(" while capturing a yield from / await chain") < 0) return NULL;
    PyObject *out = cs_capture_frame((PyObject *)st, x, noted);
    Py_LeaveRecursiveCall();
    if (out != Py_None) return out;
    Py_DECREF(out);
    /* Declined just above: the Python engine, which does not offer it here again. */
    return cs_call_method(st->frames, s_encode, st->encoder, x, NULL, NULL);
}

/* The CaptureCode and Where of the frames captured lately.  Finding them
 * took two dict lookups per frame, each with an int made for its key (the
 * code's id, then its offset): a tenth of capturing a small chain on 3.12.
 * They are kept here, in a slot picked by the code's address and the
 * offset, with the address of the code cache they came from.
 *
 * What a slot holds must keep nothing of a Snapshotter or a module alive.
 * The cache's own CaptureCode cannot be held: its weak reference to the
 * code has a callback that holds the cache's tables.  A slot holds a copy
 * instead, with a weak reference of its own (no callback) and the same
 * facts: exact strs, ints, tuples of them, the CodeRef (exact strs and
 * ints), the {offset: Where} dict (records of ints).  A record whose
 * module name is not an exact str (a str subclass can hold anything) is
 * not kept.  So releasing a slot runs no Python code.
 *
 * A slot is used only while its weak reference still points at the frame's
 * code (a freed code's address can be taken by a new one) and the frame's
 * __name__ is the one its record was made for (the cache holds the record
 * of the last name a code was described with); otherwise it is forgotten
 * and the cache asked, as before.  A CaptureCode and its Where for an
 * offset are made once from the code and its module's name
 * (_capture.describe_code, from process-wide caches of the code's name,
 * analysis and fingerprint) and never changed, so a copy says what the
 * cache's record says.  The cache's address is compared, never read: a
 * slot outlives its cache, and a new cache at the same address may be
 * answered from it before it holds the record itself, with the same
 * record it would make. */
enum { CS_CAPTURED = 128 };
static struct {
    void *code;       /* the code's address: compared, never read */
    PyObject *cache;  /* the code cache's address: compared, never read */
    long lasti;
    CaptureCode *cc;  /* held: a copy (cs_captured_copy) */
    Where *where;     /* held */
} cs_captured[CS_CAPTURED];

/* The first of the two slots (k, k ^ 1) a code and offset may take: two
 * codes whose first slot is the same both stay kept, instead of each
 * replacing the other (a copy made each time). */
static inline size_t
cs_captured_slot(PyCodeObject *co, long lasti)
{
    uint64_t h = ((uint64_t)(uintptr_t)co >> 4) ^ ((uint64_t)lasti * 0x9E3779B97F4A7C15ull);
    h ^= h >> 29;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 32;
    return (size_t)(h & (CS_CAPTURED - 1));
}

static inline int
cs_captured_is(size_t k, CaptureState *st, PyCodeObject *co, long lasti)
{
    return cs_captured[k].cc != NULL && cs_captured[k].code == (void *)co &&
           cs_captured[k].lasti == lasti && cs_captured[k].cache == st->code_cache;
}

/* 1 and new references in *cc and *where, and *k set to the slot, or 0
 * (not kept). */
static int
cs_captured_get(CaptureState *st, size_t *k, PyCodeObject *co, long lasti, CaptureCode **cc,
                Where **where)
{
    if (!cs_captured_is(*k, st, co, lasti)) {
        *k ^= 1;
        if (!cs_captured_is(*k, st, co, lasti)) {
            *k ^= 1;
            return 0;
        }
    }
    *cc = (CaptureCode *)Py_NewRef(cs_captured[*k].cc);
    *where = (Where *)Py_NewRef(cs_captured[*k].where);
    return 1;
}

/* Whether slot k holds nothing worth keeping: empty, or its code freed. */
static int
cs_captured_free(size_t k)
{
    CaptureCode *cc = cs_captured[k].cc;
    if (cc == NULL) return 1;
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *x = NULL;
    if (PyWeakref_GetRef(cc->code, &x) < 0) {
        PyErr_Clear();
        return 1;
    }
    int dead = x == NULL;
    Py_XDECREF(x); /* alive before the call: not the last reference */
    return dead;
#else
    return PyWeakref_GET_OBJECT(cc->code) == Py_None;
#endif
}

/* A copy of the cache's record cc (of code co) to keep: NULL, with no error
 * set, when it is not to be kept (see above). */
static CaptureCode *
cs_captured_copy(CaptureCode *cc, PyCodeObject *co)
{
    if (!PyUnicode_CheckExact(cc->module)) return NULL;
    PyObject *weak = PyWeakref_NewRef((PyObject *)co, NULL);
    if (weak == NULL) {
        PyErr_Clear();
        return NULL;
    }
    CaptureCode *copy = (CaptureCode *)PyType_GenericAlloc(&CaptureCode_Type.type, 0);
    if (copy == NULL) {
        PyErr_Clear();
        Py_DECREF(weak);
        return NULL;
    }
    copy->code = weak;
    copy->module = Py_NewRef(cc->module);
    copy->nlocals = cc->nlocals;
    copy->where = Py_NewRef(cc->where);
    copy->ref = Py_NewRef(cc->ref);
    copy->name_module = Py_NewRef(cc->name_module);
    copy->name_qualname = Py_NewRef(cc->name_qualname);
    copy->fingerprint = Py_NewRef(cc->fingerprint);
    copy->slot_names = Py_NewRef(cc->slot_names);
    return copy;
}

/* The slot emptied first, then what it held released (no Python code runs:
 * see above). */
static void
cs_captured_forget(size_t k)
{
    CaptureCode *cc = cs_captured[k].cc;
    Where *where = cs_captured[k].where;
    cs_captured[k].cc = NULL;
    cs_captured[k].where = NULL;
    cs_captured[k].code = NULL;
    cs_captured[k].cache = NULL;
    Py_XDECREF(cc);
    Py_XDECREF(where);
}

/* Keep (a copy of) cc and where in slot k or k ^ 1 (k: the first slot),
 * if they may be kept: in the slot that holds them already (a record
 * forgotten), an empty one or one whose code was freed, else the second. */
static void
cs_captured_put(CaptureState *st, size_t k, PyCodeObject *co, long lasti, CaptureCode *cc,
                Where *where)
{
    if (!cs_captured_free(k) && !(cs_captured[k].code == (void *)co &&
                                  cs_captured[k].lasti == lasti)) {
        k ^= 1;
    }
    CaptureCode *copy = cs_captured_copy(cc, co);
    if (copy == NULL) return;
    CaptureCode *old_cc = cs_captured[k].cc;
    Where *old_where = cs_captured[k].where;
    cs_captured[k].code = (void *)co;
    cs_captured[k].cache = st->code_cache;
    cs_captured[k].lasti = lasti;
    cs_captured[k].cc = copy;
    cs_captured[k].where = (Where *)Py_NewRef(where);
    Py_XDECREF(old_cc);
    Py_XDECREF(old_where);
}

/* The fields of one frame (see _capture.FrameEncoder.encode), or None.
 * noted: globals the encoder has noted already (the delegating frame's), or
 * NULL. */
static PyObject *
cs_capture_frame(PyObject *state, PyObject *gen, PyObject *noted)
{
    CaptureState *st = (CaptureState *)state;
    if (!cs_is_generator(gen)) Py_RETURN_NONE;
    CorosnapFrameState fs = {0};
    if (frames_api->read(gen, &fs) < 0) return NULL;
    /* the frame's values, out of the collector's sight: Python code run by
     * encoding a slot must not reach (and change) the list being walked */
    if (fs.slots != NULL) PyObject_GC_UnTrack(fs.slots);
    PyObject *fields = NULL, *key = NULL, *lasti = NULL;
    Where *where = NULL; /* held: cc->where is a plain dict Python code can change */
    CaptureCode *cc = NULL;
    if (fs.state != CS_SUSPENDED && fs.state != CS_CREATED) goto slow;
    if (!PyDict_Check(fs.globals)) goto slow;
    int has = 1;
    if (fs.globals != noted) {
        key = PyLong_FromVoidPtr(fs.globals);
        if (key == NULL) goto error;
        has = PySet_Contains(st->globals_seen, key);
        Py_CLEAR(key);
        if (has < 0) goto error;
    }
    PyCodeObject *co = frames_api->code_of(gen);
    long at_lasti = fs.state == CS_CREATED ? -1 : fs.lasti;
    size_t kept = cs_captured_slot(co, at_lasti);
    int from_kept = cs_captured_get(st, &kept, co, at_lasti, &cc, &where);
lookup:
    if (!from_kept) {
        key = PyLong_FromVoidPtr(co); /* id(co) */
        if (key == NULL) goto error;
        PyObject *found = PyDict_GetItemWithError(st->code_cache, key);
        Py_CLEAR(key);
        if (found == NULL) {
            if (PyErr_Occurred()) goto error;
            goto slow; /* first time: the Python engine makes the record */
        }
        if (!CaptureCode_Check(found)) {
            cs_bad_record("a capture code-cache entry");
            goto error;
        }
        cc = (CaptureCode *)Py_NewRef(found);
    }
    if (!cs_refers_to(cc->code, (PyObject *)co)) {
        if (from_kept) goto again; /* the code died and another one has its address */
        goto slow;
    }
    PyObject *name = PyDict_GetItemWithError(fs.globals, s_name);
    if (name == NULL) {
        if (PyErr_Occurred()) goto error;
        goto slow;
    }
    /* Two exact strs are compared without running code; anything else (a
     * str subclass's own __eq__ or __ne__, which the Python engine's `!=`
     * runs even on the record's own name) is the Python engine's. */
    if (!PyUnicode_CheckExact(name)) goto slow;
    if (name != cc->module) {
        if (!PyUnicode_CheckExact(cc->module)) goto slow;
        int eq = PyObject_RichCompareBool(name, cc->module, Py_EQ);
        if (eq < 0) goto error;
        if (!eq) {
            if (from_kept) goto again; /* described again since, for another __name__? */
            goto slow;
        }
    }
    lasti = PyLong_FromLong(at_lasti);
    if (lasti == NULL) goto error;
    if (!from_kept) {
        PyObject *wobj = PyDict_GetItemWithError(cc->where, lasti);
        if (wobj == NULL) {
            if (PyErr_Occurred()) goto error;
            goto slow; /* the Python engine says what is wrong */
        }
        if (!Where_Check(wobj)) {
            cs_bad_record("a CaptureCode.where entry");
            goto error;
        }
        where = (Where *)Py_NewRef(wobj);
        cs_captured_put(st, kept, co, at_lasti, cc, where);
    }
    if (0) {
    again:
        /* A kept answer that does not fit: forgotten, and the cache asked. */
        cs_captured_forget(kept);
        Py_CLEAR(cc);
        Py_CLEAR(where);
        from_kept = 0;
        goto lookup;
    }
    Py_ssize_t n = cc->nlocals, depth = where->depth;
    if (fs.nlocals != n || PyList_GET_SIZE(fs.slots) != n + depth) goto slow;
    for (Py_ssize_t j = 0; j < depth; j++) {
        /* 3.14+ tagged integers only where the bytecode analysis expects
         * them (a handler's lasti, a 3.15 sequence index); anywhere else the
         * Python engine says what is wrong. */
        if (Py_IS_TYPE(PyList_GET_ITEM(fs.slots, n + j), frames_api->tagged_int)) {
            PyObject *jj = PyLong_FromSsize_t(j);
            int ok = jj == NULL ? -1 : PySequence_Contains(where->tagged, jj);
            Py_XDECREF(jj);
            if (ok < 0) goto error;
            if (!ok) goto slow;
        }
    }

    /* Committed: from here on this frame is encoded here. */
    if (!has) {
        PyObject *rc = cs_encoder_call(st->encoder, 1, fs.globals);
        if (rc == NULL) goto error;
        Py_DECREF(rc);
    }
    /* [*coderef, position, *localsplus, *stack], made at its full size and
     * filled in order (a NULL item is one not filled yet), out of the
     * collector's sight until it is full: encoding a slot runs Python code,
     * which must not find it through gc.get_objects() */
    Py_ssize_t at = 0, extra = 1 + n + depth;
    if (cc->name_qualname == Py_None) { /* a nested code: Encoder.coderef */
        PyObject *ref = cs_call_method(st->encoder, s_coderef, (PyObject *)co, cc->ref,
                                       cc->fingerprint, NULL);
        if (ref == NULL) goto error;
        if (!PyList_CheckExact(ref)) {
            Py_DECREF(ref);
            PyErr_SetString(PyExc_TypeError, "Encoder.coderef() must return a list");
            goto error;
        }
        fields = cs_widen(ref, extra, &at);
        Py_DECREF(ref);
    }
    else {
        fields = cs_coderef(st, (PyObject *)co, cc, extra, &at);
    }
    Py_CLEAR(key);
    if (fields == NULL) goto error;
    if (fs.exc_value == Py_None) {
        PyList_SET_ITEM(fields, at++, Py_NewRef(lasti));
    }
    else {
        PyObject *e = cs_encoder_call(st->encoder, 0, fs.exc_value);
        PyObject *pos = e == NULL ? NULL : Py_BuildValue("[ON]", lasti, e);
        if (pos == NULL) goto error;
        PyList_SET_ITEM(fields, at++, pos);
    }
    for (Py_ssize_t j = 0; j < n; j++) {
        PyObject *out = cs_encode_slot(st, PyList_GET_ITEM(fs.slots, j));
        if (out == NULL) goto error;
        PyList_SET_ITEM(fields, at++, out);
    }
    for (Py_ssize_t j = 0; j < depth; j++) {
        PyObject *x = PyList_GET_ITEM(fs.slots, n + j);
        PyObject *out;
        if (Py_IS_TYPE(x, frames_api->tagged_int)) {
            out = PyNumber_Long(x); /* stored as a plain int, re-tagged on restore */
        }
        else if (j == where->sub_at && cs_is_generator(x)) {
            out = cs_delegated(st, x, fs.globals);
        }
        else {
            out = cs_encode_slot(st, x);
        }
        if (out == NULL) goto error;
        PyList_SET_ITEM(fields, at++, out);
    }
    PyObject_GC_Track(fields);
    Py_DECREF(where);
    Py_DECREF(lasti);
    Py_DECREF(cc);
    CorosnapFrameState_Clear(&fs);
    return fields;
slow:
    Py_XDECREF(where);
    Py_XDECREF(key);
    Py_XDECREF(lasti);
    Py_XDECREF(cc);
    CorosnapFrameState_Clear(&fs);
    Py_RETURN_NONE;
error:
    Py_XDECREF(where);
    Py_XDECREF(key);
    Py_XDECREF(fields);
    Py_XDECREF(lasti);
    Py_XDECREF(cc);
    CorosnapFrameState_Clear(&fs);
    return NULL;
}

/* The encoder's CaptureState (its cstate), made the first time from its
 * tables by the record's own constructor (so every field is checked), and
 * kept there: the Snapshotter reuses its encoders, whose tables are emptied
 * in place.  New reference. */
static PyObject *
cs_encoder_state(PyObject *frames, PyObject *code_cache, PyObject *encoder)
{
    PyObject *st = cs_encoder_slot(encoder, CS_ENC_CSTATE);
    if (st == NULL) return NULL;
    Py_INCREF(st);
    if (CaptureState_Check(st) && ((CaptureState *)st)->encoder == encoder &&
        ((CaptureState *)st)->frames == frames && ((CaptureState *)st)->code_cache == code_cache) {
        return st;
    }
    Py_DECREF(st);
    static const char *tables[] = {"memo", "keep", "strings", "codes", "globals_seen",
                                   "passthrough"};
    PyObject *kw = PyDict_New();
    int rc = kw == NULL ? -1 : 0;
    for (size_t k = 0; rc == 0 && k < sizeof(tables) / sizeof(tables[0]); k++) {
        PyObject *v = PyObject_GetAttrString(encoder, tables[k]);
        rc = v == NULL ? -1 : PyDict_SetItemString(kw, tables[k], v);
        Py_XDECREF(v);
    }
    if (rc == 0) rc = PyDict_SetItemString(kw, "encoder", encoder);
    if (rc == 0) rc = PyDict_SetItemString(kw, "code_cache", code_cache);
    if (rc == 0) rc = PyDict_SetItemString(kw, "frames", frames);
    PyObject *empty = rc == 0 ? PyTuple_New(0) : NULL;
    st = empty == NULL ? NULL : PyObject_Call((PyObject *)&CaptureState_Type.type, empty, kw);
    Py_XDECREF(empty);
    Py_XDECREF(kw);
    if (st != NULL && cs_encoder_slot_set(encoder, CS_ENC_CSTATE, st) < 0) Py_CLEAR(st);
    return st;
}

/* How many emptied encoders a Snapshotter's caches keep: _api._SPARE, which
 * tests/test_encoder_reuse.py holds to this module's SPARE. */
#define CS_SPARE 4

/* capture_root(caches, pid, gen): Snapshotter.dumps's common case in one
 * call (see there; caches is its _Caches).  An encoder is taken from
 * caches.spare (or made: caches.Encoder(pid, caches.hook)), gen registered
 * as memo entry 0 and its frame captured; when nothing is left for later
 * (encoder.after and encoder.offered empty) the blob is packed, the encoder
 * emptied (Encoder.clear) and put back, and the bytes returned.  Else
 * (encoder, the root's fields): Python finishes the blob with that encoder.
 * None: the C engine declined the root frame, before anything happened
 * (the encoder is put back).  On an error the encoder is dropped. */
static PyObject *
cs_capture_root(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !CaptureRoot_Check(args[0]) || !cs_is_generator(args[2])) {
        PyErr_SetString(PyExc_TypeError, "capture_root(root: CaptureRoot, pid, gen)");
        return NULL;
    }
    CaptureRoot *root = (CaptureRoot *)args[0];
    PyObject *pid = args[1], *gen = args[2], *spare = root->spare;
    if (cs_codec_ready() < 0) return NULL;
    PyObject *enc = NULL, *st = NULL, *fields = NULL, *out = NULL;
    Py_INCREF(root);
    Py_ssize_t n = PyList_GET_SIZE(spare);
    if (n > 0) {
#ifndef Py_GIL_DISABLED
        /* spare.pop(), keeping the list's buffer (an exact list: the
         * record's LIST field); the list's reference is now ours */
        enc = PyList_GET_ITEM(spare, n - 1);
        Py_SET_SIZE(spare, n - 1);
#else
        /* another thread may pop the same list: through the list API */
        enc = PyObject_CallMethod(spare, "pop", NULL);
        if (enc == NULL) goto error;
#endif
        if (cs_encoder_slot_set(enc, CS_ENC_PID, pid) < 0) goto error;
    }
    else {
        enc = PyObject_CallFunctionObjArgs(root->encoder_class, pid, root->hook, NULL);
        if (enc == NULL) goto error;
    }
    st = cs_encoder_state(root->frames, root->code_cache, enc);
    if (st == NULL) goto error;
    CaptureState *cst = (CaptureState *)st;
    if (memo_put((MemoObject *)cst->memo, gen, 0, 1, NULL) < 0 ||
        PyList_Append(cst->keep, gen) < 0) {
        goto error;
    }
    fields = cs_capture_frame(st, gen, NULL);
    if (fields == NULL) goto error;
    if (fields == Py_None) {
        /* declined: nothing happened but the registration, undone */
        Py_ssize_t k = PyList_GET_SIZE(cst->keep);
        memo_del((MemoObject *)cst->memo, gen);
        if (PyList_SetSlice(cst->keep, k - 1, k, NULL) < 0) goto error;
        out = Py_NewRef(Py_None);
    }
    else {
        PyObject *after = cs_encoder_slot(enc, CS_ENC_AFTER);
        PyObject *offered = after == NULL ? NULL : cs_encoder_slot(enc, CS_ENC_OFFERED);
        if (offered == NULL) goto error;
        if (PyList_GET_SIZE(after) || PyList_GET_SIZE(offered)) {
            /* buffers to decide, checks to run: Python finishes the blob */
            out = PyTuple_Pack(2, enc, fields);
            Py_CLEAR(enc); /* Python's now */
            if (out == NULL) goto error;
            goto done;
        }
        if (PyList_Insert(fields, 0, cs_HEADER) < 0) goto error;
        out = PyObject_Vectorcall(cs_c_pack, &fields, 1, NULL);
        if (out == NULL) goto error;
    }
    /* emptied (it drops every reference to this snapshot's values) and kept */
    PyObject *cleared = PyObject_Vectorcall(cs_c_clear, &enc, 1, NULL);
    if (cleared == NULL) goto error;
    Py_DECREF(cleared);
    if (PyList_GET_SIZE(spare) < CS_SPARE && PyList_Append(spare, enc) < 0) goto error;
done:
    Py_XDECREF(enc);
    Py_XDECREF(fields);
    Py_XDECREF(st);
    Py_DECREF(root);
    return out;
error:
    Py_CLEAR(out);
    if (enc != NULL) {
        /* dropped, with the cycle through its CaptureState broken */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (cs_encoder_slot_set(enc, CS_ENC_CSTATE, Py_None) < 0) PyErr_Clear();
        PyErr_Restore(type, value, tb);
    }
    goto done;
}

static PyObject *
cs_capture(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !CaptureState_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "capture(state: CaptureState, gen)");
        return NULL;
    }
    return cs_capture_frame(args[0], args[1], NULL);
}

/* ------------------------------------------------------------------ restore */

static PyObject *
cs_corrupt(PyObject *label, const char *format, ...)
{
    va_list va;
    va_start(va, format);
    PyObject *detail = PyUnicode_FromFormatV(format, va);
    va_end(va);
    if (detail == NULL) return NULL;
    PyObject *msg = PyUnicode_FromFormat("%U: %U", label, detail);
    Py_DECREF(detail);
    if (msg != NULL) {
        PyErr_SetObject(cs_CorruptSnapshot, msg);
        Py_DECREF(msg);
    }
    return NULL;
}

/* A CorruptSnapshot naming a value's type as type(x).__name__ does. */
static PyObject *
cs_corrupt_type(PyObject *label, const char *format, PyObject *extra, PyObject *x)
{
    PyObject *name = PyType_GetName(Py_TYPE(x));
    if (name == NULL) return NULL;
    if (extra != NULL) {
        cs_corrupt(label, format, extra, name);
    }
    else {
        cs_corrupt(label, format, name);
    }
    Py_DECREF(name);
    return NULL;
}

/* iter(range(stop)) advanced to `index` and registered in the memo, or
 * CorruptSnapshot (as Decoder._rangeiter). */
static PyObject *
cs_range_iter(PyObject *stop, PyObject *index, PyObject *memo)
{
    PyObject *r = PyObject_CallOneArg((PyObject *)&PyRange_Type, stop);
    PyObject *it = r == NULL ? NULL : PyObject_GetIter(r);
    Py_XDECREF(r);
    if (it != NULL) {
        /* range_iterator's own __setstate__, found once (a range too large
         * for a C long makes a longrange_iterator: looked up by name) */
        static PyObject *setstate = NULL;
        static PyTypeObject *iter_type = NULL;
        if (setstate == NULL && Py_IS_TYPE(it, &PyRangeIter_Type)) {
            setstate = PyObject_GetAttr((PyObject *)&PyRangeIter_Type, s_setstate);
            if (setstate == NULL) PyErr_Clear();
            else iter_type = &PyRangeIter_Type;
        }
        PyObject *sargs[2] = {it, index};
        PyObject *rc = Py_IS_TYPE(it, iter_type) && setstate != NULL
                           ? PyObject_Vectorcall(setstate, sargs, 2, NULL)
                           : cs_call_method(it, s_setstate, index, NULL, NULL, NULL);
        if (rc == NULL) Py_CLEAR(it);
        Py_XDECREF(rc);
    }
    if (it == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_ValueError)
            || PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyObject *type, *value, *tb;
            PyErr_Fetch(&type, &value, &tb);
            PyErr_NormalizeException(&type, &value, &tb);
            PyObject *msg = PyUnicode_FromFormat("malformed range iterator: %S", value);
            if (msg != NULL) {
                PyErr_SetObject(cs_CorruptSnapshot, msg);
                Py_DECREF(msg);
            }
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
        }
        return NULL;
    }
    if (PyList_Append(memo, it) < 0) {
        Py_DECREF(it);
        return NULL;
    }
    return it;
}

/* As _restore._kind_ok: 1, 0, or -1 with an error (SystemError for a kind
 * this engine does not know: a plan with one is a bug, not bad input). */
static int
cs_kind_ok(PyObject *x, int kind, Py_ssize_t ncodeunits)
{
    switch (kind) {
    case K_ANY: return 1;
    case K_CALL1_SELF: return 1; /* only an empty slot is checked (cs_check_frame) */
    case K_ITER: return cs_hasattr((PyObject *)Py_TYPE(x), s_next);
    case K_LIST: return PyList_CheckExact(x);
    case K_SET: return PySet_CheckExact(x);
    case K_DICT: return PyDict_CheckExact(x);
    case K_EXC: return PyExceptionInstance_Check(x);
    case K_EXC_OR_NONE: return x == Py_None || PyExceptionInstance_Check(x);
    case K_EXC_LIST: {
        if (!PyList_CheckExact(x)) return 0;
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(x); i++) {
            PyObject *item = PyList_GET_ITEM(x, i);
            if (item != Py_None && !PyExceptionInstance_Check(item)) return 0;
        }
        return 1;
    }
    case K_LASTI: {
        if (!PyLong_CheckExact(x)) return 0;
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(x, &overflow);
        if (v == -1 && PyErr_Occurred()) return -1;
        return !overflow && v >= 0 && v < ncodeunits;
    }
    default:
        PyErr_Format(PyExc_SystemError, "corosnap C engine: unknown slot kind %d", kind);
        return -1;
    }
}

/* As _restore._describe: the type of a refused value, and for a list the
 * type of its first item that is neither None nor an exception. */
static PyObject *
cs_describe(PyObject *x)
{
    if (PyList_CheckExact(x)) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(x); i++) {
            PyObject *item = PyList_GET_ITEM(x, i);
            if (item != Py_None && !PyExceptionInstance_Check(item)) {
                PyObject *name = PyType_GetName(Py_TYPE(item));
                if (name == NULL) return NULL;
                PyObject *out = PyUnicode_FromFormat("a list holding a value of type %U", name);
                Py_DECREF(name);
                return out;
            }
        }
    }
    return PyType_GetName(Py_TYPE(x));
}

/* The string-table entry a code-reference field names: a str (new), or the
 * index of an earlier one.  Borrowed; NULL (no error) when malformed. */
static PyObject *
cs_string_field(PyObject *field, PyObject *strings)
{
    if (PyUnicode_CheckExact(field)) return field;
    if (!PyLong_CheckExact(field)) return NULL;
    Py_ssize_t k = PyLong_AsSsize_t(field);
    if (k == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return NULL;
    }
    if (k < 0 || k >= PyList_GET_SIZE(strings)) return NULL;
    return PyList_GET_ITEM(strings, k);
}

/* The state's Decoder, made as frames.adopt(state) makes it the first time
 * a frame needs one (a snapshot whose values are all handled here never
 * builds it).  New reference. */
static PyObject *cs_adopt_decoder = NULL;  /* the codec's C adopt_decoder */
static PyObject *cs_release_decoder = NULL; /* and its release_decoder */

static PyObject *
cs_decoder(RestoreState *st)
{
    if (st->decoder == Py_None) {
        /* whichever entry restores, dec is then called directly (cs_dec_call) */
        if (cs_decoder_ready() < 0) return NULL;
        /* FrameDecoder.adopt(state), in C: the codec's adopt_decoder makes
         * frames.decoder(frames, safe, allow) sharing the state's tables. */
        if (cs_adopt_decoder == NULL) {
            PyObject *codec = PyImport_ImportModule("corosnap.codec._ccodec");
            PyObject *release = codec == NULL ? NULL
                                              : PyObject_GetAttrString(codec, "release_decoder");
            PyObject *adopt = release == NULL ? NULL
                                              : PyObject_GetAttrString(codec, "adopt_decoder");
            Py_XDECREF(codec);
            if (adopt == NULL) {
                Py_XDECREF(release);
                return NULL;
            }
            cs_release_decoder = release;
            cs_adopt_decoder = adopt;
        }
        PyObject *cls = PyObject_GetAttr(st->frames, s_decoder);
        if (cls == NULL) return NULL;
        PyObject *args[12] = {cls, st->frames, st->safe ? Py_True : Py_False, st->allow,
                              st->memo, st->strings, st->codes, st->active, st->exceptions,
                              st->shapes, st->depth, (PyObject *)st};
        PyObject *dec = PyObject_Vectorcall(cs_adopt_decoder, args, 12, NULL);
        Py_DECREF(cls);
        if (dec == NULL) return NULL;
        Py_SETREF(st->decoder, dec);
    }
    return Py_NewRef(st->decoder);
}

/* The checks of _restore.check_frame, in its order and with its messages,
 * on the decoded slots of a frame about to be written: 0, or -1 with
 * CorruptSnapshot (or the error a callback raised).  Converts the ints of
 * 3.14+ tagged slots to TaggedInt and copies an except* result list, in
 * place, as the Python engine does. */
static int
cs_check_frame(RestoreState *st, RestoreCode *rc, Plan *plan, PyObject *gen, PyObject *slots,
               int fresh_sub, PyObject **dec)
{
    PyObject *label = rc->label;
    Py_ssize_t n = rc->nlocals, total = PyList_GET_SIZE(slots);
    if (plan->dot0) {
        int ok = n > 0 ? cs_hasattr((PyObject *)Py_TYPE(PyList_GET_ITEM(slots, 0)), s_next) : 0;
        if (ok < 0) return -1;
        if (!ok) {
            cs_corrupt_type(label, "its '.0' argument must be an iterator (the first FOR_ITER "
                            "advances it), got %U", NULL,
                            n > 0 ? PyList_GET_ITEM(slots, 0) : Py_None);
            return -1;
        }
    }
    for (Py_ssize_t c = 0; c < PyTuple_GET_SIZE(plan->checks); c++) {
        PyObject *item = PyTuple_GET_ITEM(plan->checks, c);
        if (!Check_Check(item)) {
            cs_bad_record("a Plan.checks item");
            return -1;
        }
        Check *check = (Check *)item;
        Py_ssize_t index = check->slot;
        if (index < n || index >= total || (check->index_above && index + 1 >= total)) {
            cs_bad_record("a Check's slot");
            return -1;
        }
        PyObject *x = PyList_GET_ITEM(slots, index);
        if (check->kind == K_INDEX && x != NULL_SLOT) {
            /* 3.15: a sequence walked in place; FOR_ITER / SEND call its
             * type's _tp_iteritem without checking the type has one. */
            PyObject *seq = index > n ? PyList_GET_ITEM(slots, index - 1) : NULL;
            int ok = 0;
            if (PyLong_CheckExact(x) && seq != NULL && frames_api->virtual_iterable != NULL) {
                Py_ssize_t iv = PyLong_AsSsize_t(x);
                if (iv == -1 && PyErr_Occurred()) PyErr_Clear(); /* huge: refused below */
                ok = iv >= 0 && frames_api->virtual_iterable(seq);
            }
            if (!ok) {
                /* The slot below, as Python's slots[index - 1] (wrapping at 0) names it. */
                PyObject *prev = PyList_GET_ITEM(slots, index > 0 ? index - 1 : total - 1);
                PyObject *pname = PyType_GetName(Py_TYPE(prev));
                if (pname != NULL) {
                    cs_corrupt(label, "value stack slots %zd, %zd must be a sequence CPython "
                               "walks by index and its index, got %U, %R", index - n - 1,
                               index - n, pname, x);
                    Py_DECREF(pname);
                }
                return -1;
            }
            PyObject *tagged = PyObject_CallOneArg((PyObject *)frames_api->tagged_int, x);
            if (tagged == NULL) return -1;
            PyList_SetItem(slots, index, tagged); /* steals; releases the int */
            continue;
        }
        if (check->index_above && PyList_GET_ITEM(slots, index + 1) != NULL_SLOT) {
            continue; /* walked by index: checked with the index slot above */
        }
        if (x == NULL_SLOT) {
            if (!check->nullable) {
                cs_corrupt(label, "value stack slot %zd is empty where the bytecode always "
                                  "has a value", index - n);
                return -1;
            }
            if (check->kind == K_CALL1_SELF && index > n &&
                PyList_GET_ITEM(slots, index - 1) == cs_list_append) {
                /* 3.13's CALL_LIST_APPEND reads this slot without a NULL check. */
                cs_corrupt(label, "value stack slot %zd is empty above list.append, which "
                                  "CPython 3.13 calls without checking its self slot", index - n);
                return -1;
            }
            continue;
        }
        if (check->kind == K_ANY) continue;
        int ok = cs_kind_ok(x, check->kind, rc->ncodeunits);
        if (ok < 0) return -1;
        if (!ok) {
            PyObject *what = cs_describe(x);
            if (what != NULL) {
                cs_corrupt(label, "value stack slot %zd must be %U, got %U", index - n,
                           check->name, what);
                Py_DECREF(what);
            }
            return -1;
        }
        if (check->kind < K_COUNT && (cs_tagged_kinds >> check->kind) & 1) {
            /* 3.14+: the handler's lasti is a tagged integer in the frame */
            PyObject *tagged = PyObject_CallOneArg((PyObject *)frames_api->tagged_int, x);
            if (tagged == NULL) return -1;
            PyList_SetItem(slots, index, tagged);
        }
        /* K_EXC_LIST: copied by cs_copy_exc_lists, just before the write. */
    }
    for (Py_ssize_t c = 0; c < PyTuple_GET_SIZE(plan->bound); c++) {
        Py_ssize_t index = PyLong_AsSsize_t(PyTuple_GET_ITEM(plan->bound, c));
        if (index == -1 && PyErr_Occurred()) return -1;
        if (index < 0 || index >= n || index >= PyTuple_GET_SIZE(rc->slot_names)) {
            cs_bad_record("a Plan.bound item");
            return -1;
        }
        if (PyList_GET_ITEM(slots, index) == NULL_SLOT) {
            cs_corrupt(label, "local %R is read without a check after this point, so it "
                              "cannot be unbound", PyTuple_GET_ITEM(rc->slot_names, index));
            return -1;
        }
    }
    for (Py_ssize_t c = 0; c < PyTuple_GET_SIZE(rc->cells); c++) {
        Py_ssize_t index = PyLong_AsSsize_t(PyTuple_GET_ITEM(rc->cells, c));
        if (index == -1 && PyErr_Occurred()) return -1;
        if (index < 0 || index >= n || index >= PyTuple_GET_SIZE(rc->slot_names)) {
            cs_bad_record("a RestoreCode.cells item");
            return -1;
        }
        PyObject *x = PyList_GET_ITEM(slots, index);
        if (!PyCell_Check(x)) {
            cs_corrupt_type(label, "slot %R must hold a cell, got %U",
                            PyTuple_GET_ITEM(rc->slot_names, index), x);
            return -1;
        }
    }
    if (plan->delegate_at >= 0) {
        if (plan->delegate_at >= total) {
            cs_bad_record("a Plan's delegate_at");
            return -1;
        }
        PyObject *sub = PyList_GET_ITEM(slots, plan->delegate_at);
        int ok = cs_is_generator(sub);
        if (!ok) {
            ok = cs_hasattr((PyObject *)Py_TYPE(sub), s_next);
            if (ok < 0) return -1;
        }
        if (!ok && frames_api->virtual_iterable != NULL) {
            ok = frames_api->virtual_iterable(sub);
        }
        if (!ok) {
            cs_corrupt_type(label, "delegates to a %U, which is not an iterator", NULL, sub);
            return -1;
        }
        if (!fresh_sub) {
            /* A sub-frame decoded just above is new: its own chain was checked
             * against this frame (active then) when it was written. */
            if (*dec == NULL && (*dec = cs_decoder(st)) == NULL) return -1;
            PyObject *r = cs_call_method(st->frames, s_check_chain, *dec, (PyObject *)rc, gen,
                                         sub);
            if (r == NULL) return -1;
            Py_DECREF(r);
        }
    }
    return 0;
}

/* As _restore.final_slots, once every check has passed and just before the
 * write, with no Python code in between: an except* result list is copied
 * (only the stack holds this list in a real frame, while a blob could alias
 * it with a list the code appends to before PREP_RERAISE_STAR reads it),
 * and the copy checked again (code run since the check, a reduce or a
 * type's __getattribute__, may have changed the list). */
static int
cs_copy_exc_lists(RestoreCode *rc, Plan *plan, PyObject *slots)
{
    Py_ssize_t n = rc->nlocals, total = PyList_GET_SIZE(slots);
    for (Py_ssize_t c = 0; c < PyTuple_GET_SIZE(plan->checks); c++) {
        Check *check = (Check *)PyTuple_GET_ITEM(plan->checks, c); /* checked before */
        Py_ssize_t index = check->slot;
        if (check->kind != K_EXC_LIST || index < n || index >= total) continue;
        if (check->index_above && index + 1 < total &&
            PyList_GET_ITEM(slots, index + 1) != NULL_SLOT) {
            continue;
        }
        PyObject *x = PyList_GET_ITEM(slots, index);
        if (x == NULL_SLOT) continue;
        PyObject *copy = PyList_CheckExact(x) ? PyList_GetSlice(x, 0, PyList_GET_SIZE(x)) : NULL;
        if (copy == NULL && PyErr_Occurred()) return -1;
        int ok = copy != NULL ? cs_kind_ok(copy, K_EXC_LIST, rc->ncodeunits) : 0;
        if (ok <= 0) {
            if (ok == 0) {
                PyObject *what = cs_describe(copy != NULL ? copy : x);
                if (what != NULL) {
                    cs_corrupt(rc->label, "value stack slot %zd must be %U, got %U", index - n,
                               check->name, what);
                    Py_DECREF(what);
                }
            }
            Py_XDECREF(copy);
            return -1;
        }
        PyList_SetItem(slots, index, copy);
    }
    return 0;
}

/* A frame being restored by cs_restore_frame, linked to the one whose
 * sub-frame it is (the C recursion of a yield from / await chain). */
typedef struct CsLink {
    PyObject *gen;    /* the fresh generator (borrowed), NULL before it is made */
    PyObject *gen_id; /* id(gen), once registered in state.active */
    struct CsLink *up;
} CsLink;

static PyObject *cs_restore_frame(RestoreState *st, PyObject *v, Py_ssize_t i, int root,
                                  CsLink *up);

/* As _restore.slot_error: the RestoreError being raised while slot j of a
 * frame of rc's code was decoded becomes an error of the same class whose
 * message says which local or value stack slot held the value (the codec
 * only knows the value): "<label>: local 'f': <message>".  Any other error,
 * and one whose class cannot be built from a message (an Exception from its
 * constructor), is left as it is.  Like Python's `raise named from
 * exc.__cause__` in an except clause: the cause is kept, the context is the
 * original error and is not shown. */
static void
cs_name_slot(RestoreCode *rc, Py_ssize_t j)
{
    if (!PyErr_ExceptionMatches(cs_RestoreError)) return;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value == NULL) {
        PyErr_Restore(type, value, tb);
        return;
    }
    if (tb != NULL) PyException_SetTraceback(value, tb);
    Py_ssize_t n = rc->nlocals;
    PyObject *where = (j >= 0 && j < n && j < PyTuple_GET_SIZE(rc->slot_names))
        ? PyUnicode_FromFormat("local %R", PyTuple_GET_ITEM(rc->slot_names, j))
        : PyUnicode_FromFormat("value stack slot %zd", j - n);
    PyObject *text = where == NULL ? NULL
                                   : PyUnicode_FromFormat("%U: %U: %S", rc->label, where, value);
    Py_XDECREF(where);
    if (text == NULL) goto failed; /* as str(exc) failing in Python: that error */
    PyObject *named = PyObject_CallOneArg((PyObject *)Py_TYPE(value), text);
    Py_DECREF(text);
    if (named == NULL || !PyExceptionInstance_Check(named)) {
        if (named == NULL && !PyErr_ExceptionMatches(PyExc_Exception)) goto failed;
        /* a subclass with another signature: the error as it was */
        PyErr_Clear();
        Py_XDECREF(named);
        PyErr_Restore(type, value, tb);
        return;
    }
    PyException_SetCause(named, PyException_GetCause(value)); /* steals; suppresses context */
    PyException_SetContext(named, Py_NewRef(value));          /* steals */
    Py_DECREF(type);
    Py_DECREF(value);
    Py_XDECREF(tb);
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(named)), named, NULL);
    return;
failed:
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
}

/* Register the frames being restored in state.active (id(gen)): what
 * _restore.check_chain reads to refuse a delegation chain that comes back to
 * a frame still being restored.  Only Python code run while a frame is half
 * made can read it (a value's decoding, which may restore other frames, the
 * Python engine's restore of a declined sub-frame, the chain check, an
 * attribute lookup), so this runs just before the first such step, and
 * registers the frame with every frame above it in this C recursion (a
 * frame registered has all those above it registered too).  A chain whose
 * slots are all plain values (ints, None, range iterators, sub-frames
 * restored here) never pays for it; the Python engine registers every frame
 * up front, with the same answers.  Each frame leaves state.active itself,
 * when it is done. */
static int
cs_activate(RestoreState *st, CsLink *link)
{
    for (CsLink *l = link; l != NULL && l->gen_id == NULL; l = l->up) {
        if (l->gen == NULL) continue;
        PyObject *k = PyLong_FromVoidPtr(l->gen);
        if (k == NULL) return -1;
        if (PySet_Add(st->active, k) < 0) {
            Py_DECREF(k);
            return -1;
        }
        l->gen_id = k;
    }
    return 0;
}

/* The code keys met lately: finding a frame's RestoreCode in the code cache
 * (keyed by (module, qualname, path, fingerprint)) made and hashed a 4-tuple
 * per frame, a twentieth of loading a small chain.  A key met before is
 * kept here with its hash, in a slot picked by its fingerprint's hash, and
 * looked up as it is.  The table holds the keys only (two strings, a tuple
 * of small ints, an int: no code object, module or record), so the cache
 * stays the only holder of what it finds, and an entry it dropped is simply
 * not found.
 *
 * The cache's own key for an entry is an equal tuple made by the Python
 * engine, so a lookup with the tuple kept here compared the two item by
 * item (two string compares and two int compares, a tenth of loading a
 * chain on 3.12).  When a key is kept in an empty slot, the entry is stored
 * again under it (same value, an equal key: the ModuleCache's other tables
 * find it as before), and later lookups match the cache's key by identity.
 * A key that takes over an occupied slot is only kept: storing the entry
 * again each time two codes in use take turns in a slot would cost more
 * than the compares it saves. */
enum { CS_KEYS = 64 };
static struct {
    PyObject *key;
    Py_hash_t hash;   /* of key */
    Py_hash_t fphash; /* of its fingerprint */
} cs_keys[CS_KEYS];

/* Whether str `a` is str `b`, or equal to it (no Python code). */
static inline int
cs_same_str(PyObject *a, PyObject *b)
{
    if (a == b) return 1;
    Py_ssize_t n = PyUnicode_GET_LENGTH(a);
    return n == PyUnicode_GET_LENGTH(b) && PyUnicode_KIND(a) == PyUnicode_KIND(b) &&
           memcmp(PyUnicode_DATA(a), PyUnicode_DATA(b), (size_t)n * PyUnicode_KIND(a)) == 0;
}

/* Whether the exact ints a and b are equal (no Python code, cannot fail). */
static inline int
cs_same_int(PyObject *a, PyObject *b)
{
    if (a == b) return 1;
    int eq = PyObject_RichCompareBool(a, b, Py_EQ);
    if (eq < 0) {
        PyErr_Clear();
        return 0;
    }
    return eq;
}

/* code_cache[(mod_s, qual_s, path, fp)] (a new reference), or NULL: not
 * there (no error set) or an error.  mod_s and qual_s are exact strs, path a
 * tuple of ints, fp an exact int. */
static PyObject *
cs_find_code(PyObject *code_cache, PyObject *mod_s, PyObject *qual_s, PyObject *path,
             PyObject *fp)
{
    /* an exact int's hash: its value modulo 2**61 - 1, read from its digits */
    Py_hash_t fph = PyObject_Hash(fp);
    if (fph == -1) return NULL;
    size_t slot = (size_t)fph & (CS_KEYS - 1);
    PyObject *key = cs_keys[slot].key;
    if (key != NULL && cs_keys[slot].fphash == fph &&
        cs_same_str(PyTuple_GET_ITEM(key, 0), mod_s) &&
        cs_same_str(PyTuple_GET_ITEM(key, 1), qual_s) &&
        cs_same_int(PyTuple_GET_ITEM(key, 3), fp)) {
        PyObject *kpath = PyTuple_GET_ITEM(key, 2);
        int same = kpath == path;
        if (!same && PyTuple_GET_SIZE(kpath) == PyTuple_GET_SIZE(path)) {
            same = 1;
            for (Py_ssize_t k = 0; same && k < PyTuple_GET_SIZE(path); k++) {
                same = PyLong_AsLong(PyTuple_GET_ITEM(kpath, k)) ==
                       PyLong_AsLong(PyTuple_GET_ITEM(path, k)); /* both < 2**16 */
            }
        }
        if (same) {
            /* held: a key of the cache that compares equal may run code
             * (a nested loads) that replaces this slot */
            Py_INCREF(key);
            PyObject *found = Py_XNewRef(_PyDict_GetItem_KnownHash(code_cache, key,
                                                                   cs_keys[slot].hash));
            Py_DECREF(key);
            return found;
        }
    }
    key = PyTuple_Pack(4, mod_s, qual_s, path, fp);
    if (key == NULL) return NULL;
    Py_hash_t hash = PyObject_Hash(key);
    PyObject *found = hash == -1 ? NULL : _PyDict_GetItem_KnownHash(code_cache, key, hash);
    if (found == NULL) {
        Py_DECREF(key);
        return NULL;
    }
    Py_INCREF(found);
    if (cs_keys[slot].key != NULL) {
        /* An occupied slot (two codes in use whose fingerprints share it):
         * the key is kept without storing the entry again, which would
         * happen on every other lookup; found by equality as before. */
        Py_SETREF(cs_keys[slot].key, key);
        cs_keys[slot].hash = hash;
        cs_keys[slot].fphash = fph;
        return found;
    }
    /* The slot's first key: stored again under it (see above).  Only
     * strings, ints and a tuple are released: no code runs.  Should it fail,
     * the entry is gone from the cache and the Python engine makes it again
     * next time. */
    if (PyDict_DelItem(code_cache, key) < 0 || PyDict_SetItem(code_cache, key, found) < 0) {
        PyErr_Clear();
        Py_DECREF(key);
        return found;
    }
    cs_keys[slot].key = key;
    cs_keys[slot].hash = hash;
    cs_keys[slot].fphash = fph;
    return found;
}

/* Whether the decoder would leave x (a tree value) as it is, every item
 * included, and only register it in the memo: an untagged list, or a dict of
 * fewer keys than a shape has (SHAPE_MIN), whose items are no list, dict or
 * deferred value (see codec/_decoder.py: Decoder.dec). */
static inline int
cs_walks(PyObject *x)
{
    PyTypeObject *t = Py_TYPE(x);
    return t == &PyList_Type || t == &PyDict_Type || t == (PyTypeObject *)cs_Deferred;
}

static int
cs_plain(PyObject *x)
{
    if (PyList_CheckExact(x)) {
        Py_ssize_t n = PyList_GET_SIZE(x);
        if (n > 0 && Py_IS_TYPE(PyList_GET_ITEM(x, 0), (PyTypeObject *)cs_Tag)) return 0;
        for (Py_ssize_t j = 0; j < n; j++) {
            if (cs_walks(PyList_GET_ITEM(x, j))) return 0;
        }
        return 1;
    }
    if (PyDict_CheckExact(x) && PyDict_GET_SIZE(x) < cs_shape_min) {
        Py_ssize_t pos = 0;
        PyObject *k, *value;
        while (PyDict_Next(x, &pos, &k, &value)) {
            if (cs_walks(value)) return 0;
        }
        return 1;
    }
    return 0;
}

/* dec.after (a new reference).  For the C engine's Decoder it is read at
 * its slot's offset, as the codec reads and writes that slot, while the
 * class is the one whose member was looked up (its version tag) and reads
 * attributes the generic way; any other decoder goes through getattr. */
#if PY_VERSION_HEX >= 0x030C0000
#define CS_T_OBJECT_EX Py_T_OBJECT_EX
#else
#include <structmember.h>
#define CS_T_OBJECT_EX T_OBJECT_EX
#endif
static Py_ssize_t cs_after_offset = -1;
static unsigned int cs_after_tag = 0;

static PyObject *
cs_decoder_after(PyObject *dec)
{
    PyTypeObject *t = Py_TYPE(dec);
    if ((PyObject *)t == cs_c_decoder && t->tp_version_tag != 0 &&
        t->tp_getattro == PyObject_GenericGetAttr) {
        if (t->tp_version_tag != cs_after_tag) {
            PyObject *d = _PyType_Lookup(t, s_after); /* borrowed; runs no code */
            cs_after_offset = -1;
            /* a slot of this class or a base (another class's member
             * descriptor assigned to the class is getattr's, which refuses
             * it), inside the object */
            if (d != NULL && Py_IS_TYPE(d, &PyMemberDescr_Type) &&
                ((PyMemberDescrObject *)d)->d_member->type == CS_T_OBJECT_EX &&
                PyType_IsSubtype(t, PyDescr_TYPE(d))) {
                Py_ssize_t off = ((PyMemberDescrObject *)d)->d_member->offset;
                if (off >= (Py_ssize_t)sizeof(PyObject) &&
                    off + (Py_ssize_t)sizeof(PyObject *) <= t->tp_basicsize) {
                    cs_after_offset = off;
                }
            }
            cs_after_tag = t->tp_version_tag;
        }
        if (cs_after_offset >= 0) {
            PyObject *v = *(PyObject **)((char *)dec + cs_after_offset);
            if (v != NULL) return Py_NewRef(v);
        }
    }
    return PyObject_GetAttr(dec, s_after);
}

/* Whether a decoder of type t has dec called as the C function itself. */
static int
cs_dec_direct(PyTypeObject *t)
{
    if (cs_c_dec == NULL || (PyObject *)t != cs_c_decoder) return 0;
    if (t->tp_version_tag != 0 && t->tp_version_tag == cs_c_decoder_tag) return 1;
    /* The class changed since: is its dec (looked up without running any
     * code) still the C function?  Then the new tag is trusted again. */
    PyObject *entry = _PyType_Lookup(t, s_dec); /* borrowed */
    int same = entry != NULL && PyInstanceMethod_Check(entry) &&
               PyInstanceMethod_GET_FUNCTION(entry) == cs_c_dec;
    if (same) cs_c_decoder_tag = t->tp_version_tag;
    return same;
}

/* dec.dec(x) */
static PyObject *
cs_dec_call(PyObject *dec, PyObject *x)
{
    if (cs_dec_direct(Py_TYPE(dec))) {
        PyObject *args[2] = {dec, x};
        return PyObject_Vectorcall(cs_c_dec, args, 2, NULL);
    }
    return cs_call_method(dec, s_dec, x, NULL, NULL, NULL);
}

/* The codec's dec_plain(memo, strings, shapes, depth, x)
 * (corosnap.codec._ccodec), looked up once, with the loads' tables. */
static PyObject *cs_c_dec_plain = NULL;

static PyObject *
cs_dec_plain(RestoreState *st, PyObject *x)
{
    if (cs_c_dec_plain == NULL) {
        PyObject *codec = PyImport_ImportModule("corosnap.codec._ccodec");
        PyObject *f = codec == NULL ? NULL : PyObject_GetAttrString(codec, "dec_plain");
        Py_XDECREF(codec);
        if (f == NULL) return NULL;
        if (!PyCFunction_Check(f)) {
            Py_DECREF(f);
            PyErr_SetString(PyExc_ImportError, "corosnap.snapshot._csnapshot: the codec's "
                                               "dec_plain is not its C function");
            return NULL;
        }
        cs_c_dec_plain = f;
    }
    PyObject *args[5] = {st->memo, st->strings, st->shapes, st->depth, x};
    return PyObject_Vectorcall(cs_c_dec_plain, args, 5, NULL);
}

/* One decoded slot value (see the slot walk of _restore.FrameDecoder.decode);
 * the frame is registered as active before the decoder runs. */
static PyObject *
cs_decode_slot(RestoreState *st, PyObject *x, PyObject **dec, CsLink *me)
{
    if (x == Py_None) return Py_NewRef(NULL_SLOT);
    if (x == cs_NONE_MARK) return Py_NewRef(Py_None);
    if (PyList_CheckExact(x) && PyList_GET_SIZE(x) == 3 &&
        PyList_GET_ITEM(x, 0) == cs_tag_rangeiter && PyLong_CheckExact(PyList_GET_ITEM(x, 1)) &&
        PyLong_CheckExact(PyList_GET_ITEM(x, 2))) {
        /* A for loop over range(stop), the commonest stack value: what
         * Decoder._rangeiter does for this shape, without the round trip
         * through Python (the same errors become CorruptSnapshot). */
        return cs_range_iter(PyList_GET_ITEM(x, 1), PyList_GET_ITEM(x, 2), st->memo);
    }
    if (cs_plain(x)) {
        /* What Decoder.dec does with a list of scalars (or a small dict of
         * scalars): the tree's own object, registered in the memo.  No
         * decoder is needed, and no code runs. */
        if (PyList_Append(st->memo, x) < 0) return NULL;
        return Py_NewRef(x);
    }
    if (Py_IS_TYPE(x, (PyTypeObject *)cs_Deferred) ||
        (PyList_CheckExact(x) && PyList_GET_SIZE(x) > 0 &&
         Py_IS_TYPE(PyList_GET_ITEM(x, 0), (PyTypeObject *)cs_Tag))) {
        /* A back-reference, a tuple of plain items, a for loop over a list
         * met before, a dataclass of plain values: the codec's dec_plain,
         * with no decoder, running no code (NotImplemented: the decoder's,
         * below). */
        PyObject *out = cs_dec_plain(st, x);
        if (out != Py_NotImplemented) return out;
        Py_DECREF(out);
    }
    if (PyList_CheckExact(x) || PyDict_CheckExact(x) || Py_IS_TYPE(x, (PyTypeObject *)cs_Deferred)) {
        if (cs_activate(st, me) < 0) return NULL;
        if (*dec == NULL && (*dec = cs_decoder(st)) == NULL) return NULL;
        return cs_dec_call(*dec, x);
    }
    return Py_NewRef(x);
}

static PyObject *cs_slots_take(Py_ssize_t total);
static void cs_slots_give_back(PyObject *slots);

/* The frame at v[i:] (see _restore.FrameDecoder.decode), or None (declined, with
 * nothing changed). */
static PyObject *
cs_restore_frame(RestoreState *st, PyObject *v, Py_ssize_t i, int root, CsLink *up)
{
    if (st->safe) Py_RETURN_NONE; /* safe mode checks every name: the Python engine */
    Py_ssize_t len = PyList_GET_SIZE(v);
    if (i < 0 || i + 2 > len) Py_RETURN_NONE;
    PyObject *dec = NULL; /* cs_decoder(), when needed */
    PyObject *found = NULL, *gen = NULL, *path = NULL;
    PyObject *slots = NULL, *result = NULL, *exc = NULL;
    CsLink me = {NULL, NULL, up};
    /* Held from when they are read: Python code (a finalizer, when making the
     * generator runs the collector) may change the tree or the code's plans. */
    PyObject *pos = NULL, *exc_f = NULL, *plan_ref = NULL;

    /* Pre-phase: find everything, change nothing. */
    PyObject *first = PyList_GET_ITEM(v, i);
    PyObject *new_module = NULL, *new_qual = NULL; /* strings to append on commit */
    Py_ssize_t at;                                /* index of the position field */
    Py_ssize_t k = -1;
    if (PyLong_CheckExact(first)) {
        k = PyLong_AsSsize_t(first);
        if (k == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            goto slow;
        }
    }
    if (k < -1 || (k == -1 && PyLong_CheckExact(first))) {
        /* A back-reference to the k-th code of the blob. */
        k = -1 - k;
        if (k >= PyList_GET_SIZE(st->codes)) goto slow;
        found = Py_NewRef(PyList_GET_ITEM(st->codes, k));
        at = i + 1;
    }
    else {
        if (i + 4 > len) goto slow;
        PyObject *qual_f = PyList_GET_ITEM(v, i + 1), *fp = PyList_GET_ITEM(v, i + 2);
        if (!PyLong_CheckExact(fp)) goto slow;
        PyObject *qual_field = qual_f;
        path = PyTuple_New(0);
        if (path == NULL) goto error;
        if (PyList_CheckExact(qual_f)) {
            /* A nested code: [qualname, *path through co_consts]. */
            Py_ssize_t depth = PyList_GET_SIZE(qual_f) - 1;
            if (depth < 0) goto slow;
            qual_field = PyList_GET_ITEM(qual_f, 0);
            Py_SETREF(path, PyTuple_New(depth));
            if (path == NULL) goto error;
            for (Py_ssize_t p = 0; p < depth; p++) {
                PyObject *step = PyList_GET_ITEM(qual_f, p + 1);
                if (!PyLong_CheckExact(step)) goto slow;
                long x = PyLong_AsLong(step);
                if (x == -1 && PyErr_Occurred()) {
                    PyErr_Clear();
                    goto slow;
                }
                if (x < 0 || x >= (1 << 16)) goto slow;
                PyTuple_SET_ITEM(path, p, Py_NewRef(step));
            }
        }
        PyObject *mod_s = cs_string_field(first, st->strings);
        PyObject *qual_s = cs_string_field(qual_field, st->strings);
        if (mod_s == NULL || qual_s == NULL || !PyUnicode_CheckExact(mod_s) ||
            !PyUnicode_CheckExact(qual_s)) {
            goto slow; /* malformed: the Python engine says how */
        }
        found = cs_find_code(st->code_cache, mod_s, qual_s, path, fp);
        if (found == NULL) {
            if (PyErr_Occurred()) goto error;
            goto slow; /* first time: the Python engine finds and checks the code */
        }
        if (!RestoreCode_Check(found)) {
            cs_bad_record("a restore code-cache entry");
            goto error;
        }
        PyObject *now = PyDict_GetItemWithError(PyImport_GetModuleDict(), mod_s);
        if (now == NULL && PyErr_Occurred()) goto error;
        if (now == NULL || !cs_refers_to(((RestoreCode *)found)->module, now)) {
            goto slow; /* module reloaded or gone */
        }
        new_module = PyUnicode_CheckExact(first) ? first : NULL;
        new_qual = PyUnicode_CheckExact(qual_field) ? qual_field : NULL;
        at = i + 3;
    }
    if (!RestoreCode_Check(found)) goto slow; /* a code the Python engine keeps otherwise */
    RestoreCode *rc = (RestoreCode *)found;
    if (rc->fn == Py_None || PyDict_GET_SIZE(rc->kwargs) != 0) {
        goto slow; /* no generator function, or keyword-only arguments: fn(**kwargs) */
    }
    if (!PyCode_Check(rc->code) || ((PyCodeObject *)rc->code)->co_flags & CO_ASYNC_GENERATOR) {
        /* An async generator: its tag's flags and its awaitables are the
         * Python engine's (snapshot/_asyncgen.py), and so is refusing its
         * code in a frame without that tag. */
        goto slow;
    }
    Py_ssize_t n = rc->nlocals;
    if (at >= len) goto slow;
    pos = PyList_GET_ITEM(v, at);
    if (PyList_CheckExact(pos) && PyList_GET_SIZE(pos) == 2) {
        /* [offset, exception]: suspended inside an except block; a nil there
         * is None, refused below as not an exception (as FrameDecoder.decode) */
        exc_f = PyList_GET_ITEM(pos, 1);
        pos = PyList_GET_ITEM(pos, 0);
    }
    Py_INCREF(pos);
    Py_XINCREF(exc_f);
    if (!PyLong_CheckExact(pos)) goto slow; /* corrupt: the Python engine says how */
    PyObject *pobj = PyDict_GetItemWithError(rc->plans, pos);
    if (pobj == NULL) {
        if (PyErr_Occurred()) goto error;
        goto slow; /* the Python engine makes the plan, or refuses the offset */
    }
    if (!Plan_Check(pobj)) {
        cs_bad_record("a RestoreCode.plans entry");
        goto error;
    }
    plan_ref = Py_NewRef(pobj);
    Plan *plan = (Plan *)pobj;
    Py_ssize_t total = len - at - 1;
    if (total != n + plan->depth) goto slow; /* the Python engine names the mismatch */

    /* Commit: the same steps, in the same order, as _restore.FrameDecoder.decode. */
    if ((new_module != NULL && PyList_Append(st->strings, new_module) < 0) ||
        (new_qual != NULL && PyList_Append(st->strings, new_qual) < 0)) {
        goto error;
    }
    if (at == i + 3 && PyList_Append(st->codes, found) < 0) goto error;
    gen = PyObject_Vectorcall(rc->fn, &PyTuple_GET_ITEM(rc->args, 0), PyTuple_GET_SIZE(rc->args),
                              NULL);
    if (gen == NULL) goto error;
    if (PyList_Append(st->memo, gen) < 0) goto error;
    me.gen = gen;
    /* From here on, leave through `done` so the frame leaves state.active
     * (cs_activate registers it there before the first step that needs it). */
    if (exc_f != NULL) {
        /* The exception being handled, decoded first (memo order, as capture). */
        if (cs_activate(st, &me) < 0) goto done;
        if (dec == NULL && (dec = cs_decoder(st)) == NULL) goto done;
        exc = cs_dec_call(dec, exc_f);
        if (exc == NULL) goto done;
        if (!PyExceptionInstance_Check(exc)) {
            cs_corrupt_type(rc->label, "the handled exception is a %U", NULL, exc);
            goto done;
        }
    }
    /* Python code runs while it is filled and checked (reduces, a declined
     * sub-frame, a type's __getattribute__): out of the collector's view
     * (gc.get_objects) for good, so that no value can be swapped after it
     * was checked.  It never escapes this function, so it can be part of
     * no cycle. */
    slots = cs_slots_take(total);
    if (slots == NULL) goto done;
    int fresh_sub = 0;
    for (Py_ssize_t j = 0; j < total; j++) {
        /* Python code may reach v (gc.get_objects): each field is held
         * while it is decoded, and v's size checked before each read. */
        if (PyList_GET_SIZE(v) != len) {
            cs_corrupt(rc->label, "its fields changed while it was restored");
            goto done;
        }
        PyObject *x = PyList_GET_ITEM(v, at + 1 + j), *y;
        Py_INCREF(x);
        if (j == plan->sub_at && PyList_CheckExact(x) && PyList_GET_SIZE(x) > 0 &&
            !Py_IS_TYPE(PyList_GET_ITEM(x, 0), (PyTypeObject *)cs_Tag)) {
            /* The untagged sub-frame this frame delegates to: here first,
             * the Python engine when declined. */
            y = NULL;
            if (Py_EnterRecursiveCall(" while restoring a yield from / await chain") == 0) {
                y = cs_restore_frame(st, x, 0, 0, &me);
                Py_LeaveRecursiveCall();
            }
            if (y == Py_None) {
                Py_DECREF(y);
                y = NULL;
                if (cs_activate(st, &me) == 0 &&
                    (dec != NULL || (dec = cs_decoder(st)) != NULL)) {
                    PyObject *zero = PyLong_FromLong(0);
                    if (zero != NULL) {
                        y = cs_call_method(st->frames, s_decode, dec, x, zero, NULL);
                        Py_DECREF(zero);
                    }
                }
            }
            fresh_sub = 1;
        }
        else {
            y = cs_decode_slot(st, x, &dec, &me);
        }
        Py_DECREF(x);
        if (y == NULL) {
            cs_name_slot(rc, j);
            goto done;
        }
        PyList_SET_ITEM(slots, j, y);
    }
    {
        /* The checks below look up an attribute of a type (the '.0'
         * argument's, a delegate's that is not a generator) and check the
         * chain of a delegate that is not a sub-frame restored here. */
        PyObject *sub = plan->delegate_at >= 0 && plan->delegate_at < total
                            ? PyList_GET_ITEM(slots, plan->delegate_at) : NULL;
        if ((plan->dot0 || (plan->delegate_at >= 0 && !(fresh_sub && sub != NULL &&
                                                        cs_is_generator(sub)))) &&
            cs_activate(st, &me) < 0) {
            goto done;
        }
    }
    if (cs_check_frame(st, rc, plan, gen, slots, fresh_sub, &dec) < 0) goto done;
    if (root && PyList_GET_SIZE(st->exceptions) > 0) {
        /* Decoder.finish: the checks that need the whole object graph (the
         * exception chains: nothing to check without an exception). */
        if (cs_activate(st, &me) < 0) goto done;
        if (dec == NULL && (dec = cs_decoder(st)) == NULL) goto done;
        PyObject *r = cs_call_method(dec, s_finish, NULL, NULL, NULL, NULL);
        if (r == NULL) goto done;
        Py_DECREF(r);
    }
    if (cs_copy_exc_lists(rc, plan, slots) < 0) goto done;
    {
        long lasti = PyLong_AsLong(pos);
        int w = (lasti == -1 && PyErr_Occurred())
                    ? -1 : frames_api->write(gen, lasti, slots, n, exc != NULL ? exc : Py_None);
        if (w < 0) {
            if (PyErr_ExceptionMatches(PyExc_TypeError) ||
                PyErr_ExceptionMatches(PyExc_ValueError) ||
                PyErr_ExceptionMatches(PyExc_OverflowError)) {
                PyObject *type, *value, *tb;
                PyErr_Fetch(&type, &value, &tb);
                PyErr_NormalizeException(&type, &value, &tb);
                cs_corrupt(rc->label, "%S", value);
                if (PyErr_Occurred()) {
                    PyObject *t2, *v2, *tb2;
                    PyErr_Fetch(&t2, &v2, &tb2);
                    PyErr_NormalizeException(&t2, &v2, &tb2);
                    if (v2 != NULL && value != NULL) {
                        PyException_SetCause(v2, Py_NewRef(value));
                    }
                    PyErr_Restore(t2, v2, tb2);
                }
                Py_XDECREF(type);
                Py_XDECREF(value);
                Py_XDECREF(tb);
            }
            goto done;
        }
    }
    result = Py_NewRef(gen);
done:
    {
        /* state.active.discard(id(gen)), keeping any error being raised; a
         * refused frame's fresh generator (still in its created state:
         * nothing was written) is closed, so it goes without a "never
         * awaited" warning and runs no code. */
        CsSavedError saved;
        cs_error_save(&saved);
        if (me.gen_id != NULL && PySet_Discard(st->active, me.gen_id) < 0) PyErr_Clear();
        if (result == NULL) {
            PyObject *r = cs_call_method(gen, s_close, NULL, NULL, NULL, NULL);
            if (r == NULL) PyErr_Clear();
            Py_XDECREF(r);
        }
        cs_error_restore(&saved);
    }
    Py_XDECREF(pos);
    Py_XDECREF(exc_f);
    Py_XDECREF(plan_ref);
    Py_XDECREF(exc);
    if (slots != NULL) cs_slots_give_back(slots);
    Py_XDECREF(me.gen_id);
    Py_XDECREF(gen);
    Py_XDECREF(found);
    Py_XDECREF(path);
    Py_XDECREF(dec);
    return result;
slow:
    Py_XDECREF(pos);
    Py_XDECREF(exc_f);
    Py_XDECREF(plan_ref);
    Py_XDECREF(found);
    Py_XDECREF(path);
    Py_RETURN_NONE;
error:
    Py_XDECREF(pos);
    Py_XDECREF(exc_f);
    Py_XDECREF(plan_ref);
    Py_XDECREF(gen);
    Py_XDECREF(found);
    Py_XDECREF(path);
    return NULL;
}

static PyObject *
cs_restore(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !RestoreState_Check(args[0]) || !PyList_CheckExact(args[1]) ||
        !PyLong_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "restore(state: RestoreState, v: list, i: int, root)");
        return NULL;
    }
    int root = PyObject_IsTrue(args[3]);
    if (root < 0) return NULL;
    Py_ssize_t i = PyLong_AsSsize_t(args[2]);
    if (i == -1 && PyErr_Occurred()) return NULL;
    return cs_restore_frame((RestoreState *)args[0], args[1], i, root, NULL);
}

/* The RestoreState of the last root restore, emptied, for the next one
 * (NULL while one is in use: a loads run by a reduce inside another makes
 * its own).  Making one costs seven containers; emptying keeps them.  While
 * it waits here it names no Snapshotter's caches (cs_no_cache, None). */
static RestoreState *cs_spare_state = NULL;
static PyObject *cs_no_cache = NULL;

static int cs_state_alone(RestoreState *st);
static int cs_state_empty(RestoreState *st);

static RestoreState *
cs_take_state(PyObject *frames, PyObject *code_cache)
{
    RestoreState *st = cs_spare_state;
    if (st != NULL) {
        cs_spare_state = NULL;
        /* Python code can reach it while it waits (gc.get_objects): used
         * again only as it was left, alone and empty. */
        if (cs_state_alone(st) && cs_state_empty(st) && st->frames == Py_None &&
            st->code_cache == cs_no_cache && PyDict_GET_SIZE(cs_no_cache) == 0 && !st->safe &&
            PyTuple_GET_SIZE(st->allow) == 0) {
            Py_SETREF(st->code_cache, Py_NewRef(code_cache));
            Py_SETREF(st->frames, Py_NewRef(frames));
            return st;
        }
        Py_DECREF(st);
    }
    st = (RestoreState *)PyType_GenericAlloc(&RestoreState_Type.type, 0);
    if (st == NULL) return NULL;
    st->decoder = Py_NewRef(Py_None);
    st->memo = PyList_New(0);
    st->strings = PyList_New(0);
    st->codes = PyList_New(0);
    st->active = PySet_New(NULL);
    st->exceptions = PyList_New(0);
    st->shapes = PyList_New(0);
    /* a Memo as Memo() makes it: no table until its first entry */
    st->depth = cs_record_memo_type == NULL ? NULL
                                            : PyType_GenericAlloc(cs_record_memo_type, 0);
    st->safe = 0;
    st->allow = PyTuple_New(0);
    st->code_cache = Py_NewRef(code_cache);
    st->frames = Py_NewRef(frames);
    if (st->memo == NULL || st->strings == NULL || st->codes == NULL || st->active == NULL ||
        st->exceptions == NULL || st->shapes == NULL || st->depth == NULL || st->allow == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_SystemError, "corosnap.snapshot._csnapshot: the codec's Memo "
                                               "type is not imported");
        }
        Py_DECREF(st);
        return NULL;
    }
    return st;
}

/* Whether `st` is held by nothing but the caller, and so are its tables
 * (a Decoder adopted it and lives on, or a table escaped: not reused). */
static int
cs_state_alone(RestoreState *st)
{
    return Py_REFCNT(st) == 1 && st->decoder == Py_None && Py_REFCNT(st->memo) == 1 &&
           Py_REFCNT(st->strings) == 1 && Py_REFCNT(st->codes) == 1 &&
           Py_REFCNT(st->active) == 1 && Py_REFCNT(st->exceptions) == 1 &&
           Py_REFCNT(st->shapes) == 1 && Py_REFCNT(st->depth) == 1;
}

/* Whether every table of `st` is empty. */
static int
cs_state_empty(RestoreState *st)
{
    return PyList_GET_SIZE(st->memo) == 0 && PyList_GET_SIZE(st->strings) == 0 &&
           PyList_GET_SIZE(st->codes) == 0 && PyList_GET_SIZE(st->exceptions) == 0 &&
           PyList_GET_SIZE(st->shapes) == 0 && ((MemoObject *)st->depth)->used == 0 &&
           PySet_GET_SIZE(st->active) == 0;
}

/* The slot lists of frames restored lately, emptied, for the next frames: a
 * list made and freed for every frame restored was a tenth of restoring a
 * small chain.  A list kept here is untracked, empty (with its buffer) and
 * referenced from here only; one still referenced elsewhere when its frame
 * is done is released as usual.  With the GIL only. */
#ifndef Py_GIL_DISABLED
enum { CS_SPARE_SLOTS = 8, CS_SLOTS_KEEP = 256 };
static PyObject *cs_spare_slots[CS_SPARE_SLOTS];
static int cs_nspare_slots = 0;
#endif

/* A list of `total` NULL items, untracked by the collector: a kept one, or
 * a new one.  New reference. */
static PyObject *
cs_slots_take(Py_ssize_t total)
{
#ifndef Py_GIL_DISABLED
    if (total > 0 && cs_nspare_slots > 0) {
        PyListObject *l = (PyListObject *)cs_spare_slots[cs_nspare_slots - 1];
        if (l->allocated >= total) {
            cs_spare_slots[--cs_nspare_slots] = NULL;
            memset(l->ob_item, 0, (size_t)total * sizeof(PyObject *));
            Py_SET_SIZE(l, total);
            return (PyObject *)l;
        }
    }
#endif
    PyObject *slots = PyList_New(total);
    if (slots != NULL) PyObject_GC_UnTrack(slots);
    return slots;
}

/* Done with a frame's slot list (a reference the caller gives up): kept,
 * emptied, when nothing else holds it, else released.  Keeps any error
 * being raised. */
static void
cs_slots_give_back(PyObject *slots)
{
#ifndef Py_GIL_DISABLED
    PyListObject *l = (PyListObject *)slots;
    if (Py_REFCNT(slots) == 1 && cs_nspare_slots < CS_SPARE_SLOTS &&
        l->allocated <= CS_SLOTS_KEEP && !PyObject_GC_IsTracked(slots)) {
        CsSavedError saved;
        cs_error_save(&saved);
        corosnap_list_empty(slots); /* releasing the values may run code */
        cs_error_restore(&saved);
        if (Py_REFCNT(slots) == 1 && Py_SIZE(l) == 0 && l->ob_item != NULL &&
            !PyObject_GC_IsTracked(slots) && cs_nspare_slots < CS_SPARE_SLOTS) {
            cs_spare_slots[cs_nspare_slots++] = slots;
            return;
        }
    }
#endif
    Py_DECREF(slots);
}

/* Done with a root's state: emptied and kept for the next root when
 * nothing else holds it, else released.  Keeps any error being raised. */
static void
cs_give_back_state(RestoreState *st)
{
    /* The decoder refers to this state (its cstate): break the cycle here.
     * The codec keeps it for the next loads when nothing else holds it
     * (release_decoder), after letting go of everything of this one. */
    PyObject *dec = st->decoder;
    st->decoder = Py_NewRef(Py_None);
    if (dec != Py_None && cs_release_decoder != NULL) {
        CsSavedError saved;
        cs_error_save(&saved);
        PyObject *r = PyObject_CallOneArg(cs_release_decoder, dec);
        if (r == NULL) PyErr_Clear();
        Py_XDECREF(r);
        cs_error_restore(&saved);
    }
    Py_DECREF(dec);
#ifndef Py_GIL_DISABLED
    if (cs_spare_state == NULL && cs_no_cache != NULL && cs_state_alone(st)) {
        CsSavedError saved;
        cs_error_save(&saved);
        /* Emptying releases values, whose finalizers may run any code
         * (another loads included): each list is empty while its items are
         * released (corosnap_list_empty), and the state is kept only if it
         * is still alone afterwards. */
        corosnap_list_empty(st->memo);
        corosnap_list_empty(st->strings);
        corosnap_list_empty(st->codes);
        corosnap_list_empty(st->exceptions);
        corosnap_list_empty(st->shapes);
        if (((MemoObject *)st->depth)->used != 0) {
            memo_shrink((MemoObject *)st->depth); /* emptied; its table kept if small */
        }
        int ok = PySet_GET_SIZE(st->active) == 0 || PySet_Clear(st->active) == 0;
        if (!ok) PyErr_Clear();
        Py_SETREF(st->code_cache, Py_NewRef(cs_no_cache));
        Py_SETREF(st->frames, Py_NewRef(Py_None));
        if (ok && cs_spare_state == NULL && cs_state_alone(st) && cs_state_empty(st)) {
            cs_spare_state = st;
            cs_error_restore(&saved);
            return;
        }
        cs_error_restore(&saved);
    }
#endif
    Py_DECREF(st);
}

/* The root frame of a parsed blob (`tree`: [header, *root fields]) in the
 * default mode, with a state of its own: the generator, None (declined,
 * before any side effect) or NULL. */
static PyObject *
cs_root(PyObject *frames, PyObject *code_cache, PyObject *tree)
{
    RestoreState *st = cs_take_state(frames, code_cache);
    if (st == NULL) return NULL;
    PyObject *out = cs_restore_frame(st, tree, 1, 1, NULL);
    if (out != NULL && out != Py_None && st->decoder != Py_None) {
        /* FrameDecoder.done: the steps decoding left for after the whole
         * blob (restored async generators in flight take the loop's hooks);
         * it does nothing when Decoder.after is an empty list. */
        PyObject *after = cs_decoder_after(st->decoder), *r = NULL;
        if (after != NULL) {
            int none = PyList_CheckExact(after) && PyList_GET_SIZE(after) == 0;
            Py_DECREF(after);
            r = none ? Py_NewRef(Py_None)
                     : cs_call_method(st->frames, s_done, st->decoder, NULL, NULL, NULL);
        }
        if (r == NULL) Py_CLEAR(out);
        Py_XDECREF(r);
    }
    cs_give_back_state(st);
    return out;
}

/* restore_root(frames, code_cache, tree): the root frame of an unsigned
 * blob in the default (not safe) mode, with a RestoreState made here (the
 * record Python builds for a frame met inside a value, with fresh tables):
 * the common case of loads, without building the state's lists in Python.
 * A Decoder made on demand (as frames.adopt makes it) is let go of at the end. */
static PyObject *
cs_restore_root(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyDict_CheckExact(args[1]) || !PyList_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "restore_root(frames, code_cache: dict, tree: list)");
        return NULL;
    }
    return cs_root(args[0], args[1], args[2]);
}

/* The whole of an unsigned loads in the default mode: the bytes parsed by
 * the C codec's unpack, the header checked, the root restored by cs_root.
 * Returns
 *  - the restored generator or coroutine;
 *  - the parsed tree (a list), when the bytes are a blob of this version
 *    (HEADER, or HEADER2: migratable) whose root this engine declines or
 *    does not read: Python restores it from there, nothing done;
 *  - None, when they are not (or the C unpack declines them): Python
 *    parses them again (snapshot/_blob.py), which says what is wrong;
 *  - NULL, with the error restoring raised (Python says what loads raises
 *    for it: Snapshotter._failed). */
static PyObject *
cs_load(PyObject *frames, PyObject *code_cache, PyObject *data)
{
    if (cs_codec_ready() < 0) return NULL;
    PyObject *tree = PyObject_CallOneArg(cs_c_unpack, data);
    if (tree == NULL) return NULL;
    if (!PyList_CheckExact(tree) || PyList_GET_SIZE(tree) < 1 ||
        (PyList_GET_ITEM(tree, 0) != cs_HEADER && PyList_GET_ITEM(tree, 0) != cs_HEADER2)) {
        Py_DECREF(tree);
        Py_RETURN_NONE;
    }
    if (PyList_GET_ITEM(tree, 0) != cs_HEADER) return tree;
    PyObject *out = cs_root(frames, code_cache, tree);
    if (out == Py_None) {
        Py_DECREF(out);
        return tree;
    }
    Py_DECREF(tree);
    return out;
}

/* load_root(frames, code_cache, data): cs_load, for Snapshotter.loads. */
static PyObject *
cs_load_root(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyDict_CheckExact(args[1]) || !PyBytes_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "load_root(frames, code_cache: dict, data: bytes)");
        return NULL;
    }
    return cs_load(args[0], args[1], args[2]);
}

/* ------------------------------------------------------- the module entries */

/* Loads and Dumps: the module functions corosnap.loads and corosnap.dumps,
 * as _pickle.loads stands for pickle.loads.
 *
 * Each Python function (snapshot/_api.py) is the reference and stays the
 * whole of the behaviour; its entry is put in its place when the C engine
 * is loaded, and answers one call itself, the common one:
 *  - loads(data), data a bytes object no larger than max_size: cs_load on
 *    the default Snapshotter's caches;
 *  - dumps(obj), obj a generator or a coroutine: cs_capture_root with the
 *    default Snapshotter's CaptureRoot and pickler id.
 * Nothing else given.  What the C engine does not finish goes back to
 * Python, to the default Snapshotter's methods: `finish(x, out)`
 * (Snapshotter._loaded / _captured: a tree or None, an encoder's fields, an
 * exception to meet again the general way) and, for loads, `failure(exc)`
 * (Snapshotter._failed, which raises what loads raises for it).  Any other
 * call (a keyword, a bytearray, an async generator) is the reference's,
 * unchanged.
 *
 * Why: the Python layers of the common case (the module function's keyword
 * defaults compared, then the Snapshotter method's checks) cost a third of
 * loading a small frame, a quarter of capturing one.  An entry has a
 * __dict__, so that functools.update_wrapper gives it the reference's name,
 * docstring and __wrapped__ (inspect.signature follows that); it pickles by
 * that name and can be weakly referenced, as a function.  Unlike a function
 * it is no descriptor (a class attribute does not bind), as _pickle.loads. */
#define CS_ENTRY_HEAD      \
    PyObject_HEAD          \
    vectorcallfunc vectorcall; \
    PyObject *dict, *weakrefs, *reference, *finish;

typedef struct {
    CS_ENTRY_HEAD
} Entry;

typedef struct {
    CS_ENTRY_HEAD
    PyObject *frames, *code_cache, *failure;
    Py_ssize_t max_size;
} Loads;

typedef struct {
    CS_ENTRY_HEAD
    PyObject *root, *pid;
} Dumps;

static PyTypeObject Loads_Type, Dumps_Type;

/* The error being raised, normalized, its traceback attached (NULL: none). */
static PyObject *
cs_take_error(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value != NULL && tb != NULL) PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    if (value == NULL) PyErr_SetString(PyExc_SystemError, "corosnap: an error without an exception");
    return value;
}

static PyObject *
loads_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Loads *self = (Loads *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 1 || kwnames != NULL || !PyBytes_CheckExact(args[0]) ||
        PyBytes_GET_SIZE(args[0]) > self->max_size) {
        return PyObject_Vectorcall(self->reference, args, nargsf, kwnames);
    }
    PyObject *data = args[0];
    PyObject *out = cs_load(self->frames, self->code_cache, data);
    if (out == NULL) {
        PyObject *exc = cs_take_error();
        if (exc == NULL) return NULL;
        /* failure runs as in Snapshotter.loads's `except` clause: with exc
         * the exception being handled, so that what it raises has exc as
         * its __context__ (not whatever the caller was handling) */
        PyObject *handled = PyErr_GetHandledException();
        PyErr_SetHandledException(exc);
        PyObject *r = PyObject_CallOneArg(self->failure, exc);
        PyErr_SetHandledException(handled);
        Py_XDECREF(handled);
        Py_DECREF(exc);
        if (r != NULL) {
            Py_DECREF(r);
            PyErr_SetString(PyExc_SystemError, "corosnap.loads: Loads.failure returned");
        }
        return NULL;
    }
    if (out != Py_None && !PyList_CheckExact(out)) return out;
    PyObject *finish_args[2] = {data, out};
    PyObject *r = PyObject_Vectorcall(self->finish, finish_args, 2, NULL);
    Py_DECREF(out);
    return r;
}

static PyObject *
dumps_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Dumps *self = (Dumps *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 1 || kwnames != NULL || !cs_is_generator(args[0])) {
        return PyObject_Vectorcall(self->reference, args, nargsf, kwnames);
    }
    PyObject *obj = args[0];
    PyObject *cargs[3] = {self->root, self->pid, obj};
    PyObject *out = cs_capture_root(NULL, cargs, 3);
    if (out != NULL && PyBytes_CheckExact(out)) return out;
    if (out == NULL) {
        /* as Snapshotter.dumps: an Exception is met again the general way,
         * which names the frame and the slot at fault; KeyboardInterrupt
         * and the like go through */
        if (!PyErr_ExceptionMatches(PyExc_Exception)) return NULL;
        if ((out = cs_take_error()) == NULL) return NULL;
    }
    PyObject *finish_args[2] = {obj, out};
    PyObject *r = PyObject_Vectorcall(self->finish, finish_args, 2, NULL);
    Py_DECREF(out);
    return r;
}

/* Keyword-only construction, every field given: `names` (NULL-terminated),
 * the parsed values into `out` (borrowed), all callables where `callable`
 * says so.  The entries' own checks come after. */
static int
cs_entry_args(const char *type, PyObject *args, PyObject *kwargs, const char *const *names,
              PyObject **out, int n)
{
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_Format(PyExc_TypeError, "%s() takes its fields by keyword only", type);
        return -1;
    }
    Py_ssize_t given = kwargs == NULL ? 0 : PyDict_GET_SIZE(kwargs);
    for (int i = 0; i < n; i++) {
        out[i] = kwargs == NULL ? NULL : PyDict_GetItemString(kwargs, names[i]);
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() takes every field by keyword: %s missing",
                         type, names[i]);
            return -1;
        }
    }
    if (given != n) {
        PyErr_Format(PyExc_TypeError, "%s() takes exactly %d fields by keyword, got %zd", type,
                     n, given);
        return -1;
    }
    return 0;
}

static const char *const loads_fields[] = {"frames", "code_cache", "max_size", "reference",
                                           "finish", "failure", NULL};
static const char *const dumps_fields[] = {"root", "pid", "reference", "finish", NULL};

static PyObject *
loads_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *v[6];
    if (cs_entry_args("Loads", args, kwargs, loads_fields, v, 6) < 0) return NULL;
    Py_ssize_t max_size = PyLong_Check(v[2]) ? PyLong_AsSsize_t(v[2]) : -1;
    if (max_size == -1 && PyErr_Occurred()) return NULL;
    if (!PyDict_CheckExact(v[1]) || max_size < 0 || !PyCallable_Check(v[3]) ||
        !PyCallable_Check(v[4]) || !PyCallable_Check(v[5])) {
        PyErr_SetString(PyExc_TypeError, "Loads(): code_cache must be a dict, max_size an int "
                                         ">= 0, and reference, finish and failure callables");
        return NULL;
    }
    Loads *self = (Loads *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->frames = Py_NewRef(v[0]);
    self->code_cache = Py_NewRef(v[1]);
    self->max_size = max_size;
    self->reference = Py_NewRef(v[3]);
    self->finish = Py_NewRef(v[4]);
    self->failure = Py_NewRef(v[5]);
    self->vectorcall = loads_vectorcall;
    return (PyObject *)self;
}

static PyObject *
dumps_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    PyObject *v[4];
    if (cs_entry_args("Dumps", args, kwargs, dumps_fields, v, 4) < 0) return NULL;
    if (!CaptureRoot_Check(v[0]) || !PyCallable_Check(v[2]) || !PyCallable_Check(v[3])) {
        PyErr_SetString(PyExc_TypeError, "Dumps(): root must be a CaptureRoot, and reference "
                                         "and finish callables");
        return NULL;
    }
    Dumps *self = (Dumps *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->root = Py_NewRef(v[0]);
    self->pid = Py_NewRef(v[1]);
    self->reference = Py_NewRef(v[2]);
    self->finish = Py_NewRef(v[3]);
    self->vectorcall = dumps_vectorcall;
    return (PyObject *)self;
}

static int
entry_traverse(PyObject *self, visitproc visit, void *arg)
{
    Entry *e = (Entry *)self;
    Py_VISIT(e->dict);
    Py_VISIT(e->reference);
    Py_VISIT(e->finish);
    if (Py_IS_TYPE(self, &Loads_Type)) {
        Py_VISIT(((Loads *)self)->frames);
        Py_VISIT(((Loads *)self)->code_cache);
        Py_VISIT(((Loads *)self)->failure);
    }
    else {
        Py_VISIT(((Dumps *)self)->root);
        Py_VISIT(((Dumps *)self)->pid);
    }
    return 0;
}

static int
entry_clear(PyObject *self)
{
    Entry *e = (Entry *)self;
    Py_CLEAR(e->dict);
    Py_CLEAR(e->reference);
    Py_CLEAR(e->finish);
    if (Py_IS_TYPE(self, &Loads_Type)) {
        Py_CLEAR(((Loads *)self)->frames);
        Py_CLEAR(((Loads *)self)->code_cache);
        Py_CLEAR(((Loads *)self)->failure);
    }
    else {
        Py_CLEAR(((Dumps *)self)->root);
        Py_CLEAR(((Dumps *)self)->pid);
    }
    return 0;
}

static void
entry_dealloc(PyObject *self)
{
    PyObject_GC_UnTrack(self);
    if (((Entry *)self)->weakrefs != NULL) PyObject_ClearWeakRefs(self);
    entry_clear(self);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *
entry_repr(PyObject *self)
{
    return PyUnicode_FromFormat("<function corosnap.%s (C entry)>",
                                Py_IS_TYPE(self, &Loads_Type) ? "loads" : "dumps");
}

/* pickle (and copy) find it by name, as a function: corosnap.loads / dumps. */
static PyObject *
entry_reduce(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyUnicode_FromString(Py_IS_TYPE(self, &Loads_Type) ? "loads" : "dumps");
}

static PyMethodDef entry_methods[] = {
    {"__reduce__", (PyCFunction)entry_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef entry_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL}};

#define CS_ENTRY_MEMBERS                                                        \
    {"reference", T_OBJECT, offsetof(Entry, reference), READONLY, NULL},          \
    {"finish", T_OBJECT, offsetof(Entry, finish), READONLY, NULL},                \
    {"__dictoffset__", T_PYSSIZET, offsetof(Entry, dict), READONLY, NULL},        \
    {"__vectorcalloffset__", T_PYSSIZET, offsetof(Entry, vectorcall), READONLY, NULL},

static PyMemberDef loads_members[] = {
    CS_ENTRY_MEMBERS
    {"frames", T_OBJECT, offsetof(Loads, frames), READONLY, NULL},
    {"code_cache", T_OBJECT, offsetof(Loads, code_cache), READONLY, NULL},
    {"max_size", T_PYSSIZET, offsetof(Loads, max_size), READONLY, NULL},
    {"failure", T_OBJECT, offsetof(Loads, failure), READONLY, NULL},
    {NULL, 0, 0, 0, NULL}};

static PyMemberDef dumps_members[] = {
    CS_ENTRY_MEMBERS
    {"root", T_OBJECT, offsetof(Dumps, root), READONLY, NULL},
    {"pid", T_OBJECT, offsetof(Dumps, pid), READONLY, NULL},
    {NULL, 0, 0, 0, NULL}};

#define CS_ENTRY_TYPE(NAME, STRUCT, NEW, MEMBERS, DOC)                                 \
    {                                                                                   \
        PyVarObject_HEAD_INIT(NULL, 0)                                                  \
        .tp_name = "corosnap.snapshot._csnapshot." NAME,                                \
        .tp_basicsize = sizeof(STRUCT),                                                 \
        .tp_dealloc = entry_dealloc,                                                    \
        .tp_vectorcall_offset = offsetof(Entry, vectorcall),                            \
        .tp_repr = entry_repr,                                                          \
        .tp_call = PyVectorcall_Call,                                                   \
        .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL, \
        .tp_doc = DOC,                                                                  \
        .tp_traverse = entry_traverse,                                                  \
        .tp_clear = entry_clear,                                                        \
        .tp_methods = entry_methods,                                                    \
        .tp_members = MEMBERS,                                                          \
        .tp_getset = entry_getset,                                                      \
        .tp_dictoffset = offsetof(Entry, dict),                                         \
        .tp_weaklistoffset = offsetof(Entry, weakrefs),                                 \
        .tp_new = NEW,                                                                  \
    }

static PyTypeObject Loads_Type = CS_ENTRY_TYPE(
    "Loads", Loads, loads_new, loads_members,
    "Loads(*, frames, code_cache, max_size, reference, finish, failure): the C entry of "
    "corosnap.loads (its reference: the Python function `reference`).");

static PyTypeObject Dumps_Type = CS_ENTRY_TYPE(
    "Dumps", Dumps, dumps_new, dumps_members,
    "Dumps(*, root, pid, reference, finish): the C entry of corosnap.dumps (its reference: "
    "the Python function `reference`).");

/* ------------------------------------------------------------------ module */

static int
cs_import_names(void)
{
    for (size_t k = 0; k < sizeof(cs_imports) / sizeof(cs_imports[0]); k++) {
        PyObject *module = PyImport_ImportModule(cs_imports[k].module);
        if (module == NULL) return -1;
        PyObject *v = PyObject_GetAttrString(module, cs_imports[k].name);
        Py_DECREF(module);
        if (v == NULL) return -1;
        Py_XSETREF(*cs_imports[k].target, v);
    }
    if (!PyType_Check(cs_Tag) || !PyType_Check(cs_Deferred) || !PyDict_Check(cs_TAG_OF_KIND) ||
        !PyDict_Check(cs_KIND_NAMES) || !PyAnySet_Check(cs_TAGGED) || !PyType_Check(cs_Memo) ||
        ((PyTypeObject *)cs_Memo)->tp_basicsize != (Py_ssize_t)sizeof(MemoObject)) {
        PyErr_SetString(PyExc_ImportError, "corosnap.snapshot._csnapshot: the Python objects it "
                                           "imports are not what it was built for");
        return -1;
    }
    cs_record_memo_type = (PyTypeObject *)cs_Memo;
    cs_shape_min = PyLong_Check(cs_SHAPE_MIN) ? PyLong_AsSsize_t(cs_SHAPE_MIN) : -1;
    if (cs_shape_min < 1) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ImportError, "corosnap.snapshot._csnapshot: SHAPE_MIN is not a "
                                           "positive int");
        return -1;
    }
    cs_tag_rangeiter = PyDict_GetItemWithError(cs_TAG_OF_KIND, cs_T_RANGEITER);
    if (cs_tag_rangeiter == NULL || !Py_IS_TYPE(cs_tag_rangeiter, (PyTypeObject *)cs_Tag)) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ImportError, "corosnap.snapshot._csnapshot: the decoder has "
                                               "no tag for range iterators");
        }
        return -1;
    }
    Py_INCREF(cs_tag_rangeiter);
    /* list.append, as LOAD_ATTR pushes it (the descriptor itself: the type's
     * getattr returns it unbound). */
    Py_XSETREF(cs_list_append, PyObject_GetAttrString((PyObject *)&PyList_Type, "append"));
    if (cs_list_append == NULL) return -1;
    /* The slot kinds: the same numbers as bytecode/_kinds.py, and all of them. */
    PyObject *kinds = PyImport_ImportModule("corosnap.bytecode._kinds");
    if (kinds == NULL) return -1;
    int rc = 0;
    for (int k = 0; rc == 0 && k < K_COUNT; k++) {
        PyObject *v = PyObject_GetAttrString(kinds, cs_kind_names[k]);
        long x = v == NULL ? -1 : PyLong_AsLong(v);
        Py_XDECREF(v);
        if (x != k) {
            if (!PyErr_Occurred()) {
                PyErr_Format(PyExc_ImportError, "corosnap.snapshot._csnapshot numbers the slot "
                             "kind %s %d, bytecode/_kinds.py %ld: rebuild corosnap",
                             cs_kind_names[k], k, x);
            }
            rc = -1;
        }
    }
    Py_DECREF(kinds);
    if (rc < 0) return -1;
    if (PyDict_GET_SIZE(cs_KIND_NAMES) != K_COUNT) {
        PyErr_Format(PyExc_ImportError, "bytecode/_kinds.py has %zd slot kinds, "
                     "corosnap.snapshot._csnapshot checks %d: teach it the new ones",
                     PyDict_GET_SIZE(cs_KIND_NAMES), K_COUNT);
        return -1;
    }
    for (int k = 0; k < K_COUNT; k++) {
        PyObject *kk = PyLong_FromLong(k);
        int in = kk == NULL ? -1 : PySet_Contains(cs_TAGGED, kk);
        int named = kk == NULL ? -1 : PyDict_Contains(cs_KIND_NAMES, kk);
        Py_XDECREF(kk);
        if (in < 0 || named < 0) return -1;
        if (!named) {
            PyErr_Format(PyExc_ImportError, "bytecode/_kinds.py does not name slot kind %s",
                         cs_kind_names[k]);
            return -1;
        }
        if (in) cs_tagged_kinds |= 1u << k;
    }
    return 0;
}

static int
cs_intern_names(void)
{
    struct {
        PyObject **var;
        const char *text;
    } names[] = {
        {&s_next, "__next__"}, {&s_name, "__name__"}, {&s_enc, "enc"},
        {&s_note_globals, "note_globals"}, {&s_coderef, "coderef"},
        {&s_delegated_frame, "delegated_frame"}, {&s_encode, "encode"}, {&s_decode, "decode"},
        {&s_decoder, "decoder"}, {&s_after, "after"}, {&s_check_chain, "check_chain"},
        {&s_dec, "dec"},
        {&s_finish, "finish"}, {&s_setstate, "__setstate__"}, {&s_close, "close"},
        {&s_done, "done"},
    };
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        if (*names[k].var == NULL && (*names[k].var = PyUnicode_InternFromString(names[k].text))
                                         == NULL) {
            return -1;
        }
    }
    return 0;
}

/* An entry type, with its __fields__ (the keywords it is made with, in
 * order: _contract.ENTRIES[name] must equal them). */
static int
cs_entry_ready(PyObject *m, PyTypeObject *t, const char *const *names)
{
    Py_ssize_t n = 0;
    while (names[n] != NULL) n++;
    PyObject *fields = PyTuple_New(n);
    if (fields == NULL) return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *f = PyUnicode_FromString(names[i]);
        if (f == NULL) {
            Py_DECREF(fields);
            return -1;
        }
        PyTuple_SET_ITEM(fields, i, f);
    }
    return cs_ready_with_fields(m, t, fields);
}

static PyMethodDef cs_methods[] = {
    {"capture", (PyCFunction)(void (*)(void))cs_capture, METH_FASTCALL,
     "capture(state: CaptureState, gen) -> the frame's fields, or None (declined)"},
    {"capture_root", (PyCFunction)(void (*)(void))cs_capture_root, METH_FASTCALL,
     "capture_root(root: CaptureRoot, pid, gen) -> the blob's bytes, (encoder, the root's "
     "fields) "
     "(Python finishes the blob), or None (declined, nothing done)"},
    {"load_root", (PyCFunction)(void (*)(void))cs_load_root, METH_FASTCALL,
     "load_root(frames, code_cache, data: bytes) -> the restored generator, the parsed "
     "tree (declined: Python restores it) or None (not parsed: Python opens the blob)"},
    {"restore_root", (PyCFunction)(void (*)(void))cs_restore_root, METH_FASTCALL,
     "restore_root(frames, code_cache, tree) -> generator, or None (declined): a blob's root "
     "frame, default mode, with a RestoreState of its own"},
    {"restore", (PyCFunction)(void (*)(void))cs_restore, METH_FASTCALL,
     "restore(state: RestoreState, v: list, i: int, root: bool) -> generator, or None "
     "(declined)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef cs_module = {
    PyModuleDef_HEAD_INIT, "corosnap.snapshot._csnapshot",
    "The snapshot layer's C engine (see corosnap.snapshot._contract).", -1, cs_methods};

PyMODINIT_FUNC
PyInit__csnapshot(void)
{
    frames_api = CorosnapFrames_Import();
    if (frames_api == NULL) return NULL;
    if (cs_intern_names() < 0 || cs_import_names() < 0) return NULL;
    if (cs_no_cache == NULL && (cs_no_cache = PyDict_New()) == NULL) return NULL;
    PyObject *m = PyModule_Create(&cs_module);
    if (m == NULL) return NULL;
    cs_record_type *records[] = {&Where_Type, &CaptureCode_Type, &Check_Type, &Plan_Type,
                                 &RestoreCode_Type, &CaptureState_Type, &CaptureRoot_Type,
                                 &RestoreState_Type};
    for (size_t k = 0; k < sizeof(records) / sizeof(records[0]); k++) {
        if (cs_record_ready(records[k], m) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
    PyObject *known = PyFrozenSet_New(NULL);
    for (int k = 0; known != NULL && k < K_COUNT; k++) {
        PyObject *kk = PyLong_FromLong(k);
        if (kk == NULL || PySet_Add(known, kk) < 0) Py_CLEAR(known);
        Py_XDECREF(kk);
    }
    if (known == NULL || PyModule_AddObjectRef(m, "KINDS", known) < 0) {
        Py_XDECREF(known);
        Py_DECREF(m);
        return NULL;
    }
    Py_DECREF(known);
    if (cs_entry_ready(m, &Loads_Type, loads_fields) < 0 ||
        cs_entry_ready(m, &Dumps_Type, dumps_fields) < 0 ||
        PyModule_AddIntConstant(m, "SPARE", CS_SPARE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
