/* ember.autobatch._recorder: the per-call hot path of `ab.run`, in C.

   Recording runs once per block call of every instance (TreeLSTM over 64 trees: 2,466 calls per
   run), so its cost is paid thousands of times per batch. In Python it took 3-6 us per call,
   more than the kernels it batches; here it is a few hundred ns. What it does is exactly what the
   Python classes around it document:

   - `BlockBase.__call__`: outside `ab.run` calls `fn`; inside, records a lazy call. The first
     call of a block goes to Python (`_first_call` fixes the signature); a call that does not
     match it goes to Python too (`_mismatch` raises the error naming the argument).
   - recording (`RecorderBase`): replays the instance's earlier call at `cursor` if there is one,
     else checks the signature and computes the depth inline (1 + the deepest input pending in
     this round), appends a new `Call` to its (block, depth) group and to the instance's calls.
   - `Call` and `LazyBase` hold what runtime.py and lazy.py read (LazyValue subclasses LazyBase).
   - `rows`, `same`, `made` and `finish` are the scheduler's per-argument loops (schedule.py).

   Everything Python-visible is a member of these types; nothing here raises an error a user sees
   except through the Python methods named above. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdint.h>

static PyObject *active_runtime;  /* the ContextVar runtime.py sets for the length of ab.run */
static PyTypeObject *lazy_value;  /* ember.autobatch.lazy.LazyValue, the LazyBase subclass */
static PyTypeObject *tensor_type; /* torch.Tensor */
static PyObject *str_dtype, *str_shape, *str_first_call, *str_mismatch, *str_unflatten,
    *str_diverged;

/* ---- Call ---- */

typedef struct {
    PyObject_HEAD
    PyObject *block, *args, *outputs;
    Py_ssize_t depth, round, row;
} CallObject;

static int call_traverse(CallObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->block);
    Py_VISIT(self->args);
    Py_VISIT(self->outputs);
    return 0;
}

static int call_clear(CallObject *self) {
    Py_CLEAR(self->block);
    Py_CLEAR(self->args);
    Py_CLEAR(self->outputs);
    return 0;
}

static void call_dealloc(CallObject *self) {
    PyObject_GC_UnTrack(self);
    call_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef call_members[] = {
    {"block", T_OBJECT, offsetof(CallObject, block), READONLY, "the Block called"},
    {"args", T_OBJECT, offsetof(CallObject, args), READONLY, "the arguments, as passed"},
    {"outputs", T_OBJECT, offsetof(CallObject, outputs), 0,
     "None until run; then [(buffer, first row)] per output, shared by the launch's calls"},
    {"depth", T_PYSSIZET, offsetof(CallObject, depth), READONLY, "depth within its round"},
    {"round", T_PYSSIZET, offsetof(CallObject, round), READONLY, "the round it was recorded in"},
    {"row", T_PYSSIZET, offsetof(CallObject, row), 0, "its row within the launch's outputs"},
    {NULL},
};

static PyTypeObject CallType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ember.autobatch._recorder.Call",
    .tp_doc = "A recorded block call: its inputs, inline-computed depth and, once run, where its "
              "outputs live: output `slot` is row `outputs[slot][1] + row` of buffer "
              "`outputs[slot][0]`.",
    .tp_basicsize = sizeof(CallObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)call_traverse,
    .tp_clear = (inquiry)call_clear,
    .tp_dealloc = (destructor)call_dealloc,
    .tp_members = call_members,
};

static CallObject *new_call(PyObject *block, PyObject *args, Py_ssize_t depth, Py_ssize_t round) {
    CallObject *call = PyObject_GC_New(CallObject, &CallType);
    if (call == NULL)
        return NULL;
    call->block = Py_NewRef(block);
    call->args = Py_NewRef(args);
    call->outputs = Py_NewRef(Py_None);
    call->depth = depth;
    call->round = round;
    call->row = 0;
    PyObject_GC_Track(call);
    return call;
}

/* ---- LazyBase ---- */

typedef struct {
    PyObject_HEAD
    PyObject *call, *spec;
    Py_ssize_t slot, depth, round;
} LazyObject;

