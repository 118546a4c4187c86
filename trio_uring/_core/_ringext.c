/* trio_uring._core._ringext: the ring's hot calls without cffi's per-call cost.
 *
 * A small CPython extension, built by ``pip install`` with the compiled hot path
 * (setup.py; TRIO_URING_COMPILE=0 builds without it, TRIO_URING_PURE=1 ignores it).
 * It owns no ring state and knows no kernel structure: the SQE is still written
 * by the cffi module's ``tu_prep`` and a provided buffer still given back by its
 * ``tu_pbuf_give``, which ``bind()`` hands over as C function pointers (see
 * ``trio_uring/_core/_ring.py``).  What it saves is cffi's argument conversion
 * (~530 instructions per call plus ~135 per argument) and ``ffi.from_buffer``:
 *
 *   export(obj, writable) -> Export   PyObject_GetBuffer, held until release()
 *   release(x)                        an Export's buffer (once), else ffi.release(x)
 *   prep(ring, opcode, sqe_flags, fd, off, addr, len, op_flags, user_data,
 *        buf_index, file_index, ioprio, base) -> SQ position (or -errno)
 *                                     tu_prep; with an Export ``base``, ``addr`` is
 *                                     a byte offset into it and a negative ``len``
 *                                     means the rest of it; ``addr + len`` must lie
 *                                     inside it (ValueError), and every field must
 *                                     be an int (no __index__ runs while an SQE is
 *                                     written)
 *   take(pbuf, base, size, bid, nbytes) -> bytes
 *                                     copy a provided buffer out, give it back
 *   Waker(...)                        trio's Runner.reschedule, compiled (built by
 *                                     _trio_compat.fast_reschedule, only while trio's
 *                                     code has a recorded fingerprint: TRIO_MIRRORS)
 *   park(trap), completed_checkpoint()
 *                                     _trio_compat's two awaitables, compiled
 *
 * The buffer rule of _core/_operation.py is unchanged: an operation exports a
 * caller's buffer when it starts and releases it exactly once at its final CQE.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>

#define TU_MAX_RW_COUNT 0x7FFFF000LL

/* The cffi module's functions, declared once in _ring_api.h (as _build_ring.py's cdef
 * declares them); their ring and buffer-ring structs are opaque here. */
typedef struct tu_ring tu_ring;
typedef struct tu_pbuf tu_pbuf;
#include "_ring_api.h"

static __typeof__(&tu_prep) prep_fn;
static __typeof__(&tu_pbuf_give) pbuf_give_fn;
static __typeof__(&tu_nop_if_unsubmitted) nop_fn;
static PyObject *cffi_release; /* ffi.release */

/* ------------------------------------------------------------------ exports */
typedef struct {
    PyObject_HEAD
    Py_buffer view;
    int held;
} Export;

static PyTypeObject ExportType;

