/* Emptying a list and keeping its buffer, for the C engine's tables that are
 * emptied after every dumps or loads and filled again by the next.
 *
 * Theory of operation.  `del lst[:]` (PyList_SetSlice with no items) frees a
 * list's buffer, so a table emptied after each call grew again from empty in
 * the next one: a resize every few appends, on the path of every snapshot.
 * corosnap_list_empty takes the items out first (the list is then empty and
 * has no buffer), releases them (their finalizers may run any code, which
 * may reach the list: it finds it empty, and may fill it), and then gives
 * the buffer back only if the list still has none of its own and the buffer
 * is small; otherwise the buffer is freed as `del lst[:]` would.  An exact
 * list only.  With the GIL only: the free-threaded build allocates list
 * buffers its own way, and there this is `del lst[:]` (an error in it is
 * dropped: releasing items does not fail). */
#ifndef COROSNAP_LISTS_H
#define COROSNAP_LISTS_H

#include <Python.h>

/* A buffer of more than this many items is not kept (a large snapshot's
 * tables are not held for the next). */
#define COROSNAP_KEEP_BUFFER 1024

static inline void
corosnap_list_empty(PyObject *lst)
{
#ifndef Py_GIL_DISABLED
    PyListObject *l = (PyListObject *)lst;
    Py_ssize_t n = Py_SIZE(l), cap = l->allocated;
    if (n == 0) return;
    PyObject **items = l->ob_item;
    l->ob_item = NULL;
    Py_SET_SIZE(l, 0);
    l->allocated = 0;
    while (--n >= 0) Py_XDECREF(items[n]);
    if (cap <= COROSNAP_KEEP_BUFFER && l->ob_item == NULL && Py_SIZE(l) == 0 &&
        l->allocated == 0) {
        l->ob_item = items;
        l->allocated = cap;
    }
    else {
        PyMem_Free(items);
    }
#else
    if (PyList_GET_SIZE(lst) != 0 && PyList_SetSlice(lst, 0, PY_SSIZE_T_MAX, NULL) < 0) {
        PyErr_Clear();
    }
#endif
}

#endif /* COROSNAP_LISTS_H */