static int lazy_traverse(LazyObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->call);
    Py_VISIT(self->spec);
    return 0;
}

static int lazy_clear(LazyObject *self) {
    Py_CLEAR(self->call);
    Py_CLEAR(self->spec);
    return 0;
}

static void lazy_dealloc(LazyObject *self) {
    PyObject_GC_UnTrack(self);
    lazy_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self); /* a subclass's dealloc releases its type */
}

static PyObject *make_lazy(PyTypeObject *type, PyObject *call, Py_ssize_t slot, PyObject *spec,
                           Py_ssize_t depth, Py_ssize_t round) {
    LazyObject *v = (LazyObject *)type->tp_alloc(type, 0);
    if (v == NULL)
        return NULL;
    v->call = Py_NewRef(call);
    v->spec = Py_NewRef(spec);
    v->slot = slot;
    v->depth = depth;
    v->round = round;
    return (PyObject *)v;
}

static PyObject *lazy_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"call", "slot", "spec", "depth", "round", NULL};
    PyObject *call, *spec;
    Py_ssize_t slot, depth, round;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!nOnn", names, &CallType, &call, &slot, &spec,
                                     &depth, &round))
        return NULL;
    return make_lazy(type, call, slot, spec, depth, round);
}

static PyMemberDef lazy_members[] = {
    {"call", T_OBJECT, offsetof(LazyObject, call), READONLY, "the Call that makes it"},
    {"slot", T_PYSSIZET, offsetof(LazyObject, slot), READONLY, "which output of the call"},
    {"spec", T_OBJECT, offsetof(LazyObject, spec), READONLY, "its per-instance ArgSpec"},
    {"depth", T_PYSSIZET, offsetof(LazyObject, depth), READONLY,
     "the call's depth, or more after ghost ops padded it"},
    {"round", T_PYSSIZET, offsetof(LazyObject, round), READONLY, "the round it was made in"},
    {NULL},
};

static PyTypeObject LazyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ember.autobatch._recorder.LazyBase",
    .tp_doc = "LazyBase(call, slot, spec, depth, round): the data of a LazyValue.",
    .tp_basicsize = sizeof(LazyObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)lazy_traverse,
    .tp_clear = (inquiry)lazy_clear,
    .tp_dealloc = (destructor)lazy_dealloc,
    .tp_new = lazy_new,
    .tp_members = lazy_members,
};

/* ---- RecorderBase: the recording state of a Runtime ---- */

typedef struct {
    PyObject_HEAD
    PyObject *groups;  /* {(block, depth): [Call]} of the round being recorded */
    PyObject *calls;   /* the running instance's calls (a list), or None between instances */
    Py_ssize_t cursor; /* calls of the running instance replayed or recorded so far */
    Py_ssize_t round;
} RecorderObject;

static int recorder_traverse(RecorderObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->groups);
    Py_VISIT(self->calls);
    return 0;
}

static int recorder_clear(RecorderObject *self) {
    Py_CLEAR(self->groups);
    Py_CLEAR(self->calls);
    return 0;
}