static void export_dealloc(Export *self) {
    /* Only reached if an operation never released it (a bug elsewhere): do not
       keep the exporter locked for good. */
    if (self->held) {
        self->held = 0;
        PyBuffer_Release(&self->view);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t export_len(Export *self) { return self->held ? self->view.len : 0; }

static PyObject *export_repr(Export *self) {
    return PyUnicode_FromFormat("<_ringext.Export %zd bytes%s>", export_len(self),
                                self->held ? "" : " released");
}

static PySequenceMethods export_as_sequence = {.sq_length = (lenfunc)export_len};

static PyTypeObject ExportType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "trio_uring._core._ringext.Export",
    .tp_basicsize = sizeof(Export),
    .tp_dealloc = (destructor)export_dealloc,
    .tp_repr = (reprfunc)export_repr,
    .tp_as_sequence = &export_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A buffer exported to the kernel by an operation (released at its final CQE).",
};

static int check_nargs(const char *name, Py_ssize_t nargs, Py_ssize_t want) {
    if (nargs == want) return 0;
    PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", name, want, nargs);
    return -1;
}

static PyObject *ext_export(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (check_nargs("export", nargs, 2) < 0) return NULL;
    PyObject *obj = args[0];
    int writable = PyObject_IsTrue(args[1]);
    if (writable < 0) return NULL;
    if (PyUnicode_Check(obj)) {
        PyErr_SetString(PyExc_TypeError, "a bytes-like object is required, not 'str'");
        return NULL;
    }
    Export *e = PyObject_New(Export, &ExportType);
    if (e == NULL) return NULL;
    e->held = 0;
    if (PyObject_GetBuffer(obj, &e->view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0) {
        Py_DECREF(e);
        return NULL;
    }
    e->held = 1;
    return (PyObject *)e;
}

static PyObject *ext_release(PyObject *mod, PyObject *x) {
    if (Py_IS_TYPE(x, &ExportType)) {
        Export *e = (Export *)x;
        if (e->held) {
            e->held = 0;
            PyBuffer_Release(&e->view);
        }
        Py_RETURN_NONE;
    }
    if (cffi_release == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_ringext.bind() was not called");
        return NULL;
    }
    return PyObject_CallOneArg(cffi_release, x);
}

/* ----------------------------------------------------------------- arguments */
/* Only real ints: a conversion must never run user code (an __index__) while an SQE
   is being written. */
static int arg_int(PyObject *o) {
    if (PyLong_Check(o)) return 0;
    PyErr_Format(PyExc_TypeError, "SQE fields must be int, not %.200s", Py_TYPE(o)->tp_name);
    return -1;
}

static int arg_u64(PyObject *o, unsigned long long *out) {
    if (arg_int(o) < 0) return -1;
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    *out = v;
    return 0;
}

/* An integer in [lo, hi] (C's range for the field), as cffi would accept it. */
static int arg_range(PyObject *o, long long lo, long long hi, long long *out) {
    if (arg_int(o) < 0) return -1;
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred()) return -1;
    if (v < lo || v > hi) {
        PyErr_Format(PyExc_OverflowError, "integer %lld does not fit an SQE field [%lld, %lld]",
                     v, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static void *arg_ptr(PyObject *o) {
    void *p = PyLong_AsVoidPtr(o);
    if (p == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "_ringext: NULL ring or buffer-ring address");
    return p;
}

/* --------------------------------------------------------------------- prep */
static PyObject *ext_prep(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (check_nargs("prep", nargs, 13) < 0) return NULL;
    if (prep_fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_ringext.bind() was not called");
        return NULL;
    }
    void *ring = arg_ptr(args[0]);
    if (ring == NULL) return NULL;
    long long opcode, sqe_flags, fd, len, op_flags, buf_index, file_index, ioprio;
    unsigned long long off, addr, user_data;
    if (arg_range(args[1], 0, 0xFF, &opcode) < 0 || arg_range(args[2], 0, 0xFF, &sqe_flags) < 0 ||
        arg_range(args[3], INT32_MIN, INT32_MAX, &fd) < 0 || arg_u64(args[4], &off) < 0 ||
        arg_u64(args[5], &addr) < 0 ||
        arg_range(args[6], -1LL - (long long)UINT32_MAX, UINT32_MAX, &len) < 0 ||
        arg_range(args[7], 0, UINT32_MAX, &op_flags) < 0 || arg_u64(args[8], &user_data) < 0 ||
        arg_range(args[9], 0, 0xFFFF, &buf_index) < 0 ||
        arg_range(args[10], 0, UINT32_MAX, &file_index) < 0 ||
        arg_range(args[11], 0, 0xFFFF, &ioprio) < 0)
        return NULL;
    PyObject *base = args[12];
    const char *ptr;
    if (base == Py_None) {
        if (len < 0) {
            PyErr_SetString(PyExc_OverflowError, "negative SQE length without a buffer");
            return NULL;
        }
        ptr = (const char *)(uintptr_t)addr;
    } else if (Py_IS_TYPE(base, &ExportType) && ((Export *)base)->held) {
        /* The address and the length come from this one export, checked here. */
        Export *e = (Export *)base;
        if (addr > (unsigned long long)e->view.len) {
            PyErr_SetString(PyExc_ValueError, "SQE buffer offset past the end of the buffer");
            return NULL;
        }
        if (len < 0) {
            len = (long long)e->view.len - (long long)addr;
            if (len > TU_MAX_RW_COUNT) len = TU_MAX_RW_COUNT;
        } else if ((unsigned long long)len > (unsigned long long)e->view.len - addr) {
            PyErr_Format(PyExc_ValueError,
                         "the SQE's buffer range [%llu, %llu) lies outside the %zd-byte buffer",
                         addr, addr + (unsigned long long)len, e->view.len);
            return NULL;
        }
        ptr = (const char *)e->view.buf + addr;
    } else {
        PyErr_SetString(PyExc_TypeError, "prep(): base must be a held Export or None");
        return NULL;
    }
    long long pos = prep_fn(ring, (unsigned char)opcode, (unsigned char)sqe_flags, (int)fd, off,
                            ptr, (unsigned)len, (unsigned)op_flags, user_data,
                            (unsigned short)buf_index, (unsigned)file_index,
                            (unsigned short)ioprio);
    PyObject *result = PyLong_FromLongLong(pos);
    if (result == NULL && pos >= 0 && nop_fn != NULL) {
        /* The SQE is queued but the caller will not learn its position and will
           release what it references: make it a NOP first (nothing happened). */
        nop_fn(ring, pos, user_data);
    }
    return result;
}

/* --------------------------------------------------------------------- take */
static PyObject *ext_take(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (check_nargs("take", nargs, 5) < 0) return NULL;
    if (pbuf_give_fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_ringext.bind() was not called");
        return NULL;
    }
    void *pb = arg_ptr(args[0]);
    if (pb == NULL) return NULL;
    char *base = (char *)arg_ptr(args[1]);
    if (base == NULL) return NULL;
    long long size, bid, nbytes;
    if (arg_range(args[2], 1, INT32_MAX, &size) < 0 || arg_range(args[3], 0, 0xFFFF, &bid) < 0 ||
        arg_range(args[4], 0, size, &nbytes) < 0)
        return NULL;
    PyObject *data = PyBytes_FromStringAndSize(base + bid * size, (Py_ssize_t)nbytes);
    pbuf_give_fn(pb, (unsigned short)bid); /* back to the kernel, also if the copy failed */
    return data;
}

/* --------------------------------------------------------------------- bind */
static PyObject *ext_bind(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (check_nargs("bind", nargs, 4) < 0) return NULL;
    void *prep = arg_ptr(args[0]);
    if (prep == NULL) return NULL;
    void *give = arg_ptr(args[1]);
    if (give == NULL) return NULL;
    void *nop = arg_ptr(args[3]);
    if (nop == NULL) return NULL;
    prep_fn = (__typeof__(prep_fn))prep;
    pbuf_give_fn = (__typeof__(pbuf_give_fn))give;
    nop_fn = (__typeof__(nop_fn))nop;
    Py_INCREF(args[2]);
    Py_XSETREF(cffi_release, args[2]);
    Py_RETURN_NONE;
}

/* -------------------------------------------------------------------- Waker */
/* trio 0.30-0.35's Runner.reschedule(task, next_send), statement by statement (used only
 * while trio's method and Task's/Runner's slot layouts have recorded fingerprints: the
 * "reschedule" and "slot layout" pieces of _trio_compat.TRIO_MIRRORS):
 *
 *     assert task._runner is self
 *     assert task._next_send_fn is None
 *     task._next_send_fn = task.coro.send
 *     task._next_send = next_send
 *     task._abort_func = None
 *     task.custom_sleep_data = None
 *     if not self.runq and self.is_guest:
 *         self.force_guest_tick_asap()
 *     self.runq.append(task)
 *     if "task_scheduled" in self.instruments:
 *         self.instruments.call("task_scheduled", task)
 *
 * Task and Runner are attrs classes with __slots__: their fields are read and
 * written at the offsets of their member descriptors, as CPython's own
 * LOAD_ATTR_SLOT/STORE_ATTR_SLOT do.  Any other call shape (one argument,
 * keywords, another type of task) goes to the runner's own reschedule. */
enum { T_RUNNER, T_NEXT_SEND_FN, T_CORO, T_NEXT_SEND, T_ABORT_FUNC, T_CUSTOM_SLEEP_DATA, T_N };
enum { R_RUNQ, R_IS_GUEST, R_INSTRUMENTS, R_N };

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *runner;
    PyObject *slow;        /* runner.reschedule */
    PyObject *task_type;
    PyObject *instruments; /* the instruments object whose dict is below */
    PyObject *inst_data;   /* its data dict (or NULL: ask it with `in`) */
    PyObject *runq_type;
    PyObject *runq_append; /* runq_type.append */
    Py_ssize_t t_off[T_N];
    Py_ssize_t r_off[R_N];
} Waker;

static PyObject *str_send, *str_force_guest_tick_asap, *str_task_scheduled, *str_call,
    *str_append;

#define SLOT(obj, off) (*(PyObject **)((char *)(obj) + (off)))

static void set_slot(PyObject *obj, Py_ssize_t off, PyObject *value) {
    PyObject *old = SLOT(obj, off);
    Py_INCREF(value);
    SLOT(obj, off) = value;
    Py_XDECREF(old);
}

static PyObject *missing(const char *name) {
    PyErr_Format(PyExc_AttributeError, "%s", name);
    return NULL;
}

static PyObject *waker_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf,
                                  PyObject *kwnames) {
    Waker *w = (Waker *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (w->runner == NULL) { /* cleared by the garbage collector (a dead run's cycle) */
        PyErr_SetString(PyExc_RuntimeError, "this Waker's run is gone");
        return NULL;
    }
    if (nargs != 2 || kwnames != NULL || (PyObject *)Py_TYPE(args[0]) != w->task_type)
        return PyObject_Vectorcall(w->slow, args, nargsf, kwnames);
    PyObject *task = args[0], *next_send = args[1], *runner = w->runner;
    PyObject *v = SLOT(task, w->t_off[T_RUNNER]);
    if (v != runner) {
        if (v == NULL) return missing("_runner");
        PyErr_SetNone(PyExc_AssertionError);
        return NULL;
    }
    v = SLOT(task, w->t_off[T_NEXT_SEND_FN]);
    if (v != Py_None) {
        if (v == NULL) return missing("_next_send_fn");
        PyErr_SetNone(PyExc_AssertionError);
        return NULL;
    }
    PyObject *coro = SLOT(task, w->t_off[T_CORO]);
    if (coro == NULL) return missing("coro");
    PyObject *send = PyObject_GetAttr(coro, str_send);
    if (send == NULL) return NULL;
    PyObject *old = SLOT(task, w->t_off[T_NEXT_SEND_FN]);
    SLOT(task, w->t_off[T_NEXT_SEND_FN]) = send; /* (the new reference) */
    Py_XDECREF(old);
    set_slot(task, w->t_off[T_NEXT_SEND], next_send);
    set_slot(task, w->t_off[T_ABORT_FUNC], Py_None);
    set_slot(task, w->t_off[T_CUSTOM_SLEEP_DATA], Py_None);

    PyObject *runq = SLOT(runner, w->r_off[R_RUNQ]);
    if (runq == NULL) return missing("runq");
    Py_INCREF(runq);
    int empty = PyObject_Not(runq);
    if (empty < 0) goto fail;
    if (empty) {
        PyObject *guest = SLOT(runner, w->r_off[R_IS_GUEST]);
        if (guest == NULL) {
            missing("is_guest");
            goto fail;
        }
        int is_guest = PyObject_IsTrue(guest);
        if (is_guest < 0) goto fail;
        if (is_guest) {
            PyObject *r = PyObject_CallMethodNoArgs(runner, str_force_guest_tick_asap);
            if (r == NULL) goto fail;
            Py_DECREF(r);
        }
    }
    PyObject *r;
    if ((PyObject *)Py_TYPE(runq) == w->runq_type) {
        PyObject *call_args[2] = {runq, task};
        r = PyObject_Vectorcall(w->runq_append, call_args, 2, NULL);
    } else {
        r = PyObject_CallMethodOneArg(runq, str_append, task);
    }
    Py_DECREF(runq);
    if (r == NULL) return NULL;
    Py_DECREF(r);

    PyObject *instruments = SLOT(runner, w->r_off[R_INSTRUMENTS]);
    if (instruments == NULL) return missing("instruments");
    int hooked = (instruments == w->instruments && w->inst_data != NULL)
                     ? PyDict_Contains(w->inst_data, str_task_scheduled)
                     : PySequence_Contains(instruments, str_task_scheduled);
    if (hooked < 0) return NULL;
    if (hooked) {
        Py_INCREF(instruments);
        r = PyObject_CallMethodObjArgs(instruments, str_call, str_task_scheduled, task, NULL);
        Py_DECREF(instruments);
        if (r == NULL) return NULL;
        Py_DECREF(r);
    }
    Py_RETURN_NONE;
fail:
    Py_DECREF(runq);
    return NULL;
}

/* The offset of a writable object slot, from its member descriptor. */
static int slot_offset(PyObject *cls, PyObject *name, Py_ssize_t *out) {
    PyObject *d = PyObject_GetAttr(cls, name);
    if (d == NULL) return -1;
    int ok = Py_IS_TYPE(d, &PyMemberDescr_Type);
    if (ok) {
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
        ok = (m->type == T_OBJECT_EX || m->type == T_OBJECT) && !(m->flags & READONLY);
        if (ok) *out = m->offset;
    }
    Py_DECREF(d);
    if (!ok) {
        PyErr_Format(PyExc_TypeError, "%R.%U is not a writable __slots__ field", cls, name);
        return -1;
    }
    return 0;
}

/* Waker(runner, task_type, task_fields, runner_fields, inst_data)
 *   task_fields: names of Task's _runner, _next_send_fn, coro, _next_send,
 *                _abort_func, custom_sleep_data; runner_fields: of Runner's runq,
 *                is_guest, instruments (the caller spells trio's private names);
 *   inst_data:   the runner's instruments' data dict if `"x" in instruments` is
 *                `"x" in inst_data` (else None). */
static PyObject *waker_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    PyObject *runner, *task_type, *task_fields, *runner_fields, *inst_data;
    if (kwds != NULL && PyDict_GET_SIZE(kwds)) {
        PyErr_SetString(PyExc_TypeError, "Waker() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "OO!O!O!O:Waker", &runner, &PyType_Type, &task_type,
                          &PyTuple_Type, &task_fields, &PyTuple_Type, &runner_fields,
                          &inst_data))
        return NULL;
    if (PyTuple_GET_SIZE(task_fields) != T_N || PyTuple_GET_SIZE(runner_fields) != R_N) {
        PyErr_SetString(PyExc_TypeError, "Waker(): wrong number of field names");
        return NULL;
    }
    if (inst_data != Py_None && !PyDict_CheckExact(inst_data)) {
        PyErr_SetString(PyExc_TypeError, "Waker(): inst_data must be a dict or None");
        return NULL;
    }
    Waker *w = PyObject_GC_New(Waker, type);
    if (w == NULL) return NULL;
    w->vectorcall = waker_vectorcall;
    w->runner = Py_NewRef(runner);
    w->task_type = Py_NewRef(task_type);
    w->slow = w->instruments = w->inst_data = w->runq_type = w->runq_append = NULL;
    PyObject_GC_Track(w);
    for (int i = 0; i < T_N; i++)
        if (slot_offset(task_type, PyTuple_GET_ITEM(task_fields, i), &w->t_off[i]) < 0) goto fail;
    PyObject *runner_type = (PyObject *)Py_TYPE(runner);
    for (int i = 0; i < R_N; i++)
        if (slot_offset(runner_type, PyTuple_GET_ITEM(runner_fields, i), &w->r_off[i]) < 0)
            goto fail;
    w->slow = PyObject_GetAttrString(runner, "reschedule");
    if (w->slow == NULL) goto fail;
    PyObject *runq = SLOT(runner, w->r_off[R_RUNQ]);
    if (runq == NULL) {
        missing("runq");
        goto fail;
    }
    w->runq_type = Py_NewRef((PyObject *)Py_TYPE(runq));
    w->runq_append = PyObject_GetAttr(w->runq_type, str_append);
    if (w->runq_append == NULL) goto fail;
    if (inst_data != Py_None) {
        PyObject *inst = SLOT(runner, w->r_off[R_INSTRUMENTS]);
        if (inst == NULL) {
            missing("instruments");
            goto fail;
        }
        w->instruments = Py_NewRef(inst);
        w->inst_data = Py_NewRef(inst_data);
    }
    return (PyObject *)w;
fail:
    Py_DECREF(w);
    return NULL;
}

static int waker_traverse(Waker *w, visitproc visit, void *arg) {
    Py_VISIT(w->runner);
    Py_VISIT(w->slow);
    Py_VISIT(w->task_type);
    Py_VISIT(w->instruments);
    Py_VISIT(w->inst_data);
    Py_VISIT(w->runq_type);
    Py_VISIT(w->runq_append);
    return 0;
}

static int waker_clear(Waker *w) {
    Py_CLEAR(w->runner);
    Py_CLEAR(w->slow);
    Py_CLEAR(w->task_type);
    Py_CLEAR(w->instruments);
    Py_CLEAR(w->inst_data);
    Py_CLEAR(w->runq_type);
    Py_CLEAR(w->runq_append);
    return 0;
}

static PyObject *waker_call(PyObject *self, PyObject *args, PyObject *kwargs) {
    return PyVectorcall_Call(self, args, kwargs);
}

static void waker_dealloc(Waker *w) {
    PyObject_GC_UnTrack(w);
    waker_clear(w);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static PyTypeObject WakerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "trio_uring._core._ringext.Waker",
    .tp_basicsize = sizeof(Waker),
    .tp_dealloc = (destructor)waker_dealloc,
    .tp_vectorcall_offset = offsetof(Waker, vectorcall),
    .tp_call = waker_call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_traverse = (traverseproc)waker_traverse,
    .tp_clear = (inquiry)waker_clear,
    .tp_new = waker_new,
    .tp_doc = "trio's Runner.reschedule(task, next_send) for one runner, compiled.",
};

/* ---------------------------------------------- park / completed_checkpoint */
/* _trio_compat.park(trap) and _trio_compat.completed_checkpoint(), as one small
 * awaitable object each instead of a Python generator (bind_trio() hands over what
 * they need; _trio_compat keeps the Python versions where it is not called):
 *
 *     park(trap):                     completed_checkpoint():
 *         msg = yield trap                if cancel_pending():
 *         if msg is not READY:                yield from checkpoint_if_cancelled()
 *             msg.unwrap()                yield CancelShieldedCheckpoint
 *
 * cancel_pending() reads the current task's fields at their __slots__ offsets:
 *     task = GLOBAL_RUN_CONTEXT.task
 *     if task._cancel_status.effectively_cancelled or (
 *             task is task._runner.main_task and task._runner.ki_pending):
 *         return True
 *     task._cancel_points += 1
 *     return False
 */
static struct {
    PyObject *run_context, *ready, *shielded, *checkpoint_if_cancelled;
    PyObject *task_type, *status_type, *runner_type;
    Py_ssize_t task_cancel_status, task_runner, task_cancel_points;
    Py_ssize_t status_effectively_cancelled, runner_main_task, runner_ki_pending;
} trio_c;
static PyObject *str_task, *str_unwrap, *str_await, *str_throw, *str_close, *long_one;

enum { PARK, CHECKPOINT };

typedef struct {
    PyObject_HEAD
    PyObject *trap;     /* what to yield; NULL once yielded */
    PyObject *delegate; /* checkpoint_if_cancelled().__await__() while it runs */
    char kind;
    char done;
} Park;

static PyTypeObject ParkType;

static int slot_true(PyObject *obj, Py_ssize_t off) {
    PyObject *v = SLOT(obj, off);
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, "trio field not set");
        return -1;
    }
    return v == Py_True ? 1 : v == Py_False ? 0 : PyObject_IsTrue(v);
}

