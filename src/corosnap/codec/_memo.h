/* The C engine's encoder memo: {id(object): memo index}, as a C table.
 *
 * What lives here: the table the C value encoder (codec/_ccodec.c) and the
 * C capture (snapshot/_csnapshot.c) share as Encoder.memo, the way
 * _pickle keeps its memo (PyMemoTable) apart from Python's dict.  The Python
 * encoder (codec/_encoder.py) is the reference: its memo is a dict keyed by
 * id(obj), and it reads and writes the C engine's table through the same
 * mapping operations (get, [], in, del, len, clear), with the same answers.
 *
 * Why a table of its own: every container and instance a snapshot holds is
 * looked up and registered once.  With a dict keyed by id() that costs an int
 * object made for the key (and one for the index), a hash of it, a dict
 * probe, and on every dumps after the first the dict growing again from
 * empty (clear frees its table).  Here the key is the address itself, the
 * value a C integer, and clearing keeps the table (its size follows what the
 * snapshots need: one that needed far fewer slots than it has shrinks it).
 *
 * The table: open addressing, linear probing, a power-of-two size kept at
 * most two thirds full; NULL marks an empty slot (no object has address 0);
 * deletion shifts the entries after it back, so no tombstones.  A new Memo
 * has no table until its first entry (table NULL, mask 0): most decoders
 * never record a depth.  The type
 * object (codec/_ccodec.c: corosnap.codec._ccodec.Memo) is defined once;
 * this header gives every C file that includes it the same operations on
 * the same struct.  It holds no Python object: whoever fills one keeps its
 * keys' objects alive for as long as their addresses are in it, so an
 * address cannot be reused meanwhile (Encoder.memo: the encoder's `keep`
 * list; Encoder.codes: the generators being captured, which hold their
 * code; Decoder.depth: the decoder's memo and `pinned`; a ModuleIndex's
 * table: the index's own values).
 */
#ifndef COROSNAP_MEMO_H
#define COROSNAP_MEMO_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    void *key;
    Py_ssize_t value;
} MemoEntry;

typedef struct {
    PyObject_HEAD
    Py_ssize_t used;  /* entries */
    size_t mask;      /* slots - 1 (a power of two minus one) */
    MemoEntry *table; /* mask + 1 slots */
} MemoObject;

#define MEMO_MIN_SLOTS 64

static inline size_t
memo_hash(const void *key)
{
    uint64_t x = (uint64_t)(uintptr_t)key >> 4; /* objects are 16-byte aligned */
    x *= 0x9E3779B97F4A7C15ull;
    return (size_t)(x ^ (x >> 29));
}

/* The slot holding key, or the empty slot where it would go. */
static inline MemoEntry *
memo_slot(MemoObject *m, const void *key)
{
    size_t i = memo_hash(key) & m->mask;
    for (;;) {
        MemoEntry *e = &m->table[i];
        if (e->key == key || e->key == NULL) return e;
        i = (i + 1) & m->mask;
    }
}

/* key's index, or -1 when absent. */
static inline Py_ssize_t
memo_get(MemoObject *m, const void *key)
{
    if (m->table == NULL) return -1;
    MemoEntry *e = memo_slot(m, key);
    return e->key == NULL ? -1 : e->value;
}

static int
memo_resize(MemoObject *m, size_t slots)
{
    MemoEntry *old = m->table;
    size_t old_slots = m->mask + 1;
    MemoEntry *table = PyMem_Calloc(slots, sizeof(MemoEntry));
    if (table == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    m->table = table;
    m->mask = slots - 1;
    for (size_t i = 0; old != NULL && i < old_slots; i++) { /* old NULL: no table yet */
        if (old[i].key != NULL) *memo_slot(m, old[i].key) = old[i];
    }
    PyMem_Free(old);
    return 0;
}

/* Set key -> value (value >= 0).  1 if key was new, 0 if it was there (its
 * value replaced when `replace`, else left: *had is the value kept), -1 on
 * error (no memory). */
static inline int
memo_put(MemoObject *m, void *key, Py_ssize_t value, int replace, Py_ssize_t *had)
{
    if (m->table == NULL && memo_resize(m, MEMO_MIN_SLOTS) < 0) return -1;
    MemoEntry *e = memo_slot(m, key);
    if (e->key != NULL) {
        if (had != NULL) *had = e->value;
        if (replace) e->value = value;
        return 0;
    }
    e->key = key;
    e->value = value;
    m->used++;
    if ((size_t)m->used * 3 >= (m->mask + 1) * 2 && memo_resize(m, (m->mask + 1) * 2) < 0) {
        /* no room to grow: the entry is undone, the table as it was */
        e = memo_slot(m, key);
        e->key = NULL;
        m->used--;
        return -1;
    }
    return 1;
}

/* Remove key: 1 if it was there, 0 if not. */
static inline int
memo_del(MemoObject *m, const void *key)
{
    if (m->table == NULL) return 0;
    MemoEntry *e = memo_slot(m, key);
    if (e->key == NULL) return 0;
    size_t hole = (size_t)(e - m->table), j = hole;
    for (;;) {
        j = (j + 1) & m->mask;
        if (m->table[j].key == NULL) break;
        size_t home = memo_hash(m->table[j].key) & m->mask;
        /* the entry at j may move into the hole unless its home lies
         * cyclically in (hole, j] */
        int stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            m->table[hole] = m->table[j];
            hole = j;
        }
    }
    m->table[hole].key = NULL;
    m->used--;
    return 1;
}

/* Empty the table.  It keeps its slots unless a quarter of them would have
 * held what it held: then it goes back to the smallest size (kept and
 * emptied when there is no memory for that).  Never fails. */
static inline int
memo_clear(MemoObject *m)
{
    if (m->table == NULL) return 0;
    size_t slots = m->mask + 1;
    MemoEntry *table = slots > MEMO_MIN_SLOTS && (size_t)m->used * 4 < slots
        ? PyMem_Calloc(MEMO_MIN_SLOTS, sizeof(MemoEntry)) : NULL;
    if (table != NULL) {
        PyMem_Free(m->table);
        m->table = table;
        m->mask = MEMO_MIN_SLOTS - 1;
    }
    else if (m->used != 0) { /* kept (or no memory for a smaller one): emptied */
        memset(m->table, 0, slots * sizeof(MemoEntry));
    }
    m->used = 0;
    return 0;
}

/* Empty the table and let go of its slots beyond the smallest size: a
 * table kept for the next user (the C engine's kept Decoder, whose `depth`
 * is never thinned by deletions) holds no memory a large snapshot needed.
 * A table of the smallest size is emptied and kept.  Never fails. */
static inline void
memo_shrink(MemoObject *m)
{
    if (m->table != NULL && m->mask + 1 > MEMO_MIN_SLOTS) {
        PyMem_Free(m->table);
        m->table = NULL; /* made again on the next entry */
        m->mask = 0;
        m->used = 0;
        return;
    }
    memo_clear(m);
}

#endif /* COROSNAP_MEMO_H */