static void recorder_dealloc(RecorderObject *self) {
    PyObject_GC_UnTrack(self);
    recorder_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *recorder_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    RecorderObject *self = (RecorderObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->groups = PyDict_New();
    self->calls = Py_NewRef(Py_None);
    if (self->groups == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static PyMemberDef recorder_members[] = {
    {"groups", T_OBJECT, offsetof(RecorderObject, groups), 0,
     "{(block, depth): [Call]} recorded in this round"},
    {"calls", T_OBJECT, offsetof(RecorderObject, calls), 0,
     "the running instance's calls, or None between instances"},
    {"cursor", T_PYSSIZET, offsetof(RecorderObject, cursor), 0,
     "how many of `calls` the running instance has made"},
    {"round", T_PYSSIZET, offsetof(RecorderObject, round), 0,
     "the round being recorded (values of earlier rounds are computed)"},
    {NULL},
};

static PyTypeObject RecorderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ember.autobatch._recorder.RecorderBase",
    .tp_doc = "The recording state of an ab.run Runtime.",
    .tp_basicsize = sizeof(RecorderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)recorder_traverse,
    .tp_clear = (inquiry)recorder_clear,
    .tp_dealloc = (destructor)recorder_dealloc,
    .tp_new = recorder_new,
    .tp_members = recorder_members,
};

/* ---- BlockBase ---- */

enum { FORM_TREE = 0, FORM_TENSOR = 1, FORM_TUPLE = 2 };

typedef struct {
    PyObject_HEAD
    PyObject *fn, *arg_specs, *out_specs;
    int out_form; /* how `fn` returns: a tensor, a flat tuple of tensors, or another pytree */
} BlockObject;

static int block_traverse(BlockObject *self, visitproc visit, void *arg) {
    Py_VISIT(self->fn);
    Py_VISIT(self->arg_specs);
    Py_VISIT(self->out_specs);
    return 0;
}

static int block_clear(BlockObject *self) {
    Py_CLEAR(self->fn);
    Py_CLEAR(self->arg_specs);
    Py_CLEAR(self->out_specs);
    return 0;
}

static void block_dealloc(BlockObject *self) {
    PyObject_GC_UnTrack(self);
    block_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *block_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    BlockObject *self = (BlockObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->fn = Py_NewRef(Py_None);
    self->arg_specs = Py_NewRef(Py_None);
    self->out_specs = PyTuple_New(0);
    if (self->out_specs == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* The call's outputs as LazyValues, in the structure the block returns. */
static PyObject *wrap(BlockObject *block, CallObject *call) {
    Py_ssize_t n = PyTuple_GET_SIZE(block->out_specs);
    PyObject *values = PyTuple_New(n);
    if (values == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = make_lazy(lazy_value, (PyObject *)call, i,
                                PyTuple_GET_ITEM(block->out_specs, i), call->depth, call->round);
        if (v == NULL) {
            Py_DECREF(values);
            return NULL;
        }
        PyTuple_SET_ITEM(values, i, v);
    }
    if (block->out_form == FORM_TUPLE)
        return values;
    PyObject *out;
    if (block->out_form == FORM_TENSOR && n == 1)
        out = Py_NewRef(PyTuple_GET_ITEM(values, 0));
    else
        out = PyObject_CallMethodOneArg((PyObject *)block, str_unflatten, values);
    Py_DECREF(values);
    return out;
}

/* -1 with an exception set: `block._mismatch(args)` raises the error naming the argument. */
static Py_ssize_t mismatch(BlockObject *block, PyObject *args) {
    PyObject *r = PyObject_CallMethodOneArg((PyObject *)block, str_mismatch, args);
    Py_XDECREF(r);
    if (r != NULL)
        PyErr_SetString(PyExc_SystemError, "Block._mismatch returned instead of raising");
    return -1;
}

/* Same shape and dtype as the spec (a torch tensor made by the instance's Python). */
static int tensor_matches(PyObject *a, PyObject *spec) {
    if (!PyObject_TypeCheck(a, tensor_type))
        return 0;
    PyObject *want = PyObject_GetAttr(spec, str_dtype), *got = PyObject_GetAttr(a, str_dtype);
    int ok = want != NULL && got != NULL && want == got;
    Py_XDECREF(want);
    Py_XDECREF(got);
    if (!ok)
        return PyErr_Occurred() ? -1 : 0;
    want = PyObject_GetAttr(spec, str_shape);
    got = PyObject_GetAttr(a, str_shape);
    int eq = (want == NULL || got == NULL) ? -1 : PyObject_RichCompareBool(got, want, Py_EQ);
    Py_XDECREF(want);
    Py_XDECREF(got);
    return eq;
}

/* Check args against the signature; 1 + the deepest input still pending in `round` (0 if
   none), or -1 with an exception set. */
static Py_ssize_t depth_of(BlockObject *block, PyObject *args, Py_ssize_t round) {
    PyObject *specs = block->arg_specs;
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    if (n != PyTuple_GET_SIZE(specs))
        return mismatch(block, args);
    Py_ssize_t depth = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *a = PyTuple_GET_ITEM(args, i), *spec = PyTuple_GET_ITEM(specs, i);
        if (Py_TYPE(a) == lazy_value) {
            LazyObject *v = (LazyObject *)a;
            if (v->spec != spec) /* specs are interned (kernel.arg_spec) */
                return mismatch(block, args);
            if (v->round == round && v->depth >= depth)
                depth = v->depth + 1;
            continue;
        }
        int ok = tensor_matches(a, spec);
        if (ok < 0)
            return -1;
        if (!ok)
            return mismatch(block, args);
    }
    return depth;
}

static PyObject *record(RecorderObject *rt, BlockObject *block, PyObject *args) {
    if (lazy_value == NULL || tensor_type == NULL) {
        PyErr_SetString(PyExc_SystemError, "_recorder.setup was not called (import runtime.py)");
        return NULL;
    }
    PyObject *calls = rt->calls;
    if (calls == NULL || !PyList_Check(calls) || rt->groups == NULL || !PyDict_Check(rt->groups)) {
        PyErr_SetString(PyExc_SystemError, "ab.run: a block was called between instances");
        return NULL;
    }
    if (rt->cursor < PyList_GET_SIZE(calls)) { /* replay: the instance made this call before */
        CallObject *call = (CallObject *)PyList_GET_ITEM(calls, rt->cursor);
        if (Py_TYPE(call) != &CallType) {
            PyErr_SetString(PyExc_TypeError, "an instance's record holds Calls only");
            return NULL;
        }
        rt->cursor++;
        if (call->block != (PyObject *)block) {
            PyObject *r = PyObject_CallMethodObjArgs((PyObject *)rt, str_diverged, block, call,
                                                     NULL);
            Py_XDECREF(r);
            return NULL;
        }
        return wrap(block, call);
    }
    Py_ssize_t depth = depth_of(block, args, rt->round);
    if (depth < 0)
        return NULL;
    CallObject *call = new_call((PyObject *)block, args, depth, rt->round);
    if (call == NULL)
        return NULL;
    PyObject *out = NULL, *group = NULL, *d = PyLong_FromSsize_t(depth);
    PyObject *key = d ? PyTuple_Pack(2, block, d) : NULL;
    Py_XDECREF(d);
    if (key == NULL)
        goto done;
    group = PyDict_GetItemWithError(rt->groups, key); /* borrowed */
    if (group == NULL) {
        if (PyErr_Occurred() || (group = PyList_New(0)) == NULL)
            goto done;
        int failed = PyDict_SetItem(rt->groups, key, group);
        Py_DECREF(group); /* the dict holds it */
        if (failed)
            goto done;
    }
    if (PyList_Append(group, (PyObject *)call) || PyList_Append(calls, (PyObject *)call))
        goto done;
    rt->cursor++;
    out = wrap(block, call);
done:
    Py_XDECREF(key);
    Py_DECREF(call);
    return out;
}

static PyObject *block_call(BlockObject *self, PyObject *args, PyObject *kwargs) {
    PyObject *rt;
    if (PyContextVar_Get(active_runtime, Py_None, &rt) < 0)
        return NULL;
    if (self->fn == NULL) {
        Py_DECREF(rt);
        PyErr_Format(PyExc_AttributeError, "%R has no function (its fn was deleted)", self);
        return NULL;
    }
    if (rt == Py_None) {
        Py_DECREF(rt);
        return PyObject_Call(self->fn, args, kwargs);
    }
    PyObject *out = NULL;
    if (kwargs != NULL && PyDict_GET_SIZE(kwargs) > 0) {
        PyErr_Format(PyExc_TypeError, "%R takes positional tensors only inside ab.run", self);
        goto done;
    }
    if (self->arg_specs == Py_None) { /* first call: Python fixes the signature */
        PyObject *r = PyObject_CallMethodOneArg((PyObject *)self, str_first_call, args);
        if (r == NULL)
            goto done;
        Py_DECREF(r);
    }
    if (!PyObject_TypeCheck(rt, &RecorderType)) {
        PyErr_SetString(PyExc_TypeError, "the active ab.run runtime is not a RecorderBase");
        goto done;
    }
    out = record((RecorderObject *)rt, self, args);
done:
    Py_DECREF(rt);
    return out;
}

static PyMemberDef block_members[] = {
    {"fn", T_OBJECT, offsetof(BlockObject, fn), 0, "the module or function run per instance"},
    {"out_form", T_INT, offsetof(BlockObject, out_form), 0,
     "how `fn` returns: FORM_TENSOR, FORM_TUPLE (flat) or FORM_TREE (unflattened by "
     "`_unflatten`)"},
    {NULL},
};

/* arg_specs (a tuple, or None before the first call) and out_specs (a tuple): the C code reads
   them as tuples, so only tuples are stored. */
static PyObject *block_get_specs(BlockObject *self, void *out) {
    return Py_NewRef(out ? self->out_specs : self->arg_specs);
}

static int block_set_specs(BlockObject *self, PyObject *specs, void *out) {
    if (specs == NULL || !(PyTuple_Check(specs) || (specs == Py_None && out == NULL))) {
        PyErr_Format(PyExc_TypeError, "%s must be a tuple", out ? "out_specs" : "arg_specs");
        return -1;
    }
    Py_SETREF(*(out ? &self->out_specs : &self->arg_specs), Py_NewRef(specs));
    return 0;
}

static PyGetSetDef block_getset[] = {
    {"arg_specs", (getter)block_get_specs, (setter)block_set_specs,
     "the per-instance signature (a tuple of ArgSpec), None before the first call", NULL},
    {"out_specs", (getter)block_get_specs, (setter)block_set_specs,
     "the outputs' ArgSpecs (a tuple)", (void *)1},
    {NULL},
};

static PyTypeObject BlockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ember.autobatch._recorder.BlockBase",
    .tp_doc = "The call path of ab.block (see block.py).",
    .tp_basicsize = sizeof(BlockObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)block_traverse,
    .tp_clear = (inquiry)block_clear,
    .tp_dealloc = (destructor)block_dealloc,
    .tp_new = block_new,
    .tp_call = (ternaryfunc)block_call,
    .tp_members = block_members,
    .tp_getset = block_getset,
};

/* ---- the scheduler's per-argument loops ---- */

/* Call i of a group's list, or NULL with TypeError if it is not a Call. */
static CallObject *group_call(PyObject *calls, Py_ssize_t i) {
    PyObject *call = PyList_GET_ITEM(calls, i);
    if (Py_TYPE(call) != &CallType) {
        PyErr_SetString(PyExc_TypeError, "a group holds Calls only");
        return NULL;
    }
    return (CallObject *)call;
}

static int get_column(PyObject *calls, Py_ssize_t j, Py_ssize_t i, PyObject **arg) {
    CallObject *call = group_call(calls, i);
    if (call == NULL)
        return -1;
    PyObject *args = call->args;
    if (j >= PyTuple_GET_SIZE(args)) {
        PyErr_SetString(PyExc_IndexError, "argument index out of range");
        return -1;
    }
    *arg = PyTuple_GET_ITEM(args, j);
    return 0;
}

static PyObject *rows(PyObject *module, PyObject *const *argv, Py_ssize_t argc) {
    Py_ssize_t j;
    int64_t *out;
    if (argc != 3 || !PyList_Check(argv[0]) || (j = PyLong_AsSsize_t(argv[1])) < 0 ||
        (out = (int64_t *)PyLong_AsVoidPtr(argv[2])) == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "rows(calls: list, j: int, out: int64 pointer)");
        return NULL;
    }
    PyObject *calls = argv[0], *buffer = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(calls); i++) {
        PyObject *a;
        if (get_column(calls, j, i, &a))
            return NULL;
        if (Py_TYPE(a) != lazy_value)
            Py_RETURN_NONE;
        LazyObject *v = (LazyObject *)a;
        CallObject *producer = (CallObject *)v->call;
        PyObject *outputs = producer->outputs;
        if (outputs == NULL || !PyList_Check(outputs) || v->slot >= PyList_GET_SIZE(outputs)) {
            PyErr_Format(PyExc_RuntimeError, "ab.run: an input of argument %zd is not computed",
                         j);
            return NULL;
        }
        PyObject *entry = PyList_GET_ITEM(outputs, v->slot);
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2) {
            PyErr_SetString(PyExc_TypeError, "Call.outputs holds (buffer, first row) pairs");
            return NULL;
        }
        if (buffer == NULL)
            buffer = PyTuple_GET_ITEM(entry, 0);
        else if (PyTuple_GET_ITEM(entry, 0) != buffer)
            Py_RETURN_NONE;
        Py_ssize_t first = PyLong_AsSsize_t(PyTuple_GET_ITEM(entry, 1));
        if (first == -1 && PyErr_Occurred())
            return NULL;
        out[i] = first + producer->row;
    }
    return Py_NewRef(buffer ? buffer : Py_None);
}