/* 1: `task` must not go on; 0: it may (a cancel point counted); -1: error. */
static int task_cancel_pending(PyObject *task) {
    int result = -1;
    if ((PyObject *)Py_TYPE(task) != trio_c.task_type) {
        PyErr_SetString(PyExc_TypeError, "GLOBAL_RUN_CONTEXT.task is not a trio Task");
        goto done;
    }
    PyObject *status = SLOT(task, trio_c.task_cancel_status);
    if (status == NULL || (PyObject *)Py_TYPE(status) != trio_c.status_type) {
        PyErr_SetString(PyExc_TypeError, "task._cancel_status is not a CancelStatus");
        goto done;
    }
    int pending = slot_true(status, trio_c.status_effectively_cancelled);
    if (pending != 0) {
        result = pending;
        goto done;
    }
    PyObject *runner = SLOT(task, trio_c.task_runner);
    if (runner == NULL || (PyObject *)Py_TYPE(runner) != trio_c.runner_type) {
        PyErr_SetString(PyExc_TypeError, "task._runner is not a trio Runner");
        goto done;
    }
    if (SLOT(runner, trio_c.runner_main_task) == task) {
        pending = slot_true(runner, trio_c.runner_ki_pending);
        if (pending != 0) {
            result = pending;
            goto done;
        }
    }
    PyObject *points = SLOT(task, trio_c.task_cancel_points);
    if (points == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_cancel_points");
        goto done;
    }
    PyObject *more = PyNumber_Add(points, long_one);
    if (more == NULL) goto done;
    PyObject *old = SLOT(task, trio_c.task_cancel_points);
    SLOT(task, trio_c.task_cancel_points) = more;
    Py_XDECREF(old);
    result = 0;
done:
    return result;
}