static PyObject *launched(PyObject *module, PyObject *const *argv, Py_ssize_t argc) {
    int64_t *out;
    if (argc != 2 || !PyList_Check(argv[0]) ||
        (out = (int64_t *)PyLong_AsVoidPtr(argv[1])) == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "launched(calls: list, out: int64 pointer)");
        return NULL;
    }
    PyObject *calls = argv[0], *outputs = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(calls); i++) {
        CallObject *call = group_call(calls, i);
        if (call == NULL)
            return NULL;
        if (call->outputs == NULL || call->outputs == Py_None ||
            (outputs != NULL && call->outputs != outputs))
            Py_RETURN_NONE;
        outputs = call->outputs;
        out[i] = call->row;
    }
    return Py_NewRef(outputs ? outputs : Py_None);
}

static PyObject *same(PyObject *module, PyObject *const *argv, Py_ssize_t argc) {
    Py_ssize_t j;
    if (argc != 2 || !PyList_Check(argv[0]) || (j = PyLong_AsSsize_t(argv[1])) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "same(calls: list, j: int)");
        return NULL;
    }
    PyObject *first = NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(argv[0]); i++) {
        PyObject *a;
        if (get_column(argv[0], j, i, &a))
            return NULL;
        if (first == NULL)
            first = a;
        if (a != first || Py_TYPE(a) == lazy_value)
            Py_RETURN_NONE;
    }
    return Py_NewRef(first ? first : Py_None);
}