/* 1: the current task must not go on; 0: it may (a cancel point counted); -1: error. */
static int cancel_pending(void) {
    PyObject *task = PyObject_GetAttr(trio_c.run_context, str_task);
    if (task == NULL) return -1;
    int result = task_cancel_pending(task);
    Py_DECREF(task);
    return result;
}

/* enter(): the start of trio's _nonblocking_helper for a compiled fast path
 * (_trio_fast.enter): the current task with a cancel point counted if it may go on,
 * False if it must not (cancel_pending()), None outside a task (nothing counted). */
static PyObject *ext_enter(PyObject *mod, PyObject *unused) {
    if (trio_c.ready == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_ringext.bind_trio() was not called");
        return NULL;
    }
    PyObject *task = PyObject_GetAttr(trio_c.run_context, str_task);
    if (task == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return NULL;
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    int pending = task_cancel_pending(task);
    if (pending == 0) return task; /* (the reference moves to the caller) */
    Py_DECREF(task);
    if (pending < 0) return NULL;
    Py_RETURN_FALSE;
}

static PySendResult delegate_result(Park *p, PySendResult r, PyObject **result) {
    if (r == PYGEN_NEXT) return r;
    Py_CLEAR(p->delegate);
    if (r == PYGEN_ERROR) {
        p->done = 1;
        return r;
    }
    Py_DECREF(*result); /* it returned (trio's never does: it raises Cancelled) */
    *result = p->trap;  /* then the checkpoint's own yield */
    p->trap = NULL;
    return PYGEN_NEXT;
}

static PySendResult park_step(Park *p, PyObject *value, PyObject **result) {
    *result = NULL;
    if (p->done) {
        PyErr_SetString(PyExc_RuntimeError, "cannot reuse an already awaited park");
        return PYGEN_ERROR;
    }
    if (p->delegate != NULL)
        return delegate_result(p, PyIter_Send(p->delegate, value, result), result);
    if (p->trap != NULL) { /* just started */
        if (value != Py_None) {
            p->done = 1;
            PyErr_SetString(PyExc_TypeError,
                            "can't send non-None value to a just-started coroutine");
            return PYGEN_ERROR;
        }
        if (p->kind == CHECKPOINT) {
            int pending = cancel_pending();
            if (pending < 0) {
                p->done = 1;
                return PYGEN_ERROR;
            }
            if (pending) {
                PyObject *coro = PyObject_CallNoArgs(trio_c.checkpoint_if_cancelled);
                if (coro == NULL) {
                    p->done = 1;
                    return PYGEN_ERROR;
                }
                p->delegate = PyObject_CallMethodNoArgs(coro, str_await);
                Py_DECREF(coro);
                if (p->delegate == NULL) {
                    p->done = 1;
                    return PYGEN_ERROR;
                }
                return delegate_result(p, PyIter_Send(p->delegate, Py_None, result), result);
            }
        }
        *result = p->trap; /* (the reference moves to the caller) */
        p->trap = NULL;
        return PYGEN_NEXT;
    }
    p->done = 1; /* resumed after the yield */
    if (p->kind == PARK && value != trio_c.ready) {
        PyObject *r = PyObject_CallMethodNoArgs(value, str_unwrap);
        if (r == NULL) return PYGEN_ERROR;
        Py_DECREF(r);
    }
    *result = Py_NewRef(Py_None);
    return PYGEN_RETURN;
}

static PySendResult park_am_send(PyObject *self, PyObject *value, PyObject **result) {
    return park_step((Park *)self, value, result);
}

static PyObject *park_iternext(PyObject *self) {
    PyObject *result;
    PySendResult r = park_step((Park *)self, Py_None, &result);
    if (r == PYGEN_NEXT) return result;
    if (r == PYGEN_RETURN) Py_DECREF(result); /* (None: exhausted, no StopIteration value) */
    return NULL;
}

static PyObject *park_send(PyObject *self, PyObject *value) {
    PyObject *result;
    PySendResult r = park_step((Park *)self, value, &result);
    if (r == PYGEN_NEXT) return result;
    if (r == PYGEN_RETURN) {
        Py_DECREF(result);
        PyErr_SetNone(PyExc_StopIteration);
    }
    return NULL;
}

static PyObject *park_throw(PyObject *self, PyObject *args) {
    Park *p = (Park *)self;
    if (p->delegate != NULL && !p->done) {
        PyObject *throw = PyObject_GetAttr(p->delegate, str_throw);
        if (throw == NULL) return NULL;
        PyObject *result = PyObject_Call(throw, args, NULL);
        Py_DECREF(throw);
        if (result != NULL) return result;
        if (!PyErr_ExceptionMatches(PyExc_StopIteration)) {
            Py_CLEAR(p->delegate);
            p->done = 1;
            return NULL;
        }
        PyErr_Clear();
        Py_CLEAR(p->delegate);
        result = p->trap;
        p->trap = NULL;
        return result;
    }
    p->done = 1;
    PyObject *typ, *val = NULL, *tb = NULL;
    if (!PyArg_UnpackTuple(args, "throw", 1, 3, &typ, &val, &tb)) return NULL;
    if (PyExceptionInstance_Check(typ)) {
        PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
    } else if (PyExceptionClass_Check(typ)) {
        PyErr_SetObject(typ, val);
    } else {
        PyErr_SetString(PyExc_TypeError, "exceptions must derive from BaseException");
        return NULL;
    }
    if (tb != NULL && tb != Py_None && PyTraceBack_Check(tb)) {
        PyObject *t, *v, *old;
        PyErr_Fetch(&t, &v, &old);
        PyErr_NormalizeException(&t, &v, &old);
        Py_XDECREF(old);
        PyException_SetTraceback(v, tb);
        PyErr_Restore(t, v, Py_NewRef(tb));
    }
    return NULL;
}

static PyObject *park_close(PyObject *self, PyObject *unused) {
    Park *p = (Park *)self;
    p->done = 1;
    if (p->delegate != NULL) {
        PyObject *r = PyObject_CallMethodNoArgs(p->delegate, str_close);
        Py_CLEAR(p->delegate);
        if (r == NULL) return NULL;
        Py_DECREF(r);
    }
    Py_RETURN_NONE;
}

static PyObject *park_await(PyObject *self) { return Py_NewRef(self); }

/* A parked task's awaitable can sit in a reference cycle (an abandoned task's
   coroutine, the trap's abort function, the operation): the collector must see it. */
static int park_traverse(Park *p, visitproc visit, void *arg) {
    Py_VISIT(p->trap);
    Py_VISIT(p->delegate);
    return 0;
}

static int park_clear(Park *p) {
    Py_CLEAR(p->trap);
    Py_CLEAR(p->delegate);
    return 0;
}

static void park_dealloc(Park *p) {
    PyObject_GC_UnTrack(p);
    park_clear(p);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static PyAsyncMethods park_as_async = {.am_await = park_await, .am_send = park_am_send};

static PyMethodDef park_methods[] = {
    {"send", (PyCFunction)park_send, METH_O, NULL},
    {"throw", (PyCFunction)park_throw, METH_VARARGS, NULL},
    {"close", (PyCFunction)park_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ParkType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "trio_uring._core._ringext.Park",
    .tp_basicsize = sizeof(Park),
    .tp_dealloc = (destructor)park_dealloc,
    .tp_as_async = &park_as_async,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)park_traverse,
    .tp_clear = (inquiry)park_clear,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = park_iternext,
    .tp_methods = park_methods,
    .tp_doc = "An awaitable that parks the task on a trio trap once.",
};

static PyObject *new_park(PyObject *trap, char kind) {
    if (trio_c.ready == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_ringext.bind_trio() was not called");
        return NULL;
    }
    Park *p = PyObject_GC_New(Park, &ParkType);
    if (p == NULL) return NULL;
    p->trap = Py_NewRef(trap);
    p->delegate = NULL;
    p->kind = kind;
    p->done = 0;
    PyObject_GC_Track(p);
    return (PyObject *)p;
}

static PyObject *ext_park(PyObject *mod, PyObject *trap) { return new_park(trap, PARK); }

static PyObject *ext_completed_checkpoint(PyObject *mod, PyObject *unused) {
    return new_park(trio_c.shielded, CHECKPOINT);
}

/* bind_trio(run_context, READY, CancelShieldedCheckpoint, checkpoint_if_cancelled,
 *           Task, task_fields, CancelStatus, status_fields, Runner, runner_fields)
 *   task_fields: names of Task's _cancel_status, _runner, _cancel_points;
 *   status_fields: CancelStatus's effectively_cancelled;
 *   runner_fields: Runner's main_task, ki_pending. */
static PyObject *ext_bind_trio(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (check_nargs("bind_trio", nargs, 10) < 0) return NULL;
    PyObject *task_type = args[4], *status_type = args[6], *runner_type = args[8];
    PyObject *tf = args[5], *sf = args[7], *rf = args[9];
    if (!PyType_Check(task_type) || !PyType_Check(status_type) || !PyType_Check(runner_type) ||
        !PyTuple_Check(tf) || PyTuple_GET_SIZE(tf) != 3 || !PyTuple_Check(sf) ||
        PyTuple_GET_SIZE(sf) != 1 || !PyTuple_Check(rf) || PyTuple_GET_SIZE(rf) != 2) {
        PyErr_SetString(PyExc_TypeError, "bind_trio(): unexpected arguments");
        return NULL;
    }
    Py_ssize_t off[6];
    if (slot_offset(task_type, PyTuple_GET_ITEM(tf, 0), &off[0]) < 0 ||
        slot_offset(task_type, PyTuple_GET_ITEM(tf, 1), &off[1]) < 0 ||
        slot_offset(task_type, PyTuple_GET_ITEM(tf, 2), &off[2]) < 0 ||
        slot_offset(status_type, PyTuple_GET_ITEM(sf, 0), &off[3]) < 0 ||
        slot_offset(runner_type, PyTuple_GET_ITEM(rf, 0), &off[4]) < 0 ||
        slot_offset(runner_type, PyTuple_GET_ITEM(rf, 1), &off[5]) < 0)
        return NULL;
    trio_c.task_cancel_status = off[0];
    trio_c.task_runner = off[1];
    trio_c.task_cancel_points = off[2];
    trio_c.status_effectively_cancelled = off[3];
    trio_c.runner_main_task = off[4];
    trio_c.runner_ki_pending = off[5];
    Py_XSETREF(trio_c.run_context, Py_NewRef(args[0]));
    Py_XSETREF(trio_c.shielded, Py_NewRef(args[2]));
    Py_XSETREF(trio_c.checkpoint_if_cancelled, Py_NewRef(args[3]));
    Py_XSETREF(trio_c.task_type, Py_NewRef(task_type));
    Py_XSETREF(trio_c.status_type, Py_NewRef(status_type));
    Py_XSETREF(trio_c.runner_type, Py_NewRef(runner_type));
    Py_XSETREF(trio_c.ready, Py_NewRef(args[1])); /* last: it marks the binding done */
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------ weak references */
/* mypyc gives a compiled class with an interpreted base (SocketStream's trio.abc
 * bases) a __weakref__ slot, but its deallocator never clears the weak references:
 * an object freed by reference counting leaves them pointing at freed memory, and
 * the next ref() crashes.  guard_weakrefs(cls) puts a deallocator in front of the
 * class's that clears them first, as CPython's subtype_dealloc does. */
#define TU_GUARDED_MAX 8
static PyTypeObject *guarded_types[TU_GUARDED_MAX];
static destructor guarded_deallocs[TU_GUARDED_MAX];
static int n_guarded;

static void guarded_dealloc(PyObject *self) {
    PyTypeObject *tp = Py_TYPE(self);
    destructor dealloc = NULL;
    for (int i = 0; i < n_guarded; i++) {
        if (guarded_types[i] == tp) {
            dealloc = guarded_deallocs[i];
            break;
        }
    }
    if (tp->tp_weaklistoffset > 0 && *(PyObject **)((char *)self + tp->tp_weaklistoffset))
        PyObject_ClearWeakRefs(self);
    dealloc(self); /* (always found: only the guarded types, which are final, get this) */
}

static PyObject *ext_guard_weakrefs(PyObject *m, PyObject *cls) {
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "guard_weakrefs() takes a class");
        return NULL;
    }
    PyTypeObject *tp = (PyTypeObject *)cls;
    if (tp->tp_dealloc == guarded_dealloc || tp->tp_weaklistoffset <= 0)
        Py_RETURN_FALSE;
    if (n_guarded == TU_GUARDED_MAX) {
        PyErr_SetString(PyExc_RuntimeError, "guard_weakrefs(): too many classes");
        return NULL;
    }
    guarded_types[n_guarded] = (PyTypeObject *)Py_NewRef(cls); /* (kept for good) */
    guarded_deallocs[n_guarded] = tp->tp_dealloc;
    n_guarded++;
    tp->tp_dealloc = guarded_dealloc;
    Py_RETURN_TRUE;
}

/* ------------------------------------------------------------------- module */
static PyMethodDef methods[] = {
    {"bind", (PyCFunction)(void (*)(void))ext_bind, METH_FASTCALL,
     "bind(tu_prep, tu_pbuf_give, ffi_release): the cffi module's functions"},
    {"export", (PyCFunction)(void (*)(void))ext_export, METH_FASTCALL,
     "export(obj, writable) -> Export"},
    {"release", (PyCFunction)ext_release, METH_O,
     "release(export): release an Export (once) or a cffi buffer"},
    {"prep", (PyCFunction)(void (*)(void))ext_prep, METH_FASTCALL,
     "prep(ring, opcode, sqe_flags, fd, off, addr, len, op_flags, user_data, buf_index, "
     "file_index, ioprio, base) -> position"},
    {"take", (PyCFunction)(void (*)(void))ext_take, METH_FASTCALL,
     "take(pbuf, base, size, bid, nbytes) -> bytes"},
    {"bind_trio", (PyCFunction)(void (*)(void))ext_bind_trio, METH_FASTCALL,
     "bind_trio(run_context, READY, CancelShieldedCheckpoint, checkpoint_if_cancelled, "
     "Task, task_fields, CancelStatus, status_fields, Runner, runner_fields)"},
    {"park", (PyCFunction)ext_park, METH_O, "park(trap): await it to park on trap"},
    {"completed_checkpoint", (PyCFunction)ext_completed_checkpoint, METH_NOARGS,
     "completed_checkpoint(): await it for a completed operation's checkpoint"},
    {"guard_weakrefs", (PyCFunction)ext_guard_weakrefs, METH_O,
     "guard_weakrefs(cls) -> bool: clear weak references before cls's deallocator runs"},
    {"enter", (PyCFunction)ext_enter, METH_NOARGS,
     "enter(): the current task (a cancel point counted), False if it must not go on, "
     "None outside a task"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "trio_uring._core._ringext", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit__ringext(void) {
    if (PyType_Ready(&ExportType) < 0 || PyType_Ready(&WakerType) < 0 ||
        PyType_Ready(&ParkType) < 0)
        return NULL;
    if (!(str_send = PyUnicode_InternFromString("send")) ||
        !(str_force_guest_tick_asap = PyUnicode_InternFromString("force_guest_tick_asap")) ||
        !(str_task_scheduled = PyUnicode_InternFromString("task_scheduled")) ||
        !(str_call = PyUnicode_InternFromString("call")) ||
        !(str_append = PyUnicode_InternFromString("append")) ||
        !(str_task = PyUnicode_InternFromString("task")) ||
        !(str_unwrap = PyUnicode_InternFromString("unwrap")) ||
        !(str_await = PyUnicode_InternFromString("__await__")) ||
        !(str_throw = PyUnicode_InternFromString("throw")) ||
        !(str_close = PyUnicode_InternFromString("close")) || !(long_one = PyLong_FromLong(1)))
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Export", (PyObject *)&ExportType) < 0 ||
        PyModule_AddObjectRef(m, "Waker", (PyObject *)&WakerType) < 0 ||
        PyModule_AddIntConstant(m, "MAX_RW_COUNT", TU_MAX_RW_COUNT) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