/* Argument j of every call (`of_calls` 0: none may be a LazyValue), or the Calls making it
   (`of_calls` 1: each must be the same output of a call of one block); None otherwise. */
static PyObject *collect(PyObject *const *argv, Py_ssize_t argc, int of_calls) {
    Py_ssize_t j;
    if (argc != 2 || !PyList_Check(argv[0]) || (j = PyLong_AsSsize_t(argv[1])) < 0) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_TypeError, "%s(calls: list, j: int)",
                         of_calls ? "producers" : "made");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(argv[0]);
    PyObject *column = PyList_New(n);
    if (column == NULL)
        return NULL;
    LazyObject *first = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *a;
        if (get_column(argv[0], j, i, &a)) {
            Py_DECREF(column);
            return NULL;
        }
        if ((Py_TYPE(a) == lazy_value) != of_calls) {
            Py_DECREF(column);
            Py_RETURN_NONE;
        }
        if (of_calls) {
            LazyObject *v = (LazyObject *)a;
            if (first == NULL)
                first = v;
            else if (v->slot != first->slot ||
                     ((CallObject *)v->call)->block != ((CallObject *)first->call)->block) {
                Py_DECREF(column);
                Py_RETURN_NONE;
            }
            a = v->call;
        }
        PyList_SET_ITEM(column, i, Py_NewRef(a));
    }
    return column;
}

static PyObject *made(PyObject *module, PyObject *const *argv, Py_ssize_t argc) {
    return collect(argv, argc, 0);
}

static PyObject *producers(PyObject *module, PyObject *const *argv, Py_ssize_t argc) {
    return collect(argv, argc, 1);
}

static PyObject *finish(PyObject *module, PyObject *const *argv, Py_ssize_t argc) {
    if (argc != 2 || !PyList_Check(argv[0]) || !PyList_Check(argv[1])) {
        PyErr_SetString(PyExc_TypeError, "finish(calls: list, outputs: list)");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(argv[0]); i++) {
        CallObject *call = group_call(argv[0], i);
        if (call == NULL)
            return NULL;
        Py_SETREF(call->outputs, Py_NewRef(argv[1]));
        call->row = i;
    }
    Py_RETURN_NONE;
}

static PyObject *setup(PyObject *module, PyObject *const *argv, Py_ssize_t argc) {
    if (argc != 3 || !PyContextVar_CheckExact(argv[0]) || !PyType_Check(argv[1]) ||
        !PyType_IsSubtype((PyTypeObject *)argv[1], &LazyType) || !PyType_Check(argv[2])) {
        PyErr_SetString(PyExc_TypeError, "setup(ContextVar, LazyValue type, torch.Tensor)");
        return NULL;
    }
    Py_XSETREF(active_runtime, Py_NewRef(argv[0]));
    Py_XSETREF(lazy_value, (PyTypeObject *)Py_NewRef(argv[1]));
    Py_XSETREF(tensor_type, (PyTypeObject *)Py_NewRef(argv[2]));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"setup", (PyCFunction)(void (*)(void))setup, METH_FASTCALL,
     "setup(active_runtime, LazyValue, torch.Tensor): what recording needs from Python"},
    {"rows", (PyCFunction)(void (*)(void))rows, METH_FASTCALL,
     "rows(calls, j, out): the one buffer holding argument j of every call, writing their rows "
     "to the int64 array at address `out`; None if they are not all computed values in one "
     "buffer"},
    {"launched", (PyCFunction)(void (*)(void))launched, METH_FASTCALL,
     "launched(calls, out): the outputs list every call got from one launch, writing their rows "
     "to the int64 array at address `out`; None if they are not all computed by one launch"},
    {"same", (PyCFunction)(void (*)(void))same, METH_FASTCALL,
     "same(calls, j): argument j if every call passed that same object (not a LazyValue), "
     "else None"},
    {"made", (PyCFunction)(void (*)(void))made, METH_FASTCALL,
     "made(calls, j): argument j of every call, if none is a LazyValue (all made by Python), "
     "else None"},
    {"producers", (PyCFunction)(void (*)(void))producers, METH_FASTCALL,
     "producers(calls, j): the Calls making argument j of every call, if each is the same "
     "output of a call of one block, else None"},
    {"finish", (PyCFunction)(void (*)(void))finish, METH_FASTCALL,
     "finish(calls, outputs): hand every call of a launch its outputs and row"},
    {NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "ember.autobatch._recorder",
    .m_doc = "The per-call hot path of ab.run (see _recorder.c).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__recorder(void) {
    str_dtype = PyUnicode_InternFromString("dtype");
    str_shape = PyUnicode_InternFromString("shape");
    str_first_call = PyUnicode_InternFromString("_first_call");
    str_mismatch = PyUnicode_InternFromString("_mismatch");
    str_unflatten = PyUnicode_InternFromString("_unflatten");
    str_diverged = PyUnicode_InternFromString("_diverged");
    if (!str_dtype || !str_shape || !str_first_call || !str_mismatch || !str_unflatten ||
        !str_diverged)
        return NULL;
    PyTypeObject *types[] = {&CallType, &LazyType, &RecorderType, &BlockType};
    const char *names[] = {"Call", "LazyBase", "RecorderBase", "BlockBase"};
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL)
        return NULL;
    for (int i = 0; i < 4; i++) {
        if (PyType_Ready(types[i]) < 0 || PyModule_AddObjectRef(m, names[i], (PyObject *)types[i])) {
            Py_DECREF(m);
            return NULL;
        }
    }
    if (PyModule_AddIntConstant(m, "FORM_TREE", FORM_TREE) ||
        PyModule_AddIntConstant(m, "FORM_TENSOR", FORM_TENSOR) ||
        PyModule_AddIntConstant(m, "FORM_TUPLE", FORM_TUPLE)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
